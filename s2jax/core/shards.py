"""Shard-resumable JSONL artifacts: a stage's rows appended shard by shard, each shard durable.

    generations.jsonl          the rows, in input order, byte-identical to an uninterrupted run's
    generations.jsonl.shards   a header line (s2jax's mark), then per shard an intent line and,
                               once its rows are on disk, its index line; then a completion line:
        {"s2jax": "shards", "version": 2, "key": ...}
        {"begin": k, "start": byte, "key": ...}
        {"shard": k, "ids": [...], "key": ..., "start": byte, "end": byte, "sha256": ...,
         "seconds": float, "pid": int}
        {"complete": true, "shards": K, "rows": N, "key": ...}

The index is created (with its header, atomically) before the first byte of the artifact. A
shard's intent line is fsynced before its rows are appended, and its rows before its index line,
so an index line always describes bytes already on disk and any bytes after the last finished
shard are explained by an intent line. On restart the index is read, each shard is checked (its
input ids, the key of what produces the rows, the hash of its bytes), a torn tail of either file
is cut off, and work goes on at the first unfinished shard: a kill loses at most the shard in
flight. Nothing else is ever cut: an index without s2jax's header, or bytes that no intent line
explains, are refused.
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

from s2jax.core.atomic import atomic_open
from s2jax.core.errors import S2JaxError
from s2jax.core.ownership import check_parents, special

SUFFIX = ".shards"
HEADER = {"s2jax": "shards", "version": 2}  # the index's first line (its mark), with the key


def _entry(line: bytes) -> dict | None:
    """An index line as an object; None for a torn or unreadable one."""
    if not line.endswith(b"\n"):
        return None
    try:
        entry = json.loads(line)
    except (ValueError, RecursionError):
        return None
    return entry if isinstance(entry, dict) else None


def write_json_line(path: Path, obj: dict) -> None:
    """Creates `path` holding one JSON line, atomically."""
    with atomic_open(path, "wb") as f:
        f.write(json.dumps(obj).encode() + b"\n")


def index_path(path: str | os.PathLike) -> Path:
    """Where the shard index of the artifact `path` lives."""
    path = Path(path)
    return path.with_name(path.name + SUFFIX)


def _refuse_special(path: Path, what: str) -> None:
    """Refuses an artifact or shard index that is a FIFO, device, link or directory."""
    for p, expected in ((path, "a file path"), (index_path(path), "a shard index s2jax writes")):
        kind = special(p) or ("a directory" if p.is_dir() else None)
        if kind is not None:
            raise S2JaxError(f"{what + ' ' if what else ''}{p}: is {kind}; expected {expected}")


def check_resumable(path: str | os.PathLike, what: str) -> Path:
    """Before any work: `path` may become (or is) a sharded artifact of s2jax's.

    The full check (key, inputs, bytes) is `ShardedFile.open`'s, when the work starts."""
    path = Path(path)
    index = index_path(path)
    _refuse_special(path, what)
    check_parents(path, what)
    if not index.exists():
        if path.exists():
            raise S2JaxError(f"{what} {path}: exists and is not a resumable artifact of s2jax "
                             "(no .shards index beside it); refusing to replace it; pick "
                             "another path")
        return path
    with open(index, "rb") as f:
        header = _entry(f.readline(1 << 20))
    if header is None or header.get("s2jax") != HEADER["s2jax"]:
        raise S2JaxError(f"{what} {index}: not a shard index written by s2jax (no header "
                         "line); refusing to change it or the file beside it; pick another "
                         "path")
    return path


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

        Raises S2JaxError when `path` exists but is not this stage's artifact (no index, an
        index s2jax did not write, another key, other inputs, bytes that changed after they
        were written, or bytes after the last shard that no unfinished shard explains): it is
        never replaced or cut.
        """
        self = cls(Path(path), key, shards)
        index = index_path(self.path)
        _refuse_special(self.path, "")
        if not index.exists():
            if self.path.exists():
                raise S2JaxError(f"{self.path} exists and is not a resumable artifact of this "
                                 "run (no .shards index beside it); move it away or pick "
                                 "another path")
            if writer:  # the index (with its header) exists before any byte of the artifact
                write_json_line(index, {**HEADER, "key": key})
            return self
        raw = index.read_bytes()
        data = self.path.read_bytes() if self.path.exists() else b""
        lines = raw.splitlines(keepends=True)
        self._check_header(index, lines[0] if lines else b"")
        good_index, good_data, pending = len(lines[0]), 0, False
        offset = good_index  # end of the line being read, in bytes
        for line in lines[1:]:
            offset += len(line)
            entry = _entry(line)
            if entry is None:
                break  # a torn last line: everything after it is dropped
            if entry.get("key") != key:
                raise S2JaxError(f"{index}: written by a different run (key {entry.get('key')}, "
                                 f"this run {key}); use a new output path")
            if "begin" in entry:  # the intent line of the next shard: its bytes start here
                pending = entry.get("begin") == self.done and entry.get("start") == good_data
                if not pending:
                    break
                continue
            if entry.get("complete"):
                if self.done != len(shards):
                    raise S2JaxError(f"{index}: a finished run of {self.done} shards; this run "
                                     f"has {len(shards)}; use a new output path")
                self.complete, pending, good_index = True, False, offset
                break
            if not self._take(index, entry, data, good_data):
                pending = True  # its bytes never fully reached the disk: cut them
                break
            good_index, good_data, pending = offset, entry["end"], False
        if good_data < len(data) and not pending:
            raise S2JaxError(f"{self.path}: {len(data) - good_data} bytes after its last "
                             "finished shard were not written by s2jax; refusing to cut them; "
                             "move the file away to start over")
        if writer:
            if good_data < len(data):
                _truncate(self.path, good_data)
            if good_index < len(raw):
                _truncate(index, good_index)
        return self

    def _check_header(self, index: Path, line: bytes) -> None:
        header = _entry(line)
        if header is None or header.get("s2jax") != HEADER["s2jax"]:
            raise S2JaxError(f"{index}: not a shard index written by s2jax (no header line); "
                             "refusing to change it or the file beside it; move them away or "
                             "pick another path")
        if header.get("key") != self.key:
            raise S2JaxError(f"{index}: written by a different run (key {header.get('key')}, "
                             f"this run {self.key}); use a new output path")

    def _take(self, index: Path, entry: dict, data: bytes, good_data: int) -> bool:
        """Verifies the finished shard `entry`; False when its bytes are not all on disk."""
        k = self.done
        if entry.get("shard") != k or k >= len(self.shards) or entry.get("ids") != self.shards[k]:
            raise S2JaxError(f"{index}: shard {entry.get('shard')} holds other inputs than "
                             "this run's; use a new output path")
        start, end = entry.get("start"), entry.get("end")
        if start != good_data or not isinstance(end, int) or end > len(data):
            return False
        if hashlib.sha256(data[start:end]).hexdigest() != entry.get("sha256"):
            raise S2JaxError(f"{self.path}: bytes {start}-{end} (shard {k}) changed since "
                             "they were written; move the file away to start over")
        self._entries.append(entry)
        self.done, self.seconds = k + 1, self.seconds + float(entry.get("seconds", 0.0))
        return True

    def append(self, rows: Sequence[dict], seconds: float, *, writer: bool = True) -> None:
        """Appends the next shard's rows, then its index line (both fsynced)."""
        k = self.done
        if writer:
            blob = b"".join(json.dumps(r, ensure_ascii=False).encode("utf-8") + b"\n"
                            for r in rows)
            size = self.path.stat().st_size if self.path.exists() else 0
            _append(index_path(self.path), json.dumps(
                {"begin": k, "start": size, "key": self.key}).encode() + b"\n")
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
