"""Issue 24's on-policy arm: choose the rounds on validation, then read the test split once.

  # 1. after `s2jax run configs/real/s2a_capitals_onpolicy.py:{sft,onpolicy}` (validation only):
  PYTHONPATH=$PWD python3 scripts/real_onpolicy.py validation --sft RUN --onpolicy RUN --out DIR
  # 2. once, with the round step 1 chose (pre-registered: docs/real_preregistration.md):
  PYTHONPATH=$PWD python3 scripts/real_onpolicy.py test --sft RUN --onpolicy RUN --out DIR

`validation` evaluates every on-policy round's exported model (System 1, greedy) on the
validation countries under the template distilled on, reads the SFT model's accuracy there from
its run's results.json (its run evaluates on validation), and picks the round whose accuracy is
nearest SFT's (ties: the fewest rounds): DIR/validation.json. `test` evaluates the base model,
the SFT model and the chosen round's model on the test countries under the distilled template
and the bare question, and computes the registered criterion with `s2jax.report.stats`:
DIR/rows/*.jsonl (per-item rows, resumable: a finished file is kept), DIR/verdict.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import s2jax
from s2jax.core.atomic import write_json, write_jsonl
from s2jax.core.text_generator import SamplingParams
from s2jax.distill.evaluate import score_examples
from s2jax.methods.catalog import SYSTEM1, method
from s2jax.report import stats
from s2jax.sampling import Sampler
from s2jax.tasks import TASKS, load_examples

TARGET, BARE = "suggest_incorrect", "bare"
MATCH = 3.0  # points: "matched accuracy on the distilled template"


def _config(run: Path) -> dict:
    return json.loads((run / "config.json").read_text())["config"]


def _rounds(run: Path) -> list[Path]:
    return sorted(p / "train" / "model" for p in (run / "onpolicy").glob("round_*"))


class Evaluator:
    """System 1 of several models of one base, greedy, on one sampler (weights swapped)."""

    def __init__(self, config: dict):
        self.config, self.task = config, TASKS[config["task"]]
        self.params = SamplingParams(**config["eval_sampling"])
        self.program = method(SYSTEM1, self.task.system1)
        self.sampler = None  # the model loads when a row file is first missing

    def _load(self) -> None:
        config = self.config
        model, tok = s2jax.load(config["model"], dtype=config["dtype"])
        self.sampler = Sampler(model, tok, max_batch=config["max_batch"],
                               max_len=config["max_len"], chat=config["chat"])
        self.base = model.params()

    def rows(self, weights: Path | None, split: str, template: str, path: Path) -> list[dict]:
        if path.is_file():
            return [json.loads(x) for x in path.read_text().splitlines()]
        start = time.perf_counter()
        if self.sampler is None:
            self._load()
        params = self.base if weights is None else \
            s2jax.load(weights, dtype=self.config["dtype"])[0].params()
        self.sampler.set_params(params)
        exs = load_examples(self.task, split=f"{split}:{template}",
                            seed=self.config["test"]["seed"])
        rows = score_examples(self.program, self.task, exs, self.sampler, self.params,
                              chat=self.config["chat"], split=split)
        write_jsonl(path, rows)
        print(f"{path.name}: {_acc(rows):.1f}% of {len(rows)} "
              f"({time.perf_counter() - start:.0f} s)", flush=True)
        return rows


def _acc(rows) -> float:
    return 100.0 * sum(r["score"] for r in rows) / len(rows)


def validation(args) -> dict:
    sft = json.loads((Path(args.sft) / "results.json").read_text())
    sft_acc = next(r["accuracy"] for r in sft["rows"] if r["system"] == "distilled")
    ev = Evaluator(_config(Path(args.onpolicy)))
    out = Path(args.out)
    accs = {}
    for r, model in enumerate(_rounds(Path(args.onpolicy)), start=1):
        path = out / "rows" / f"validation.onpolicy_r{r}.jsonl"
        rows = ev.rows(model, "validation", TARGET, path)
        accs[r] = _acc(rows)
    chosen = min(accs, key=lambda r: (abs(accs[r] - sft_acc), r))
    result = {"sft_validation_accuracy": sft_acc, "onpolicy_validation_accuracy": accs,
              "chosen_rounds": chosen, "rule": "nearest SFT's validation accuracy on "
              f"{TARGET}; ties: fewest rounds"}
    write_json(out / "validation.json", result)
    return result


def _pct_interval(ci: stats.Interval) -> list[float]:
    return [round(100 * ci.estimate, 1), round(100 * ci.low, 1), round(100 * ci.high, 1)]


def _paired(a, b) -> dict:
    """a - b over the same items: the difference, its paired bootstrap interval, McNemar."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    ci = stats.paired_bootstrap(a, b)
    only_a, only_b = int(((a == 1) & (b == 0)).sum()), int(((a == 0) & (b == 1)).sum())
    return {"difference": _pct_interval(ci), "only_a": only_a, "only_b": only_b,
            "mcnemar_p": stats.mcnemar_exact(only_a, only_b)}


