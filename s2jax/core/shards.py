"""Shard-resumable JSONL artifacts: a stage's rows appended shard by shard, each shard durable.

    generations.jsonl          the rows, in input order, byte-identical to an uninterrupted run's
    generations.jsonl.shards   one line per finished shard, then a completion line:
        {"shard": k, "ids": [...], "key": ..., "start": byte, "end": byte, "sha256": ...,
         "seconds": float, "pid": int}
        {"complete": true, "shards": K, "rows": N, "key": ...}

A shard's rows are appended and fsynced before its index line is, so an index line always
describes bytes already on disk. On restart the index is read, each shard is checked (its input
ids, the key of what produces the rows, the hash of its bytes), a torn tail of either file is cut
off, and work goes on at the first unfinished shard: a kill loses at most the shard in flight.
Rows depend on each input only (the sampler keys a sample by its prompt's tokens and its index);
the shard size is still part of `key`, since it fixes which inputs share a batch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from s2jax.core.errors import S2JaxError

SUFFIX = ".shards"


def index_path(path: str | os.PathLike) -> Path:
    """Where the shard index of the artifact `path` lives."""
    path = Path(path)
    return path.with_name(path.name + SUFFIX)


def split(ids: Sequence[str], shard_size: int) -> list[list[str]]:
    """The input ids of each shard, in order."""
    if shard_size < 1:
        raise S2JaxError(f"shard_size={shard_size}: expected >= 1")
    return [list(ids[i:i + shard_size]) for i in range(0, len(ids), shard_size)]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _append(path: Path, data: bytes) -> int:
    """Appends `data` durably; returns the file's size before the write."""
    new = not path.exists()
    with open(path, "ab") as f:
        start = f.tell()
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    if new:
        _fsync_dir(path.parent)  # the file's name is durable too
    return start


def _truncate(path: Path, size: int) -> None:
    with open(path, "r+b") as f:
        f.truncate(size)
        f.flush()
        os.fsync(f.fileno())


@dataclasses.dataclass
class ShardedFile:
    """One stage's sharded artifact at `path`, for the shards `shards` produced under `key`."""

    path: Path
    key: str  # what produces the rows (program, sampling, model, shard size, ...), hashed
    shards: list[list[str]]  # input ids per shard
    done: int = 0  # shards finished and verified
    complete: bool = False
    seconds: float = 0.0  # generation time of the finished shards, summed
    _entries: list[dict] = dataclasses.field(default_factory=list)

    @classmethod
    def open(cls, path: str | os.PathLike, key: str, shards: list[list[str]], *,
             writer: bool = True) -> ShardedFile:
        """Reads the index, verifies the finished shards and cuts torn tails (writer only).

        Raises S2JaxError when `path` exists but is not this stage's artifact (no index, another
        key, other inputs, or bytes that changed after they were written): it is never replaced.
        """
        self = cls(Path(path), key, shards)
        if writer:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        index = index_path(self.path)
        if not index.exists():
            if self.path.exists():
                raise S2JaxError(f"{self.path} exists and is not a resumable artifact of this "
                                 "run (no .shards index beside it); move it away or pick "
                                 "another path")
            return self
        raw = index.read_bytes()
        data = self.path.read_bytes() if self.path.exists() else b""
        good_index = good_data = 0
        for line in raw.splitlines(keepends=True):
            try:
                entry = json.loads(line) if line.endswith(b"\n") else None
            except json.JSONDecodeError:
                entry = None
            if not isinstance(entry, dict):
                break  # a torn last line: everything after it is dropped
            if entry.get("key") != key:
                raise S2JaxError(f"{index}: written by a different run (key {entry.get('key')}, "
                                 f"this run {key}); use a new output path")
            if entry.get("complete"):
                if self.done != len(shards):
                    raise S2JaxError(f"{index}: a finished run of {self.done} shards; this run "
                                     f"has {len(shards)}; use a new output path")
                self.complete = True
                good_index += len(line)
                break
            k = self.done
            if entry.get("shard") != k or k >= len(shards) or entry.get("ids") != shards[k]:
                raise S2JaxError(f"{index}: shard {entry.get('shard')} holds other inputs than "
                                 "this run's; use a new output path")
            start, end = entry["start"], entry["end"]
            if start != good_data or end > len(data):
                break  # the data of this shard never fully reached the disk
            if hashlib.sha256(data[start:end]).hexdigest() != entry["sha256"]:
                raise S2JaxError(f"{self.path}: bytes {start}-{end} (shard {k}) changed since "
                                 "they were written; move the file away to start over")
            self._entries.append(entry)
            self.done, self.seconds = k + 1, self.seconds + float(entry.get("seconds", 0.0))
            good_index, good_data = good_index + len(line), end
        if writer:
            if good_index < len(raw):
                _truncate(index, good_index)
            if good_data < len(data):
                _truncate(self.path, good_data)
        return self

    def append(self, rows: Sequence[dict], seconds: float, *, writer: bool = True) -> None:
        """Appends the next shard's rows, then its index line (both fsynced)."""
        k = self.done
        if writer:
            blob = b"".join(json.dumps(r, ensure_ascii=False).encode("utf-8") + b"\n"
                            for r in rows)
            start = _append(self.path, blob)
            entry = {"shard": k, "ids": self.shards[k], "key": self.key, "start": start,
                     "end": start + len(blob), "sha256": hashlib.sha256(blob).hexdigest(),
                     "seconds": round(seconds, 3), "pid": os.getpid()}
            _append(index_path(self.path), json.dumps(entry).encode() + b"\n")
        self.done, self.seconds = k + 1, self.seconds + seconds

    def finish(self, *, writer: bool = True) -> None:
        """Marks the artifact complete (every shard written)."""
        if writer and not self.complete:
            rows = sum(len(s) for s in self.shards)
            line = {"complete": True, "shards": len(self.shards), "rows": rows, "key": self.key}
            if not self.path.exists():  # no inputs at all: the artifact is an empty file
                _append(self.path, b"")
            _append(index_path(self.path), json.dumps(line).encode() + b"\n")
        self.complete = True

    def rows(self) -> list[dict]:
        """Every row written so far, in order."""
        if not self.path.exists():
            return []
        with open(self.path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]


