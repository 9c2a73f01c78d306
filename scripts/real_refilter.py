"""Re-filter and re-train a finished real run from its System 2 generations (no new sampling).

Sampling System 2 is most of a run's time on a CPU (11 of 22 minutes for the Qwen S2A run), so
the filter and fine-tuning settings are compared on one run's generations:

  PYTHONPATH=$PWD python3 scripts/real_refilter.py CONFIG[:ARG] --from RUN_DIR --run-dir NEW \
      --set distill.vote.threshold=0.75 [--set train.steps=4 ...]

Only `distill.*` and `train.*` may differ from the source run's config (checked).
`--replay-bare` is the retention mitigation of docs/real_results.md: the base model's own greedy
System 1 replies to the bare questions of the unlabeled countries (no label is read) join the
distillation set in the fine-tuning mix. The new run
dir gets its own distillation set, fine-tuned model and results.json; its System 1 and System 2
rows are the source run's, which the same config on the same model would reproduce.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import s2jax
from s2jax.core.atomic import write_json
from s2jax.core.errors import S2JaxError
from s2jax.core.overrides import override, parse_assignments
from s2jax.core.rundir import claim, locked
from s2jax.distill.dataset import PARQUET
from s2jax.run.config import load_config
from s2jax.run.pipeline import resolve
from s2jax.run.stages import distill_stage, evaluate_stage, finetune_stage, require_examples
from s2jax.sampling import Sampler
from s2jax.train.data import read_examples

MAY_DIFFER = ("name", "distill", "train")


def differing_fields(old: dict, new: dict) -> list[str]:
    """Config fields (other than `MAY_DIFFER`) whose values differ between two runs' configs."""
    same = lambda a, b: json.dumps(a, sort_keys=True, default=str) == json.dumps(
        b, sort_keys=True, default=str)
    return sorted(k for k in {*old, *new} - set(MAY_DIFFER) if not same(old.get(k), new.get(k)))


def bare_replies(model, tokenizer, config) -> list[dict]:
    """The base model's greedy System 1 replies to the unlabeled countries' bare questions, as
    chat examples (the labels are never read)."""
    from s2jax.tasks import TASKS, load_examples

    split = (config.unlabeled.split or "unlabeled").partition(":")[0]
    questions = [ex.fields["question"] for ex in load_examples(
        TASKS[config.task], split=f"{split}:bare", seed=config.unlabeled.seed)]
    sampler = Sampler(model, tokenizer, max_batch=config.max_batch, max_len=config.max_len,
                      chat=config.chat)
    replies = [s[0].text.strip() for s in sampler(questions, config.eval_sampling)]
    return [{"id": f"replay-{i}", "messages": [{"role": "user", "content": q},
                                               {"role": "assistant", "content": r}]}
            for i, (q, r) in enumerate(zip(questions, replies, strict=True)) if r]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config")
    ap.add_argument("--from", dest="source", required=True, help="finished run dir")
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--replay-bare", action="store_true",
                    help="mix the base model's own replies to the bare questions into training")
    args = ap.parse_args()
    source = Path(args.source)
    config, _ = load_config(args.config)
    config = override(config, parse_assignments(args.set))
    old = json.loads((source / "config.json").read_text())["config"]
    new = config.to_json()
    differ = differing_fields(old, new)
    if differ:
        raise S2JaxError(f"--from {source}: its config differs in {', '.join(differ)}; only "
                         f"{', '.join(MAY_DIFFER)} may change when its generations are reused")
    run_dir = Path(args.run_dir)
    d = resolve(config, run_dir)
    start = time.perf_counter()
    with locked(run_dir, key=d.fingerprint) as run_dir:
        claim(run_dir, d.fingerprint, d.config)
        gen_path = source / "generations.jsonl"
        records = [json.loads(line) for line in gen_path.read_text().splitlines() if line]
        dset, warnings = distill_stage(records, d.task, d.distill, run_dir / "distill",
                                       generations=str(gen_path.resolve()), model=d.model,
                                       sampling=dataclasses.asdict(d.sampling))
        stats = dset.stats.to_json()
        print(f"[{d.name}] distillation set: kept {stats['kept']} of {stats['inputs']} inputs",
              flush=True)
        require_examples(stats, str(run_dir / "distill" / PARQUET))
        model, tokenizer = s2jax.load(config.model, dtype=config.dtype)
        examples = read_examples(run_dir / "distill" / PARQUET)
        if args.replay_bare:
            replay = bare_replies(model, tokenizer, config)
            write_json(run_dir / "replay.json", replay)
            print(f"[{d.name}] replay: {len(replay)} of the base model's bare-question replies "
                  f"join {len(examples)} distilled examples", flush=True)
            examples = [*examples, *replay]
        finetune_stage(model, tokenizer, examples, d.train, run_dir / "train")
        del model  # its fine-tuned weights were exported; the sampler loads them
        distilled, _ = s2jax.load(run_dir / "train" / "model", dtype=config.dtype)
        sampler = Sampler(distilled, tokenizer, max_batch=config.max_batch,
                          max_len=config.max_len, chat=config.chat)
        final = evaluate_stage("distilled", d.system1, d.test_task, d.test, sampler,
                               d.eval_sampling, path=run_dir / "eval" / "distilled.jsonl",
                               key=d.fingerprint, shard_size=d.shard_size, chat=d.chat,
                               progress=True)
        print(f"[{d.name}] distilled: {final.accuracy:.1f}% at {final.tokens_per_answer:.1f} "
              "tokens/answer", flush=True)
        base = json.loads((source / "results.json").read_text())
        write_json(run_dir / "results.json", {
            "name": d.name, "task": d.task.name, "method": d.program.name,
            "rows": [*base["rows"][:2], final.to_json()], "distill": stats,
            "warnings": warnings, "generations_from": str(source),
            "seconds": {"generate": 0.0,
                        "finetune_and_eval": round(time.perf_counter() - start, 2)}})


if __name__ == "__main__":
    main()
