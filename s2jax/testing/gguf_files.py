"""GGUF files written with the `gguf` package's writer from HF checkpoint directories.

What llama.cpp's converter does, for the families s2jax reads: metadata from config.json, the
tokenizer's vocabulary and merges, llama.cpp tensor names (gguf's own name table), Llama's q/k
rows permuted for llama.cpp's rotary kernel, 2-D weights quantized to `qtype`, 1-D ones kept F32.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from pathlib import Path

import gguf
import numpy as np
from safetensors.numpy import load_file

# a FAMILIES name (s2jax.testing.checkpoints) -> general.architecture (llama.cpp files
# Mistral as "llama")
ARCH = {"llama2": "llama", "mistral": "llama", "qwen2": "qwen2", "qwen3": "qwen3"}


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf `permute` of q/k rows (as written there)."""
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def _add_tokenizer(w: gguf.GGUFWriter, directory: Path, cfg: dict) -> None:
    tok = json.loads((directory / "tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]
    tokens = sorted(vocab, key=vocab.get)
    special = {t["content"] for t in tok.get("added_tokens", []) if t.get("special")}
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types([gguf.TokenType.CONTROL if t in special else gguf.TokenType.NORMAL
                       for t in tokens])
    w.add_token_merges(merges)
    w.add_bos_token_id(cfg["bos_token_id"])
    w.add_eos_token_id(cfg["eos_token_id"])
    w.add_pad_token_id(cfg["pad_token_id"])
    w.add_add_bos_token(False)
    tok_cfg = json.loads((directory / "tokenizer_config.json").read_text())
    template = tok_cfg.get("chat_template")
    if template is None and (directory / "chat_template.jinja").is_file():
        template = (directory / "chat_template.jinja").read_text()
    w.add_chat_template(template)


def write_gguf(directory: Path, out: Path, family: str,
               qtype: gguf.GGMLQuantizationType | Sequence = gguf.GGMLQuantizationType.F32,
               arch: str | None = None, raw_types: dict | None = None) -> Path:
    """Writes the HF checkpoint `directory` as the GGUF file `out`.

    `qtype` is the type of 2-D weights, or a sequence of types they take in turn (a mixed file,
    as llama.cpp writes); `raw_types` maps a GGUF tensor name to a type whose bytes are written
    as zeros (to test types s2jax refuses); `arch` overrides general.architecture.
    """
    qtypes = itertools.cycle([qtype] if isinstance(qtype, gguf.GGMLQuantizationType) else qtype)
    cfg = json.loads((directory / "config.json").read_text())
    arch = arch or ARCH[family]
    out.parent.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(out, arch)
    w.add_name(f"tiny {family}")
    n_head, n_kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // n_head
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_rope_dimension_count(head_dim)
    rope = cfg.get("rope_parameters") or {}
    w.add_rope_freq_base(float(rope.get("rope_theta", cfg.get("rope_theta", 10000.0))))
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_vocab_size(cfg["vocab_size"])
    _add_tokenizer(w, directory, cfg)

    names = gguf.get_tensor_name_map(
        {v: k for k, v in gguf.MODEL_ARCH_NAMES.items()}[ARCH[family]], cfg["num_hidden_layers"])
    for key, value in load_file(directory / "model.safetensors").items():
        name = names.get_name(key, try_suffixes=(".weight", ".bias"))
        value = value.astype(np.float32)
        if ARCH[family] == "llama" and name.endswith(("attn_q.weight", "attn_k.weight")):
            value = _permute(value, n_head if "attn_q" in name else n_kv)
        if name in (raw_types or {}):
            t = raw_types[name]
            block, size = gguf.GGML_QUANT_SIZES[t]
            raw = np.zeros((value.shape[0], value.shape[1] // block * size), np.uint8)
            w.add_tensor(name, raw, raw_dtype=t)
        elif value.ndim == 2:
            t = next(qtypes)
            w.add_tensor(name, gguf.quants.quantize(value, t), raw_dtype=t)
        else:
            w.add_tensor(name, value)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out
