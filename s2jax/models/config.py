"""Model configuration: a frozen dataclass read from (and written back to) HF `config.json`.

The Llama-style families are switches here (`qkv_bias`, `qk_norm`, per-layer sliding windows,
tied embeddings, RoPE scaling); Gemma 2/3 add their fields (attention scale, soft-capping, a rope
base for local layers) and have their own block in `s2jax/models/gemma.py`. A `config.json` field
that would change the math and is not implemented raises `S2JaxError` naming the field: silently
ignoring it would give a model that loads and is wrong.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from s2jax.core.errors import S2JaxError

# architecture name in config.json -> (model_type, qkv_bias, qk_norm)
ARCHITECTURES: dict[str, tuple[str, bool, bool]] = {
    "LlamaForCausalLM": ("llama", False, False),
    "MistralForCausalLM": ("mistral", False, False),
    "Qwen2ForCausalLM": ("qwen2", True, False),
    "Qwen3ForCausalLM": ("qwen3", False, True),
    "Gemma2ForCausalLM": ("gemma2", False, False),
    "Gemma3ForCausalLM": ("gemma3_text", False, True),
}
GEMMA_MODEL_TYPES = ("gemma2", "gemma3_text")
# Architectures that look close to a supported one but are not: named so the error says why.
UNSUPPORTED = {
    "Gemma3ForConditionalGeneration": "multimodal Gemma 3 (vision tower) is not supported; "
                                      "only the text-only Gemma3ForCausalLM is",
    "Gemma3nForConditionalGeneration": "Gemma 3n is not supported",
    "Gemma3nForCausalLM": "Gemma 3n is not supported",
    "GemmaForCausalLM": "Gemma 1 is not supported (Gemma2ForCausalLM and Gemma3ForCausalLM are)",
}
# transformers' defaults (Gemma2Config, Gemma3TextConfig) for fields a config.json may omit,
# where they differ from the Llama-style defaults `from_hf` assumes
_HF_DEFAULTS: dict[str, dict[str, Any]] = {
    "gemma2": dict(tie_word_embeddings=True, head_dim=256, query_pre_attn_scalar=256,
                   sliding_window=4096, attn_logit_softcapping=50.0,
                   final_logit_softcapping=30.0, max_position_embeddings=8192),
    "gemma3_text": dict(tie_word_embeddings=True, head_dim=256, query_pre_attn_scalar=256,
                        sliding_window=4096, max_position_embeddings=131072),
}
_GEMMA_ACTIVATIONS = ("gelu_pytorch_tanh", "gelu_python_tanh")  # both are GELU with tanh
_ROPE_TYPES = ("default", "llama3", "linear")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Shapes and switches of the decoder. Hashable, so it can be a static jit argument."""

    architecture: str
    vocab_size: int
    hidden_size: int  # D
    intermediate_size: int  # F
    num_layers: int  # L
    num_heads: int  # N
    num_kv_heads: int  # K
    head_dim: int  # H
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    rope_type: str = "default"  # default | llama3 | linear
    # (key, value) pairs of the rope scaling parameters, kept as a tuple to stay hashable
    rope_scaling: tuple[tuple[str, float], ...] = ()
    max_position_embeddings: int = 4096
    tie_word_embeddings: bool = False
    qkv_bias: bool = False  # Qwen2
    qk_norm: bool = False  # Qwen3: RMSNorm over head_dim on q and k before RoPE
    # per layer: attention window in tokens (0 = full causal attention)
    sliding_windows: tuple[int, ...] = ()
    bos_token_id: int | None = None
    eos_token_ids: tuple[int, ...] = ()
    pad_token_id: int | None = None
    # Gemma 2/3 (their block: s2jax/models/gemma.py)
    query_pre_attn_scalar: int | None = None  # attention scores scale by its -1/2 power
    attn_logit_softcap: float | None = None  # Gemma 2: scores -> cap * tanh(scores / cap)
    final_logit_softcap: float | None = None  # Gemma 2: the same on the output logits
    local_rope_theta: float | None = None  # Gemma 3: default-rope base of sliding-window layers

    def __post_init__(self):
        if self.num_heads % self.num_kv_heads:
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
    def is_gemma(self) -> bool:
        """Gemma 2/3: (1 + w) norms around both sublayers, GELU, scaled embeddings."""
        return self.model_type in GEMMA_MODEL_TYPES

    @property
    def attn_scale(self) -> float:
        return (self.query_pre_attn_scalar or self.head_dim) ** -0.5

    def num_params(self) -> int:
        D, F, L, N, K, H, V = (self.hidden_size, self.intermediate_size, self.num_layers,
                               self.num_heads, self.num_kv_heads, self.head_dim, self.vocab_size)
        per_layer = (4 if self.is_gemma else 2) * D + D * H * (2 * N + 2 * K) + 3 * D * F
        per_layer += self.qkv_bias * H * (N + 2 * K) + self.qk_norm * 2 * H
        return L * per_layer + V * D * (1 if self.tie_word_embeddings else 2) + D

    def rope_inv_freqs(self) -> np.ndarray:
        """Inverse frequencies of every layer [L, H/2]: Gemma 3's sliding-window layers use
        default rope at `local_rope_theta`, all others `rope_inv_freq()`."""
        full = self.rope_inv_freq()
        local = full if self.local_rope_theta is None else \
            _default_inv_freq(self.local_rope_theta, self.head_dim)
        return np.stack([local if w else full for w in self.sliding_windows])

    def rope_inv_freq(self) -> np.ndarray:
        """Inverse frequencies [H/2] with the configured scaling, as HF computes them."""
        inv = _default_inv_freq(self.rope_theta, self.head_dim)
        s = dict(self.rope_scaling)
        if self.rope_type == "linear":
            inv = inv / s["factor"]
        elif self.rope_type == "llama3":
            factor, lo, hi = s["factor"], s["low_freq_factor"], s["high_freq_factor"]
            old_ctx = s["original_max_position_embeddings"]
            wavelen = 2 * math.pi / inv
            low_wavelen, high_wavelen = old_ctx / lo, old_ctx / hi
            scaled = np.where(wavelen > low_wavelen, inv / factor, inv)
            smooth = (old_ctx / wavelen - lo) / (hi - lo)
            smoothed = (1 - smooth) * scaled / factor + smooth * scaled
            medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
            inv = np.where(medium, smoothed, scaled)
        return inv.astype(np.float32)

    @classmethod
    def from_hf(cls, hf: dict[str, Any], source: str = "config.json") -> ModelConfig:
        """Reads an HF config dict; `source` names the file in error messages."""
        archs = hf.get("architectures") or []
        arch = archs[0] if archs else _arch_from_model_type(hf.get("model_type"), source)
        if arch in UNSUPPORTED:
            raise S2JaxError(f"{source}: architecture {arch!r}: {UNSUPPORTED[arch]}")
        if arch not in ARCHITECTURES:
            raise S2JaxError(
                f"{source}: architecture {arch!r} is not supported "
                f"(expected one of {', '.join(ARCHITECTURES)})"
            )
        model_type, qkv_bias, qk_norm = ARCHITECTURES[arch]
        hf = {**_HF_DEFAULTS.get(model_type, {}), **hf}
        _reject_unimplemented(hf, model_type, source)

        def req(key):
            if key not in hf:
                raise S2JaxError(f"{source}: missing field {key!r}")
            return hf[key]

        n_heads = req("num_attention_heads")
        hidden = req("hidden_size")
        n_layers = req("num_hidden_layers")
        head_dim = hf.get("head_dim") or hidden // n_heads
        if model_type == "gemma3_text":
            rope, local_theta = _gemma3_rope(hf, source)
        else:
            rope, local_theta = _rope(hf, source), None
        eos = hf.get("eos_token_id")
        eos = () if eos is None else tuple(eos) if isinstance(eos, list) else (eos,)
        return cls(
            architecture=arch,
            vocab_size=req("vocab_size"),
            hidden_size=hidden,
            intermediate_size=req("intermediate_size"),
            num_layers=n_layers,
            num_heads=n_heads,
            num_kv_heads=hf.get("num_key_value_heads") or n_heads,
            head_dim=head_dim,
            rms_norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
            rope_theta=rope["rope_theta"],
            rope_type=rope["rope_type"],
            rope_scaling=tuple(sorted(
                (k, float(v)) for k, v in rope.items() if k not in ("rope_type", "rope_theta")
            )),
            max_position_embeddings=hf.get("max_position_embeddings", 4096),
            tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
            qkv_bias=qkv_bias,
            qk_norm=qk_norm,
            sliding_windows=_sliding_windows(hf, model_type, n_layers),
            bos_token_id=hf.get("bos_token_id"),
            eos_token_ids=eos,
            pad_token_id=hf.get("pad_token_id"),
            **(_gemma_fields(hf, model_type, local_theta) if model_type in GEMMA_MODEL_TYPES
               else {}),
        )

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
            "hidden_act": "silu",
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
        if self.model_type == "llama":
            hf["mlp_bias"] = False
        if self.model_type in ("mistral", "qwen2", "qwen3"):
            hf["sliding_window"] = max(windows) if windows else None
        if self.model_type in ("qwen2", "qwen3"):
            hf["use_sliding_window"] = bool(windows)
            hf["layer_types"] = [
                "sliding_attention" if w else "full_attention" for w in self.sliding_windows
            ]
            n_full = next((i for i, w in enumerate(self.sliding_windows) if w), self.num_layers)
            hf["max_window_layers"] = n_full
        if self.is_gemma:
            hf.update(_gemma_hf(self, rope, max(windows) if windows else None))
        if len(windows) > 1:
            raise S2JaxError(f"cannot export several sliding window sizes {sorted(windows)}")
        return hf


