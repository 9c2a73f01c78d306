"""What the real-model experiments share: the two real instruct models reachable with pip, the
package-shipped splits, sampling, and the System 1 fine-tuning recipe sized for 2 CPU cores.

A config's arg is "MODEL[,quick]": MODEL a key of `MODELS`; "quick" is the few-minute variant
(a handful of inputs and steps) that checks the whole pipeline, not the result.
Models load by name (`s2jax.load("smollm2-135m-instruct")`, fetched and verified by s2jax);
`--set model=DIR` points at any HF or GGUF copy instead.
"""

from s2jax.core.text_generator import SamplingParams
from s2jax.train.config import TrainConfig

# variant -> name s2jax.load resolves
MODELS = {
    "qwen2.5-coder-0.5b": "qwen2.5-coder-0.5b-instruct",
    "smollm2-135m": "smollm2-135m-instruct",
}
DEFAULT = "qwen2.5-coder-0.5b"
SPLIT_SEED = 0  # every split of a run uses the same seed, so splits never overlap

# The paper samples at T=0.7, top-k 40 (self-consistency); N is cut to 4 for CPU time.
SAMPLING = SamplingParams(n=4, temperature=0.7, top_k=40, max_new_tokens=96)
EVAL_SAMPLING = SamplingParams(max_new_tokens=64)  # greedy; a capital answer is one sentence


def parse_arg(arg: str | None) -> tuple[str, bool]:
    """"MODEL[,quick]" -> (model variant, quick)."""
    parts = [p for p in (arg or "").split(",") if p]
    quick = "quick" in parts
    names = [p for p in parts if p != "quick"] or [DEFAULT]
    if len(names) != 1 or names[0] not in MODELS:
        raise ValueError(f"config arg {arg!r}: expected MODEL[,quick] with MODEL one of "
                         f"{', '.join(MODELS)}")
    return names[0], quick


def train(steps: int, learning_rate: float) -> TrainConfig:
    """Full fine-tuning of the System 1 answers: short packed rows at a constant rate from the
    first step. No warm-up: a linear warm-up starts at 0, so in a run of a few steps its first
    step would change nothing (Adam's first update already has the size of the rate)."""
    return TrainConfig(steps=steps, seq_len=256, batch_size=4, learning_rate=learning_rate,
                       warmup_steps=0, schedule="constant", progress=True)
