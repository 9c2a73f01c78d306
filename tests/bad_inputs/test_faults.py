"""Faults of the machine, injected: a disk that fills inside an orbax checkpoint save or an export
is one stderr line and exit 3 (the run failed), and leaves no half-written output; a kill during
an export leaves only a marked temp dir that the next run removes. Plus the slow, real versions:
a real full disk (tmpfs, when this process may mount one) and a real finished training run."""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax.numpy as jnp
import pytest

from s2jax.core.atomic import TEMP_SUFFIX
from s2jax.core.errors import EXIT_BAD_INPUT, EXIT_RUN_FAILED, RunFailed
from s2jax.toy.demo import base_model_dir
from tests.bad_inputs.harness import TRAIN_ARGS, run_cli, tree

MODEL = str(base_model_dir())
ENOSPC = OSError(errno.ENOSPC, "No space left on device")


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and len(lines) == 1, err
    return lines[0]


def _full_json_save(monkeypatch):
    """orbax's JSON item writer (run in its background commit thread) meets a full disk."""
    from orbax.checkpoint._src.handlers import json_checkpoint_handler as handler

    async def full(self, x, directory):
        raise OSError(errno.ENOSPC, "No space left on device", str(directory / "data"))

    monkeypatch.setattr(handler.JsonCheckpointHandler, "_save_fn", full)


def test_a_full_disk_inside_an_orbax_save_is_one_run_failed_line(tmp_path, monkeypatch):
    from s2jax.train.checkpoint import Checkpoints

    _full_json_save(monkeypatch)
    checkpoints = Checkpoints(tmp_path / "ck")
    with pytest.raises(RunFailed) as e:
        checkpoints.save(1, {"w": jnp.ones(4)}, {"epoch": 0})
        checkpoints.wait()
    checkpoints.manager.close()
    message = str(e.value)
    assert "\n" not in message and "No space left on device" in message, message
    assert "no checkpoint was completed" in message
    assert checkpoints.latest_step() is None  # nothing half-written counts as a checkpoint


def test_a_disk_without_room_for_a_checkpoint_fails_before_orbax_writes(tmp_path, monkeypatch):
    import s2jax.train.checkpoint as module
    from s2jax.train.checkpoint import Checkpoints

    checkpoints = Checkpoints(tmp_path / "ck")
    monkeypatch.setattr(module.shutil, "disk_usage",
                        lambda p: shutil._ntuple_diskusage(1 << 30, 1 << 30, 10))
    with pytest.raises(RunFailed, match="needs about .* the disk has 0.0 GiB free"):
        checkpoints.save(1, {"w": jnp.ones(1024)}, {"epoch": 0})
    checkpoints.close()
    assert os.listdir(tmp_path / "ck") == []


def _full_writes(monkeypatch, after: int = 0):
    """Every safetensors write of an export fails as a full disk would, after `after` bytes."""
    import s2jax.models.safetensors_io as io

    real = io.atomic_open

    class Full:
        def __init__(self, f):
            self.f, self.left = f, after

        def write(self, data):
            if len(data) > self.left:
                raise OSError(errno.ENOSPC, "No space left on device")
            self.left -= len(data)
            return self.f.write(data)

        def __getattr__(self, name):
            return getattr(self.f, name)

    def opened(path, mode="w", **kw):
        import contextlib

        @contextlib.contextmanager
        def wrap():
            with real(path, mode, **kw) as f:
                yield Full(f)
        return wrap()

    monkeypatch.setattr(io, "atomic_open", opened)


def test_a_full_disk_during_an_export_is_one_line_and_leaves_nothing(tmp_path, capsys,
                                                                      monkeypatch):
    _full_writes(monkeypatch, after=1000)
    before = tree(tmp_path)
    code, err = run_cli(["convert", MODEL, str(tmp_path / "out")], capsys)
    line = _one_line(err)
    assert code == EXIT_RUN_FAILED and "No space left on device" in line, err
    assert tree(tmp_path) == before  # no out/, no temp dir


def test_an_export_the_disk_has_no_room_for_fails_before_writing(tmp_path, capsys,
                                                                 monkeypatch):
    import s2jax.core.ownership as ownership

    monkeypatch.setattr(ownership.shutil, "disk_usage",
                        lambda p: shutil._ntuple_diskusage(1 << 30, 1 << 30, 1000))
    (tmp_path / "keep.txt").write_text("mine")
    before = tree(tmp_path)
    code, err = run_cli(["convert", MODEL, str(tmp_path / "out")], capsys)
    line = _one_line(err)
    assert code == EXIT_RUN_FAILED and "the disk has 0.00 GiB free" in line, err
    assert tree(tmp_path) == before


