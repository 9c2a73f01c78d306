"""An in-process fake of Google Cloud Storage, for tests of gs:// run roots.

One store of objects ({"/bucket/name": bytes}, fsspec's memory store) is served twice, the way
the two clients s2jax reaches gs:// through see GCS:

- to etils.epath (and so to s2jax and orbax's metadata) as the fsspec file systems "gs" and
  "gcs" (what gcsfs would be);
- to TensorStore (orbax's array data) and google-cloud-storage (orbax asks it about the bucket)
  as GCS's JSON API over HTTP on 127.0.0.1, through `TENSORSTORE_GCS_HTTP_URL` and
  `STORAGE_EMULATOR_HOST`: media uploads with `ifGenerationMatch`, reads (ranges, generation
  preconditions), listing, deletes and the bucket's metadata.

It behaves as an object store where it matters: there is no append and no rename of a
"directory" (each raises), so code that commits by renaming a directory fails against it.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import itertools
import json
import os
import threading
from collections.abc import Iterator
from urllib.parse import parse_qs, unquote, urlparse

import fsspec
from fsspec.implementations.memory import MemoryFile, MemoryFileSystem

_GENERATIONS = itertools.count(1)


def generation(f: MemoryFile) -> int:
    """The object's generation: new with every write (each write makes a new MemoryFile)."""
    if not hasattr(f, "s2jax_generation"):
        f.s2jax_generation = next(_GENERATIONS)
    return f.s2jax_generation


class FakeGCSFileSystem(MemoryFileSystem):
    """fsspec's memory file system under gs://, without append or directory renames."""

    protocol = ("gs", "gcs")
    store: dict = {}  # noqa: RUF012 (fsspec's memory store is class state)
    pseudo_dirs = [""]  # noqa: RUF012

    def __init__(self, *args, finalize_on_close: bool = False, **kwargs):
        super().__init__(*args, **kwargs)  # epath passes gcsfs's finalize_on_close

    @classmethod
    def _strip_protocol(cls, path):
        path = str(path)
        for prefix in ("gs://", "gcs://"):
            path = path.removeprefix(prefix)
        return super()._strip_protocol(path)

    def _open(self, path, mode="rb", *args, **kwargs):
        if "a" in mode or "+" in mode:
            raise OSError(f"{path}: an object store has no append or update ({mode!r})")
        return super()._open(path, mode, *args, **kwargs)

    def mv(self, path1, path2, recursive=False, maxdepth=None, **kwargs):
        if self.isdir(path1):
            raise OSError(f"{path1}: an object store cannot rename a directory")
        self.copy(path1, path2)
        self.rm(path1)

    rename = move = mv


class _Handler(http.server.BaseHTTPRequestHandler):
    """GCS's JSON API, the subset TensorStore's gcs driver uses."""

    store = FakeGCSFileSystem.store

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

    def _meta(self, key: str) -> dict:
        f = self.store[key]
        bucket, _, name = key[1:].partition("/")
        return {"bucket": bucket, "name": name, "size": str(len(f.getvalue())),
                "generation": str(generation(f))}

    def _precondition(self, key: str, q: dict) -> int | None:
        """The failing status of the request's generation preconditions, or None."""
        gen = generation(self.store[key]) if key in self.store else 0
        if "ifGenerationMatch" in q and int(q["ifGenerationMatch"]) != gen:
            return 412
        if "ifGenerationNotMatch" in q and int(q["ifGenerationNotMatch"]) == gen:
            return 304
        return None

    def do_POST(self):  # noqa: N802 (http.server's naming)
        parts, q = self._request()  # /upload/storage/v1/b/<bucket>/o?uploadType=media&name=
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        key = f"/{parts[5]}/{q['name']}"
        failed = self._precondition(key, q)
        if failed:
            return self._send(failed)
        self.store[key] = MemoryFile(None, key, body)
        return self._json(self._meta(key))

    def do_GET(self):  # noqa: N802
        parts, q = self._request()  # /storage/v1/b/<bucket>/o[/<name>]
        bucket = parts[4]
        if len(parts) == 5:  # the bucket (orbax asks whether it has a hierarchical namespace)
            return self._json({"kind": "storage#bucket", "name": bucket, "id": bucket,
                               "hierarchicalNamespace": {"enabled": False}})
        if len(parts) == 6:
            return self._list(bucket, q)
        key = f"/{bucket}/{unquote('/'.join(parts[6:]))}"
        if key not in self.store:
            return self._send(404)
        failed = self._precondition(key, q)
        if failed:
            return self._send(failed)
        if q.get("alt") != "media":
            return self._json(self._meta(key))
        data = self.store[key].getvalue()
        headers = {"x-goog-generation": str(generation(self.store[key]))}
        spec = self.headers.get("Range")
        if spec:
            start, _, end = spec.removeprefix("bytes=").partition("-")
            start, end = int(start or 0), (int(end) + 1 if end else len(data))
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
            return self._send(206, data[start:end], headers)
        return self._send(200, data, headers)

    def _list(self, bucket: str, q: dict) -> None:
        prefix, lo, hi = q.get("prefix", ""), q.get("startOffset", ""), q.get("endOffset")
        items = []
        for key in sorted(self.store):
            name = key[len(bucket) + 2:]
            if key.startswith(f"/{bucket}/") and name.startswith(prefix) and name >= lo and (
                    hi is None or name < hi):
                items.append(self._meta(key))
        return self._json({"kind": "storage#objects", "items": items})

    def do_DELETE(self):  # noqa: N802
        parts, q = self._request()
        key = f"/{parts[4]}/{unquote('/'.join(parts[6:]))}"
        if key not in self.store:
            return self._send(404)
        failed = self._precondition(key, q)
        if failed:
            return self._send(failed)
        del self.store[key]
        return self._send(204)


@functools.cache
def _serve() -> None:
    """Starts the HTTP face once per process (TensorStore reads its URL once) and points
    TensorStore at it; it serves whatever the store holds."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True, name="fake GCS").start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    os.environ["TENSORSTORE_GCS_HTTP_URL"] = url
    os.environ["STORAGE_EMULATOR_HOST"] = url  # google-cloud-storage, which orbax asks too
    os.environ["GCE_METADATA_ROOT"] = "127.0.0.1:1"  # no metadata server: anonymous, at once


@contextlib.contextmanager
def fake_gcs() -> Iterator[FakeGCSFileSystem]:
    """Serves an empty fake gs:// to fsspec (so epath) and TensorStore while the block runs."""
    from etils.epath import backend  # its cached gcsfs instance must be the fake's

    FakeGCSFileSystem.store.clear()
    for name in ("gs", "gcs"):
        fsspec.register_implementation(name, FakeGCSFileSystem, clobber=True)
    backend.fsspec_backend._get_filesystem.cache_clear()  # epath caches the gcsfs instance
    _serve()
    try:
        yield FakeGCSFileSystem()
    finally:
        FakeGCSFileSystem.store.clear()
        backend.fsspec_backend._get_filesystem.cache_clear()
