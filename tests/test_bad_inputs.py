"""The probe's bad inputs, as a corpus: each exits 2 with one stderr line naming the culprit and
what was expected, writes nothing, and replaces nothing a user had.

Each case is (argv, setup, expected text in the message). `setup(tmp)` builds the bad input in a
fresh directory and returns the names its argv formats in. Cases run `s2jax.cli.main` in-process.
"""

import errno
import json
import shutil
import struct
from pathlib import Path

import pytest

from s2jax.cli import main
from s2jax.toy.demo import base_model_dir

GOOD_RECORD = {"id": "a", "task": "coin_flip", "method": "rar_1step", "final_stage": "respond",
               "fields": {"question": "q", "spec": "s"}, "gold": [],
               "samples": [{"stages": {"respond": {"text": "yes", "num_tokens": 1,
                                                   "finish_reason": "stop"}},
                            "num_tokens": 1}]}


def _model(tmp: Path) -> Path:
    d = tmp / "model"
    shutil.copytree(base_model_dir(), d)
    return d


def _rewrite_header(path: Path, edit) -> None:
    """Rewrites a safetensors header with `edit(header) -> new header` (data unchanged)."""
    blob = path.read_bytes()
    (n,) = struct.unpack("<Q", blob[:8])
    header = edit(json.loads(blob[8:8 + n]))
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + blob[8 + n:])


def _first_tensor(header: dict) -> str:
    return next(k for k in header if k != "__metadata__")


def _bad_model(edit_header=None, file=None, text=None):
    def setup(tmp):
        d = _model(tmp)
        if edit_header:
            _rewrite_header(d / "model.safetensors", edit_header)
        if file:
            (d / file).write_bytes(text)
        return {"model": d}
    return setup


def _drop(key):
    def edit(h):
        del h[_first_tensor(h)][key]
        return h
    return edit


def _int_dtype(h):
    name = next(k for k in h if "embed" in k)
    h[name]["dtype"] = "I32"  # same item size: only the type is wrong
    return h


def _file(name: str, data: bytes):
    def setup(tmp):
        (tmp / name).write_bytes(data)
        return {"f": tmp / name, "model": base_model_dir()}
    return setup


def _generations(*lines: bytes):
    return _file("gen.jsonl", b"".join(line + b"\n" for line in lines))


def _record(**change) -> bytes:
    return json.dumps({**GOOD_RECORD, **change}).encode()


def _config(body: str):
    def setup(tmp):
        (tmp / "c.py").write_text(body)
        return {"f": tmp / "c.py", "run": tmp / "run"}
    return setup


TOY_CONFIG = f'''
from s2jax.run.config import DataConfig, ExperimentConfig
def get_config(arg=None):
    return ExperimentConfig(name="t", model={str(base_model_dir())!r}, task="toy/coin_flip",
                            method="rar_1step", unlabeled=DataConfig(synthetic=2),
                            test=DataConfig(synthetic=2))
'''


def _toy_config(tmp):
    (tmp / "c.py").write_text(TOY_CONFIG)
    return {"f": tmp / "c.py", "run": tmp / "run"}


def _with(setup, extra):
    def both(tmp):
        names = setup(tmp)
        extra(tmp, names)
        return names
    return both


def _user_dir(tmp, names):
    (tmp / "mine").mkdir()
    (tmp / "mine" / "notes.txt").write_text("keep me")


def _regular_file(tmp, names):
    (tmp / "afile").write_text("x")


def _foreign_run_dir(tmp, names):
    names["run"].mkdir()
    (names["run"] / "notes.txt").write_text("keep me")


def _other_config_run_dir(tmp, names):
    names["run"].mkdir()
    (names["run"] / "config.json").write_text('{"fingerprint": "other"}')


GEN = ["generate", "--model", "{model}", "--input", "{f}", "--output", "{tmp}/out.jsonl"]
GEN_OK = _file("in.jsonl", b'{"id": "a", "prompt": "hi"}\n')
GM = ["generate-method", "--model", "{model}", "--method", "rar_1step", "--task", "coin_flip",
      "--output", "{tmp}/g.jsonl"]