@pytest.mark.slow
def test_a_full_disk_inside_training_checkpoints_is_one_line(tmp_path, capsys, monkeypatch):
    """The whole command: orbax's background threads log and print their errors; the command
    reports one line, exit 3, and keeps its run dir for a rerun."""
    _full_json_save(monkeypatch)
    (tmp_path / "d.jsonl").write_text('{"prompt": "q", "completion": "a"}\n')
    code, err = run_cli(["train", "--model", MODEL, "--data", str(tmp_path / "d.jsonl"),
                         "--out", str(tmp_path / "run"), *TRAIN_ARGS], capsys)
    line = _one_line(err)
    assert code == EXIT_RUN_FAILED and "No space left on device" in line, err
    assert not (tmp_path / "run" / "model").exists()


def _can_mount() -> bool:
    return os.geteuid() == 0 and shutil.which("mount") is not None


@pytest.mark.slow
@pytest.mark.skipif(not _can_mount(), reason="mounting a small tmpfs needs root")
def test_a_real_full_disk_under_training(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(disk)]).returncode:
        pytest.skip("mount refused")
    try:
        (tmp_path / "d.jsonl").write_text('{"prompt": "q", "completion": "a"}\n')
        done = subprocess.run(
            [sys.executable, "-m", "s2jax.cli", "train", "--model", MODEL, "--data",
             str(tmp_path / "d.jsonl"), "--out", str(disk / "run"), *TRAIN_ARGS],
            capture_output=True, text=True, timeout=600,
            env={**os.environ, "PYTHONPATH": os.getcwd()})
        line = _one_line(done.stderr)
        assert done.returncode == EXIT_RUN_FAILED and "free" in line, done.stderr
    finally:
        subprocess.run(["umount", str(disk)])


def _temps(directory: Path) -> list[Path]:
    return [p for p in directory.iterdir() if p.name.endswith(TEMP_SUFFIX)]