def run_sharded(
    path: str | os.PathLike,
    items: Sequence[Any],
    ids: Sequence[str],
    *,
    key: str,
    shard_size: int,
    work: Callable[[Sequence[Any]], list[dict]],
    progress: Callable[[int, int], None] | None = None,
    sync: Callable[[str], None] | None = None,
    writer: bool = True,
) -> tuple[list[dict], float]:
    """Runs `work` over `items` shard by shard into `path`, resuming where a killed run stopped.

    Args:
      path: the JSONL artifact (its index goes beside it).
      items: the stage's inputs.
      ids: one id per item (checked against a resumed file's shards).
      key: a hash of everything that determines the rows, shard size included.
      shard_size: items per shard.
      work: a shard's items -> its rows, one per item, in order.
      progress: called with (items finished, items in all) at the start and after each shard.
      sync: called after each write on multi-process runs so every process sees it.
      writer: whether this process writes (process 0); the others only read.

    Returns:
      (every row in input order, generation seconds of all shards summed over runs).
    """
    if len(ids) != len(items) or len(set(ids)) != len(ids):
        dup = next((i for i in ids if list(ids).count(i) > 1), None)
        raise S2JaxError(f"{path}: input ids must be unique (id {dup!r} repeats)")
    shards = split(list(ids), shard_size)
    f = ShardedFile.open(path, key, shards, writer=writer)
    done_items = sum(len(s) for s in shards[:f.done])
    if progress:
        progress(done_items, len(items))
    while f.done < len(shards):
        k = f.done
        chunk = items[k * shard_size:(k + 1) * shard_size]
        t0 = time.perf_counter()
        rows = work(chunk)
        if len(rows) != len(chunk):
            raise AssertionError(f"a shard of {len(chunk)} inputs gave {len(rows)} rows")
        f.append(rows, time.perf_counter() - t0, writer=writer)
        if sync:
            sync(f"{Path(path).name} shard {k}")
        done_items += len(chunk)
        if progress:
            progress(done_items, len(items))
    f.finish(writer=writer)
    if sync:
        sync(f"{Path(path).name} complete")
    return f.rows(), f.seconds


def is_complete(path: str | os.PathLike) -> bool:
    """Whether `path`'s shard index ends with its completion line."""
    index = index_path(path)
    if not index.is_file():
        return False
    lines = index.read_bytes().splitlines()
    try:
        return bool(lines) and json.loads(lines[-1]).get("complete") is True
    except json.JSONDecodeError:
        return False
