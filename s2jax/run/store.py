"""The stage store of a sweep root: each stage's artifact once, committed by an atomic rename.

    ROOT/stages/<id>/            a committed stage: stage.json (its kind and spec), its outputs,
                                 and log/ (timings, shard indices, training logs: everything that
                                 may differ between two runs of the same stage)
    ROOT/stages/.<id>.<token>.partial/
                                 a stage being computed by the holder of claim <token>; whoever
                                 takes a dead or stalled holder's claim over renames its
                                 directory to its own token and resumes from its finished shards
                                 and checkpoints (the rename fences the old holder off: its next
                                 write finds no directory)
    ROOT/claims/                 who computes what (`s2jax.core.claims`)
    ROOT/log/<worker>.jsonl      each worker's events: claim, commit, skip, fail

A stage directory appears under its final name only when complete (a rename of the partial
directory), so a reader never sees half an artifact, and everything in it outside log/ is a
function of its spec: two sweeps that compute the same stage write the same bytes.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from s2jax.core.atomic import write_json
from s2jax.core.claims import Claim, ClaimBoard
from s2jax.core.errors import S2JaxError
from s2jax.core.jsonl import read_objects

STAGES = "stages"
STAGE_JSON = "stage.json"
LOG = "log"
RESERVED = (STAGES, "claims", LOG)  # names an arm may not have


class ClaimLost(S2JaxError):
    """This worker stalled past its lease and another took its stage over (not a failure)."""


class StageStore:
    """The stages under `root/stages`."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.dir = self.root / STAGES

    def path(self, sid: str) -> Path:
        return self.dir / sid

    def partial(self, sid: str, token: str) -> Path:
        return self.dir / f".{sid}.{token}.partial"

    def done(self, sid: str) -> bool:
        return (self.path(sid) / STAGE_JSON).is_file()

    def info(self, sid: str) -> dict:
        return json.loads((self.path(sid) / STAGE_JSON).read_text(encoding="utf-8"))

    def sample_counts(self, family: str) -> list[int]:
        """N of every committed generate stage of `family` (its id less N)."""
        out = []
        for p in self.dir.glob(f"generate-{family}-n*"):
            if (p / STAGE_JSON).is_file():
                out.append(int(p.name.rsplit("-n", 1)[1]))
        return sorted(out)

    def begin(self, sid: str, claim: Claim) -> tuple[Path, bool]:
        """(the claim's partial directory of `sid`, whether it resumes its predecessor's)."""
        work = self.partial(sid, claim.token)
        resumed = False
        if claim.previous is not None and self.partial(sid, claim.previous).is_dir():
            os.rename(self.partial(sid, claim.previous), work)
            resumed = True
        (work / LOG).mkdir(parents=True, exist_ok=True)
        return work, resumed

    def commit(self, sid: str, kind: str, spec: dict, claim: Claim) -> Path:
        """Writes stage.json and renames the partial directory into place.

        Raises S2JaxError when the claim was lost (another worker took the stage over after
        this one stalled): its successor commits, this worker's copy is dropped.
        """
        work = self.partial(sid, claim.token)
        write_json(work / STAGE_JSON, {"id": sid, "kind": kind, "spec": spec})
        if not claim.held():
            raise ClaimLost(f"stage {sid}: this worker's claim was taken over (it stalled for "
                            "longer than the lease); its successor commits the stage")
        os.rename(work, self.path(sid))
        return self.path(sid)

    def rows(self, sid: str, name: str = "rows.jsonl") -> list[dict]:
        path = self.path(sid) / name
        return [obj for _, obj in read_objects(path, "stage rows")] if path.stat().st_size else []


def move_into_log(work: Path, names: Sequence[str]) -> None:
    """Moves what may differ between two runs of a stage (timings, indices) into log/."""
    for name in names:
        src = work / name
        if src.exists():
            dst = work / LOG / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            if dst.exists():
                shutil.rmtree(dst) if dst.is_dir() else dst.unlink()
            os.replace(src, dst)


class EventLog:
    """One worker's event lines (its own file: no two processes append to one file)."""

    def __init__(self, root: Path, worker: str):
        self.path = root / LOG / f"{worker}.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def __call__(self, event: str, sid: str, **extra) -> None:
        line = {"t": time.time(), "event": event, "stage": sid, **extra}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")


def events(root: str | os.PathLike) -> list[dict]:
    """Every worker's events, in time order."""
    out = []
    for path in sorted((Path(root) / LOG).glob("*.jsonl")):
        worker = path.stem
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                out.append({**json.loads(line), "worker": worker})
            except json.JSONDecodeError:
                continue  # a line torn by a kill
    return sorted(out, key=lambda e: e["t"])


__all__ = ["ClaimBoard", "ClaimLost", "EventLog", "StageStore", "events", "move_into_log"]