def read_json_object(path: str | Path, expected: str) -> dict[str, Any]:
    """The JSON object in `path`; a missing or malformed file is an error naming `expected`."""
    path = Path(path)
    if not path.is_file():
        raise S2JaxError(f"{path}: no such file (expected {expected})")
    try:
        obj = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise S2JaxError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise S2JaxError(f"{path}: expected a JSON object")
    return obj


def _arch_from_model_type(model_type: str | None, source: str) -> str:
    for arch, (mt, _, _) in ARCHITECTURES.items():
        if mt == model_type:
            return arch
    raise S2JaxError(
        f"{source}: no 'architectures' and unknown model_type {model_type!r} "
        f"(expected one of {', '.join(ARCHITECTURES)})"
    )


def _rope(hf: dict, source: str) -> dict:
    # transformers 5 writes `rope_parameters` (theta inside); 4.x writes rope_theta + rope_scaling.
    rope = dict(hf.get("rope_parameters") or hf.get("rope_scaling") or {})
    rope.setdefault("rope_theta", hf.get("rope_theta", 10000.0))
    rope_type = rope.pop("type", None) or rope.get("rope_type") or "default"
    rope["rope_type"] = rope_type
    if rope_type not in _ROPE_TYPES:
        raise S2JaxError(
            f"{source}: field 'rope_scaling' has rope_type {rope_type!r}, which s2jax does not "
            f"implement (expected one of {', '.join(_ROPE_TYPES)})"
        )
    need = {"linear": ("factor",), "llama3": (
        "factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")}
    for key in need.get(rope_type, ()):
        if key not in rope:
            raise S2JaxError(f"{source}: rope_type {rope_type!r} needs field {key!r}")
    if rope_type == "default":
        rope = {"rope_type": "default", "rope_theta": rope["rope_theta"]}
    rope["rope_theta"] = float(rope["rope_theta"])
    return rope


