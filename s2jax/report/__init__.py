"""`s2jax report`: accuracy, tokens and paired statistics of runs, from their per-item rows.

No JAX here (numpy, matplotlib): a report is recomputed anywhere the rows are.

    rows     the per-item evaluation row (the schema) and its reader
    stats    Wilson, exact McNemar, clustered paired bootstrap, non-inferiority, Holm, seeds
    arms     an arm (one run: rows per system, seed, recipe, exploratory mark); run dir -> arm
    build    arms -> report.json's figures
    render   figures -> report.md, report.png
    files    atomic writes into the report root, refusing files s2jax did not write

Typical use: `report_root(ROOT)` (what `s2jax report ROOT` and the end of `s2jax run` call), or
`build_report([Arm(...), ...], ReportSettings(margin=10))` then `write_report(ROOT, report)`
for arms a caller assembled itself.
"""

from s2jax.report.arms import Arm, arms_of, find_arms, load_arm
from s2jax.report.build import ReportSettings, build_report
from s2jax.report.files import report_root, write_report
from s2jax.report.rows import ItemRow, parse_row, read_rows

__all__ = ["Arm", "ItemRow", "ReportSettings", "arms_of", "build_report", "find_arms", "load_arm",
           "parse_row", "read_rows", "report_root", "write_report"]
