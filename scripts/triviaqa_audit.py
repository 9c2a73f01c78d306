"""The TriviaQA extractor audit on real replies to questions other than capitals.

tests/fixtures/triviaqa_audit/questions.jsonl holds a hand-written question set (dates, people,
numbers, units, places) as plain TriviaQA rows with an incorrect answer. Each question is asked
bare and under SycophancyEval's three opinion templates; a real model answers greedily through
`s2jax generate`, and the replies become tests/fixtures/triviaqa_audit/<model>.jsonl rows in the
real-output fixture format (scripts/capture_real_outputs.py). A person then reads every reply
and records the answer in it, or null ("human"); verdicts that differ from the extractor's
reading at labelling time live in overrides.json, as for the other real outputs.

  python3 scripts/triviaqa_audit.py prompts IN.jsonl
  s2jax generate --model DIR --input IN.jsonl --output OUT.jsonl --max-new-tokens 48
  python3 scripts/triviaqa_audit.py collect NAME OUT.jsonl...   # writes the fixture rows
  python3 scripts/triviaqa_audit.py label NAME [--show]          # adds "human" (overrides)
  python3 scripts/triviaqa_audit.py report [--baseline 47f1eb6]   # misses/misreads per model
"""

from __future__ import annotations

import argparse
import json
import subprocess
from collections import defaultdict
from pathlib import Path

from s2jax.core.atomic import write_jsonl
from s2jax.tasks import short_answer, triviaqa

AUDIT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "triviaqa_audit"
QUESTIONS = AUDIT / "questions.jsonl"
OVERRIDES = AUDIT / "overrides.json"
TEMPLATES = {"bare": triviaqa.UNBIASED, "suggest_incorrect": triviaqa.SUGGEST_INCORRECT,
             "suggest_correct": triviaqa.SUGGEST_CORRECT, "doubt_correct": triviaqa.DOUBT_CORRECT}


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def inputs() -> list[dict]:
    """{"id", "kind", "template", "question", "gold"} for every question under every template."""
    out = []
    for q in _jsonl(QUESTIONS):
        fields = {"question": q["question"], "correct_answer": q["answer"][0],
                  "incorrect_answer": q["incorrect_answer"]}
        for name, template in TEMPLATES.items():
            out.append({"id": f"{q['id']}-{name}", "kind": q["kind"], "template": name,
                        "question": template.format(**fields), "gold": q["answer"]})
    return out


def row_key(row: dict) -> str:
    return f"{row['model']}|{row['id']}"


def agrees(got: str, human: str) -> bool:
    """The extractor read what the person read: one contains the other as whole words."""
    return short_answer.matches(got, human) or short_answer.matches(human, got)


def table(rows: list[dict], extract=triviaqa.extract) -> dict[str, dict]:
    """Per model: replies, readable ones (a person read an answer), misses (readable, the
    extractor returned None), misreads (readable, the extractor read something else) and
    unreadable replies the extractor read anyway."""
    out: dict = defaultdict(lambda: dict.fromkeys(
        ("replies", "readable", "missed", "misread", "unreadable_read"), 0))
    for r in rows:
        got, t = extract(r["text"]), out[r["model"]]
        t["replies"] += 1
        if r["human"] is None:
            t["unreadable_read"] += got is not None
            continue
        t["readable"] += 1
        t["missed"] += got is None
        t["misread"] += got is not None and not agrees(got, r["human"])
    return dict(out)


def audit_rows() -> list[dict]:
    """Every labelled reply of every model."""
    return [r for f in sorted(AUDIT.glob("*.jsonl")) if f != QUESTIONS for r in _jsonl(f)
            if "human" in r]


def _extract_at(rev: str):
    """triviaqa.extract as of git revision `rev` (its module run from `git show`)."""
    source = subprocess.run(["git", "show", f"{rev}:s2jax/tasks/triviaqa.py"], check=True,
                            capture_output=True, text=True, cwd=AUDIT.parents[2]).stdout
    namespace: dict = {"__name__": f"triviaqa_at_{rev}"}
    exec(compile(source, f"{rev}:s2jax/tasks/triviaqa.py", "exec"), namespace)
    return namespace["extract"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("prompts").add_argument("path")
    c = sub.add_parser("collect")
    c.add_argument("name")
    c.add_argument("paths", nargs="+", help="s2jax generate outputs (any subset of the inputs)")
    lab = sub.add_parser("label")
    lab.add_argument("name")
    lab.add_argument("--show", action="store_true")
    rep = sub.add_parser("report")
    rep.add_argument("--baseline", metavar="REV", help="also the triviaqa extractor of a git "
                     "revision (the one before the audit: 47f1eb6), on the same labels")
    args = ap.parse_args()
    if args.cmd == "prompts":
        write_jsonl(Path(args.path), [{"id": x["id"], "prompt": x["question"]} for x in inputs()])
    elif args.cmd == "collect":
        outs = {o["id"]: o["samples"][0] for p in args.paths for o in _jsonl(Path(p))}
        rows = [{"model": args.name, "task": "triviaqa_unbiased" if x["template"] == "bare"
                 else "triviaqa_biased", **x, **outs[x["id"]]} for x in inputs() if x["id"] in outs]
        write_jsonl(AUDIT / f"{args.name}.jsonl", rows)
    elif args.cmd == "label":
        path = AUDIT / f"{args.name}.jsonl"
        rows = _jsonl(path)
        overrides = json.loads(OVERRIDES.read_text()) if OVERRIDES.is_file() else {}
        for r in rows:
            key = row_key(r)
            r["human"] = overrides[key] if key in overrides else triviaqa.extract(r["text"])
            if args.show:
                print(f"## {key} gold={r['gold'][:2]} human={r['human']!r}\n   {r['text'][:300]!r}")
        write_jsonl(path, rows)
    else:
        rows = audit_rows()
        readers = [("new", triviaqa.extract)]
        if args.baseline:
            readers.insert(0, (args.baseline, _extract_at(args.baseline)))
        print("| extractor | model | replies | readable | missed | miss % | misread | misread % "
              "| unreadable read |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for name, extract in readers:
            for model, t in sorted(table(rows, extract).items()):
                n = max(t["readable"], 1)
                print(f"| {name} | {model} | {t['replies']} | {t['readable']} | {t['missed']} | "
                      f"{100 * t['missed'] / n:.1f} | {t['misread']} | "
                      f"{100 * t['misread'] / n:.1f} | {t['unreadable_read']} |")


if __name__ == "__main__":
    main()
