"""On-policy context distillation on the toy world's sycophancy task, on CPU
(`s2jax.toy.onpolicy`: the shipped toy model, as teacher, reads its own S2A-clean context; as
student, the biased text).

  PYTHONPATH=$PWD python scripts/onpolicy_toy.py --out /tmp/onpolicy
  PYTHONPATH=$PWD python scripts/onpolicy_toy.py --out /tmp/onpolicy --rounds 2 --steps 5
"""

from __future__ import annotations

import argparse
import json


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--prompts", type=int, default=64, help="prompts per round")
    p.add_argument("--steps", type=int, default=10, help="train steps per round")
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--divergence", default="reverse_kl", choices=("reverse_kl", "jsd"))
    p.add_argument("--test", type=int, default=100)
    args = p.parse_args()

    # imported after parsing: --help stays free of JAX and co.
    from s2jax.toy.onpolicy import OnPolicyToyConfig, run

    result = run(args.out, OnPolicyToyConfig(
        rounds=args.rounds, prompts=args.prompts, steps=args.steps,
        learning_rate=args.learning_rate, divergence=args.divergence, test=args.test))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
