"""Which paths s2jax may write: one rule for every output of every command.

s2jax writes only into a path that is fresh (absent, or an empty directory or file) or that it
created and marked as its own. Any other existing path is refused with a one-line error before
any work, and is never replaced, emptied or truncated. Special files (FIFOs, devices, sockets)
and symbolic links are never outputs; they are refused as inputs too, where reading could hang.

How s2jax marks what it made:
  a directory   DIR/.s2jax: {"s2jax": KIND, "key": KEY, "files": {name: [size, mtime_ns]}}
                written when s2jax creates the directory. KEY says which run it belongs to (a
                rerun with another key is refused); `files` lists the contents of a directory
                that s2jax replaces as a whole (a model, a distillation set), so that a file added
                or changed since is noticed and the directory is refused rather than replaced.
  a file        DIR/.NAME.s2jax: {"s2jax": KIND, "size": n, "mtime_ns": t}, beside it, written
                just before it is renamed into place (a file changed since no longer matches);
                or, for a JSON object, its own "s2jax": KIND field; or, for a sharded artifact,
                its index's header line (`s2jax.core.shards`).
  a temp path   .NAME.<random>.s2jax-tmp beside the target, locked by its writer (flock); the
                next write of NAME removes those whose writer died (`s2jax.core.atomic`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from s2jax.core.atomic import TEMP_MARK, atomic_open, rewrite_fd, temp_dir, write_json
from s2jax.core.errors import RunFailed, S2JaxError

MARK = TEMP_MARK  # the mark file of a directory s2jax made
LOCK = ".s2jax.lock"  # the lock file of a run dir (s2jax.core.rundir), made before its mark
MAX_MARK_BYTES = 16 << 20

# Kinds of outputs (the "s2jax" field of a mark) and how messages name them.
MODEL, ADAPTER, DISTILL_SET, TRAIN_RUN, RUN, DEMO = (
    "model", "adapter", "distill-set", "train-run", "run", "demo")
GENERATE_OUTPUT, GENERATIONS_META, PLAN_REPORT, MULTIPLY = (
    "generate-output", "generations-meta", "plan-report", "multiply")
KINDS = {
    MODEL: "HF model directory",
    ADAPTER: "PEFT adapter directory",
    DISTILL_SET: "distillation set",
    TRAIN_RUN: "training run directory",
    RUN: "run directory",
    DEMO: "demo output directory",
    GENERATE_OUTPUT: "generate output",
    GENERATIONS_META: "generations meta file",
    PLAN_REPORT: "plan report",
    MULTIPLY: "toy multiply output directory",
}
_SPECIAL = ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
            (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
            (stat.S_ISSOCK, "a socket"))


def special(path: str | os.PathLike) -> str | None:
    """What `path` is when it is a symbolic link or a special file ("a FIFO ..."), else None."""
    try:
        mode = os.lstat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        raise S2JaxError(f"{path}: cannot be read ({e.strerror})") from None
    return next((name for test, name in _SPECIAL if test(mode)), None)


def check_input(path: str | os.PathLike, what: str, *, follow_links: bool = True) -> Path:
    """Refuses an input that is a FIFO, device or socket (reading it could hang forever)."""
    path = Path(path)
    target = path.resolve() if follow_links else path
    kind = special(target)
    if kind is not None and kind != "a symbolic link":
        raise S2JaxError(f"{path}: is {kind}; expected {what} (a regular file or directory)")
    return path


def check_input_dir(path: str | os.PathLike, what: str) -> Path:
    """Refuses an input directory holding a FIFO, device or socket (a model directory's files
    are read whole; reading one of those could hang)."""
    path = check_input(path, what)
    if path.is_dir():
        for entry in path.iterdir():
            kind = special(entry.resolve())
            if kind is not None and kind != "a symbolic link":
                raise S2JaxError(f"{entry}: is {kind}; expected {what} to hold regular files")
    return path


def check_parents(path: str | os.PathLike, what: str) -> Path:
    """Checks, creating nothing, that `path` can be made: its nearest existing ancestor is a
    writable directory."""
    path = Path(path).absolute()
    for parent in path.parents:
        if not parent.exists():
            continue
        if not parent.is_dir():
            raise S2JaxError(f"{what} {path}: {parent} is a file, not a directory")
        if not os.access(parent, os.W_OK | os.X_OK) or not _can_create_in(parent):
            raise S2JaxError(f"{what} {path}: {parent} is not writable")
        return path
    return path


def _can_create_in(directory: Path) -> bool:
    """Whether a directory can be made in `directory` (made and removed at once): `os.access`
    says yes to root everywhere, /proc and read-only mounts included."""
    try:
        probe = tempfile.mkdtemp(prefix=".s2jax-probe.", dir=directory)
    except OSError:
        return False
    os.rmdir(probe)
    return True


def _refuse_special(path: Path, what: str, expected: str) -> None:
    kind = special(path)
    if kind is not None:
        raise S2JaxError(f"{what} {path}: is {kind}; expected {expected} s2jax may write "
                         "(give a new path, or the path the link points to)")


def read_mark(directory: str | os.PathLike) -> dict | None:
    """The mark s2jax wrote in `directory`, or None (absent, a link, unreadable, not a mark)."""
    return read_mark_file(Path(directory) / MARK)


def read_mark_file(path: str | os.PathLike) -> dict | None:
    """The JSON object of the mark file `path` if it is one (a regular file naming a kind)."""
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_MARK_BYTES:
            return None
        mark = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return mark if isinstance(mark, dict) and isinstance(mark.get("s2jax"), str) else None


def _listing(directory: Path) -> dict[str, list[int]]:
    """{relative path: [size, mtime_ns]} of every file and link under `directory`, mark aside."""
    out = {}
    for root, dirs, files in os.walk(directory):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            full = Path(root, name)
            rel = str(full.relative_to(directory))
            if rel != MARK:
                st = os.lstat(full)
                out[rel] = [st.st_size, st.st_mtime_ns]
    return out


def _changed(directory: Path, mark: dict) -> str | None:
    """The first file under `directory` that is not as s2jax left it (added, changed, gone)."""
    files = mark.get("files")
    if not isinstance(files, dict):
        return None
    now = _listing(directory)
    for name in sorted(set(now) | set(files)):
        if now.get(name) != files.get(name):
            return name
    return None


def check_dir(path: str | os.PathLike, what: str, kind: str, *, key: Any = None,
              key_name: str = "settings", whole: bool = False) -> bool:
    """Raises unless directory `path` may be written as an output of `kind`.

    Args:
      path: the output directory.
      what: the flag or field that named it, for the message.
      kind: a key of `KINDS`.
      key: when given, an existing directory must have been made with this key (the same run).
      key_name: what a different key means, for the message ("config").
      whole: the directory is replaced as a whole: every file in it must be as s2jax left it.

    Returns:
      Whether `path` exists as this kind's output already (a rerun resumes or replaces it).
    """
    path = Path(path)
    _refuse_special(path, what, "a directory")
    if not path.exists():
        check_parents(path, what)
        return False
    if not path.is_dir():
        raise S2JaxError(f"{what} {path}: exists and is a file, not a directory; refusing to "
                         "replace it; pick a new path")
    try:
        entries = [p.name for p in path.iterdir()]
    except OSError as e:
        raise S2JaxError(f"{what} {path}: cannot be read ({e.strerror})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise S2JaxError(f"{what} {path}: not writable")
    if not any(name != LOCK for name in entries):
        return False
    mark = read_mark(path)
    if mark is None:
        raise S2JaxError(f"{what} {path}: exists, is not empty and was not made by s2jax (no "
                         f"{MARK} mark); refusing to write into it; pick a new path")
    if mark["s2jax"] != kind:
        raise S2JaxError(f"{what} {path}: is an s2jax {KINDS.get(mark['s2jax'], mark['s2jax'])}, "
                         f"not a {KINDS[kind]}; refusing to write into it; pick a new path")
    if key is not None and mark.get("key") != key:
        raise S2JaxError(f"{what} {path}: holds a {KINDS[kind]} of a different {key_name}; "
                         "refusing to write into it; pick a new path (or delete it to start "
                         "over)")
    changed = _changed(path, mark) if whole else None
    if changed is not None:
        raise S2JaxError(f"{what} {path}: {changed} was added, changed or removed after s2jax "
                         "wrote the directory; refusing to replace it; move it away or pick a "
                         "new path")
    return True


def claim_dir(path: str | os.PathLike, what: str, kind: str, *, key: Any = None,
              key_name: str = "settings", writer: bool = True) -> Path:
    """Checks `path` as `check_dir` does, then creates and marks it if it is fresh.

    Only the writing process (process 0 of a multi-process run) checks and writes.
    """
    path = Path(path)
    if not writer:
        return path
    if not check_dir(path, what, kind, key=key, key_name=key_name):
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise S2JaxError(f"{what} {path}: cannot create it ({e.strerror})") from None
        write_json(path / MARK, {"s2jax": kind, "key": key, "files": None})
    return path


def check_space(path: str | os.PathLike, need: float, what: str) -> None:
    """Raises `RunFailed` when the disk holding `path` (or its nearest existing ancestor) has
    less than `need` bytes free."""
    where = Path(path).absolute()
    while not where.exists() and where != where.parent:
        where = where.parent
    free = shutil.disk_usage(where).free
    if need > free:
        raise RunFailed(f"{what} {path}: needs about {need / 2**30:.2f} GiB, the disk has "
                        f"{free / 2**30:.2f} GiB free; free space or pick another path")


@contextlib.contextmanager
def replace_dir(path: str | os.PathLike, kind: str, *, key: Any = None,
                what: str = "output", need: float = 0) -> Iterator[Path]:
    """Yields a temp directory that replaces `path` as a whole if the block succeeds.

    `path` must be fresh, or a `kind` directory s2jax wrote and nobody changed since (checked
    before and again just before the swap); the new directory gets a mark listing its files.
    `need` bytes must be free on its disk. A kill leaves only a locked temp directory, which
    the next write of `path` removes; so does a failure (a disk that fills after all).
    """
    path = Path(path)
    check_dir(path, what, kind, whole=True)
    check_space(path.parent, need, what)
    with temp_dir(path, {"s2jax": "temp", "kind": kind, "target": path.name}) as (tmp, fd):
        yield tmp
        check_dir(path, what, kind, whole=True)  # nobody changed it while we wrote
        rewrite_fd(fd, {"s2jax": kind, "key": key, "files": _listing(tmp)})
        if path.exists():
            with temp_dir(path, {"s2jax": "temp", "kind": kind, "target": path.name}) as (
                    old, _):
                os.replace(path, old / "old")  # inside a marked temp: a kill leaves it clean-able
                os.replace(tmp, path)
                shutil.rmtree(old / "old", ignore_errors=True)
        else:
            os.replace(tmp, path)


def _file_mark_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.s2jax")


def _json_kind(path: Path) -> str | None:
    """The "s2jax" field of the JSON object in `path` (a file s2jax wrote with its kind inside)."""
    try:
        if path.stat().st_size > MAX_MARK_BYTES:
            return None
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return obj.get("s2jax") if isinstance(obj, dict) else None


def check_file(path: str | os.PathLike, what: str, kind: str, *, marked_inside: bool = False
               ) -> bool:
    """Raises unless the file `path` may be (re)written as an output of `kind`.

    Args:
      path: the output file.
      what: the flag that named it, for the message.
      kind: a key of `KINDS`.
      marked_inside: the file is a JSON object that holds its kind as its "s2jax" field; else
        its mark is the file `.NAME.s2jax` beside it.

    Returns:
      Whether it exists as s2jax's (it will be replaced).
    """
    path = Path(path)
    _refuse_special(path, what, "a file path")
    if not path.exists():
        check_parents(path, what)
        return False
    if path.is_dir():
        raise S2JaxError(f"{what} {path}: is a directory (expected a file path)")
    check_parents(path, what)
    st = path.stat()
    if st.st_size == 0:
        return False
    if marked_inside:
        ours = _json_kind(path) == kind
    else:
        mark = read_mark_file(_file_mark_path(path))
        ours = (mark is not None and mark.get("s2jax") == kind
                and [mark.get("size"), mark.get("mtime_ns")] == [st.st_size, st.st_mtime_ns])
    if not ours:
        raise S2JaxError(f"{what} {path}: exists and is not an s2jax {KINDS[kind]} (or was "
                         "changed since s2jax wrote it); refusing to replace it; pick a new path")
    return True


@contextlib.contextmanager
def open_owned_file(path: str | os.PathLike, kind: str, mode: str = "w",
                    what: str = "output") -> Iterator[IO[Any]]:
    """Writes the file `path` atomically and marks it as s2jax's (`.NAME.s2jax` beside it)."""
    path = Path(path)
    check_file(path, what, kind)

    def mark(tmp: Path) -> None:
        st = tmp.stat()  # a rename keeps size and mtime: the mark describes the file in place
        write_json(_file_mark_path(path), {"s2jax": kind, "size": st.st_size,
                                           "mtime_ns": st.st_mtime_ns})

    with atomic_open(path, mode, before_replace=mark) as f:
        yield f


def write_owned_json(path: str | os.PathLike, kind: str, obj: dict, what: str = "output") -> None:
    """Writes the JSON object `obj` to `path` with its kind as its "s2jax" field (its mark)."""
    check_file(path, what, kind, marked_inside=True)
    write_json(path, {"s2jax": kind, **obj})
