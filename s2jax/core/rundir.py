"""Run directories: owned by one run (`s2jax.core.ownership`), locked against a second run.

A run dir is marked with its run's fingerprint when created; a rerun must have the same one, and
a directory that is not a run dir of s2jax is refused before any work.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

from s2jax.core.atomic import write_json
from s2jax.core.errors import S2JaxError
from s2jax.core.ownership import LOCK, RUN, check_dir, claim_dir

__all__ = ["LOCK", "check_claim", "check_creatable", "claim", "locked", "refuse_foreign_dir"]
RUN_KEY = "config (or base model)"  # what a run dir's key is, for messages
_HELD: set[str] = set()  # run dirs this process has locked


# check_creatable and refuse_foreign_dir serve `s2jax sweep`, whose root is marked by its own
# sweep.json (s2jax.run.sweep); its arm run dirs are s2jax run dirs (check_dir, replace_dir)
def check_creatable(path: str | os.PathLike, what: str) -> Path:
    """Checks, creating nothing, that directory `path` exists writable or can be made."""
    path = Path(path).absolute()
    for parent in (path, *path.parents):
        if not parent.exists():
            continue
        if not parent.is_dir():
            raise S2JaxError(f"{what} {path}: {parent} is a file, not a directory")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise S2JaxError(f"{what} {path}: {parent} is not writable")
        return path
    return path


def refuse_foreign_dir(path: str | os.PathLike, what: str, marker: str,
                       owned: Mapping[str, object] | None = None) -> None:
    """Refuses an existing, non-empty `path` that is not an artifact this command may replace.

    Args:
      path: the output directory.
      what: the flag or field naming it, for the message.
      marker: a JSON file an artifact of this kind always holds (e.g. provenance.json).
      owned: fields of `marker` that must equal these values for the artifact to count as this
        run's (e.g. the generations file it came from).
    """
    path = Path(path)
    if not path.exists():
        return
    if not path.is_dir():
        raise S2JaxError(f"{what} {path}: exists and is not a directory; refusing to replace it")
    if not any(path.iterdir()):
        return
    found = path / marker
    try:
        meta = json.loads(found.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        meta = None
    mine = isinstance(meta, dict) and all(meta.get(k) == v for k, v in (owned or {}).items())
    if not mine:
        raise S2JaxError(f"{what} {path}: exists and is not this run's output (no matching "
                         f"{marker}); refusing to replace it; pick a new path")


@contextlib.contextmanager
def locked(run_dir: str | os.PathLike, *, writer: bool = True, kind: str = RUN,
           key: str | None = None) -> Iterator[Path]:
    """Holds an exclusive lock on `run_dir` (released when the process dies, even by SIGKILL).

    The directory must be fresh or an s2jax `kind` directory (of `key`, when given): it is
    checked before the lock file is made in it. Only the writing process (process 0) locks: the
    others write nothing there.
    """
    run_dir = Path(run_dir)
    key_name = RUN_KEY if kind == RUN else "settings"
    if writer:
        check_dir(run_dir, "run dir", kind, key=key, key_name=key_name)
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise S2JaxError(f"run dir {run_dir}: cannot create it ({e.strerror})") from None
    key_path = str(run_dir.resolve())
    if not writer or key_path in _HELD:  # re-entered: `s2jax run` locks before it loads
        yield run_dir
        return
    fd = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise S2JaxError(f"run dir {run_dir}: in use by another s2jax run (pid {holder}); "
                             "wait for it or use another --run-dir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        _HELD.add(key_path)
        try:
            yield run_dir
        finally:
            _HELD.discard(key_path)
    finally:
        os.close(fd)  # closing drops the lock


def check_claim(run_dir: Path, fingerprint: str) -> bool:
    """Whether `run_dir` already holds this run; raises if it may not be this run's dir."""
    return check_dir(run_dir, "run dir", RUN, key=fingerprint, key_name=RUN_KEY)


def claim(run_dir: Path, fingerprint: str, config: Mapping, *, writer: bool = True) -> None:
    """Marks `run_dir` as this run's and records its config in config.json (for people)."""
    claim_dir(run_dir, "run dir", RUN, key=fingerprint, key_name=RUN_KEY, writer=writer)
    path = run_dir / "config.json"
    if writer and not path.is_file():
        write_json(path, {"fingerprint": fingerprint, "config": dict(config)})
