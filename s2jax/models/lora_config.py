"""`LoraConfig`: the low-rank adapters of a LoRA run (also read from and written to PEFT's
adapter_config.json). JAX-free, so configs import it cheaply."""

from __future__ import annotations

import dataclasses

from s2jax.core.errors import S2JaxError

# The projections an adapter can sit on (names of the `layers.*` weights in `param_specs`).
LORA_TARGETS = ("q", "k", "v", "o", "gate", "up", "down")
# PEFT's and TRL's spelling of them: the HF module names (the same in every supported family,
# as the weight table's HF keys say; tests/test_lora.py checks), and "all-linear" for all seven.
PEFT_NAMES = {"q_proj": "q", "k_proj": "k", "v_proj": "v", "o_proj": "o",
              "gate_proj": "gate", "up_proj": "up", "down_proj": "down"}
ALL_LINEAR = "all-linear"


@dataclasses.dataclass(frozen=True)
class LoraConfig:
    """LoRA: W stays frozen and y = x @ W + (alpha / rank) * (x @ A) @ B; A random, B zero."""

    rank: int = 0  # r; 0 trains every weight (full fine-tuning)
    alpha: float = 16.0  # the adapter's output is scaled by alpha / rank
    # adapted projections: a subset of LORA_TARGETS, in PEFT's spelling too ("q_proj",
    # "all-linear")
    targets: tuple[str, ...] = LORA_TARGETS

    def __post_init__(self):
        if self.rank < 0:
            raise S2JaxError(f"train config lora.rank={self.rank}: expected >= 0 (0: no LoRA)")
        targets = self.targets
        if isinstance(targets, str):  # "q,v" from a flag
            targets = tuple(filter(None, targets.split(",")))
        if ALL_LINEAR in targets and len(targets) == 1:
            targets = LORA_TARGETS
        object.__setattr__(self, "targets", tuple(PEFT_NAMES.get(t, t) for t in targets))
        bad = [t for t in self.targets if t not in LORA_TARGETS]
        if bad or (self.rank and not self.targets) or len(set(self.targets)) < len(self.targets):
            raise S2JaxError(f"train config lora.targets={','.join(targets)}: expected "
                             f"distinct names among {','.join(LORA_TARGETS)} (or PEFT's "
                             f"{','.join(PEFT_NAMES)}, or {ALL_LINEAR})")

    @property
    def enabled(self) -> bool:
        return self.rank > 0

    @property
    def scale(self) -> float:
        return self.alpha / self.rank
