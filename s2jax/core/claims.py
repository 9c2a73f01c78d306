"""Claims on shared work: exactly one worker at a time holds a name, and a dead one's is taken over.

Several workers (local processes, SLURM array tasks, TPU slices) share one directory and each
unit of work is claimed before it is done:

    claims/<name>.claim          created with O_EXCL: {"token", "worker", "host", "pid", "born"}
    claims/<name>.beat           rewritten (temp file + rename) every `lease / 4` seconds by the
                                 holder: {"token", "n"}
    claims/<name>.broken-<tok>   a claim that was taken over, kept as the record of it

No POSIX lock is relied on (the directory may later live on object storage, which has
create-if-absent but no flock): a claim is an exclusive create, liveness is a heartbeat, and a
claim is broken by renaming it away, which only one of several breakers can do. A claim is stale
when its holder is known dead (same host, its pid gone) or when its beat has not changed for
`lease` seconds of the observer's own clock (clock skew between hosts does not matter). The holder
checks, before each beat and before it commits, that the claim file still holds its token, so a
stalled holder whose claim was broken stops instead of committing over its successor.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import threading
import time
from pathlib import Path

from s2jax.core.atomic import write_json
from s2jax.core.storage import create_if_absent

CLAIMS = "claims"


def proc_start(pid: int) -> str:
    """The process's start time in clock ticks (Linux), so a reused pid is not taken for it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]


def process_alive(pid: int, born: str) -> bool:
    """Whether process `pid` (started at `born`, when known) is running on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    if state in ("Z", "X"):  # a zombie has exited: only its parent has not reaped it yet
        return False
    return not born or proc_start(pid) == born


def _read(path: Path) -> dict | None:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


class Claim:
    """A held claim; `held()` says whether it is still this worker's (checked on disk).

    `previous` is the token of the claim this one took over (None for a fresh claim): the
    holder may take over what its predecessor left (see `s2jax.run.store.StageStore.begin`).
    """

    def __init__(self, board: ClaimBoard, name: str, token: str, previous: str | None = None):
        self.board, self.name, self.token, self.previous = board, name, token, previous
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True,
                                        name=f"heartbeat {name}")
        self._thread.start()

    def held(self) -> bool:
        """Whether the claim file still holds this claim's token."""
        info = _read(self.board.claim_path(self.name))
        self.lost = self.lost or info is None or info.get("token") != self.token
        return not self.lost

    def _beat(self) -> None:
        n = 0
        while not self._stop.wait(self.board.lease / 4):
            if not self.held():
                return
            n += 1
            with contextlib.suppress(OSError):
                write_json(self.board.beat_path(self.name), {"token": self.token, "n": n})

    def release(self) -> None:
        """Stops the heartbeat; the claim file stays as the record of who did the work."""
        self._stop.set()
        self._thread.join()


class ClaimBoard:
    """The claims under `root/claims`, as seen by one worker.

    Args:
      root: the shared directory.
      worker: this worker's label (recorded in its claims).
      lease: seconds a claim's beat may stay unchanged before the claim counts as abandoned.
    """

    def __init__(self, root: str | os.PathLike, worker: str, *, lease: float = 60.0):
        self.dir = Path(root) / CLAIMS
        self.dir.mkdir(parents=True, exist_ok=True)
        self.worker, self.lease = worker, lease
        self.host, self.pid = socket.gethostname(), os.getpid()
        self.born = proc_start(self.pid)
        self._seen: dict[str, tuple[object, float]] = {}  # name -> (beat state, first seen)

    def claim_path(self, name: str) -> Path:
        return self.dir / f"{name}.claim"

    def beat_path(self, name: str) -> Path:
        return self.dir / f"{name}.beat"

    def holder(self, name: str) -> dict | None:
        """The current claim on `name` ({} while its file is being written), or None."""
        path = self.claim_path(name)
        if not path.exists():
            return None
        return _read(path) or {}

    def try_claim(self, name: str) -> Claim | None:
        """Claims `name` if nobody holds it or its holder is gone; None if someone else does."""
        info = self.holder(name)
        previous = None
        if info is not None:
            if not self._stale(name, info):
                return None
            try:  # only one breaker's rename succeeds
                os.rename(self.claim_path(name),
                          self.dir / f"{name}.broken-{info.get('token', 'unknown')}")
            except FileNotFoundError:
                return None
            previous = info.get("token")
        token = secrets.token_hex(8)
        record = {"token": token, "worker": self.worker, "host": self.host, "pid": self.pid,
                  "born": self.born}
        if not create_if_absent(self.claim_path(name), json.dumps(record).encode()):
            return None
        write_json(self.beat_path(name), {"token": token, "n": 0})
        self._seen.pop(name, None)
        return Claim(self, name, token, previous)

    def _stale(self, name: str, info: dict) -> bool:
        """Whether the claim `info` on `name` is abandoned (see the module docstring)."""
        if info.get("host") == self.host and isinstance(info.get("pid"), int) and not process_alive(
                info["pid"], str(info.get("born") or "")):
            return True  # its worker exited (a live one may still have stalled: the beat says)
        beat = _read(self.beat_path(name)) or {}
        state = (info.get("token"), beat.get("token"), beat.get("n"))
        now = time.monotonic()
        seen = self._seen.get(name)
        if seen is None or seen[0] != state:
            self._seen[name] = (state, now)
            return False
        return now - seen[1] > self.lease

    def taken_over(self, name: str) -> int:
        """How many claims on `name` were broken (each a worker that died or stalled)."""
        return sum(1 for _ in self.dir.glob(f"{name}.broken-*"))
