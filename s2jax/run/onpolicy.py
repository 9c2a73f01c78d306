"""The fine-tuning stage of an on-policy run (`ExperimentConfig.onpolicy`): context
distillation from the model's own System 2 context, in rounds, instead of vote -> SFT.

  onpolicy/contexts.jsonl   System 2 run greedily once on each unlabeled input (labels stripped,
                            shard by shard, resumable): what the teacher will read
  onpolicy/prompts.jsonl    the pool: each input's System 1 chat (the student's) and its
                            teacher context, the final prompt of the System 2 program over that
                            greedy run's earlier stages (S2A: the answer prompt over the model's
                            own rewrite, the user's opinion removed)
  onpolicy/round_NNN/       the rounds of `s2jax.train.onpolicy.distill_on_policy`

Why the rewrite and not anything else: it is what System 2 itself answers from, and it is
label-free (a gold answer in the teacher's context would be training on labels). Greedy, as
System 2 is evaluated: sampled rewrites keep the user's opinion far more often
(docs/real_results.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from s2jax.core.atomic import write_jsonl
from s2jax.core.errors import S2JaxError
from s2jax.distill.dataset import system2_context
from s2jax.methods.program import Program
from s2jax.run.stages import check_train_memory, generate_stage, processes
from s2jax.tasks.task import Task

DIR = "onpolicy"


def context_pool(program: Program, task: Task, records: Sequence[Mapping], context: str
                 ) -> list[dict]:
    """The rounds' pool: per System 2 record, the student's System 1 chat and the teacher's
    ("system2": the program's final prompt for the record's first sample; "system1": the
    student's own)."""
    pool = []
    for record in records:
        messages = task.system1.render(record["fields"], chat=True)
        assert isinstance(messages, list)
        teacher = (system2_context(program, record, 0) if context == "system2" else messages)
        pool.append({"id": record["id"], "messages": messages, "teacher_messages": teacher})
    return pool


def onpolicy_stage(d, run_dir: Path, model, tokenizer, system2, sampler, *, teacher=None,
                   teacher_tokenizer=None, log: Callable[[str], None] = print,
                   progress: bool = True) -> tuple[dict, list[str]]:
    """Runs (or resumes) the on-policy rounds of the resolved run `d`; `model` and `sampler`
    end holding the distilled weights. Returns (the stage's statistics, warnings).

    `system2` samples the teacher's contexts (the teacher's sampler when it is another model);
    `teacher` is that model and `teacher_tokenizer` its tokenizer (None: the student's own
    base, with LoRA its adapters off).
    """
    # the train loop (JAX, optax, orbax) only when a run trains
    from s2jax.train.onpolicy import distill_on_policy

    writer, sync = processes()
    out = Path(run_dir) / DIR
    greedy = dataclasses.replace(d.sampling, n=1, temperature=0.0, top_k=0, top_p=1.0,
                                 min_p=0.0)
    records = generate_stage(d.program, d.task, d.unlabeled, system2, greedy,
                             path=out / "contexts.jsonl", key=d.fingerprint,
                             shard_size=d.shard_size, chat=True, progress=progress)
    context = "system2" if d.teacher_context else "system1"
    pool = context_pool(d.program, d.task, records, context)
    if not pool:
        raise S2JaxError("on-policy: no unlabeled inputs (expected at least one)")
    if writer:
        write_jsonl(out / "prompts.jsonl", pool)
    if sync:
        sync("wrote the on-policy pool")
    check_train_memory(model, d.train, teacher=teacher)
    distill_on_policy(model, tokenizer, pool, d.onpolicy, d.train, out, sampler=sampler,
                      teacher=teacher, teacher_tokenizer=teacher_tokenizer,
                      log=lambda line: log(f"[{d.name}] {line}"))
    cut = sum(r["samples"][0]["stages"].get(s.name, {}).get("finish_reason") == "length"
              for r in records for s in d.program.stages[:-1])
    warnings = ([f"on-policy: {cut} of the teacher contexts' System 2 stages hit "
                 f"max_new_tokens={greedy.max_new_tokens} (cut short)"] if cut else [])
    stats = {"inputs": len(pool), "kept": len(pool), "filter": "none (on-policy)",
             "onpolicy": dataclasses.asdict(d.onpolicy), "context": context}
    return stats, warnings
