"""A fake of Google Cloud Storage on a local directory, for tests of gs:// run roots.

The objects of gs://BUCKET/NAME are the files DIR/BUCKET/NAME, served twice, the way the two
clients s2jax reaches gs:// through see GCS:

- to etils.epath (so to s2jax and orbax's metadata) as the fsspec file systems "gs" and "gcs"
  (what gcsfs would be);
- to TensorStore (orbax's array data) and google-cloud-storage (orbax asks it about the bucket)
  as GCS's JSON API over HTTP on 127.0.0.1, through `TENSORSTORE_GCS_HTTP_URL` and
  `STORAGE_EMULATOR_HOST`: media uploads with `ifGenerationMatch`, reads (ranges, generation
  preconditions), listing, deletes and the bucket's metadata.

Several processes (the ranks of a multi-process run) share one store by calling `fake_gcs(DIR)`
on the same directory, or `from_env()` with S2JAX_FAKE_GCS=DIR. It behaves as an object store
where it matters: an object appears whole (written beside it, then renamed in), there is no
append and no rename of a "directory" (each raises), so code that commits by renaming a
directory fails against it; create-if-absent is atomic.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import io
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

import fsspec
from fsspec.spec import AbstractFileSystem

ENV = "S2JAX_FAKE_GCS"  # the store's directory, for processes started by a test


def put(path: str, data: bytes, *, exclusive: bool = False) -> None:
    """Makes the object file `path` hold `data`, all at once; with `exclusive` only if absent
    (FileExistsError otherwise), atomically either way."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".fake-gcs.")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    try:
        if exclusive:
            os.link(temp, path)  # fails if `path` exists, whoever raced us
        else:
            os.replace(temp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)


