"""2 processes x 2 fake CPU devices over gloo equal 1 process x 4 devices: samples and SFT.

Each run is `tests/multihost_driver.py` in its own interpreter (the device count is fixed at
JAX start-up): the single-process reference and the two ranks run side by side.
"""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

DRIVER = Path(__file__).with_name("multihost_driver.py")
TIMEOUT_S = 300  # generous: the machine's cores are shared; a healthy run takes about a minute


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(devices: int, rank: int | None = None, port: int = 0) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("S2JAX_")}
    env.update(JAX_PLATFORMS="cpu", TOKENIZERS_PARALLELISM="false",
               XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    if rank is not None:
        env.update(S2JAX_COORDINATOR=f"127.0.0.1:{port}", S2JAX_NUM_PROCESSES="2",
                   S2JAX_PROCESS_ID=str(rank))
    return env


def _run_all(jobs: dict[str, tuple[list[str], dict]], log_dir: Path) -> None:
    """Starts every job, waits for all; on any failure or timeout kills the rest and says why."""
    procs = {}
    try:
        for name, (cmd, env) in jobs.items():
            log = (log_dir / f"{name}.log").open("w")
            procs[name] = (subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True), log)
        deadline = time.monotonic() + TIMEOUT_S
        pending = set(procs)
        while pending:
            for name in list(pending):
                rc = procs[name][0].poll()
                if rc is None:
                    continue
                pending.discard(name)
                if rc != 0:
                    tail = (log_dir / f"{name}.log").read_text()[-3000:]
                    raise AssertionError(f"{name} exited with {rc}; its output ends:\n{tail}")
            if pending and time.monotonic() > deadline:
                raise AssertionError(f"{sorted(pending)} still running after {TIMEOUT_S} s "
                                     f"(logs in {log_dir})")
            time.sleep(0.2)
    finally:
        for proc, log in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()


@pytest.mark.slow
def test_two_processes_equal_one(hf_checkpoint, tmp_path):
    ckpt = hf_checkpoint("llama2")
    port = _free_port()
    single, multi = tmp_path / "single", tmp_path / "multi"
    cmd = [sys.executable, str(DRIVER), "--checkpoint", str(ckpt), "--mesh",
           "data=1,fsdp=2,tensor=2"]  # fsdp spans the two processes, tensor stays within one
    _run_all({
        "single": ([*cmd, "--out", str(single)], _env(4)),
        "rank0": ([*cmd, "--out", str(multi)], _env(2, 0, port)),
        "rank1": ([*cmd, "--out", str(multi)], _env(2, 1, port)),
    }, tmp_path)

    ref = [json.loads(x) for x in (single / "generations.jsonl").read_text().splitlines()]
    got = [json.loads(x) for x in (multi / "generations.jsonl").read_text().splitlines()]
    assert [r["id"] for r in got] == [str(i) for i in range(len(ref))] and len(ref) == 6
    for r, g in zip(ref, got, strict=True):
        assert g == r, f"prompt {r['id']}: 2 processes sampled {g['samples']}, 1 sampled " \
                       f"{r['samples']}"

    before = load_file(ckpt / "model.safetensors")
    a = load_file(single / "run" / "model" / "model.safetensors")
    b = load_file(multi / "run" / "model" / "model.safetensors")
    assert sorted(a) == sorted(b)
    for key in a:
        diff = float(np.abs(a[key] - b[key]).max())
        assert diff <= 1e-6, f"{key}: 2-process and 1-process weights differ by {diff}"
    moved = max(float(np.abs(a[k] - before[k]).max()) for k in a)
    assert moved > 1e-3, f"3 SFT steps changed no weight by more than {moved}"
