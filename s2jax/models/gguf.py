"""GGUF import: a GGUF file as one more tensor source for the HF weight table.

The `gguf` package (the ggml project's own reader and dequantizer) reads the file; this module
only translates. Metadata becomes an HF `config.json` dict (so `ModelConfig.from_hf` validates
it like any checkpoint), tensor names map to HF keys through gguf's own name table, and each
tensor is dequantized to float32 in its HF layout when `place_weights` asks for it, with
llama.cpp's rotary row order of Llama's q/k undone. The tokenizer is rebuilt from the metadata by
`transformers`' GGUF tokenizer converter, called directly: `AutoTokenizer(gguf_file=...)` reads
the file through a module that imports torch, which s2jax never does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from s2jax.core.errors import S2JaxError
from s2jax.models.config import ModelConfig
from s2jax.models.hf import place_weights, resolve_dtype
from s2jax.models.params import param_specs
from s2jax.models.tokenizer import check_chat_template
from s2jax.models.weights import Weights

# general.architecture -> HF architecture. Mistral files say "llama" (handled by name below).
ARCHITECTURES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM",
                 "qwen3": "Qwen3ForCausalLM"}
# llama.cpp stores Llama-family q/k rows interleaved for its rotary kernel; others are as in HF.
_PERMUTED_QK = ("llama",)
# Types `gguf.dequantize` implements and that have been checked against transformers here.
QUANT_TYPES = ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K",
               "Q4_K", "Q5_K", "Q6_K")


def _gguf():
    try:
        import gguf  # optional dependency (the `real` extra)
    except ImportError:
        raise S2JaxError(
            "reading GGUF files needs the gguf package: pip install 's2jax[real]'") from None
    return gguf


def is_gguf(path: str | Path) -> bool:
    return Path(path).suffix == ".gguf"


def find_gguf(path: str | Path) -> Path | None:
    """`path` itself if it is a .gguf file; the one .gguf in a directory without config.json."""
    path = Path(path)
    if path.is_file() and is_gguf(path):
        return path
    if not path.is_dir() or (path / "config.json").is_file():
        return None
    found = sorted(path.glob("*.gguf"))
    if len(found) > 1:
        listed = ", ".join(p.name for p in found)
        raise S2JaxError(f"{path}: holds {len(found)} .gguf files ({listed}); pass the one to load")
    return found[0] if found else None


def _reader(path: Path):
    """`gguf.GGUFReader` over a plain ndarray view of its memory map (the same bytes, no copy).

    The reader slices its `data` once or twice per metadata string; on an `np.memmap` each slice
    runs memmap's Python-level `__getitem__`/`__array_finalize__`, which made reading a 150k-token
    vocabulary 3x slower.
    """
    gguf = _gguf()

    class Reader(gguf.GGUFReader):
        @property
        def data(self) -> np.ndarray:
            return self._plain

        @data.setter
        def data(self, mapped: np.memmap) -> None:
            self._plain = mapped.view(np.ndarray)

    return Reader(path)


class GGUFFile:
    """A GGUF file's metadata and tensors, read with `gguf.GGUFReader` (memory-mapped)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise S2JaxError(f"{self.path}: no such file (expected a .gguf file)")
        try:
            self.reader = _reader(self.path)
        except (ValueError, IndexError, OSError) as e:
            raise S2JaxError(f"{self.path}: not a readable GGUF file ({e})") from None
        self.tensors = {t.name: t for t in self.reader.tensors}

    def get(self, key: str, default=None):
        field = self.reader.fields.get(key)
        return default if field is None else field.contents()

    def require(self, key: str):
        value = self.get(key)
        if value is None:
            raise S2JaxError(f"{self.path}: missing metadata field {key!r}")
        return value

    @property
    def architecture(self) -> str:
        return self.require("general.architecture")


