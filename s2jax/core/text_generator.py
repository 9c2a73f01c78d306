"""What a text generator takes and returns: the pure-Python seam between methods and the sampler.

Prompt programs (`s2jax.methods`), voting and tasks import only this module, never JAX, so they
can be tested with a fake generator. `s2jax.sampling.Sampler` implements `TextGenerator`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Literal, Protocol

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": str}
Prompt = str | list[Message]  # raw text, or a chat rendered with the tokenizer's template
FinishReason = Literal["stop", "length"]
MAX_SAMPLES = 1 << 16  # samples per prompt (the paper draws at most 20)
INT32 = 1 << 31  # counters and seeds are int32 on the device


@dataclasses.dataclass(frozen=True)
class SamplingParams:
    """How to sample. `temperature == 0` is greedy; `n` samples are drawn per prompt."""

    n: int = 1  # samples per prompt (they share one prefill)
    temperature: float = 0.0  # 0: greedy
    top_k: int = 0  # 0: off
    top_p: float = 1.0  # 1.0: off
    min_p: float = 0.0  # 0.0: off
    max_new_tokens: int = 256  # generated tokens per sample at most (EOS included)
    stop: tuple[str, ...] = ()  # stop strings, cut from the returned text
    seed: int = 0  # a sample's key depends on (seed, prompt, sample, step) only

    def __post_init__(self):
        for name in ("temperature", "top_p", "min_p"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be finite, got {getattr(self, name)}")
        for name in ("n", "top_k", "max_new_tokens", "seed"):
            if not isinstance(getattr(self, name), int) or isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be an integer, got {getattr(self, name)!r}")
        checks = [
            (1 <= self.n <= MAX_SAMPLES, f"n must be in [1, {MAX_SAMPLES}], got {self.n}"),
            (-INT32 <= self.seed < INT32, f"seed must be a 32-bit integer, got {self.seed}"),
            (self.top_k < INT32, f"top_k must be < 2**31, got {self.top_k}"),
            (self.max_new_tokens < INT32, f"max_new_tokens must be < 2**31, got "
             f"{self.max_new_tokens}"),
            (self.temperature >= 0, f"temperature must be >= 0, got {self.temperature}"),
            (self.top_k >= 0, f"top_k must be >= 0, got {self.top_k}"),
            (0 < self.top_p <= 1, f"top_p must be in (0, 1], got {self.top_p}"),
            (0 <= self.min_p < 1, f"min_p must be in [0, 1), got {self.min_p}"),
            (self.max_new_tokens >= 1, f"max_new_tokens must be >= 1, got {self.max_new_tokens}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)
        object.__setattr__(self, "stop", tuple(self.stop))


@dataclasses.dataclass(frozen=True)
class Sample:
    """One generated continuation."""

    text: str
    num_tokens: int  # generated tokens, stop tokens included
    finish_reason: FinishReason

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


class TextGenerator(Protocol):
    """Generates `params.n` samples for each prompt, returned in prompt order.

    `first_sample[i]` (default 0) is the index of prompt i's first sample: a random generator
    keys sample j of prompt i by (seed, the prompt, first_sample[i] + j) and nothing else.
    """

    def __call__(
        self, prompts: Sequence[Prompt], params: SamplingParams, *,
        first_sample: Sequence[int] | None = None,
    ) -> list[list[Sample]]: ...
