"""Model configuration: a frozen dataclass read from (and written back to) HF `config.json`.

The fields every family shares are read here; what a family adds (Llama/Mistral/Qwen's switches
and windows in `llama.py`; Gemma's attention scale, soft-capping and per-layer rope in
`gemma.py`) its module reads and writes. A `config.json` field that would change the math and is
not implemented raises `S2JaxError` naming the field: silently ignoring it would give a model
that loads and is wrong.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from s2jax.core.errors import S2JaxError
from s2jax.core.jsonl import read_json_object
from s2jax.models import gemma, llama
from s2jax.models.config_fields import (
    MAX_DIM,
    MAX_HEADS,
    MAX_LAYERS,
    MAX_POSITIONS,
    MAX_VOCAB,
    Fields,
    check_size,
)
from s2jax.models.family import Family, refuse_changed
from s2jax.models.rope import default_inv_freq, inv_freq

# Every family s2jax implements; `family_of` below is the one place that picks one.
FAMILIES: tuple[Family, ...] = (llama.FAMILY, gemma.FAMILY)
# architecture name in config.json -> (model_type, qkv_bias, qk_norm)
ARCHITECTURES: dict[str, tuple[str, bool, bool]] = {
    arch: v for fam in FAMILIES for arch, v in fam.architectures.items()}
# Architectures that look close to a supported one but are not: named so the error says why.
UNSUPPORTED: dict[str, str] = {
    arch: why for fam in FAMILIES for arch, why in fam.unsupported.items()}
# fields whose other values change the math in every family, and that s2jax does not implement
_UNIMPLEMENTED = {"mlp_bias": False, "attention_dropout": 0.0, "partial_rotary_factor": 1.0,
                  "quantization_config": None, "use_bidirectional_attention": False}


def family_of(architecture: str) -> Family:
    """The family implementing HF `architecture` (one of `ARCHITECTURES`)."""
    return next(fam for fam in FAMILIES if architecture in fam.architectures)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Shapes and switches of the decoder. Hashable, so it can be a static jit argument."""

    architecture: str  # HF's class name (config.json `architectures`); picks the family
    vocab_size: int  # V
    hidden_size: int  # D
    intermediate_size: int  # F
    num_layers: int  # L
    num_heads: int  # N
    num_kv_heads: int  # K
    head_dim: int  # H
    rms_norm_eps: float = 1e-6  # RMSNorm's epsilon
    rope_theta: float = 10000.0  # RoPE base
    rope_type: str = "default"  # default | llama3 | linear
    # (key, value) pairs of the rope scaling parameters, kept as a tuple to stay hashable
    rope_scaling: tuple[tuple[str, float], ...] = ()
    max_position_embeddings: int = 4096  # longest sequence; the sampler's default cache length
    tie_word_embeddings: bool = False  # the output head is the embedding matrix
    qkv_bias: bool = False  # Qwen2
    qk_norm: bool = False  # Qwen3: RMSNorm over head_dim on q and k before RoPE
    # per layer: attention window in tokens (0 = full causal attention)
    sliding_windows: tuple[int, ...] = ()
    bos_token_id: int | None = None  # beginning of sequence, written back on export
    eos_token_ids: tuple[int, ...] = ()  # sampling stops at any of these
    pad_token_id: int | None = None  # pads prompts in a batch (None: token 0)
    # -- Gemma 2/3 (s2jax/models/gemma.py)
    query_pre_attn_scalar: int | None = None  # Gemma 2/3: scores scale by its -1/2 power
    attn_logit_softcap: float | None = None  # Gemma 2: scores -> cap * tanh(scores / cap)
    final_logit_softcap: float | None = None  # Gemma 2: the same on the output logits
    local_rope_theta: float | None = None  # Gemma 3: default-rope base of sliding-window layers

    def __post_init__(self):
        if self.architecture not in ARCHITECTURES:
            raise S2JaxError(f"architecture {self.architecture!r} is not supported "
                             f"(expected one of {', '.join(ARCHITECTURES)})")
        if self.num_kv_heads < 1 or self.num_heads % self.num_kv_heads:
            raise S2JaxError(
                f"num_attention_heads={self.num_heads} is not a multiple of "
                f"num_key_value_heads={self.num_kv_heads}"
            )
        if not self.sliding_windows:
            object.__setattr__(self, "sliding_windows", (0,) * self.num_layers)
        if len(self.sliding_windows) != self.num_layers:
            raise S2JaxError(
                f"{len(self.sliding_windows)} sliding windows for {self.num_layers} layers"
            )

    @property
    def model_type(self) -> str:
        return ARCHITECTURES[self.architecture][0]

    @property
    def family(self) -> Family:
        return family_of(self.architecture)

    @property
    def attn_scale(self) -> float:
        return (self.query_pre_attn_scalar or self.head_dim) ** -0.5

    def rope_inv_freqs(self) -> np.ndarray:
        """Inverse frequencies of every layer [L, H/2]: Gemma 3's sliding-window layers use
        default rope at `local_rope_theta`, all others `rope_inv_freq()`."""
        full = self.rope_inv_freq()
        local = full if self.local_rope_theta is None else \
            default_inv_freq(self.local_rope_theta, self.head_dim)
        return np.stack([local if w else full for w in self.sliding_windows])

    def rope_inv_freq(self) -> np.ndarray:
        """Inverse frequencies [H/2] with the configured scaling, as HF computes them."""
        return inv_freq(self.rope_theta, self.head_dim, self.rope_type, dict(self.rope_scaling))

    @classmethod
    def from_hf(cls, hf: dict[str, Any], source: str = "config.json") -> ModelConfig:
        """Reads an HF config dict; `source` names the file in error messages.

        Every field is checked for its type and range (`s2jax.models.config_fields`), so a
        malformed config.json is one line naming the field, never a traceback later.
        """
        arch = _architecture(hf, source)
        model_type, qkv_bias, qk_norm = ARCHITECTURES[arch]
        fam = family_of(arch)
        hf = {**fam.hf_defaults.get(model_type, {}), **hf}
        refuse_changed(hf, _UNIMPLEMENTED, source)
        f = Fields(hf, source)
        n_heads = f.int("num_attention_heads", 1, MAX_HEADS)
        hidden = f.int("hidden_size", 1, MAX_DIM)
        n_layers = f.int("num_hidden_layers", 1, MAX_LAYERS)
        head_dim = f.opt_int("head_dim", 0, MAX_DIM) or hidden // n_heads
        if head_dim < 2 or head_dim % 2:
            raise S2JaxError(f"{source}: head_dim {head_dim} (hidden_size / "
                             "num_attention_heads unless given): expected an even number >= 2 "
                             "(rotary embeddings rotate pairs)")
        rope, fields = fam.read_hf(hf, model_type, n_layers, source)
        cfg = cls(
            architecture=arch,
            vocab_size=f.int("vocab_size", 1, MAX_VOCAB),
            hidden_size=hidden,
            intermediate_size=f.int("intermediate_size", 1, MAX_DIM),
            num_layers=n_layers,
            num_heads=n_heads,
            num_kv_heads=f.opt_int("num_key_value_heads", 0, MAX_HEADS) or n_heads,
            head_dim=head_dim,
            rms_norm_eps=f.float("rms_norm_eps", 1e-6, hi=1.0),
            rope_theta=rope["rope_theta"],
            rope_type=rope["rope_type"],
            rope_scaling=tuple(sorted(
                (k, float(v)) for k, v in rope.items() if k not in ("rope_type", "rope_theta")
            )),
            max_position_embeddings=f.int("max_position_embeddings", 1, MAX_POSITIONS, 4096),
            tie_word_embeddings=f.bool("tie_word_embeddings", False),
            qkv_bias=qkv_bias,
            qk_norm=qk_norm,
            bos_token_id=f.token_id("bos_token_id"),
            eos_token_ids=f.token_ids("eos_token_id"),
            pad_token_id=f.token_id("pad_token_id"),
            **fields,
        )
        check_size(f, _weights_bound(cfg))
        return cfg

    @classmethod
    def from_file(cls, path: str | Path) -> ModelConfig:
        return cls.from_hf(read_json_object(path, "an HF config.json"), source=str(path))

    def to_hf(self) -> dict[str, Any]:
        """The HF `config.json` dict that `transformers` loads as the same model."""
        rope = {"rope_type": self.rope_type, "rope_theta": self.rope_theta,
                **dict(self.rope_scaling)}
        windows = set(self.sliding_windows) - {0}
        hf: dict[str, Any] = {
            "architectures": [self.architecture],
            "model_type": self.model_type,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "rms_norm_eps": self.rms_norm_eps,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "rope_theta": self.rope_theta,  # read by transformers 4.x
            "rope_parameters": rope,  # read by transformers 5.x
            "bos_token_id": self.bos_token_id,
            "eos_token_id": list(self.eos_token_ids) if len(self.eos_token_ids) != 1
            else self.eos_token_ids[0],
            "pad_token_id": self.pad_token_id,
            "attention_bias": self.qkv_bias,
            "attention_dropout": 0.0,
            "torch_dtype": "float32",
        }
        if self.rope_type != "default":
            hf["rope_scaling"] = rope
        hf.update(self.family.write_hf(self, rope))
        if len(windows) > 1:
            raise S2JaxError(f"cannot export several sliding window sizes {sorted(windows)}")
        return hf


