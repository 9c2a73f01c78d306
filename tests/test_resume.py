"""A run SIGKILLed inside its sampling stages resumes to the artifacts of an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from s2jax.core.shards import index_path, run_sharded

CONFIG = '''
from s2jax.run.config import DataConfig, ExperimentConfig
from s2jax.core.text_generator import SamplingParams
from s2jax.toy.demo import base_model_dir
from s2jax.train.config import TrainConfig


def get_config(arg=None):
    return ExperimentConfig(
        name="kill", model=str(base_model_dir()), task="toy/coin_flip", method="rar_1step",
        unlabeled=DataConfig(synthetic=4, seed=2), test=DataConfig(synthetic=4, seed=1),
        sampling=SamplingParams(n=2, temperature=0.7, top_k=40, max_new_tokens=96),
        eval_sampling=SamplingParams(max_new_tokens=96),
        train=TrainConfig(steps=2, seq_len=128, batch_size=4, learning_rate=1e-3,
                          progress=False),
        max_batch=16, max_len=256, shard_size=2)
'''


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True) if path.exists() else []


def _shards(path: Path) -> int:
    return sum(b'"shard"' in line for line in _lines(path))


def _run_until(config: Path, run_dir: Path, watch: str | None) -> list[bytes]:
    """Runs `s2jax run`; SIGKILLs it once `watch`'s shard index has a finished shard; returns
    the index's lines."""
    cmd = [sys.executable, "-m", "s2jax.cli", "run", str(config), "--run-dir", str(run_dir),
           "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    if watch is None:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err.decode()
        return []
    index = index_path(run_dir / watch)
    deadline = time.monotonic() + 600
    while not _shards(index):
        assert proc.poll() is None, f"exited before {watch} had a shard: {proc.stderr.read()}"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return _lines(index)


def _comparable(run_dir: Path) -> dict:
    """Every artifact of a run, with wall-clock times taken out."""
    def rows(name):
        return [{k: v for k, v in r.items() if k != "seconds"}
                for r in json.loads((run_dir / name).read_text())["rows"]]
    out = {name: (run_dir / name).read_bytes() for name in (
        "generations.jsonl", "eval/system1.jsonl", "eval/system2.jsonl", "eval/distilled.jsonl",
        "distill/decisions.jsonl", "distill/vote_stats.json")}
    out["results"] = rows("results.json")
    return out


@pytest.mark.slow
def test_sigkill_inside_sampling_stages_resumes_to_an_uninterrupted_runs_artifacts(tmp_path):
    config = tmp_path / "kill.py"
    config.write_text(CONFIG)
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    _run_until(config, whole, None)

    finished = {}
    for watch in ("eval/system1.jsonl", "generations.jsonl", "eval/distilled.jsonl"):
        finished[watch] = _run_until(config, killed, watch)
        if watch == "generations.jsonl":  # a write torn by the kill, in both files: the
            index = index_path(killed / watch)  # shard's intent line, then part of its rows
            entries = [json.loads(line) for line in _lines(index)]
            if "begin" not in entries[-1]:
                with open(index, "ab") as f:
                    f.write(json.dumps({"begin": _shards(index), "key": entries[0]["key"],
                                        "start": (killed / watch).stat().st_size}).encode()
                            + b"\n")
            with open(killed / watch, "ab") as f:
                f.write(b'{"id": "torn", "samp')
            with open(index, "ab") as f:
                f.write(b'{"shard": 9, "ids"')
    _run_until(config, killed, None)

    assert _comparable(killed) == _comparable(whole)
    for watch, lines in finished.items():
        final = _lines(index_path(killed / watch))
        # shards finished before a kill stay as written by the killed process: not redone
        assert final[:len(lines)] == lines, watch
        assert len(final) == 1 + 2 * 2 + 1, watch  # header, 2 x (intent, shard), completion
        assert json.loads(final[-1])["complete"] is True


def _square_rows(calls):
    def work(chunk):
        calls.append(list(chunk))
        return [{"x": x, "y": x * x} for x in chunk]
    return work


def test_shards_resume_after_a_torn_tail_and_refuse_foreign_files(tmp_path):
    from s2jax.core.errors import S2JaxError

    path, items = tmp_path / "rows.jsonl", list(range(7))
    ids = [str(i) for i in items]
    whole, _ = run_sharded(tmp_path / "whole.jsonl", items, ids, key="k", shard_size=3,
                           work=_square_rows([]))
    calls = []

    def dies(chunk):
        if chunk[0] == 3:  # killed inside this shard's append: its intent line is on disk,
            size = path.stat().st_size  # and part of its rows, torn mid-line
            with open(index_path(path), "ab") as f:
                f.write(json.dumps({"begin": 1, "start": size, "key": "k"}).encode() + b"\n")
            with open(path, "ab") as f:
                f.write(b'{"x": 3, "y"')
            raise KeyboardInterrupt
        return _square_rows(calls)(chunk)

    with pytest.raises(KeyboardInterrupt):
        run_sharded(path, items, ids, key="k", shard_size=3, work=dies)
    rows, _ = run_sharded(path, items, ids, key="k", shard_size=3, work=_square_rows(calls))
    assert rows == whole and path.read_bytes() == (tmp_path / "whole.jsonl").read_bytes()
    assert calls == [[0, 1, 2], [3, 4, 5], [6]]  # the first shard was not redone
    with pytest.raises(S2JaxError, match="different run"):
        run_sharded(path, items, ids, key="other", shard_size=3, work=_square_rows([]))
    user = tmp_path / "user.jsonl"
    user.write_text("mine\n")
    with pytest.raises(S2JaxError, match="not a resumable artifact"):
        run_sharded(user, items, ids, key="k", shard_size=3, work=_square_rows([]))
    assert user.read_text() == "mine\n"
    with open(path, "ab") as f:  # rows no intent line explains: someone else's
        f.write(b'{"x": 99}\n')
    with pytest.raises(S2JaxError, match="not written by s2jax"):
        run_sharded(path, items, ids, key="k", shard_size=3, work=_square_rows([]))
    garbage = tmp_path / "g.jsonl"
    garbage.write_text("mine\n")
    index_path(garbage).write_text("not an index\n")
    with pytest.raises(S2JaxError, match="not a shard index written by s2jax"):
        run_sharded(garbage, items, ids, key="k", shard_size=3, work=_square_rows([]))
    assert garbage.read_text() == "mine\n" and index_path(garbage).read_text() == \
        "not an index\n"
    path.write_bytes(path.read_bytes()[:-len(b'{"x": 99}\n')])
    blob = bytearray(path.read_bytes())
    blob[2] ^= 1
    path.write_bytes(bytes(blob))
    with pytest.raises(S2JaxError, match="changed since"):
        run_sharded(path, items, ids, key="k", shard_size=3, work=_square_rows([]))