VOTE = ["vote", "--generations", "{f}", "--task", "coin_flip", "--out", "{tmp}/set"]
TRAIN = ["train", "--model", "{model}", "--data", "{f}", "--out", "{tmp}/run"]
TRAIN_OK = _file("d.jsonl", b'{"prompt": "q", "completion": "a"}\n')
RUN = ["run", "{f}", "--run-dir", "{run}", "--dry-run"]

CASES = {
    # checkpoints
    "safetensors header is a list": (
        ["inspect", "{model}"], _bad_model(lambda h: [h]), "expected an object of tensors"),
    "safetensors entry without data_offsets": (
        ["inspect", "{model}"], _bad_model(_drop("data_offsets")), "'data_offsets'"),
    "safetensors entry without dtype": (
        ["inspect", "{model}"], _bad_model(_drop("dtype")), "needs 'dtype'"),
    "safetensors entry is not an object": (
        ["inspect", "{model}"], _bad_model(lambda h: {**h, _first_tensor(h): 7}), "needs 'dtype'"),
    "float tensor stored as int32": (
        ["inspect", "{model}"], _bad_model(_int_dtype), "expected a floating-point dtype"),
    "safetensors header not JSON": (
        ["inspect", "{model}"], _bad_model(file="model.safetensors",
                                           text=struct.pack("<Q", 4) + b"{{{{"),
        "corrupt safetensors header"),
    "corrupt tokenizer.json": (
        ["inspect", "{model}"], _bad_model(file="tokenizer.json", text=b'{"version": '),
        "tokenizer.json: not valid JSON"),
    "corrupt generation_config.json": (
        ["inspect", "{model}"], _bad_model(file="generation_config.json", text=b"{'a': 1}"),
        "generation_config.json: not valid JSON"),
    "generation_config.json a list": (
        ["inspect", "{model}"], _bad_model(file="generation_config.json", text=b"[1]"),
        "expected a JSON object"),
    "corrupt config.json": (
        ["inspect", "{model}"], _bad_model(file="config.json", text=b"{"), "not valid JSON"),
    "--dtype float16": (["inspect", "{model}", "--dtype", "float16"], GEN_OK, "float16"),
    # s2jax generate
    "non-UTF-8 prompts": (GEN, _file("in.jsonl", b'{"id": "a", "prompt": "\xff"}\n'),
                          "not UTF-8"),
    "lone surrogate in prompts": (GEN, _file("in.jsonl", b'{"id": "a", "prompt": "\\ud800"}\n'),
                                  "lone surrogate"),
    "prompt line is a list": (GEN, _file("in.jsonl", b'[1, 2]\n'), "expected an object"),
    "prompt line not JSON": (GEN, _file("in.jsonl", b'{"id": \n'), "not valid JSON"),
    "prompt without id": (GEN, _file("in.jsonl", b'{"prompt": "x"}\n'), "string field 'id'"),
    "--max-batch 0": (GEN + ["--max-batch", "0"], GEN_OK, "--max-batch"),
    "--max-len 0": (GEN + ["--max-len", "0"], GEN_OK, "--max-len"),
    "--temperature inf": (GEN + ["--temperature", "inf"], GEN_OK, "temperature must be finite"),
    "--temperature nan": (GEN + ["--temperature", "nan"], GEN_OK, "temperature must be finite"),
    "--top-p 0": (GEN + ["--top-p", "0"], GEN_OK, "top_p must be in (0, 1]"),
    "--n 0": (GEN + ["--n", "0"], GEN_OK, "n must be >= 1"),
    "--output under a regular file": (
        ["generate", "--model", "{model}", "--input", "{f}", "--output", "{f}/out.jsonl"],
        GEN_OK, "is a file, not a directory"),
    # s2jax generate-method
    "--limit -1": (GM + ["--input", "{f}", "--limit", "-1"], GEN_OK, "--limit -1"),
    "--synthetic 0": (GM + ["--synthetic", "0"], GEN_OK, "--synthetic 0"),
    "generate-method --temperature inf": (GM + ["--synthetic", "2", "--temperature", "inf"],
                                          GEN_OK, "temperature must be finite"),
    "generate-method --output is a user's file": (
        ["generate-method", "--model", "{model}", "--method", "rar_1step", "--task", "coin_flip",
         "--synthetic", "2", "--output", "{f}"], GEN_OK, "not a resumable artifact"),
    "generate-method --perturb on a task without one": (
        GM + ["--synthetic", "2", "--perturb"], GEN_OK, "no perturbation"),
    # s2jax vote
    "generations not UTF-8": (VOTE, _generations(b'{"id": "\xfe"}'), "not UTF-8"),
    "generations record is a list": (VOTE, _generations(b"[1]"), "expected an object"),
    "generations record is a string": (VOTE, _generations(b'"x"'), "expected an object"),
    "generations sample is not an object": (VOTE, _generations(_record(samples=[1])),
                                            "malformed sample"),
    "generations record misses fields": (VOTE, _generations(b'{"id": "a"}'),
                                         "field 'task' missing"),
    "generations of another task": (VOTE, _generations(_record(task="gsm8k")), "not task"),
    "generations not finished": (
        VOTE, _with(_generations(_record()), lambda tmp, n: (tmp / "gen.jsonl.shards")
                    .write_text('{"shard": 0}\n')), "did not finish"),
    "vote --out is a user's dir": (
        VOTE[:-1] + ["{tmp}/mine"], _with(_generations(_record()), _user_dir),
        "is not this run's output"),
    "vote --out is the generations file": (
        VOTE[:-1] + ["{f}"], _generations(_record()), "is not a directory"),
    "vote --threshold 2": (VOTE + ["--threshold", "2"], _generations(_record()),
                           "threshold must be in [0, 1]"),
    "vote keeps nothing": (VOTE, _generations(_record(samples=[])), "kept no examples"),
    # s2jax train
    "--learning-rate nan": (TRAIN + ["--learning-rate", "nan"], TRAIN_OK, "learning_rate=nan"),
    "--learning-rate -1": (TRAIN + ["--learning-rate", "-1"], TRAIN_OK, "learning_rate=-1"),
    "--learning-rate inf": (TRAIN + ["--learning-rate", "inf"], TRAIN_OK, "learning_rate=inf"),
    "corrupt parquet": (TRAIN, _file("d.parquet", b"PAR1 not really"), "not a readable parquet"),
    "train data not UTF-8": (TRAIN, _file("d.jsonl", b'{"prompt": "\xff"}\n'), "not UTF-8"),
    "train data line is a list": (TRAIN, _file("d.jsonl", b"[1]\n"), "expected an object"),
    "train --out is a user's dir": (TRAIN[:-1] + ["{tmp}/mine"], _with(TRAIN_OK, _user_dir),
                                    "is not this run's output"),
    "train --steps -1": (TRAIN + ["--steps", "-1"], TRAIN_OK, "steps=-1"),
    # s2jax run
    "config file with a syntax error": (RUN, _config("def get_config(:\n"), "c.py:1"),
    "config file that raises": (RUN, _config("def get_config(arg=None):\n    1 / 0\n"),
                                "ZeroDivisionError"),
    "config file importing a missing module": (RUN, _config("import not_a_module_x\n"),
                                               "ModuleNotFoundError"),
    "config file without get_config": (RUN, _config("x = 1\n"), "defines no get_config"),
    "get_config returns a dict": (RUN, _config("def get_config(arg=None):\n    return {}\n"),
                                  "expected ExperimentConfig"),
    "--set train=5": (RUN + ["--set", "train=5"], _toy_config, "expected TrainConfig"),
    "--set sampling.temperature=inf": (RUN + ["--set", "sampling.temperature=inf"], _toy_config,
                                       "temperature must be finite"),
    "--set distill.filter=usc alone": (RUN + ["--set", "distill.filter=usc"], _toy_config,
                                       "needs usc=True"),
    "--set dtype=float16": (RUN + ["--set", "dtype=float16"], _toy_config, "dtype='float16'"),
    "--set unlabeled.limit=-1": (RUN + ["--set", "unlabeled.limit=-1"], _toy_config,
                                 "limit=-1"),
    "--set train.learning_rate=nan": (RUN + ["--set", "train.learning_rate=nan"], _toy_config,
                                      "learning_rate=nan"),
    "--set train.learning_rate=0": (RUN + ["--set", "train.learning_rate=0"], _toy_config,
                                    "learning rate is 0 at every one"),
    "--set train warm-up longer than the run": (
        RUN + ["--set", "train.steps=1", "--set", "train.warmup_steps=5"], _toy_config,
        "learning rate is 0 at every one"),
    "--set mesh beyond the devices": (RUN + ["--set", "mesh=fsdp=4096"], _toy_config,
                                      "needs 4096 devices"),
    "--set task unknown": (RUN + ["--set", "task=nope"], _toy_config, "config task 'nope'"),
    "--set method unknown": (RUN + ["--set", "method=nope"], _toy_config, "config method"),
    "--run-dir under a regular file": (
        ["run", "{f}", "--run-dir", "{tmp}/afile/run", "--dry-run"],
        _with(_toy_config, _regular_file), "is a file, not a directory"),
    "run dir of another config": (RUN, _with(_toy_config, _other_config_run_dir),
                                  "different config"),
    "run dir with a corrupt config.json": (
        RUN, _with(_toy_config, lambda tmp, n: (n["run"].mkdir(), (n["run"] / "config.json")
                                                .write_bytes(b"\xff{"))), "different config"),
    "run dir a user's dir": (RUN[:-1], _with(_toy_config, _foreign_run_dir),
                             "holds no s2jax config.json"),
    "run on a task without a generator": (RUN + ["--set", "task=gsm8k", "--set",
                                                 "test_task=toy/coin_flip"],
                                          _toy_config, "has no generator"),
}


