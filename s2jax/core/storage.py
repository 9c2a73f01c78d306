"""The path layer: local paths as `pathlib.Path`, object-store URLs (gs://, s3://) as `epath.Path`.

etils.epath is the path layer orbax itself uses; for gs:// it goes through fsspec (`gcsfs`,
`pip install -e ".[gcs]"`) unless TensorFlow is installed. An object store differs from a
POSIX file system in ways the primitives here absorb:

- one object PUT is atomic: a write goes to its final name directly (locally: temp file,
  fsync, rename, `s2jax.core.atomic`);
- there is no rename of a directory, no append, no flock: a set of objects is committed by
  writing a marker object last, and readers trust only what a marker lists (a run root's
  manifest, `s2jax.parallel.remote_root`; orbax's commit_success.txt for a checkpoint);
- create-if-absent is the store's precondition (GCS `ifGenerationMatch=0`, S3 `If-None-Match`),
  reached through fsspec's `pipe_file(mode="create")`; a backend without it raises
  `NotImplementedError` rather than racing (locally: `O_EXCL`).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from s2jax.core.atomic import atomic_open
from s2jax.core.errors import S2JaxError

_URL = re.compile(r"^([a-z][a-z0-9+.-]*)://", re.IGNORECASE)
SCHEMES = {"gs": "gcsfs", "s3": "s3fs"}  # stores epath and TensorStore serve: fsspec's package
AnyPath = Any  # pathlib.Path or etils.epath.Path


def scheme(path: str | os.PathLike) -> str | None:
    """The URL scheme of `path` ("gs" for gs://bucket/run), None for a local path."""
    m = _URL.match(str(path)) if not isinstance(path, Path) else None
    return m.group(1).lower() if m else None


def is_remote(path: str | os.PathLike) -> bool:
    """Whether `path` names an object (gs://, s3://) rather than a local or network file."""
    return scheme(path) is not None


def as_path(path: str | os.PathLike, what: str = "path") -> AnyPath:
    """`epath.Path` for an object-store URL, `pathlib.Path` otherwise.

    A URL of a scheme s2jax does not serve is refused, not turned into a local folder named
    "<scheme>:".
    """
    kind = scheme(path)
    if kind is None:
        return Path(path)
    if kind not in SCHEMES:
        raise S2JaxError(f"{what} {path}: {kind}:// is not supported (expected a local path or "
                         f"one of {', '.join(s + '://' for s in SCHEMES)})")
    # comes with orbax (as fsspec); only a run on an object store loads them
    import fsspec
    from etils import epath

    try:
        fsspec.get_filesystem_class(kind)
    except ImportError:
        raise S2JaxError(f"{what} {path}: {kind}:// needs the {SCHEMES[kind]} package (pip "
                         "install -e \".[gcs]\" for gs://)") from None
    return epath.Path(str(path))


def require_local(path: str | os.PathLike, what: str, expected: str) -> Path:
    """`path` as a local `Path`; an object-store URL is refused, naming what is expected."""
    if is_remote(path):
        raise S2JaxError(f"{what} {path}: object-store roots are not supported here; expected "
                         f"{expected}")
    return Path(path)


def write_bytes(path: AnyPath, data: bytes) -> None:
    """Writes `path` whole, atomically: one PUT on an object store, temp + rename locally."""
    if isinstance(path, Path):
        with atomic_open(path, "wb") as f:
            f.write(data)
        return
    path.parent.mkdir(parents=True, exist_ok=True)  # a no-op on a store; real on a local fake
    path.write_bytes(data)


def write_json(path: AnyPath, obj: Any) -> None:
    """Writes `obj` as indented JSON to `path`, atomically (see `write_bytes`)."""
    write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def read_json(path: AnyPath) -> Any:
    """The JSON in `path` as it is now (no cached listing); None when absent or not JSON."""
    try:
        if isinstance(path, Path):
            return json.loads(path.read_bytes())
        fs, name = filesystem(path)
        return json.loads(fs.cat_file(name))
    except (FileNotFoundError, ValueError, UnicodeDecodeError):
        return None


def filesystem(path: AnyPath):
    """(the fsspec file system serving `path`, its path string) as epath resolves them, but
    without fsspec's listings cache: another host's writes must be seen at once."""
    import fsspec  # epath's own backend for gs://; only object-store paths need it

    return fsspec.core.url_to_fs(str(path), use_listings_cache=False)


def create_if_absent(path: AnyPath, data: bytes) -> bool:
    """Writes `path` only if nothing is there; False when another writer got there first.

    Locally an `O_EXCL` create. On an object store the store's precondition decides, so of two
    writers exactly one succeeds (fsspec `pipe_file(mode="create")`: gcsfs sends
    `ifGenerationMatch=0`); a backend that cannot express it raises rather than race.
    """
    if isinstance(path, Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return True
    fs, name = filesystem(path)
    try:
        fs.pipe_file(name, data, mode="create")
    except FileExistsError:
        return False
    except TypeError:  # an fsspec backend older than the `mode` argument
        raise NotImplementedError(f"{path}: this fsspec backend ({type(fs).__name__}) has "
                                  "no create-if-absent (pipe_file mode='create')") from None
    return True


def files_under(root: AnyPath) -> dict[str, int]:
    """{path relative to `root`: size} of every object (file) under `root`; {} when absent."""
    if isinstance(root, Path):
        if not root.is_dir():
            return {}
        return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*")
                if p.is_file()}
    fs, name = filesystem(root)
    name = name.rstrip("/")
    if not fs.exists(name):
        return {}
    found = fs.find(name, detail=True)  # listed as the file system writes paths: strip alike
    return {fs._strip_protocol(k)[len(name) + 1:]: int(v.get("size") or 0)
            for k, v in found.items() if v.get("type") != "directory"}