def generation(path: str) -> int:
    """The object's generation (0: absent); a new one with every write."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return 0
    return st.st_mtime_ns ^ st.st_ino


class _Upload(io.BytesIO):
    """An object being written through fsspec: it appears whole when closed."""

    def __init__(self, path: str, exclusive: bool):
        super().__init__()
        self.path, self.exclusive = path, exclusive

    def close(self) -> None:
        if not self.closed:
            put(self.path, self.getvalue(), exclusive=self.exclusive)
        super().close()


class FakeGCSFileSystem(AbstractFileSystem):
    """gs://BUCKET/NAME as the file `root`/BUCKET/NAME; paths are "BUCKET/NAME" as gcsfs has
    them. No append, no rename of a directory; a directory exists while it holds an object."""

    protocol = ("gs", "gcs")
    root_marker = ""
    root = ""  # set by `use`

    def __init__(self, *args, finalize_on_close: bool = False, **kwargs):
        super().__init__(*args, **kwargs)  # epath passes gcsfs's finalize_on_close

    @classmethod
    def _strip_protocol(cls, path):
        path = str(path)
        for prefix in ("gs://", "gcs://"):
            path = path.removeprefix(prefix)
        return path.strip("/")

    def _disk(self, path) -> str:
        return os.path.join(self.root, self._strip_protocol(path))

    def info(self, path, **kwargs):
        path = self._strip_protocol(path)
        disk = self._disk(path)
        if os.path.isfile(disk):
            return {"name": path, "size": os.path.getsize(disk), "type": "file",
                    "generation": generation(disk)}
        if os.path.isdir(disk):
            return {"name": path, "size": 0, "type": "directory"}
        raise FileNotFoundError(path)

    def ls(self, path, detail=True, **kwargs):
        path = self._strip_protocol(path)
        disk = self._disk(path)
        if os.path.isdir(disk):
            out = [self.info(f"{path}/{n}") for n in sorted(os.listdir(disk))
                   if not n.startswith(".fake-gcs.")]
        else:
            out = [self.info(path)]
        return out if detail else [o["name"] for o in out]

    def _open(self, path, mode="rb", *args, **kwargs):
        disk = self._disk(path)
        if "a" in mode or "+" in mode:
            raise OSError(f"{path}: an object store has no append or update ({mode!r})")
        if "w" in mode or "x" in mode:
            if "x" in mode and os.path.exists(disk):
                raise FileExistsError(path)
            return _Upload(disk, exclusive="x" in mode)
        return open(disk, "rb")  # noqa: SIM115 (the caller closes it)

    def rm_file(self, path):
        disk = self._disk(path)
        if os.path.isdir(disk):
            shutil.rmtree(disk)
        elif os.path.exists(disk):
            os.unlink(disk)
        else:  # a "directory" a recursive rm already emptied (so removed)
            return
        parent = os.path.dirname(disk)  # GCS has no directories: an emptied one is gone
        while parent.startswith(self.root + "/") and not os.listdir(parent):
            os.rmdir(parent)
            parent = os.path.dirname(parent)

    _rm = rm_file

    def mkdir(self, path, create_parents=True, **kwargs):
        os.makedirs(self._disk(path), exist_ok=True)

    def makedirs(self, path, exist_ok=False):
        os.makedirs(self._disk(path), exist_ok=True)

    def cp_file(self, path1, path2, **kwargs):
        put(self._disk(path2), Path(self._disk(path1)).read_bytes())

    def put_file(self, lpath, rpath, callback=None, **kwargs):
        put(self._disk(rpath), Path(lpath).read_bytes())  # an upload: one object

    def get_file(self, rpath, lpath, callback=None, **kwargs):
        shutil.copyfile(self._disk(rpath), lpath)  # a download to a local path

    def mv(self, path1, path2, recursive=False, maxdepth=None, **kwargs):
        if self.isdir(path1):
            raise OSError(f"{path1}: an object store cannot rename a directory")
        self.cp_file(path1, path2)
        self.rm_file(path1)

    rename = move = mv


class _Handler(http.server.BaseHTTPRequestHandler):
    """GCS's JSON API, the subset TensorStore's gcs driver and google-cloud-storage use."""

    def log_message(self, *args):
        pass

    def _send(self, code: int, body: bytes = b"", headers: dict | None = None) -> None:
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, obj: dict) -> None:
        self._send(200, json.dumps(obj).encode(), {"Content-Type": "application/json"})

    def _request(self) -> tuple[list[str], dict]:
        url = urlparse(self.path)
        return url.path.split("/"), {k: v[0] for k, v in parse_qs(url.query).items()}

    @staticmethod
    def _file(bucket: str, name: str) -> str:
        return f"{FakeGCSFileSystem.root}/{bucket}/{name}"

    def _meta(self, bucket: str, name: str) -> dict:
        path = self._file(bucket, name)
        return {"bucket": bucket, "name": name, "size": str(os.path.getsize(path)),
                "generation": str(generation(path))}

    def _precondition(self, path: str, q: dict) -> int | None:
        """The failing status of the request's generation preconditions, or None."""
        if "ifGenerationMatch" in q and int(q["ifGenerationMatch"]) != generation(path):
            return 412
        if "ifGenerationNotMatch" in q and int(q["ifGenerationNotMatch"]) == generation(path):
            return 304
        return None

    def do_POST(self):  # noqa: N802 (http.server's naming)
        parts, q = self._request()  # /upload/storage/v1/b/<bucket>/o?uploadType=media&name=
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = self._file(parts[5], q["name"])
        failed = self._precondition(path, q)
        if failed:
            return self._send(failed)
        try:
            put(path, body, exclusive=q.get("ifGenerationMatch") == "0")
        except FileExistsError:
            return self._send(412)
        return self._json(self._meta(parts[5], q["name"]))

    def do_GET(self):  # noqa: N802
        parts, q = self._request()  # /storage/v1/b/<bucket>[/o[/<name>]]
        bucket = parts[4]
        if len(parts) == 5:  # the bucket (orbax asks whether it has a hierarchical namespace)
            return self._json({"kind": "storage#bucket", "name": bucket, "id": bucket,
                               "hierarchicalNamespace": {"enabled": False}})
        if len(parts) == 6:
            return self._list(bucket, q)
        name = unquote("/".join(parts[6:]))
        path = self._file(bucket, name)
        if not os.path.isfile(path):
            return self._send(404)
        failed = self._precondition(path, q)
        if failed:
            return self._send(failed)
        if q.get("alt") != "media":
            return self._json(self._meta(bucket, name))
        data = Path(path).read_bytes()
        headers = {"x-goog-generation": str(generation(path))}
        spec = self.headers.get("Range")
        if spec:
            start, _, end = spec.removeprefix("bytes=").partition("-")
            start, end = int(start or 0), (int(end) + 1 if end else len(data))
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
            return self._send(206, data[start:end], headers)
        return self._send(200, data, headers)

    def _list(self, bucket: str, q: dict) -> None:
        prefix, lo, hi = q.get("prefix", ""), q.get("startOffset", ""), q.get("endOffset")
        top = Path(FakeGCSFileSystem.root) / bucket
        names = sorted(p.relative_to(top).as_posix() for p in top.rglob("*")
                       if p.is_file() and not p.name.startswith(".fake-gcs."))
        items = [self._meta(bucket, n) for n in names
                 if n.startswith(prefix) and n >= lo and (hi is None or n < hi)]
        return self._json({"kind": "storage#objects", "items": items})

    def do_DELETE(self):  # noqa: N802
        parts, q = self._request()
        path = self._file(parts[4], unquote("/".join(parts[6:])))
        if not os.path.isfile(path):
            return self._send(404)
        failed = self._precondition(path, q)
        if failed:
            return self._send(failed)
        os.unlink(path)
        return self._send(204)


@functools.cache
def _serve() -> None:
    """Starts the HTTP face once per process (TensorStore reads its URL once) and points
    TensorStore and google-cloud-storage at it; it serves whatever the store holds."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True, name="fake GCS").start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    os.environ["TENSORSTORE_GCS_HTTP_URL"] = url
    os.environ["STORAGE_EMULATOR_HOST"] = url
    os.environ["GCE_METADATA_ROOT"] = "127.0.0.1:1"  # no metadata server: anonymous, at once


def use(directory: str | os.PathLike) -> FakeGCSFileSystem:
    """Serves the store in `directory` as gs:// to this process (fsspec, so epath; TensorStore;
    google-cloud-storage) from now on."""
    from etils.epath import backend  # its cached gcsfs instance must be the fake's

    FakeGCSFileSystem.root = str(Path(directory).absolute())
    os.makedirs(FakeGCSFileSystem.root, exist_ok=True)
    for name in ("gs", "gcs"):
        fsspec.register_implementation(name, FakeGCSFileSystem, clobber=True)
    FakeGCSFileSystem.clear_instance_cache()
    backend.fsspec_backend._get_filesystem.cache_clear()
    _serve()
    return FakeGCSFileSystem()


@contextlib.contextmanager
def fake_gcs(directory: str | os.PathLike) -> Iterator[FakeGCSFileSystem]:
    """`use(directory)` while the block runs."""
    yield use(directory)


def from_env() -> None:
    """`use($S2JAX_FAKE_GCS)` when it is set (the ranks a multi-process test starts)."""
    if os.environ.get(ENV):
        use(os.environ[ENV])
