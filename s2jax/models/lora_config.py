"""`LoraConfig`: the low-rank adapters of a LoRA run (also read from and written to PEFT's
adapter_config.json). JAX-free, so configs import it cheaply."""

from __future__ import annotations

import dataclasses

from s2jax.core.errors import S2JaxError

# The projections an adapter can sit on (names of the `layers.*` weights in `param_specs`).
LORA_TARGETS = ("q", "k", "v", "o", "gate", "up", "down")


@dataclasses.dataclass(frozen=True)
class LoraConfig:
    """LoRA: W stays frozen and y = x @ W + (alpha / rank) * (x @ A) @ B; A random, B zero."""

    rank: int = 0  # r; 0 trains every weight (full fine-tuning)
    alpha: float = 16.0  # the adapter's output is scaled by alpha / rank
    targets: tuple[str, ...] = LORA_TARGETS  # adapted projections, a subset of LORA_TARGETS

    def __post_init__(self):
        if self.rank < 0:
            raise S2JaxError(f"train config lora.rank={self.rank}: expected >= 0 (0: no LoRA)")
        if isinstance(self.targets, str):  # "q,v" from a flag
            object.__setattr__(self, "targets", tuple(filter(None, self.targets.split(","))))
        bad = [t for t in self.targets if t not in LORA_TARGETS]
        if bad or (self.rank and not self.targets) or len(set(self.targets)) < len(self.targets):
            raise S2JaxError(f"train config lora.targets={','.join(self.targets)}: expected "
                             f"distinct names among {','.join(LORA_TARGETS)}")

    @property
    def enabled(self) -> bool:
        return self.rank > 0

    @property
    def scale(self) -> float:
        return self.alpha / self.rank
