"""A run root on an object store (gs://, s3://): worked on in a local copy, published at barriers.

A run's protocol needs a POSIX file system: shards appended and fsynced, a flock, directories
swapped in by a rename, marks that record sizes and mtimes. An object store has none of these, so
each process works in a local copy of the root (`local_copy`, under the user cache) and the store
holds the durable copy every host shares:

    ROOT/<path>                 each file of the run dir, one object, uploaded when new or changed
    ROOT/.s2jax-objects.json    {"s2jax": "objects", "serial": n, "files": {path: [size, mtime]}}:
                                written last at every publish, the commit marker; a reader trusts
                                only what it lists (an object it does not list is garbage)
    ROOT/.s2jax.lock            {"host", "pid", "born", "since"}: created if absent by the run
                                that works on the root, deleted when it ends
    ROOT/train/checkpoints/     orbax's, written there directly by every host (not copied)

Process 0 publishes (changed files, then the manifest) after every write the run makes visible to
the other processes (every shard, every stage: `synced`), after each checkpoint (`publish`) and
when it ends; every other process pulls after the same barrier, so each reads what process 0
wrote as on a shared file system. A process whose local copy is missing or behind (a new machine
after a preemption) pulls the manifest's files with their recorded mtimes, and the run resumes
from them as from a local dir.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from s2jax.core.claims import proc_start, process_alive
from s2jax.core.errors import S2JaxError
from s2jax.core.paths import cache_dir
from s2jax.core.storage import (
    AnyPath,
    as_path,
    create_if_absent,
    files_under,
    filesystem,
    is_remote,
    read_json,
    scheme,
)
from s2jax.core.storage import write_json as store_json
from s2jax.parallel.distributed import process_index

MANIFEST = ".s2jax-objects.json"
LOCK = ".s2jax.lock"
CHECKPOINTS = ("train", "checkpoints")  # orbax writes these to the store itself
_SKIP_SUFFIXES = (".s2jax-tmp", LOCK)  # a writer's temp files and the local flock stay local
_ACTIVE: contextvars.ContextVar[RemoteRoot | None] = contextvars.ContextVar("remote_root",
                                                                           default=None)


def local_copy(url: str, process: int = 0) -> Path:
    """Where process `process` keeps its copy of the root `url` (the cache, then
    scheme/bucket/path): one copy per process, since two on one machine pull and write at
    different times."""
    path = cache_dir() / "remote" / scheme(url) / url.split("://", 1)[1].strip("/")
    return path.with_name(f"{path.name}@process{process}") if process else path


class RemoteRoot:
    """The run root `url` and process `process`'s local copy of it (process 0 writes)."""

    def __init__(self, url: str, *, process: int = 0):
        self.url, self.remote = url.rstrip("/"), as_path(url, "run dir")
        self.writer = process == 0
        self.local = local_copy(self.url, process)
        self._seen = self.local.with_name(self.local.name + MANIFEST)  # last manifest synced
        self.manifest = read_json(self._seen) or {"serial": 0, "files": {}}

    def _fs(self):
        return filesystem(self.url)

    def _local_files(self) -> dict[str, list[int]]:
        out = {}
        for path in self.local.rglob("*"):
            rel = path.relative_to(self.local)
            if (path.is_file() and not path.is_symlink() and not path.name.endswith(
                    _SKIP_SUFFIXES) and rel.parts[:2] != CHECKPOINTS):
                st = path.stat()
                out[rel.as_posix()] = [st.st_size, st.st_mtime_ns]
        return out

    def _remember(self, manifest: dict) -> None:
        self.manifest = manifest
        self._seen.parent.mkdir(parents=True, exist_ok=True)
        store_json(self._seen, manifest)  # locally: temp file + rename

    def checkpoints(self, local: Path) -> AnyPath:
        """The object-store path of the local directory `local` (orbax writes there itself)."""
        return self.remote / local.relative_to(self.local).as_posix()

    def publish(self) -> int:
        """Uploads what changed since the last publish, then the manifest (the commit);
        returns how many files were uploaded."""
        files = self._local_files()
        old = self.manifest["files"]
        if files == old:
            return 0
        fs, base = self._fs()
        changed = [rel for rel, stamp in files.items() if old.get(rel) != stamp]
        for rel in changed:
            fs.put_file(str(self.local / rel), f"{base}/{rel}")  # streamed, one PUT (atomic)
        manifest = {"s2jax": "objects", "serial": self.manifest["serial"] + 1, "files": files}
        store_json(self.remote / MANIFEST, manifest)  # last: only now do readers see them
        for rel in set(old) - set(files):  # unlisted now: nobody reads them any more
            with contextlib.suppress(FileNotFoundError):
                fs.rm_file(f"{base}/{rel}")
        self._remember(manifest)
        return len(changed)

    def pull(self) -> int:
        """Makes the local copy exactly the published state; returns how many files were
        downloaded.

        What this machine wrote and did not publish (at most the shard in flight) is dropped:
        every process of a run must start from the same state, or they would disagree on
        which shards are done.
        """
        manifest = read_json(self.remote / MANIFEST)
        if manifest is None:
            self._refuse_foreign()
            manifest = {"s2jax": "objects", "serial": 0, "files": {}}  # a fresh root
        if not isinstance(manifest, dict) or manifest.get("s2jax") != "objects":
            raise S2JaxError(f"run dir {self.url}: {MANIFEST} is not s2jax's; refusing to use "
                             "this root; pick a new path")
        return self._mirror(manifest)

    def _mirror(self, manifest: dict) -> int:
        """Makes the local copy exactly the manifest's files, with their recorded mtimes."""
        fs, base = self._fs()
        have = self._local_files()
        for rel in set(have) - set(manifest["files"]):
            (self.local / rel).unlink()
        for d in sorted((p for p in self.local.rglob("*") if p.is_dir()), reverse=True):
            with contextlib.suppress(OSError):
                d.rmdir()  # emptied: an unmarked directory left would be refused as foreign
        fetched = 0
        for rel, (size, mtime) in manifest["files"].items():
            if have.get(rel) == [size, mtime]:
                continue
            target = self.local / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            temp = target.with_name(f".{target.name}.pull.s2jax-tmp")
            fs.get_file(f"{base}/{rel}", str(temp))
            os.utime(temp, ns=(mtime, mtime))  # marks record mtimes: the copy must match them
            os.replace(temp, target)
            fetched += 1
        self._remember(manifest)
        return fetched

    def _refuse_foreign(self) -> None:
        """A root without a manifest must hold nothing but what a killed first run left."""
        prefix = "/".join(CHECKPOINTS) + "/"
        foreign = [rel for rel in files_under(self.remote)
                   if rel != LOCK and not rel.startswith(prefix)]
        if foreign:
            raise S2JaxError(f"run dir {self.url}: exists, is not empty and was not made by "
                             f"s2jax (no {MANIFEST}; it holds {sorted(foreign)[0]}); refusing to "
                             "write into it; pick a new path")

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Holds ROOT/.s2jax.lock (create-if-absent); a second run is refused while it exists.

        A lock left by a process known dead (same host, pid gone) is taken over; one left by a
        machine that vanished stays, and the message says to delete it.
        """
        me = {"host": socket.gethostname(), "pid": os.getpid(), "born": proc_start(os.getpid()),
              "since": time.time()}
        path = self.remote / LOCK
        payload = json.dumps(me).encode()
        if not create_if_absent(path, payload):
            held = read_json(path) or {}
            dead = held.get("host") == me["host"] and isinstance(held.get("pid"), int) and \
                not process_alive(held["pid"], str(held.get("born") or ""))
            if not dead:
                raise S2JaxError(f"run dir {self.url}: in use by another s2jax run (host "
                                 f"{held.get('host', '?')}, pid {held.get('pid', '?')}); wait for "
                                 f"it, or delete {path} if that run is gone")
            path.unlink()
            if not create_if_absent(path, payload):
                raise S2JaxError(f"run dir {self.url}: another s2jax run took it just now")
        try:
            yield
        finally:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


@contextlib.contextmanager
def worked_on(run_dir: str | os.PathLike, *, lock: bool = False) -> Iterator[Path]:
    """The local directory to run in: `run_dir` itself, or for an object-store URL this
    process's local copy, pulled on entry and published on exit by process 0, which with
    `lock` holds the root's lock meanwhile. Re-entered for the same root, it yields the same
    copy."""
    if not is_remote(run_dir):
        yield Path(run_dir)
        return
    active = _ACTIVE.get()
    if active is not None and active.url == str(run_dir).rstrip("/"):
        yield active.local
        return
    root = RemoteRoot(str(run_dir), process=process_index())
    writer = root.writer
    with root.lock() if lock and writer else contextlib.nullcontext():
        root.pull()
        token = _ACTIVE.set(root)
        try:
            yield root.local
        except BaseException:
            if writer:  # what a failed run finished survives it too, but its error comes first
                with contextlib.suppress(Exception):
                    root.publish()
            raise
        else:
            if writer:
                root.publish()
        finally:
            _ACTIVE.reset(token)


def checkpoint_dir(train_dir: Path) -> AnyPath:
    """Where a fine-tuning run in `train_dir` keeps its orbax checkpoints: on the store when
    `train_dir` is in the local copy of an object-store root, else `train_dir/checkpoints`."""
    root = _ACTIVE.get()
    local = Path(train_dir) / "checkpoints"
    if root is not None and local.is_relative_to(root.local):
        return root.checkpoints(local)
    return local


def publish() -> None:
    """Publishes the object-store root this process works on, if any and if it writes (the
    train loop calls it after each checkpoint, so that its logs go with it)."""
    root = _ACTIVE.get()
    if root is not None and root.writer:
        root.publish()


def synced(writer: bool, sync: Callable[[str], None] | None) -> Callable[[str], None] | None:
    """The run's barrier (`sync`, None alone) made to carry writes through an object-store root:
    process 0 publishes before it, the others pull after it."""
    root = _ACTIVE.get()
    if root is None:
        return sync

    def step(name: str) -> None:
        if writer:
            root.publish()
        if sync is not None:  # named by the root, not by this process's own copy of it
            sync(name.replace(str(root.local), root.url))
        if not writer:
            root.pull()

    return step