def _weights_bound(cfg: ModelConfig) -> int:
    """The weights of `cfg`'s embeddings, projections and MLPs (norms and biases aside): enough
    to refuse shapes no machine holds before anything is built (`params.num_params` counts
    exactly, from the weight table, which imports this module)."""
    q, kv = cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim
    layer = cfg.hidden_size * (2 * q + 2 * kv) + 3 * cfg.hidden_size * cfg.intermediate_size
    embed = cfg.vocab_size * cfg.hidden_size * (1 if cfg.tie_word_embeddings else 2)
    return embed + cfg.num_layers * layer


def _architecture(hf: dict, source: str) -> str:
    """The supported architecture a config names (its `architectures`, else its model_type)."""
    archs = hf.get("architectures") or []
    if not (isinstance(archs, list) and all(isinstance(a, str) for a in archs)):
        raise S2JaxError(f"{source}: field 'architectures' is {archs!r:.60}; expected a list of "
                         "class names such as [\"LlamaForCausalLM\"]")
    arch = archs[0] if archs else _arch_from_model_type(hf.get("model_type"), source)
    if arch in UNSUPPORTED:
        raise S2JaxError(f"{source}: architecture {arch!r}: {UNSUPPORTED[arch]}")
    if arch not in ARCHITECTURES:
        raise S2JaxError(f"{source}: architecture {arch!r} is not supported (expected one of "
                         f"{', '.join(ARCHITECTURES)})")
    return arch


def _arch_from_model_type(model_type: str | None, source: str) -> str:
    for arch, (mt, _, _) in ARCHITECTURES.items():
        if mt == model_type:
            return arch
    raise S2JaxError(
        f"{source}: no 'architectures' and unknown model_type {model_type!r:.60} "
        f"(expected one of {', '.join(ARCHITECTURES)})"
    )
