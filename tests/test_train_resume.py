"""A `s2jax train` process killed with SIGKILL and run again ends bit-identical to one run."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import s2jax
from tests.test_train import _examples

STEPS = 40


def _command(model, data, out, extra):
    return [sys.executable, "-m", "s2jax.cli", "train", "--model", str(model), "--data",
            str(data), "--out", str(out), "--steps", str(STEPS), "--seq-len", "48",
            "--batch-size", "4", "--learning-rate", "2e-3", "--warmup-steps", "4",
            "--checkpoint-every", "2", "--keep-checkpoints", "3", "--eval-examples", "4",
            "--eval-every", "10", "--no-progress", *extra]


def _logged_steps(run) -> int:
    path = run / "metrics.jsonl"
    if not path.is_file():
        return 0
    lines = path.read_text().splitlines()
    return max((json.loads(x)["step"] for x in lines[:-1]), default=0)  # last may be partial


# LoRA: the checkpoint holds adapters + Adam + data state only; the base is reloaded
@pytest.mark.slow
@pytest.mark.parametrize("extra", [(), ("--lora-rank", "4", "--lora-targets", "q,v,down")],
                         ids=["full", "lora"])
def test_sigkill_then_resume_is_bit_identical(hf_checkpoint, tmp_path, extra):
    data = tmp_path / "distill.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _examples(40, seed=9)))
    model = hf_checkpoint("llama3")

    whole = subprocess.run(_command(model, data, tmp_path / "whole", extra), capture_output=True,
                           text=True)
    assert whole.returncode == 0, whole.stderr

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_command(model, data, killed, extra), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 600  # a loaded machine may take minutes to reach step 11
    while _logged_steps(killed) < 11 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (killed / "model").exists()
    saved = [int(p.name) for p in (killed / "checkpoints").iterdir() if p.name.isdigit()]
    assert saved and max(saved) < STEPS

    resumed = subprocess.run(_command(model, data, killed, extra), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads((killed / "summary.json").read_text())
    assert 0 < summary["resumed_from"] < STEPS

    a, _ = s2jax.load(tmp_path / "whole" / "model")
    b, _ = s2jax.load(killed / "model")
    for name, value in a.params().items():
        np.testing.assert_array_equal(np.asarray(value), np.asarray(b.params()[name]),
                                      err_msg=name)
    if extra:
        adapter = "adapter/adapter_model.safetensors"
        assert (killed / adapter).read_bytes() == (tmp_path / "whole" / adapter).read_bytes()
    # the log reads as one run: every step once, with the uninterrupted run's losses
    rows = lambda run: [r for r in map(json.loads, (run / "metrics.jsonl").read_text()
                                       .splitlines()) if "loss" in r]
    assert [r["step"] for r in rows(killed)] == list(range(1, STEPS + 1))
    assert [r["loss"] for r in rows(killed)] == [r["loss"] for r in rows(tmp_path / "whole")]