@pytest.mark.slow
def test_a_kill_during_an_export_leaves_a_temp_the_next_run_removes(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    cmd = [sys.executable, "-m", "s2jax.cli", "convert", MODEL, str(tmp_path / "out")]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not _temps(tmp_path):  # the export has begun
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    [temp] = _temps(tmp_path)
    assert json.loads((temp / ".s2jax").read_text())["s2jax"] == "temp"
    assert not (tmp_path / "out").exists()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert _temps(tmp_path) == [] and (tmp_path / "out" / "model.safetensors").is_file()


@pytest.mark.slow
def test_a_real_finished_training_run_refuses_a_rerun_over_a_users_file(tmp_path, capsys):
    (tmp_path / "d.jsonl").write_text('{"prompt": "q", "completion": "a"}\n')
    argv = ["train", "--model", MODEL, "--data", str(tmp_path / "d.jsonl"), "--out",
            str(tmp_path / "run"), *TRAIN_ARGS]
    code, err = run_cli(argv, capsys)
    assert code == 0, err
    code, err = run_cli(argv, capsys)  # a rerun of a finished run replaces its own export
    assert code == 0, err
    (tmp_path / "run" / "model" / "notes.txt").write_text("mine")
    before = tree(tmp_path)
    code, err = run_cli(argv, capsys)
    assert code == EXIT_BAD_INPUT and "notes.txt was added" in _one_line(err), err
    assert tree(tmp_path) == before


def test_a_full_disk_during_a_vote_is_one_line(tmp_path, capsys, monkeypatch):
    import s2jax.core.atomic
    from tests.bad_inputs.harness import record

    gen = tmp_path / "gen.jsonl"
    gen.write_bytes(record() + b"\n")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(s2jax.core.atomic.os, "fsync", full)
    before = tree(tmp_path)
    code, err = run_cli(["vote", "--generations", str(gen), "--task", "coin_flip", "--out",
                         str(tmp_path / "set")], capsys)
    assert code == EXIT_RUN_FAILED and "No space left" in _one_line(err), err
    assert tree(tmp_path) == before


def test_torn_metrics_line_on_resume_is_dropped(tmp_path):
    from s2jax.train.metrics import MetricsLog

    (tmp_path / "metrics.jsonl").write_bytes(b'{"step": 1, "loss": 2.0}\n{"step": 2, "lo')
    MetricsLog(tmp_path, resume_step=1).close()
    assert (tmp_path / "metrics.jsonl").read_text() == '{"step": 1, "loss": 2.0}\n'


def test_a_locked_run_dir_is_refused(tmp_path, capsys):
    import fcntl

    from s2jax.core.rundir import LOCK
    from tests.bad_inputs.harness import TOY_CONFIG

    (tmp_path / "c.py").write_text(TOY_CONFIG)
    (tmp_path / "run").mkdir()
    fd = os.open(tmp_path / "run" / LOCK, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as another process's run would hold it
    try:
        code, err = run_cli(["run", str(tmp_path / "c.py"), "--run-dir", str(tmp_path / "run")],
                            capsys)
    finally:
        os.close(fd)
    assert code == EXIT_BAD_INPUT and "in use by another s2jax run" in _one_line(err), err


@pytest.mark.slow
def test_an_update_that_makes_weights_inf_is_caught_after_the_final_step(tmp_path, capsys):
    # the loss of the one step is finite (it is computed before the update), the weights after
    # it are not: the guard must look at the parameters, or an all-Inf model is exported
    data = tmp_path / "d.jsonl"
    data.write_text('{"prompt": "q", "completion": "a"}\n')
    code, err = run_cli(["train", "--model", MODEL, "--data", str(data), "--out",
                         str(tmp_path / "run"), "--steps", "1", "--learning-rate", "1e39",
                         "--batch-size", "1", "--seq-len", "32", "--no-progress"], capsys)
    assert code == EXIT_RUN_FAILED and "non-finite" in _one_line(err), err
    assert not (tmp_path / "run" / "model").exists()
    assert not list((tmp_path / "run" / "checkpoints").glob("*"))


def _failing_inspect(monkeypatch, error: BaseException):
    import s2jax.commands.inspect as inspect

    def run(args):
        raise error

    monkeypatch.setattr(inspect, "run", run)


def test_an_internal_error_exits_1_with_its_traceback(capsys, monkeypatch):
    _failing_inspect(monkeypatch, ZeroDivisionError("a bug"))
    code, err = run_cli(["inspect", MODEL], capsys)
    assert code == 1 and "Traceback" in err and "ZeroDivisionError: a bug" in err, err
    assert err.strip().splitlines()[-1].startswith("s2jax inspect: internal error"), err


@pytest.mark.parametrize("error, text", [
    (MemoryError(), "out of host memory"),
    (RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 18.0G"),
     "out of device memory"),
    (ValueError("RESOURCE_EXHAUSTED: Error writing \"/x/ocdbt/d/1\": Failed to write 28 bytes "
                "to file 8: No space left on device [os_error_code='28']"),
     "/x/ocdbt/d/1: No space left on device (errno ENOSPC)"),
    (OSError(errno.EROFS, "Read-only file system", "/mnt/ro/x"),
     "/mnt/ro/x: Read-only file system (errno EROFS)"),
])
def test_errors_of_the_machine_exit_3_in_one_line(error, text, capsys, monkeypatch):
    _failing_inspect(monkeypatch, error)
    code, err = run_cli(["inspect", MODEL], capsys)
    assert code == EXIT_RUN_FAILED and text in _one_line(err), err


def test_the_exit_codes_are_documented_in_the_help(capsys):
    from s2jax.cli import EPILOG
    from s2jax.core import errors

    code, _ = run_cli(["--help"], capsys)
    assert code == 0

    for value in (errors.EXIT_OK, errors.EXIT_INTERNAL, errors.EXIT_BAD_INPUT,
                  errors.EXIT_RUN_FAILED, errors.EXIT_NON_RESULT, errors.EXIT_INTERRUPTED):
        assert f"\n  {value} " in "\n" + EPILOG, value
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert all(f"**{value}**" in readme for value in (0, 1, 2, 3, 4))


@pytest.mark.parametrize("moved", [("model",), ("model", "adapter")])
def test_a_finetune_stage_killed_after_moving_its_export_keeps_it_on_resume(tmp_path,
                                                                            monkeypatch, moved):
    """A sweep worker killed between moving train/model (and train/adapter) into its stage and
    deleting train/: its successor moves what is left, without training again."""
    from types import SimpleNamespace

    import s2jax.run.execute as execute

    dist = tmp_path / "dist"
    (dist / execute.SET).mkdir(parents=True)
    (dist / execute.SET / execute.PARQUET).write_bytes(b"")
    work = tmp_path / "work"
    for part in ("model", "adapter"):  # both exported, some moved, then the kill
        where = work / (part if part in moved else f"train/{part}")
        where.mkdir(parents=True)
        (where / "weights").write_text(part)
    (work / "train" / "checkpoints").mkdir(parents=True)
    (work / execute.LOG).mkdir()
    trained = []
    monkeypatch.setattr(execute, "finetune_stage", lambda *a, **k: trained.append(a))
    node = SimpleNamespace(id="finetune-1", job={"config": None, "d": None}, deps=["d1"])
    store = SimpleNamespace(path=lambda sid: dist)
    execute.run_finetune(node, work, store, engine=None, log=lambda line: None)
    assert trained == []
    for part in ("model", "adapter"):
        assert (work / part / "weights").read_text() == part
    assert not (work / "train").exists() and (work / execute.LOG / "train").is_dir()
