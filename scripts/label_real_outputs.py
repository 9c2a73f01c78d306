"""Adds the answer a person reads to each captured real output (the "human" field).

A person reads every final output (and every USC selection) and writes down the answer in it,
or null when none can be read. To make that review fast the current extractor's reading is
shown first; the person's verdicts that differ from it are kept in
tests/fixtures/real_outputs/overrides.json ({row key: answer or null}), so the labels do not
drift when the extractor changes. `--show` prints the rows to review.

  PYTHONPATH=$PWD python3 scripts/label_real_outputs.py NAME.jsonl [--show]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from extraction_report import FIXTURES, read

from s2jax.core.atomic import write_jsonl

OVERRIDES = FIXTURES / "overrides.json"


def row_key(row: dict) -> str:
    return f"{row['model']}|{row['method']}|n{row['n']}|{row['id']}|{row['sample']}|{row['stage']}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name")
    ap.add_argument("--show", action="store_true")
    args = ap.parse_args()
    path = FIXTURES / args.name
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    overrides = json.loads(OVERRIDES.read_text()) if OVERRIDES.is_file() else {}
    for row in rows:
        if not (row["final"] or row["stage"] == "usc"):
            continue
        key = row_key(row)
        if "human" not in row:
            row["human"] = overrides[key] if key in overrides else read(row)
        if args.show:
            print(f"## {key}\n   gold={row['gold']} read={read(row)!r} human={row['human']!r}\n"
                  f"   {row['text'][:400]!r}")
    write_jsonl(Path(path), rows)


if __name__ == "__main__":
    main()
