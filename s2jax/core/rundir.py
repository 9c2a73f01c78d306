"""Output paths checked before any work: writable, owned by this run, locked against a second run.

Nothing a user made is ever replaced: an existing output that is not an artifact of the same kind
from the same run is refused with a one-line error naming it.
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

LOCK = ".s2jax.lock"
_HELD: set[str] = set()  # run dirs this process has locked


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


def writable_dir(path: str | os.PathLike, what: str) -> Path:
    """Creates directory `path` (and parents) and checks that files can be made in it."""
    path = Path(path)
    check_creatable(path, what)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise S2JaxError(f"{what} {path}: cannot create it ({e.strerror})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise S2JaxError(f"{what} {path}: not writable")
    return path


def writable_file(path: str | os.PathLike, what: str) -> Path:
    """Checks that the file `path` can be written: its directory is writable, it is no dir."""
    path = Path(path)
    if path.is_dir():
        raise S2JaxError(f"{what} {path}: is a directory (expected a file path)")
    writable_dir(path.parent, what)
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
def locked(run_dir: str | os.PathLike, *, writer: bool = True) -> Iterator[Path]:
    """Holds an exclusive lock on `run_dir` (released when the process dies, even by SIGKILL).

    Only the writing process (process 0) locks: the others write nothing there.
    """
    run_dir = writable_dir(run_dir, "run dir")
    key = str(run_dir.resolve())
    if not writer or key in _HELD:  # re-entered: `s2jax run` locks before it loads the model
        yield run_dir
        return
    fd = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise S2JaxError(f"run dir {run_dir}: in use by another s2jax run (pid {holder}); "
                             "wait for it or use another --run-dir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        _HELD.add(key)
        try:
            yield run_dir
        finally:
            _HELD.discard(key)
    finally:
        os.close(fd)  # closing drops the lock


def check_claim(run_dir: Path, fingerprint: str) -> bool:
    """Whether `run_dir` already holds this run; raises if it holds another config's run."""
    path = run_dir / "config.json"
    if not path.is_file():
        return False
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        old = None
    if not isinstance(old, dict) or old.get("fingerprint") != fingerprint:
        raise S2JaxError(f"{path}: the run dir holds a run of a different config; "
                         "use a new --run-dir (or delete it to start over)")
    return True


def claim(run_dir: Path, fingerprint: str, config: Mapping, *, writer: bool = True) -> None:
    """Records the run's config in `run_dir/config.json`; a resumed run must have the same one."""
    path = run_dir / "config.json"
    if check_claim(run_dir, fingerprint):
        return
    if writer and any(p.name != LOCK for p in run_dir.iterdir()):
        raise S2JaxError(f"run dir {run_dir}: not empty and holds no s2jax config.json; "
                         "refusing to write into it; pick a new --run-dir")
    if writer:
        write_json(path, {"fingerprint": fingerprint, "config": dict(config)})