def criterion(scores: dict[str, dict[str, list[float]]]) -> dict:
    """The registered criterion from per-item scores {system: {template: [0/1 by item]}}."""
    acc = {s: {t: 100 * float(np.mean(v)) for t, v in ts.items()} for s, ts in scores.items()}
    n = {t: len(v) for t, v in scores["base"].items()}
    wil = {s: {t: _pct_interval(stats.wilson(sum(v), len(v))) for t, v in ts.items()}
           for s, ts in scores.items()}
    base, sft, op = (np.asarray(scores[s][BARE], float) for s in ("base", "sft", "onpolicy"))
    drop_sft = acc["base"][BARE] - acc["sft"][BARE]
    drop_op = acc["base"][BARE] - acc["onpolicy"][BARE]
    matched = abs(acc["onpolicy"][TARGET] - acc["sft"][TARGET]) <= MATCH
    # drop_op <= drop_sft / 2  <=>  sum(2 op - base - sft) >= 0, per item: one paired interval;
    # decided in whole countries (on the same items), so a tie is not lost to rounding
    margin = _paired(2 * op - base, sft)
    lost_sft, lost_op = int(base.sum() - sft.sum()), int(base.sum() - op.sum())
    halved = lost_sft > 0 and 2 * lost_op <= lost_sft
    return {
        "n": n, "accuracy": acc, "wilson": wil,
        "matched": {"onpolicy_minus_sft": _paired(scores["onpolicy"][TARGET],
                                                   scores["sft"][TARGET]),
                    "within": MATCH, "holds": matched},
        "bare_drop": {"sft": drop_sft, "onpolicy": drop_op, "countries_lost_net":
                      {"sft": lost_sft, "onpolicy": lost_op},
                      "sft_vs_base": _paired(scores["base"][BARE], scores["sft"][BARE]),
                      "onpolicy_vs_base": _paired(scores["base"][BARE], scores["onpolicy"][BARE]),
                      "sft_drop_minus_2x_onpolicy_drop": margin["difference"],
                      "holds": halved, "sft_dropped": lost_sft > 0},
        "target_vs_base": {s: _paired(scores[s][TARGET], scores["base"][TARGET])
                           for s in ("sft", "onpolicy")},
        "verdict": "PASS" if matched and halved else "FAIL",
    }


def _cell(w: list[float]) -> str:
    return f"{w[0]:.1f} [{w[1]:.1f}, {w[2]:.1f}]"


def _diff(d: dict) -> str:
    return (f"{_cell(d['difference'])} ({d['only_a']} / {d['only_b']} countries; McNemar p "
            f"{d['mcnemar_p']:.2g})")


def render(result: dict) -> str:
    """The verdict and the tables, markdown."""
    n, w, drop = result["n"], result["wilson"], result["bare_drop"]
    names = {"base": "base System 1", "sft": "SFT distilled (LoRA)",
             "onpolicy": f"on-policy distilled (LoRA, {result['chosen_rounds']} rounds)"}
    lines = [f"**{result['verdict']}**: matched accuracy (within {MATCH:.0f} points on "
             f"{TARGET}) {'holds' if result['matched']['holds'] else 'fails'}; on-policy's bare "
             f"drop {drop['onpolicy']:.1f} vs SFT's {drop['sft']:.1f} (at most half: "
             f"{'holds' if drop['holds'] else 'fails'}).", "",
             f"| model | {TARGET} ({n[TARGET]}) | bare ({n[BARE]}) |", "|---|---:|---:|"]
    lines += [f"| {names[s]} | {_cell(w[s][TARGET])} | {_cell(w[s][BARE])} |" for s in names]
    lines += ["", "| paired (points, 95% bootstrap; countries only the first / only the second "
              "got right) | |", "|---|---|",
              f"| on-policy - SFT, {TARGET} | {_diff(result['matched']['onpolicy_minus_sft'])} |",
              f"| SFT's bare drop (base - SFT) | {_diff(drop['sft_vs_base'])} |",
              f"| on-policy's bare drop (base - on-policy) | {_diff(drop['onpolicy_vs_base'])} |",
              f"| SFT's drop - 2 x on-policy's (>= 0: H holds) | "
              f"{_cell(drop['sft_drop_minus_2x_onpolicy_drop'])} |",
              f"| SFT - base, {TARGET} | {_diff(result['target_vs_base']['sft'])} |",
              f"| on-policy - base, {TARGET} | {_diff(result['target_vs_base']['onpolicy'])} |"]
    return "\n".join(lines) + "\n"


def test(args) -> dict:
    out = Path(args.out)
    chosen = json.loads((out / "validation.json").read_text())["chosen_rounds"]
    models = {"base": None, "sft": Path(args.sft) / "train" / "model",
              "onpolicy": _rounds(Path(args.onpolicy))[chosen - 1]}
    ev = Evaluator(_config(Path(args.onpolicy)))
    scores, items = {}, {}
    for system, weights in models.items():
        scores[system] = {}
        for template in (TARGET, BARE):
            path = out / "rows" / f"test.{system}.{template}.jsonl"
            rows = sorted(ev.rows(weights, "test", template, path), key=lambda r: r["item"])
            if items.setdefault(template, [r["item"] for r in rows]) != [r["item"] for r in rows]:
                raise SystemExit(f"{path}: not the items of the other systems' rows")
            scores[system][template] = [r["score"] for r in rows]
    result = {"chosen_rounds": chosen, **criterion(scores)}
    write_json(out / "verdict.json", result)
    (out / "verdict.md").write_text(render(result))
    print(render(result))
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("phase", choices=("validation", "test"))
    ap.add_argument("--sft", required=True, help="the SFT arm's run dir")
    ap.add_argument("--onpolicy", required=True, help="the on-policy arm's run dir")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    start = time.perf_counter()
    result = (validation if args.phase == "validation" else test)(args)
    print(json.dumps(result, indent=1))
    print(f"wall {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
