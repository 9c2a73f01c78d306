"""Typed reads of `config.json` fields: a wrong type, an out-of-range value or a shape no
machine could hold is an error naming the file and field, before anything is built from it."""

from __future__ import annotations

import math
from typing import Any

from s2jax.core.errors import S2JaxError

_MISSING = object()
# Bounds well above any released model, below sizes that would overflow a shape or the memory
# of any machine: a config beyond them is a typo or garbage.
MAX_DIM = 1 << 20  # hidden, intermediate, head_dim
MAX_VOCAB = 1 << 26
MAX_LAYERS = 4096
MAX_HEADS = 1 << 14
MAX_POSITIONS = (1 << 31) - 1
MAX_PARAMS = 10 ** 13  # 10T: 20 TB of bf16 weights
MAX_TOKEN_ID = (1 << 31) - 1
LAYER_TYPES = ("sliding_attention", "full_attention")  # the values of `layer_types`


class Fields:
    """Reads the fields of one HF config dict; errors name `source` and the field."""

    def __init__(self, hf: dict[str, Any], source: str):
        self.hf, self.source = hf, source

    def error(self, key: str, value: Any, expected: str) -> S2JaxError:
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        return S2JaxError(f"{self.source}: field {key!r} is {shown}; expected {expected}")

    def int(self, key: str, lo: int, hi: int, default: Any = _MISSING) -> int:
        value = self.hf.get(key, default)
        if value is _MISSING:
            raise S2JaxError(f"{self.source}: missing field {key!r}")
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # some configs write 4096.0
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            raise self.error(key, value, f"an integer in [{lo}, {hi}]")
        return value

    def opt_int(self, key: str, lo: int, hi: int) -> int | None:
        """An integer, or None when the field is absent, null or 0-as-"off"."""
        value = self.hf.get(key)
        return None if value is None else self.int(key, lo, hi)

    def float(self, key: str, default: Any = _MISSING, *, lo: float = 0.0, hi: float = math.inf,
              open_lo: bool = True) -> float:
        value = self.hf.get(key, default)
        if value is _MISSING:
            raise S2JaxError(f"{self.source}: missing field {key!r}")
        ok = isinstance(value, int | float) and not isinstance(value, bool) and \
            math.isfinite(value) and (value > lo if open_lo else value >= lo) and value <= hi
        if not ok:
            bound = f"({lo}" if open_lo else f"[{lo}"
            raise self.error(key, value, f"a finite number in {bound}, {hi}]")
        return float(value)

    def opt_float(self, key: str, **bounds) -> float | None:
        return None if self.hf.get(key) is None else self.float(key, **bounds)

    def bool(self, key: str, default: bool) -> bool:
        value = self.hf.get(key, default)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.error(key, value, "true or false")
        return value

    def str_list(self, key: str, choices: tuple[str, ...], length: int) -> list[str] | None:
        value = self.hf.get(key)
        if value is None:
            return None
        if not (isinstance(value, list) and len(value) == length and all(v in choices
                                                                         for v in value)):
            raise self.error(key, value, f"a list of {length} of {', '.join(choices)}")
        return value

    def token_ids(self, key: str) -> tuple[int, ...]:
        value = self.hf.get(key)
        values = [] if value is None else value if isinstance(value, list) else [value]
        for v in values:
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= MAX_TOKEN_ID:
                raise self.error(key, value, "a token id (an integer >= 0), a list of them, "
                                 "or null")
        return tuple(values)

    def token_id(self, key: str) -> int | None:
        ids = self.token_ids(key)
        if len(ids) > 1:
            raise self.error(key, self.hf.get(key), "one token id (an integer >= 0) or null")
        return ids[0] if ids else None


def check_size(fields: Fields, num_params: int) -> None:
    """Refuses shapes whose weights no machine holds (a typo such as an extra zero)."""
    if num_params > MAX_PARAMS:
        raise S2JaxError(f"{fields.source}: the shapes it gives make {num_params:.3g} "
                         f"parameters, more than any model s2jax can hold ({MAX_PARAMS:.0e}); "
                         "check vocab_size, hidden_size, intermediate_size, num_hidden_layers")
