"""The bad-input harness: a case is a command line and the bad input it meets; it must end with
the exit code of its kind, exactly one stderr line naming the culprit, no traceback, no hang, and
the directory tree it ran in exactly as it was (every file's bytes, every link, every FIFO).

Cases run `s2jax.cli.main` in-process (JAX starts once per test process), under an alarm that
turns a hang into a failure.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import signal
import stat
import struct
from collections.abc import Callable
from pathlib import Path

from s2jax.cli import main
from s2jax.core.errors import EXIT_BAD_INPUT
from s2jax.toy.demo import base_model_dir

HANG_SECONDS = 60  # a case still running after this long is a hang


@dataclasses.dataclass(frozen=True)
class Case:
    """One bad input: `argv` (formatted with `{tmp}` and the names `setup(tmp)` returns), the
    text the one stderr line must contain, and the exit code (2: bad input)."""

    argv: list[str]
    setup: Callable[[Path], dict] | None
    expect: str
    code: int = EXIT_BAD_INPUT
    env: dict | None = None  # environment variables set for the case


def tree(root: Path) -> dict[str, tuple]:
    """Every path under `root` with what it is: a file's hash and mode, a link's target, a
    directory, a FIFO (never opened)."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(dirpath, name)
            st = os.lstat(p)
            rel = str(p.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISREG(st.st_mode):
                out[rel] = ("file", hashlib.sha256(p.read_bytes()).hexdigest(),
                            stat.S_IMODE(st.st_mode))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir",)
            else:
                out[rel] = ("special", stat.S_IFMT(st.st_mode))
    return out


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang(f"still running after {HANG_SECONDS} s: a hang")


def run_cli(argv: list[str], capsys, env: dict | None = None) -> tuple[int, str]:
    """(exit code, stderr) of `s2jax ARGV`, in-process, failing on a hang."""
    old_env = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(HANG_SECONDS)
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's usage errors
        code = e.code
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
        for k, v in old_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return code, capsys.readouterr().err


def check(case: Case, tmp: Path, capsys) -> str:
    """Runs `case` in `tmp` (also its working directory) and asserts the contract; returns the
    stderr line."""
    names = case.setup(tmp) if case.setup else {}
    capsys.readouterr()  # what building the input printed
    before = tree(tmp)
    argv = [a.format(tmp=tmp, **(names or {})) for a in case.argv]
    cwd = os.getcwd()
    os.chdir(tmp)
    try:
        code, err = run_cli(argv, capsys, case.env)
    finally:
        os.chdir(cwd)
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err, err
    assert code == case.code, f"exit {code}, expected {case.code}: {err}"
    assert len(lines) == 1, f"expected one stderr line, got {len(lines)}:\n{err}"
    assert lines[0].startswith("s2jax"), lines[0]
    assert case.expect in lines[0], f"{case.expect!r} not in: {lines[0]}"
    after = tree(tmp)
    assert after == before, _diff(before, after)
    return lines[0]


def _diff(before: dict, after: dict) -> str:
    added = sorted(set(after) - set(before))
    gone = sorted(set(before) - set(after))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    return f"tree changed: added {added}, removed {gone}, changed {changed}"


# -- artifacts of earlier runs, made once per session and copied into the cases that need them

ARTIFACTS: dict[str, Path] = {}
_BUILT: dict[str, Path] = {}
TRAIN_ARGS = ["--steps", "1", "--batch-size", "1", "--seq-len", "64", "--no-progress",
              "--eval-examples", "0"]


def artifact(name: str) -> Path:
    """The output of a successful earlier run (built on first use): "train" (a finished
    `s2jax train` run dir), "set" (a `vote` set), "gen" (a `generate` output), "model" (a
    `convert` output), "plan" (a `plan --json` report)."""
    if name not in _BUILT:
        root = ARTIFACTS["root"] / name
        root.mkdir()
        (root / "d.jsonl").write_text('{"prompt": "q", "completion": "a"}\n')
        (root / "gen.jsonl").write_bytes(record() + b"\n")
        (root / "in.jsonl").write_text('{"id": "a", "prompt": "hi"}\n')
        if name in _SYNTHETIC:
            _SYNTHETIC[name](root)
            _BUILT[name] = root
            return root
        # paths relative to `root`: a case reruns them relative to its own dir
        argv = ["vote", "--generations", "gen.jsonl", "--task", "coin_flip", "--out", "out"]
        cwd = os.getcwd()
        os.chdir(root)
        try:
            assert main(argv) == 0, argv
        finally:
            os.chdir(cwd)
        _BUILT[name] = root
    return _BUILT[name]


# Outputs of the slower commands, written by the writers those commands use (s2jax's own
# marks and checks) without their minute of JAX work on 2 cores; test_faults.py reruns real ones.
def _export(path: Path) -> None:
    from s2jax.core.ownership import MODEL, replace_dir

    with replace_dir(path, MODEL) as tmp:  # what `s2jax.save` writes into, and marks
        for p in base_model_dir().iterdir():
            shutil.copy2(p, tmp / p.name)


def _finished_train(root: Path) -> None:
    """A finished `s2jax train --out out`: its mark, train_config.json with its base's
    identity, the exported model/."""
    from s2jax.core.atomic import write_json
    from s2jax.core.ownership import TRAIN_RUN, claim_dir
    from s2jax.models.loading import identity

    out = claim_dir(root / "out", "--out", TRAIN_RUN)
    write_json(out / "train_config.json", {"base": identity(base_model_dir()), "steps": 1})
    _export(out / "model")


def _generated(root: Path) -> None:
    from s2jax.core.ownership import GENERATE_OUTPUT, open_owned_file

    with open_owned_file(root / "out", GENERATE_OUTPUT) as f:
        f.write('{"id": "a", "samples": [{"text": "x", "num_tokens": 1, '
                '"finish_reason": "stop"}]}\n')


_SYNTHETIC = {"train": _finished_train, "gen": _generated,
              "model": lambda root: _export(root / "out")}


def copy_artifact(name: str, tmp: Path) -> Path:
    """A copy of artifact `name` (its output `out`, its inputs, its marks; times kept, so the
    marks still match) in `tmp`; returns the output's path."""
    for p in artifact(name).iterdir():
        if p.is_dir():
            shutil.copytree(p, tmp / p.name, symlinks=True)
        else:
            shutil.copy2(p, tmp / p.name)
    return tmp / "out"


# -- building bad inputs ------------------------------------------------------------------------

GOOD_RECORD = {"id": "a", "task": "coin_flip", "method": "rar_1step", "final_stage": "respond",
               "fields": {"question": "q", "spec": "s"}, "gold": [],
               "samples": [{"stages": {"respond": {"text": "yes", "num_tokens": 1,
                                                   "finish_reason": "stop"}},
                            "num_tokens": 1}]}
TOY_CONFIG = f'''
from s2jax.run.config import DataConfig, ExperimentConfig
def get_config(arg=None):
    return ExperimentConfig(name="t", model={str(base_model_dir())!r}, task="toy/coin_flip",
                            method="rar_1step", unlabeled=DataConfig(synthetic=2),
                            test=DataConfig(synthetic=2))
'''


def model_copy(tmp: Path, name: str = "model") -> Path:
    d = tmp / name
    shutil.copytree(base_model_dir(), d)
    return d


def rewrite_header(path: Path, edit) -> None:
    """Rewrites a safetensors header with `edit(header) -> new header` (data unchanged)."""
    blob = path.read_bytes()
    (n,) = struct.unpack("<Q", blob[:8])
    header = edit(json.loads(blob[8:8 + n]))
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + blob[8 + n:])


