"""Where a run's metrics go: `metrics.jsonl` (one row per logged step) and TensorBoard events.

`metrics.jsonl` is an append-only log, flushed row by row so that a killed run keeps what it
logged. On resume it is first rewritten (atomically) without the rows past the restored step, so
the log reads as one run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from s2jax.core.atomic import write_jsonl
from s2jax.core.errors import S2JaxError


def _rows(path: Path) -> list[dict]:
    """The rows of a metrics.jsonl; a torn last line (the run was killed mid-write) is dropped."""
    lines = path.read_bytes().decode("utf-8", errors="replace").splitlines()
    rows = []
    for n, line in enumerate(lines, start=1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if isinstance(row, dict):
            rows.append(row)
        elif n < len(lines):
            raise S2JaxError(f"{path}:{n}: not a metrics row (expected a JSON object); move "
                             "the file away to resume")
    return rows


TB = "tb"  # the TensorBoard directory under a run (`s2jax.run.tb_results` adds to it too)


def summary_writer():
    """tensorboardX's `SummaryWriter`, imported without torch when torch is not loaded yet.

    tensorboardX imports torch, where installed, only to accept its tensors (and imports it
    again when handed one); that was 3 s at the start of every training process, for scalars.
    """
    if "torch" in sys.modules or "tensorboardX" in sys.modules:
        # imported here, when a run logs: 0.5 s of start-up the other commands need not pay
        from tensorboardX import SummaryWriter

        return SummaryWriter
    sys.modules["torch"] = None  # `import torch` raises ImportError, which tensorboardX expects
    try:
        from tensorboardX import SummaryWriter
    finally:
        if "torch" in sys.modules and sys.modules["torch"] is None:
            del sys.modules["torch"]
    return SummaryWriter


class MetricsLog:
    """Appends {"step", name: value, ...} rows; mirrors scalars to TensorBoard under <dir>/tb.

    In a multi-process run only the writer (process 0) logs; the others get a no-op log.
    """

    def __init__(self, run_dir: str | Path, resume_step: int = 0, writer: bool = True):
        SummaryWriter = summary_writer()  # TensorBoard's writer only when it is asked for
        self.enabled = writer
        if not writer:
            return
        self.path = Path(run_dir) / "metrics.jsonl"
        if self.path.exists():
            kept = [r for r in _rows(self.path) if r.get("step", 0) <= resume_step]
            write_jsonl(self.path, kept)
        self.file = self.path.open("a", encoding="utf-8")
        self.tb = SummaryWriter(str(Path(run_dir) / TB), purge_step=resume_step + 1)

    def write(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        self.file.write(json.dumps({"step": step, **values}) + "\n")
        self.file.flush()
        for name, value in values.items():
            self.tb.add_scalar(name, value, step)

    def close(self) -> None:
        if not self.enabled:
            return
        self.file.close()
        self.tb.close()
