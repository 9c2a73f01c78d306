"""Atomic artifact writes: write to a temp path beside the target, fsync, then rename.

Temp paths are named `.NAME.<random>.s2jax-tmp` and locked (flock) by the process writing them,
so that one a killed process left behind is told apart from one being written: `clean_stale`
removes the first kind, and only s2jax's (a temp directory must also hold s2jax's mark).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

TEMP_SUFFIX = ".s2jax-tmp"
TEMP_MARK = ".s2jax"  # the mark every directory s2jax makes holds (s2jax.core.ownership)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temp_pattern(path: Path) -> re.Pattern:
    return re.compile(re.escape(f".{path.name}.") + r"[A-Za-z0-9_]{8}" + re.escape(TEMP_SUFFIX))


def _unlocked(path: Path) -> bool:
    """Whether nobody holds the flock of `path` (its writer is gone)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def _is_mark(path: Path) -> bool:
    try:
        if not path.is_file() or path.is_symlink() or path.stat().st_size > 1 << 20:
            return False
        return isinstance(json.loads(path.read_text(encoding="utf-8")).get("s2jax"), str)
    except (OSError, ValueError, AttributeError):
        return False


def clean_stale(path: str | os.PathLike) -> list[Path]:
    """Removes the temp files and directories that killed writers of `path` left behind.

    Only paths named as s2jax names its temps and no longer locked are removed; a directory
    also has to hold s2jax's mark. Returns what was removed.
    """
    path = Path(path)
    pattern, removed = _temp_pattern(path), []
    try:
        siblings = list(path.parent.iterdir())
    except OSError:
        return removed
    for sib in siblings:
        if not pattern.fullmatch(sib.name) or sib.is_symlink():
            continue
        if sib.is_dir():
            if _is_mark(sib / TEMP_MARK) and _unlocked(sib / TEMP_MARK):
                shutil.rmtree(sib, ignore_errors=True)
                removed.append(sib)
        elif sib.is_file() and _unlocked(sib):
            with contextlib.suppress(FileNotFoundError):
                sib.unlink()
            removed.append(sib)
    return removed


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", *,
                before_replace: Callable[[Path], None] | None = None) -> Iterator[IO[Any]]:
    """Opens a temp file next to `path`; renames it onto `path` only if the block succeeds.

    `before_replace(temp)` runs once the temp file is complete and synced, just before the
    rename (a mark beside the file records its size and time then).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    fcntl.flock(fd, fcntl.LOCK_EX)  # held until renamed: a live temp is never "stale"
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; artifacts get the usual mode
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
            if before_replace is not None:
                before_replace(Path(tmp))
            os.replace(tmp, path)  # while the file (and its lock) is still open
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_open(path) as f:
        json.dump(obj, f, indent=2, sort_keys=False)
        f.write("\n")


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict], **kwargs) -> None:
    with atomic_open(path, **kwargs) as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


@contextlib.contextmanager
def temp_dir(path: str | os.PathLike, mark: dict) -> Iterator[tuple[Path, int]]:
    """A locked temp directory beside `path` holding `mark` as its .s2jax file.

    Yields (the directory, the open descriptor of its mark, which holds the lock); the caller
    renames the directory into place. Removed, unless renamed, when the block ends.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    fd = os.open(tmp / TEMP_MARK, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666 & ~_umask())
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        rewrite_fd(fd, mark)
        yield tmp, fd
    finally:
        os.close(fd)
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def rewrite_fd(fd: int, obj: Any) -> None:
    """Replaces the contents of the open file `fd` with `obj` as JSON, durably (in place, so a
    lock held on it stays held)."""
    data = (json.dumps(obj, indent=2) + "\n").encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
    os.fsync(fd)