def hf_config(f: GGUFFile) -> dict:
    """The HF config.json dict that the metadata of `f` describes."""
    arch = f.architecture
    if arch not in ARCHITECTURES:
        raise S2JaxError(f"{f.path}: field general.architecture = {arch!r} is not supported "
                         f"(expected one of {', '.join(ARCHITECTURES)})")
    hf_arch = ARCHITECTURES[arch]
    if arch == "llama" and "mistral" in str(f.get("general.name", "")).lower():
        hf_arch = "MistralForCausalLM"  # as transformers reads such files
    heads = f.require(f"{arch}.attention.head_count")
    kv_heads = f.get(f"{arch}.attention.head_count_kv", heads)
    for key, value in (("head_count", heads), ("head_count_kv", kv_heads)):
        if isinstance(value, list):
            raise S2JaxError(f"{f.path}: field {arch}.attention.{key} varies per layer, which "
                             "s2jax does not implement")
    hidden = f.require(f"{arch}.embedding_length")
    head_dim = f.get(f"{arch}.attention.key_length") or hidden // heads
    rotary = f.get(f"{arch}.rope.dimension_count", head_dim)
    if rotary != head_dim:
        raise S2JaxError(f"{f.path}: field {arch}.rope.dimension_count = {rotary} (partial "
                         f"rotary) is not implemented (expected head dim {head_dim})")
    tokens = f.reader.fields.get("tokenizer.ggml.tokens")
    vocab = f.get(f"{arch}.vocab_size") or (len(tokens.data) if tokens else None)
    hf = {
        "architectures": [hf_arch],
        "vocab_size": vocab or int(f.tensors["token_embd.weight"].shape[-1]),
        "hidden_size": hidden,
        "intermediate_size": f.require(f"{arch}.feed_forward_length"),
        "num_hidden_layers": f.require(f"{arch}.block_count"),
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": head_dim,
        # float32 in the file: its shortest decimal is the value the converter was given
        "rms_norm_eps": float(str(np.float32(f.require(
            f"{arch}.attention.layer_norm_rms_epsilon")))),
        "rope_theta": float(f.get(f"{arch}.rope.freq_base", 10000.0)),
        "max_position_embeddings": f.get(f"{arch}.context_length", 4096),
        "tie_word_embeddings": "output.weight" not in f.tensors,
        "bos_token_id": f.get("tokenizer.ggml.bos_token_id"),
        "eos_token_id": f.get("tokenizer.ggml.eos_token_id"),
        "pad_token_id": f.get("tokenizer.ggml.padding_token_id"),
        "sliding_window": f.get(f"{arch}.attention.sliding_window"),
        "torch_dtype": "float32",
    }
    scaling = f.get(f"{arch}.rope.scaling.type", "none")
    if scaling == "linear":
        hf["rope_scaling"] = {"rope_type": "linear",
                              "factor": f.require(f"{arch}.rope.scaling.factor")}
    elif scaling != "none":
        raise S2JaxError(f"{f.path}: field {arch}.rope.scaling.type = {scaling!r} is not "
                         "implemented (expected 'none' or 'linear')")
    return hf


