"""Reads the captured real outputs (tests/fixtures/real_outputs/*.jsonl) with the task
extractors and prints, per model, task and method: outputs, how many a person can read an
answer in, how many of those the extractor abstains on, and how many it reads differently.

  PYTHONPATH=$PWD python3 scripts/extraction_report.py [--markdown]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from s2jax.methods.usc import parse_choice
from s2jax.tasks import TASKS, Example

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "real_outputs"


def rows(path: Path = FIXTURES) -> list[dict]:
    """Every labelled row of every fixture file (rows with a "human" field)."""
    out = []
    for f in sorted(path.glob("*.jsonl")):
        out += [r for r in map(json.loads, f.read_text().splitlines()) if "human" in r]
    return out


def read(row: dict):
    """What s2jax reads from a row: the USC choice index, or the task's extracted answer."""
    if row["stage"] == "usc":
        return parse_choice(row["text"], row["n"])
    return TASKS[row["task"]].extract(row["text"])


def agrees(row: dict, got) -> bool:
    if row["stage"] == "usc" or got is None:
        return got == row["human"]
    key = TASKS[row["task"]].key
    return key(got) == key(row["human"])


def table(labelled: list[dict]) -> list[dict]:
    """One line per (model, task, method, stage kind) with the counts."""
    groups = defaultdict(list)
    for r in labelled:
        groups[(r["model"], r["task"], r["method"], "usc" if r["stage"] == "usc" else "answer",
                r["n"])].append(r)
    out = []
    for (model, task, method, kind, n), rs in sorted(groups.items()):
        readable = [r for r in rs if r["human"] is not None]
        got = [read(r) for r in readable]
        out.append({"model": model, "task": task, "method": method, "kind": kind, "n": n,
                    "outputs": len(rs), "readable": len(readable),
                    "abstained": sum(g is None for g in got),
                    "misread": sum(g is not None and not agrees(r, g)
                                   for r, g in zip(readable, got, strict=True)),
                    "unreadable_read": sum(read(r) is not None for r in rs
                                           if r["human"] is None)})
    return out


def greedy_accuracy(labelled: list[dict]) -> list[dict]:
    """The greedy (n=1) check: accuracy and generated tokens per answer of every model, task,
    method and template in the captured outputs (tokens: every stage of the program)."""
    tokens: dict = defaultdict(int)
    for r in labelled_and_stages(labelled):
        tokens[(r["model"], r["method"], r["id"])] += r["num_tokens"]
    groups = defaultdict(list)
    for r in labelled:
        if r["n"] == 1 and r["stage"] != "usc":
            template = r["id"].rsplit("-", 1)[-1] if r["task"] == "capitals" else ""
            groups[(r["model"], r["task"], template, r["method"])].append(r)
    out = []
    for (model, task, template, method), rs in sorted(groups.items()):
        t = TASKS[task]
        scores = [t.score(t.extract(r["text"]), Example(r["id"], {}, tuple(r["gold"])))
                  for r in rs]
        out.append({"model": model, "task": task, "template": template, "method": method,
                    "inputs": len(rs), "accuracy": 100.0 * sum(scores) / len(rs),
                    "tokens": sum(tokens[(model, method, r["id"])] for r in rs) / len(rs)})
    return out


def labelled_and_stages(labelled: list[dict]) -> list[dict]:
    """Every n=1 row (all stages) of the fixture files the labelled rows come from."""
    models = {r["model"] for r in labelled}
    out = []
    for f in sorted(FIXTURES.glob("*.jsonl")):
        out += [r for r in map(json.loads, f.read_text().splitlines())
                if r["model"] in models and r["n"] == 1]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--accuracy", action="store_true", help="print the greedy check instead")
    args = ap.parse_args()
    if args.accuracy:
        print("| model | task | template | method | inputs | accuracy % | tokens/answer |")
        print("|---|---|---|---|---:|---:|---:|")
        for a in greedy_accuracy(rows()):
            print(f"| {a['model']} | {a['task']} | {a['template']} | {a['method']} | "
                  f"{a['inputs']} | {a['accuracy']:.1f} | {a['tokens']:.1f} |")
        return
    lines = table(rows())
    head = ["model", "task", "method", "kind", "n", "outputs", "readable", "abstained",
            "misread", "unreadable_read"]
    if args.markdown:
        print("| " + " | ".join(head) + " | abstention % |")
        print("|" + "---|" * (len(head) + 1))
    for line in lines:
        rate = 100.0 * line["abstained"] / max(line["readable"], 1)
        cells = [str(line[h]) for h in head] + [f"{rate:.1f}"]
        print(("| " + " | ".join(cells) + " |") if args.markdown else "  ".join(cells))


if __name__ == "__main__":
    main()
