"""report.md, report.json and report.png in a report root: written atomically, and only over
report files that s2jax wrote (each carries a mark: an HTML comment, a JSON field, a PNG text
chunk); a user's own file of that name is refused, never replaced."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from s2jax.core.atomic import atomic_open
from s2jax.core.errors import S2JaxError
from s2jax.report.arms import Arm, find_arms
from s2jax.report.build import WRITTEN_BY, ReportSettings, build_report
from s2jax.report.render import MD_MARK, chart, markdown

NAMES = ("report.md", "report.json", "report.png")
_PNG = b"\x89PNG\r\n\x1a\n"


def _ours(path: Path) -> bool:
    """Whether the existing report file `path` carries s2jax's mark."""
    data = path.read_bytes()
    if path.suffix == ".md":
        return data.startswith(MD_MARK.encode())
    if path.suffix == ".json":
        try:
            obj = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return False
        return isinstance(obj, dict) and obj.get("written_by") == WRITTEN_BY
    return data.startswith(_PNG) and b"Software\x00" + WRITTEN_BY.encode() in data


def check_replaceable(root: Path) -> None:
    """Refuses (before anything is written) a report file s2jax did not write."""
    for name in NAMES:
        path = root / name
        if path.is_dir() or (path.exists() and not _ours(path)):
            raise S2JaxError(f"{path}: exists and was not written by s2jax report; refusing "
                             "to replace it (move it away)")
    if not os.access(root, os.W_OK | os.X_OK):
        raise S2JaxError(f"{root}: not writable (the report is written into the root)")


def write_report(root: str | os.PathLike, report: Mapping, *,
                 title: str | None = None) -> list[Path]:
    """Renders `report` and writes report.md, .json and .png into `root`, each atomically.

    Everything is rendered before the first file is written, so a failure leaves the old files.
    Returns the paths written.
    """
    root = Path(root)
    check_replaceable(root)
    title = title or root.resolve().name
    blobs = {"report.md": markdown(report, title).encode("utf-8"),
             "report.json": (json.dumps(report, indent=2, ensure_ascii=False) + "\n").encode(),
             "report.png": chart(report, title)}
    for name, blob in blobs.items():
        with atomic_open(root / name, "wb") as f:
            f.write(blob)
    return [root / n for n in NAMES]


def report_root(root: str | os.PathLike, settings: ReportSettings | None = None, *,
                arms: Sequence[Arm] | None = None) -> tuple[dict, list[Path]]:
    """Builds and writes the report of `root` (a run dir or a dir of run dirs).

    Args:
      root: where the report goes; its arms are read from it unless `arms` is given.
      settings: margin, level, resamples, seed (default: `ReportSettings()`).
      arms: the arms, when the caller has them already (a sweep's).

    Returns:
      (report.json's contents, the paths written).
    """
    root = Path(root)
    arms = find_arms(root) if arms is None else arms
    check_replaceable(root)  # before the bootstrap: a refused root fails at once
    report = build_report(arms, settings or ReportSettings())
    return report, write_report(root, report)
