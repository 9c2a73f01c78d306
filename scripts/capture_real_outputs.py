"""Captures real outputs of a real model on every task and method the real experiment uses, once.

The outputs become fixtures (tests/fixtures/real_outputs/<model>.jsonl) that the extractors are
tested against; `scripts/label_real_outputs.py` adds the answer a person reads in each. Inputs
come from the validation splits only (never test). Every stage of every program runs batched
across tasks (one sampler call per stage depth), so a capture costs a few hundred decode steps.

  PYTHONPATH=$PWD python3 scripts/capture_real_outputs.py MODEL_DIR NAME [--countries 14]
"""

from __future__ import annotations

import argparse
import dataclasses
import threading
import time
from pathlib import Path

import s2jax
from s2jax.core.atomic import write_jsonl
from s2jax.core.text_generator import SamplingParams
from s2jax.methods.catalog import SYSTEM1, method
from s2jax.methods.runner import run_program
from s2jax.methods.usc import run_usc
from s2jax.sampling import Sampler
from s2jax.tasks import TASKS, load_examples

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "real_outputs"


def _jobs(countries: int, questions: int):
    """(task, method, examples, params) for every capture."""
    cap = TASKS["capitals"]
    capitals = load_examples(cap, split="validation:bare,suggest_incorrect,suggest_correct,"
                             "doubt_correct", seed=0)[:4 * countries]
    letters = load_examples(TASKS["last_letter"], split="validation", seed=0, limit=questions)
    coins = TASKS["coin_flip"].synthesize(questions, 7)
    greedy = SamplingParams(max_new_tokens=96)
    sampled = SamplingParams(n=4, temperature=0.7, top_k=40, max_new_tokens=96, seed=1)
    biased = [ex for ex in capitals if ex.fields["template"] == "suggest_incorrect"]
    return [
        ("capitals", SYSTEM1, capitals, greedy),
        ("capitals", "s2a", capitals, greedy),
        ("capitals", "s2a", biased[:4], sampled),  # + the USC stage over its 4 samples
        ("last_letter", SYSTEM1, letters, greedy),
        ("last_letter", "rar_1step", letters, greedy),
        ("last_letter", "rar_2step", letters, greedy),
        ("coin_flip", SYSTEM1, coins, greedy),
        ("coin_flip", "rar_1step", coins, greedy),
    ]


class _Merged:
    """A `TextGenerator` shared by several threads, one per job: once every live job waits on
    it, their prompts go to the sampler together (one call per sampling setting), so jobs of
    the same stage depth share decode steps instead of taking turns."""

    def __init__(self, sampler, jobs: int):
        self.sampler, self.live, self.cond = sampler, jobs, threading.Condition()
        self.pending: list = []  # [prompts, params, result slot]

    def done(self) -> None:
        with self.cond:
            self.live -= 1
            self._flush_if_ready()

    def __call__(self, prompts, params, first_sample=None):
        slot: list = []
        firsts = [0] * len(prompts) if first_sample is None else list(first_sample)
        with self.cond:
            self.pending.append((list(prompts), params, firsts, slot))
            self._flush_if_ready()
            while not slot:
                self.cond.wait()
        return slot[0]

    def _flush_if_ready(self) -> None:
        if not self.pending or len(self.pending) < self.live:
            return
        batch, self.pending = self.pending, []
        for params in dict.fromkeys(p for _, p, _, _ in batch):
            group = [(pr, f, slot) for pr, p, f, slot in batch if p == params]
            out = self.sampler([x for pr, _, _ in group for x in pr], params,
                               first_sample=[x for _, f, _ in group for x in f])
            pos = 0
            for pr, _, slot in group:
                slot.append(out[pos:pos + len(pr)])
                pos += len(pr)
        self.cond.notify_all()


def _run(job, generate, results, k):
    task, name, examples, params = job
    program = method(name, TASKS[task].system1)
    try:
        traces = run_program(program, [ex.fields for ex in examples], generate, params)
        usc = None
        if params.n > 1:
            responses = [[t[program.final_stage].text for t in paths] for paths in traces]
            usc = run_usc([ex.fields["question"] for ex in examples], responses, generate,
                          dataclasses.replace(params, temperature=0.0, max_new_tokens=48))
        results[k] = (program, traces, usc)
    finally:
        generate.done()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("name")
    ap.add_argument("--countries", type=int, default=14)
    ap.add_argument("--questions", type=int, default=12)
    args = ap.parse_args()
    model, tokenizer = s2jax.load(args.model)
    sampler = Sampler(model, tokenizer, max_batch=64, max_len=768)
    jobs = _jobs(args.countries, args.questions)
    generate, results = _Merged(sampler, len(jobs)), [None] * len(jobs)
    start = time.perf_counter()
    threads = [threading.Thread(target=_run, args=(job, generate, results, k))
               for k, job in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(f"captured {len(jobs)} jobs in {time.perf_counter() - start:.0f} s", flush=True)
    rows = []
    for (task, name, examples, params), result in zip(jobs, results, strict=True):
        if result is None:
            raise SystemExit(f"job {task} {name} failed")
        program, traces, usc = result
        for i, (ex, paths) in enumerate(zip(examples, traces, strict=True)):
            for s, trace in enumerate(paths):
                for stage, res in trace.items():
                    rows.append({"model": args.name, "task": task, "method": name,
                                 "stage": stage, "final": stage == program.final_stage,
                                 "id": ex.id, "sample": s, "n": params.n,
                                 "question": ex.fields["question"], "gold": list(ex.gold),
                                 **res.to_json()})
            if usc is not None:
                rows.append({"model": args.name, "task": task, "method": name, "stage": "usc",
                             "final": False, "id": ex.id, "sample": -1, "n": params.n,
                             "question": ex.fields["question"], "gold": list(ex.gold),
                             "choice": usc[i].choice, **usc[i].result.to_json()})
    OUT.mkdir(parents=True, exist_ok=True)
    write_jsonl(OUT / f"{args.name}.jsonl", rows)
    print(f"wrote {len(rows)} rows to {OUT / (args.name + '.jsonl')}")


if __name__ == "__main__":
    main()