def first_tensor(header: dict) -> str:
    return next(k for k in header if k != "__metadata__")


def bad_model(edit_header=None, file=None, data=None, config=None, remove=None):
    """A copy of the toy model with its safetensors header edited, a file replaced, config.json
    fields changed (`config`: {field: value}, a value of `...` deletes it) or a file removed."""
    def setup(tmp):
        d = model_copy(tmp)
        if edit_header:
            rewrite_header(d / "model.safetensors", edit_header)
        if file:
            (d / file).write_bytes(data)
        if config:
            hf = json.loads((d / "config.json").read_text())
            for k, v in config.items():
                if v is ...:
                    hf.pop(k, None)
                else:
                    hf[k] = v
            (d / "config.json").write_text(json.dumps(hf))
        if remove:
            (d / remove).unlink()
        return {"model": d}
    return setup


def file(name: str, data: bytes | str, **extra):
    """A file `name` holding `data`; names {f}, {model} (the shipped toy model) and `extra`."""
    def setup(tmp):
        (tmp / name).write_bytes(data.encode() if isinstance(data, str) else data)
        return {"f": tmp / name, "model": base_model_dir(), **extra}
    return setup


def fifo(name: str, **extra):
    def setup(tmp):
        os.mkfifo(tmp / name)
        return {"f": tmp / name, "model": base_model_dir(), **extra}
    return setup


def with_(setup, extra):
    """`setup`, then `extra(tmp, names)`."""
    def both(tmp):
        names = setup(tmp) if setup else {}
        extra(tmp, names)
        return names
    return both


def user_dir(name: str = "mine"):
    def make(tmp, names):
        (tmp / name).mkdir()
        (tmp / name / "notes.txt").write_text("keep me")
    return make


def user_file(name: str, text: str = "keep me\n"):
    def make(tmp, names):
        (tmp / name).write_text(text)
    return make


def record(**change) -> bytes:
    return json.dumps({**GOOD_RECORD, **change}).encode()


def generations(*lines: bytes, name: str = "gen.jsonl"):
    return file(name, b"".join(line + b"\n" for line in lines))


def config_file(body: str):
    def setup(tmp):
        (tmp / "c.py").write_text(body)
        return {"f": tmp / "c.py", "run": tmp / "run"}
    return setup


toy_config = config_file(TOY_CONFIG)


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth
