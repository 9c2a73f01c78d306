"""Launchers' --dry-run output, and the distributed helpers that need no second process."""

import subprocess
from pathlib import Path

import pytest

from s2jax.parallel.distributed import detect_launcher, split_for_process

LAUNCH = Path(__file__).resolve().parents[1] / "launch"


def _dry(script: str, *args: str) -> list[str]:
    proc = subprocess.run(["bash", str(LAUNCH / script), *args], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return [line.strip() for line in proc.stdout.strip().splitlines()]


def test_local_dry_run():
    assert _dry("local.sh", "--dry-run", "--", "demo", "--quick") == [
        "env python3 -m s2jax.cli demo --quick"]
    assert _dry("local.sh", "--dry-run", "--fake-devices", "8", "--", "plan", "c.py") == [
        "env JAX_PLATFORMS=cpu XLA_FLAGS=--xla_force_host_platform_device_count=8 "
        "python3 -m s2jax.cli plan c.py"]


def test_multiprocess_dry_run_starts_one_process_per_rank():
    lines = _dry("multiprocess.sh", "--dry-run", "--nproc", "3", "--devices-per-proc", "2",
                 "--port", "4321", "--", "train", "--model", "m")
    assert lines == [
        f"env JAX_PLATFORMS=cpu XLA_FLAGS=--xla_force_host_platform_device_count=2 "
        f"S2JAX_COORDINATOR=127.0.0.1:4321 S2JAX_NUM_PROCESSES=3 S2JAX_PROCESS_ID={i} "
        f"python3 -m s2jax.cli train --model m" for i in range(3)]


def test_tpu_pod_dry_run_copies_installs_and_runs_on_all_workers():
    lines = _dry("tpu_pod.sh", "--dry-run", "--tpu", "pod", "--zone", "z1", "--project", "p",
                 "--", "run", "configs/paper/rar_last_letter.py", "--set", "n=8")
    assert len(lines) == 3
    assert lines[0].startswith("gcloud compute tpus tpu-vm scp --recurse ")
    assert lines[0].endswith(" pod:~/s2jax --zone z1 --worker=all --project p")
    assert 'pip install -q -e ".[gcs]"' in lines[1] and "--worker=all" in lines[1]
    assert lines[2] == ("gcloud compute tpus tpu-vm ssh pod --zone z1 --worker=all --project p "
                        "--command 'cd ~/s2jax && python3 -m s2jax.cli run "
                        "configs/paper/rar_last_letter.py --set n=8'")


def test_slurm_dry_run_uses_srun():
    assert _dry("slurm.sbatch", "--dry-run", "train", "--model", "m") == [
        "srun --kill-on-bad-exit=1 python3 -m s2jax.cli train --model m"]


@pytest.mark.parametrize("script,args", [
    ("local.sh", ["--dry-run"]),
    ("tpu_pod.sh", ["--dry-run", "--", "demo"]),
    ("multiprocess.sh", ["--bogus"]),
])
def test_launchers_reject_bad_usage(script, args):
    proc = subprocess.run(["bash", str(LAUNCH / script), *args], capture_output=True, text=True)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1


def test_detect_launcher():
    assert detect_launcher({}) == "single"
    assert detect_launcher({"S2JAX_COORDINATOR": "127.0.0.1:1"}) == "explicit"
    assert detect_launcher({"SLURM_NTASKS": "16"}) == "slurm"
    assert detect_launcher({"SLURM_NTASKS": "1"}) == "single"
    assert detect_launcher({"TPU_WORKER_HOSTNAMES": "a,b"}) == "tpu"


@pytest.mark.parametrize("n,procs", [(10, 3), (3, 4), (0, 2), (7, 1)])
def test_split_for_process_covers_each_item_once(n, procs):
    items = list(range(n))
    parts = [list(split_for_process(items, p, procs)) for p in range(procs)]
    assert sum(parts, []) == items
    assert max(map(len, parts)) - min(map(len, parts)) <= 1