def _unpermute_rows(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Undoes llama.cpp's `permute`: per head, rows (2, H/2) were stored as (H/2, 2)."""
    rows = w.shape[0]
    return w.reshape(n_heads, rows // n_heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(
        w.shape)


class GGUFCheckpoint:
    """The tensors of a GGUF file under their HF keys, dequantized (float32) on `view`.

    Tensors that map to no weight of `cfg` keep their GGUF name, so `place_weights` names them.
    """

    def __init__(self, f: GGUFFile, cfg: ModelConfig):
        gguf = _gguf()
        self.file = f
        arch = f.architecture
        names = gguf.get_tensor_name_map(
            {v: k for k, v in gguf.MODEL_ARCH_NAMES.items()}[arch], cfg.num_layers)
        self._gguf_name: dict[str, str] = {}
        for spec in param_specs(cfg).values():
            keys = ([spec.hf_key.format(i=i) for i in range(cfg.num_layers)] if spec.stacked
                    else [spec.hf_key])
            for key in keys:
                name = names.get_name(key, try_suffixes=(".weight", ".bias"))
                if name in f.tensors:
                    self._gguf_name[key] = name
        mapped = set(self._gguf_name.values())
        self._gguf_name.update({n: n for n in f.tensors if n not in mapped})
        self._heads = ({"attn_q": cfg.num_heads, "attn_k": cfg.num_kv_heads}
                       if arch in _PERMUTED_QK else {})
        for name, t in f.tensors.items():
            if t.tensor_type.name not in QUANT_TYPES:
                raise S2JaxError(f"{f.path}: tensor {name} has quantization type "
                                 f"{t.tensor_type.name}, which s2jax does not read (supported: "
                                 f"{', '.join(QUANT_TYPES)})")

    def keys(self) -> list[str]:
        return list(self._gguf_name)

    def where(self, key: str) -> str:
        name = self._gguf_name[key]
        return f"{self.file.path}: tensor {name}" + (f" ({key})" if key != name else "")

    def shape(self, key: str) -> tuple[int, ...]:
        # GGUF lists dimensions innermost first; HF (row-major) outermost first.
        return tuple(int(n) for n in reversed(self.file.tensors[self._gguf_name[key]].shape))

    def view(self, key: str) -> np.ndarray:
        name = self._gguf_name[key]
        t = self.file.tensors[name]
        w = _gguf().dequantize(t.data, t.tensor_type).reshape(self.shape(key))
        kind = name.split(".")[-2] if name.startswith("blk.") else ""
        if kind in self._heads:
            w = _unpermute_rows(w, self._heads[kind])
        return w


def load_tokenizer(f: GGUFFile):
    """The `transformers` fast tokenizer (chat template, special tokens) the metadata describes."""
    try:
        # transformers (seconds) only for a GGUF's tokenizer
        from transformers import PreTrainedTokenizerFast
        from transformers.integrations.gguf.gguf_tokenizer_mapping import (
            GGUF_TOKENIZER_MAPPING,
            convert_gguf_tokenizer,
        )
    except ImportError as e:
        raise S2JaxError(f"{f.path}: building its tokenizer needs transformers' GGUF tokenizer "
                         f"converter, which this transformers lacks ({e})") from None
    groups = {
        group: {name: f.get(f"tokenizer.{key}") for key, name in renames.items()
                if f.reader.fields.get(f"tokenizer.{key}") is not None}
        for group, renames in GGUF_TOKENIZER_MAPPING.items()
    }
    tokenizer, config = groups["tokenizer"], groups["tokenizer_config"]
    if "tokens" not in tokenizer:
        raise S2JaxError(f"{f.path}: missing metadata field 'tokenizer.ggml.tokens'")
    if tokenizer.get("tokenizer_type") == "llama":
        config.setdefault("add_bos_token", True)  # llama.cpp's default for sentencepiece files
    for special in ("bos", "eos", "unk", "pad"):
        index = tokenizer.get(f"{special}_token_id")
        config[f"{special}_token"] = tokenizer["tokens"][index] if index is not None else None
    try:
        backend, extra = convert_gguf_tokenizer(f.architecture, tokenizer)
    except ValueError as e:
        raise S2JaxError(f"{f.path}: field tokenizer.ggml.model: {e}") from None
    out = PreTrainedTokenizerFast(tokenizer_object=backend, **config, **extra)
    check_chat_template(out, str(f.path))
    return out


def load_gguf(path: str | Path, *, dtype=None, mesh=None) -> tuple[Weights, object]:
    """Reads a GGUF file as `(weights, tokenizer)`, dequantized to `dtype` (default fp32)."""
    f = GGUFFile(path)
    hf = hf_config(f)
    cfg = ModelConfig.from_hf(hf, source=str(f.path))
    weights = place_weights(cfg, GGUFCheckpoint(f, cfg), dtype=resolve_dtype(dtype, hf),
                            mesh=mesh, source=str(f.path))
    return weights, load_tokenizer(f)