def _default_inv_freq(theta: float, head_dim: int) -> np.ndarray:
    """1 / theta^(2i/H) in fp32, rounded step by step as torch computes it (the power rounded to
    fp32, then an fp32 reciprocal). One ulp matters: at position p the angle p * inv_freq moves
    by p ulps, 6e-5 rad at p = 500, and logits with it by up to 1e-3."""
    exponent = np.arange(0, head_dim, 2, dtype=np.float32) / np.float32(head_dim)
    return np.float32(1.0) / (theta ** exponent.astype(np.float64)).astype(np.float32)


def _gemma3_rope(hf: dict, source: str) -> tuple[dict, float]:
    """Gemma 3's global rope (with its scaling) and the rope base of its sliding-window layers.

    transformers 5 writes `rope_parameters` as one dict per layer type; 4.x writes the global
    rope as usual (`rope_theta`, `rope_scaling`) plus `rope_local_base_freq`. The defaults
    (1e6 global, 1e4 local) are `Gemma3TextConfig`'s.
    """
    params = hf.get("rope_parameters") or {}
    if "full_attention" in params or "sliding_attention" in params:
        full = dict(params.get("full_attention") or {})
        local = dict(params.get("sliding_attention") or {})
    else:
        full = dict(params or hf.get("rope_scaling") or {})
        full.setdefault("rope_theta", hf.get("rope_theta", 1e6))
        local = {"rope_theta": hf.get("rope_local_base_freq", 1e4)}
    full.setdefault("rope_theta", 1e6)
    if (local.get("rope_type") or local.get("type") or "default") != "default":
        raise S2JaxError(f"{source}: field 'rope_parameters.sliding_attention' has rope_type "
                         f"{local.get('rope_type') or local.get('type')!r}; s2jax implements "
                         "only 'default' rope for Gemma 3's sliding-window layers")
    return _rope({"rope_parameters": full}, source), float(local.get("rope_theta", 1e4))


