"""`s2jax run`: config files are user code (every failure of theirs, `sys.exit` included, is a
bad input naming the file and line), overrides, sweeps, and the run dir."""

import json

import pytest

from tests.bad_inputs.harness import (
    TOY_CONFIG,
    Case,
    check,
    config_file,
    fifo,
    toy_config,
    user_dir,
    with_,
)

RUN = ["run", "{f}", "--run-dir", "{run}", "--dry-run"]
SWEEP = ["sweep", "{f}", "--root", "{run}", "--dry-run"]


def _config(body: str):
    return config_file(body)


def _sweep(body: str):
    return config_file(TOY_CONFIG + body)


def _regular_file(tmp, names):
    (tmp / "afile").write_text("x")


def _foreign_run_dir(tmp, names):
    names["run"].mkdir()
    (names["run"] / "notes.txt").write_text("keep me")


def _other_config_run_dir(tmp, names):
    names["run"].mkdir()
    (names["run"] / ".s2jax").write_text(json.dumps({"s2jax": "run", "key": "other"}))
    (names["run"] / "config.json").write_text('{"fingerprint": "other"}')


def _same_run_with(sub: str, add: str):
    """A run dir of this very config (made by a dry run's own checks' key), with a user's file
    added inside its s2jax-written `sub` directory."""
    def make(tmp, names):
        from s2jax.core.ownership import DISTILL_SET, MODEL, TRAIN_RUN, replace_dir
        from s2jax.core.rundir import claim
        from s2jax.run.config import load_config
        from s2jax.run.pipeline import resolve

        config, _ = load_config(str(names["f"]))
        d = resolve(config, names["run"])
        claim(names["run"], d.fingerprint, d.config)
        kind = {"distill": DISTILL_SET, "train/model": MODEL}[sub]
        if sub == "train/model":
            from s2jax.core.ownership import claim_dir

            claim_dir(names["run"] / "train", "run dir", TRAIN_RUN)
        with replace_dir(names["run"] / sub, kind) as tmp_dir:
            (tmp_dir / "a").write_text("s2jax's")
        (names["run"] / sub / add).write_text("mine")
    return make


