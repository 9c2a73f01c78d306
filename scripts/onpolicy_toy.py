"""On-policy context distillation on the toy world's sycophancy task, on CPU.

The teacher is the shipped toy base model itself, given the S2A-clean context: its own greedy
S2A rewrite of the user's text (no labels read), then S2A's answer prompt. The student is the
same base model reading the original, biased user text. Each round the student samples its
answers (T=1), the teacher scores them under its clean context, and the student takes reverse
KL steps toward it (`s2jax.train.onpolicy`). Reports System 1 accuracy on the held-out test
inputs (biased templates) and on the bare questions, before and after.

  PYTHONPATH=$PWD python scripts/onpolicy_toy.py --out /tmp/onpolicy
  PYTHONPATH=$PWD python scripts/onpolicy_toy.py --out /tmp/onpolicy --rounds 2 --steps 5
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    import s2jax
    from s2jax.core.text_generator import SamplingParams
    from s2jax.distill.evaluate import evaluate
    from s2jax.methods.catalog import SYSTEM1, method
    from s2jax.sampling import Sampler
    from s2jax.tasks.toy.world import TASKS, _sy_generate, held_out
    from s2jax.toy.demo import base_model_dir
    from s2jax.train.config import KDConfig, TrainConfig
    from s2jax.train.onpolicy import OnPolicyConfig, distill_on_policy

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--prompts", type=int, default=64, help="prompts per round")
    p.add_argument("--steps", type=int, default=10, help="train steps per round")
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--divergence", default="reverse_kl", choices=("reverse_kl", "jsd"))
    p.add_argument("--test", type=int, default=100)
    args = p.parse_args()
    t0 = time.perf_counter()
    toy = TASKS["sycophancy"]
    model, tok = s2jax.load(base_model_dir())
    sampler = Sampler(model, tok, max_batch=64)
    greedy = SamplingParams(max_new_tokens=48)
    test, unlabeled = held_out(toy, args.test, 200)
    bare = _sy_generate(args.test, 11, 0)  # unbiased questions: what distillation must keep
    system1 = method(SYSTEM1, toy.task.system1)

    def accuracy() -> dict[str, float]:
        return {name: evaluate("system1", system1, toy.task, exs, sampler, greedy).accuracy
                for name, exs in (("biased", test), ("bare", bare))}

    before = accuracy()
    rewrite, answer = toy.method.stages  # S2A: rewrite the user's text, answer from it
    rewrites = sampler([rewrite.render(ex.fields) for ex in unlabeled], greedy)
    pool = [{"id": ex.id, "messages": toy.task.system1.render(ex.fields),
             "teacher_messages": answer.render({**ex.fields, "rewrite": s[0].text})}
            for ex, s in zip(unlabeled, rewrites, strict=True)]
    train = TrainConfig(steps=args.steps, seq_len=256, batch_size=8,
                        learning_rate=args.learning_rate, schedule="constant", progress=False,
                        kd=KDConfig(args.divergence))
    config = OnPolicyConfig(rounds=args.rounds, prompts_per_round=args.prompts,
                            sampling=SamplingParams(temperature=1.0, max_new_tokens=16))
    compiles = sampler.compile_count
    distill_on_policy(model, tok, pool, config, train, args.out, sampler=sampler)
    after = accuracy()
    result = {"before": before, "after": after, "rounds": args.rounds, "steps": args.steps,
              "prompts_per_round": args.prompts, "divergence": args.divergence,
              "sampler_compiles_during_rounds": sampler.compile_count - compiles,
              "seconds": round(time.perf_counter() - t0, 1)}
    print(json.dumps(result, indent=1))
    (Path(args.out) / "result.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