def _gemma_fields(hf: dict, model_type: str, local_theta: float | None) -> dict[str, Any]:
    """The ModelConfig fields only Gemma sets. Gemma 3 applies no attention soft-capping
    (transformers ignores `attn_logit_softcapping` there), so neither do we."""
    attn_cap = hf.get("attn_logit_softcapping") if model_type == "gemma2" else None
    final_cap = hf.get("final_logit_softcapping")
    return dict(
        query_pre_attn_scalar=int(hf["query_pre_attn_scalar"]),
        attn_logit_softcap=None if attn_cap is None else float(attn_cap),
        final_logit_softcap=None if final_cap is None else float(final_cap),
        local_rope_theta=local_theta,
    )


def _gemma_hf(cfg: ModelConfig, rope: dict, window: int | None) -> dict[str, Any]:
    """The Gemma fields of `config.json`, readable by transformers 4.x and 5.x."""
    hf: dict[str, Any] = {
        "hidden_act": "gelu_pytorch_tanh",
        "hidden_activation": "gelu_pytorch_tanh",
        "query_pre_attn_scalar": cfg.query_pre_attn_scalar,
        "attn_logit_softcapping": cfg.attn_logit_softcap,
        "final_logit_softcapping": cfg.final_logit_softcap,
        "sliding_window": window,
        "layer_types": ["sliding_attention" if w else "full_attention"
                        for w in cfg.sliding_windows],
        "use_bidirectional_attention": False,
    }
    if cfg.local_rope_theta is not None:
        local = {"rope_type": "default", "rope_theta": cfg.local_rope_theta}
        hf["rope_parameters"] = {"full_attention": rope, "sliding_attention": local}
        hf["rope_local_base_freq"] = cfg.local_rope_theta  # read by transformers 4.x
    return hf


def _sliding_windows(hf: dict, model_type: str, n_layers: int) -> tuple[int, ...]:
    window = hf.get("sliding_window")
    if model_type in GEMMA_MODEL_TYPES:
        return _gemma_windows(hf, model_type, n_layers)
    if model_type == "mistral":
        return (int(window or 0),) * n_layers
    if model_type in ("qwen2", "qwen3"):
        if not hf.get("use_sliding_window") or not window:
            return (0,) * n_layers
        types = hf.get("layer_types") or [
            "sliding_attention" if i >= hf.get("max_window_layers", n_layers) else "full_attention"
            for i in range(n_layers)
        ]
        return tuple(int(window) if t == "sliding_attention" else 0 for t in types)
    return (0,) * n_layers


def _gemma_windows(hf: dict, model_type: str, n_layers: int) -> tuple[int, ...]:
    """Per-layer windows from `layer_types`, else from the older `sliding_window_pattern`
    (every pattern-th layer is global: Gemma 2 alternates, Gemma 3 has 5 local : 1 global)."""
    pattern = (hf.get("sliding_window_pattern") or hf.get("_sliding_window_pattern")
               or (2 if model_type == "gemma2" else 6))
    types = hf.get("layer_types") or [
        "sliding_attention" if (i + 1) % pattern else "full_attention" for i in range(n_layers)]
    window = int(hf.get("sliding_window") or 0)
    return tuple(window if t == "sliding_attention" else 0 for t in types)


def _reject_unimplemented(hf: dict, model_type: str, source: str) -> None:
    """Fields whose non-default value changes the math and that s2jax does not implement."""
    if model_type in GEMMA_MODEL_TYPES:
        act = hf.get("hidden_activation") or "gelu_pytorch_tanh"
        if act not in _GEMMA_ACTIVATIONS:
            raise S2JaxError(f"{source}: field 'hidden_activation' is {act!r}; only "
                             "'gelu_pytorch_tanh' is implemented for Gemma")
    else:
        act = hf.get("hidden_act", "silu")
        if act not in ("silu", "swish"):
            raise S2JaxError(f"{source}: field 'hidden_act' is {act!r}; only 'silu' is "
                             "implemented")
    checks = {
        "mlp_bias": False,
        "attention_dropout": 0.0,
        "partial_rotary_factor": 1.0,
        "quantization_config": None,
        "use_bidirectional_attention": False,
    }
    if model_type not in GEMMA_MODEL_TYPES:
        checks.update(attn_logit_softcapping=None, final_logit_softcapping=None)
    if model_type in ("llama", "mistral", "qwen3", *GEMMA_MODEL_TYPES):
        checks["attention_bias"] = False  # Qwen2's q/k/v biases are built in, not this flag
    for field, default in checks.items():
        value = hf.get(field, default)
        if value != default and value is not None and not (value == 0 and default == 0.0):
            raise S2JaxError(
                f"{source}: field {field!r} = {value!r} is not implemented by s2jax "
                f"(expected {default!r})"
            )