CASES = {
    "config file with a syntax error": Case(RUN, _config("def get_config(:\n"), "c.py:1"),
    "config file that raises": Case(RUN, _config("def get_config(arg=None):\n    1 / 0\n"),
                                    "ZeroDivisionError"),
    "config file importing a missing module": Case(RUN, _config("import not_a_module_x\n"),
                                                   "ModuleNotFoundError"),
    "config file without get_config": Case(RUN, _config("x = 1\n"), "defines no get_config"),
    "config file whose get_config is not callable": Case(RUN, _config("get_config = 5\n"),
                                                         "defines no get_config"),
    "get_config returns a dict": Case(RUN, _config("def get_config(arg=None):\n    return {}\n"),
                                      "expected ExperimentConfig"),
    "config file calling sys.exit(0) (ran nothing)": Case(
        RUN[:-1], _config("import sys\nsys.exit(0)\n"), "called sys.exit(0)"),
    "get_config calling sys.exit(3)": Case(
        RUN, _config("import sys\ndef get_config(arg=None):\n    sys.exit(3)\n"),
        "called sys.exit(3)"),
    "config file recursing forever": Case(
        RUN, _config("def get_config(arg=None):\n    return get_config(arg)\n"),
        "RecursionError"),
    "config file raising a multi-line error": Case(
        RUN, _config("def get_config(arg=None):\n    raise ValueError('a\\nb\\nc')\n"),
        "ValueError: a"),
    "config file missing": Case(["run", "{tmp}/nope.py", "--dry-run"], None, "no such config"),
    "config file a FIFO": Case(["run", "{f}", "--dry-run"], fifo("c.py"), "FIFO"),
    "--set train=5": Case([*RUN, "--set", "train=5"], toy_config, "expected TrainConfig"),
    "--set sampling.temperature=inf": Case([*RUN, "--set", "sampling.temperature=inf"],
                                           toy_config, "temperature must be finite"),
    "--set sampling.n=0": Case([*RUN, "--set", "sampling.n=0"], toy_config, "n must be in"),
    "--set distill.filter=usc alone": Case([*RUN, "--set", "distill.filter=usc"], toy_config,
                                           "needs usc=True"),
    "--set dtype=float16": Case([*RUN, "--set", "dtype=float16"], toy_config,
                                "dtype='float16'"),
    "--set unlabeled.limit=-1": Case([*RUN, "--set", "unlabeled.limit=-1"], toy_config,
                                     "limit=-1"),
    "--set unlabeled.synthetic=1000000000": Case(
        [*RUN, "--set", "unlabeled.synthetic=1000000000"], toy_config,
        "synthetic=1000000000: expected 0..1000000"),
    "--set train.learning_rate=nan": Case([*RUN, "--set", "train.learning_rate=nan"],
                                          toy_config, "learning_rate=nan"),
    "--set train.learning_rate=0": Case([*RUN, "--set", "train.learning_rate=0"], toy_config,
                                        "learning rate is 0 at every one"),
    "--set train warm-up longer than the run": Case(
        [*RUN, "--set", "train.steps=1", "--set", "train.warmup_steps=5"], toy_config,
        "learning rate is 0 at every one"),
    "--set mesh beyond the devices": Case([*RUN, "--set", "mesh=fsdp=4096"], toy_config,
                                          "needs 4096 devices"),
    "--set task unknown": Case([*RUN, "--set", "task=nope"], toy_config, "config task 'nope'"),
    "--set method unknown": Case([*RUN, "--set", "method=nope"], toy_config, "config method"),
    "--set an unknown key": Case([*RUN, "--set", "colour=blue"], toy_config, "colour"),
    "--set without =": Case([*RUN, "--set", "sampling.n"], toy_config, "sampling.n"),
    "--set sampling.n=abc": Case([*RUN, "--set", "sampling.n=abc"], toy_config, "abc"),
    "--set model to a missing dir": Case([*RUN, "--set", "model=/nonexistent/m"], toy_config,
                                         "/nonexistent/m"),
    "run on a task without a generator": Case(
        [*RUN, "--set", "task=gsm8k", "--set", "test_task=toy/coin_flip"], toy_config,
        "has no generator"),
    "--sweep without sweep()": Case([*RUN, "--sweep"], toy_config, "defines no sweep()"),
    "--sweep of no points (runs nothing)": Case([*RUN, "--sweep"],
                                                _sweep("def sweep():\n    return {}\n"),
                                                "with no points"),
    "--sweep returning a list": Case([*RUN, "--sweep"], _sweep("def sweep():\n    return [1]\n"),
                                     "returned list"),
    "--sweep point escaping the run dir": Case(
        [*RUN, "--sweep"], _sweep("def sweep():\n    return {'../x': {}}\n"),
        "point name '../x'"),
    "--sweep point that is not a dict": Case(
        [*RUN, "--sweep"], _sweep("def sweep():\n    return {'a': 5}\n"), "point 'a' is int"),
    "--sweep point with a bad override": Case(
        [*RUN, "--sweep"], _sweep("def sweep():\n    return {'a': {'sampling.n': 0}}\n"),
        "n must be in"),
    "sweep() calling sys.exit(0)": Case(
        [*RUN, "--sweep"], _sweep("import sys\ndef sweep():\n    sys.exit(0)\n"),
        "called sys.exit(0)"),
    "--run-dir under a regular file": Case(
        ["run", "{f}", "--run-dir", "{tmp}/afile/run", "--dry-run"],
        with_(toy_config, _regular_file), "is a file, not a directory"),
    "run dir of another config": Case(RUN, with_(toy_config, _other_config_run_dir),
                                      "different config"),
    "run dir a user's dir": Case(RUN[:-1], with_(toy_config, _foreign_run_dir),
                                 "not made by s2jax"),
    "run dir whose distill/ a user added to": Case(
        RUN[:-1], with_(toy_config, _same_run_with("distill", "notes.txt")),
        "notes.txt was added"),
    "run dir with a corrupt config.json": Case(
        RUN, with_(toy_config, lambda tmp, n: (n["run"].mkdir(), (n["run"] / "config.json")
                                               .write_bytes(b"\xff{"))), "not made by s2jax"),
    # s2jax sweep: the same config files, and its own flags and root
    "sweep --workers 0": Case([*SWEEP, "--workers", "0"], toy_config, "--workers 0"),
    "sweep --worker 2/2": Case([*SWEEP, "--worker", "2/2"], toy_config, "--worker 2/2"),
    "sweep --worker x": Case([*SWEEP, "--worker", "x"], toy_config, "--worker x"),
    "sweep --lease 0": Case([*SWEEP, "--lease", "0"], toy_config, "--lease 0"),
    "sweep of a config file that raises": Case(
        SWEEP, _config("def get_config(arg=None):\n    1 / 0\n"), "ZeroDivisionError"),
    "sweep() raising": Case(SWEEP, _sweep("def sweep():\n    1 / 0\n"), "ZeroDivisionError"),
    "sweep arm escaping the root": Case(
        SWEEP, _sweep("def sweep():\n    return {'../x': {}}\n"), "point name '../x'"),
    "sweep arm with a bad override": Case(
        SWEEP, _sweep("def sweep():\n    return {'a': {'sampling.n': 0}}\n"), "n must be in"),
    "sweep --root is a user's dir": Case(
        [*SWEEP[:3], "{tmp}/mine", "--dry-run"], with_(toy_config, user_dir()),
        "is not this run's output"),
    "sweep --root under a regular file": Case(
        [*SWEEP[:3], "{tmp}/afile/r", "--dry-run"], with_(toy_config, _regular_file),
        "is a file, not a directory"),
    "run dir whose train/model/ a user added to": Case(
        RUN[:-1], with_(toy_config, _same_run_with("train/model", "notes.txt")),
        "notes.txt was added"),
}


@pytest.mark.parametrize("name", CASES)
def test_bad_run_input(name, tmp_path, capsys):
    check(CASES[name], tmp_path, capsys)