def _tree(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("name", CASES)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(name, tmp_path, capsys):
    argv, setup, expected = CASES[name]
    names = setup(tmp_path)
    before = _tree(tmp_path)
    argv = [a.format(tmp=tmp_path, **names) for a in argv]
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own errors
        code = e.code
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    lines = [line for line in err.splitlines() if "error" in line or line == err]
    assert len(lines) == 1 and expected in lines[0], err
    after = _tree(tmp_path)
    # nothing written, nothing replaced (a lock file of a refused run dir aside)
    assert {k: v for k, v in after.items() if not k.endswith(".s2jax.lock")} == before


def test_torn_metrics_line_on_resume_is_dropped(tmp_path):
    from s2jax.train.metrics import MetricsLog

    (tmp_path / "metrics.jsonl").write_bytes(b'{"step": 1, "loss": 2.0}\n{"step": 2, "lo')
    MetricsLog(tmp_path, resume_step=1).close()
    assert (tmp_path / "metrics.jsonl").read_text() == '{"step": 1, "loss": 2.0}\n'


def test_disk_full_during_a_save_is_one_line(tmp_path, capsys, monkeypatch):
    import s2jax.core.atomic

    gen = tmp_path / "gen.jsonl"
    gen.write_bytes(_record() + b"\n")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(s2jax.core.atomic.os, "fsync", full)
    code = main(["vote", "--generations", str(gen), "--task", "coin_flip", "--out",
                 str(tmp_path / "set")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "No space left" in err, err
    assert not (tmp_path / "set").exists() and not list(tmp_path.glob(".*tmp"))


def test_a_locked_run_dir_is_refused(tmp_path, capsys):
    import fcntl
    import os

    from s2jax.core.rundir import LOCK

    _toy_config(tmp_path)
    (tmp_path / "run").mkdir()
    fd = os.open(tmp_path / "run" / LOCK, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as another process's run would hold it
    try:
        code = main(["run", str(tmp_path / "c.py"), "--run-dir", str(tmp_path / "run")])
    finally:
        os.close(fd)
    err = capsys.readouterr().err.strip()
    assert code == 2 and "in use by another s2jax run" in err, err


def test_corpus_is_large_enough():
    assert len(CASES) >= 40


def test_an_update_that_makes_weights_inf_is_caught_after_the_final_step(tmp_path, capsys):
    # the loss of the one step is finite (it is computed before the update), the weights after
    # it are not: the guard must look at the parameters, or an all-Inf model is exported
    data = tmp_path / "d.jsonl"
    data.write_text('{"prompt": "q", "completion": "a"}\n')
    code = main(["train", "--model", str(base_model_dir()), "--data", str(data), "--out",
                 str(tmp_path / "run"), "--steps", "1", "--learning-rate", "1e39",
                 "--batch-size", "1", "--seq-len", "32", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "non-finite" in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "run" / "model").exists()
    assert not list((tmp_path / "run" / "checkpoints").glob("*"))
