"""Gemma 2/3 beyond the family-wide parity tests: config formats, unsupported variants, BOS and
<end_of_turn> on the chat path, one SFT step against torch, and parity at Gemma 3 270M shapes.

Logits, left padding, export and greedy parity for Gemma run in tests/test_models.py and
tests/test_sampling.py, parametrised over `s2jax.testing.checkpoints.FAMILIES`.
"""

import json

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

import s2jax
from s2jax.core.errors import S2JaxError
from s2jax.models.config import ModelConfig
from s2jax.models.transformer import forward, output_logits
from s2jax.sampling.chat import encode_prompts
from s2jax.sampling.engine import eos_token_ids
from s2jax.testing.tokenizers import gemma_tokenizer
from s2jax.train import TrainConfig, finetune, tokenize_chat
from s2jax.train.data import Batches, tokenize_examples
from tests.hf_fixtures import load_reference, make_hf_checkpoint

# Gemma 3 1B's config.json as transformers 4.x wrote it (12 of its 26 layers)
GEMMA3_V4 = {
    "architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text", "vocab_size": 262144,
    "hidden_size": 1152, "intermediate_size": 6912, "num_hidden_layers": 12,
    "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 256,
    "query_pre_attn_scalar": 256, "rms_norm_eps": 1e-6, "sliding_window": 512,
    "sliding_window_pattern": 6, "rope_theta": 1000000.0, "rope_local_base_freq": 10000.0,
    "rope_scaling": {"rope_type": "linear", "factor": 8.0}, "hidden_activation":
    "gelu_pytorch_tanh", "final_logit_softcapping": None, "attn_logit_softcapping": None,
    "bos_token_id": 2, "eos_token_id": [1, 106], "pad_token_id": 0,
    "max_position_embeddings": 32768,
}


def test_gemma3_config_formats_of_transformers_4_and_5_agree():
    v4 = ModelConfig.from_hf(GEMMA3_V4)
    assert v4.sliding_windows == (512,) * 5 + (0,) + (512,) * 5 + (0,)
    assert (v4.rope_theta, v4.rope_type, v4.local_rope_theta) == (1e6, "linear", 1e4)
    inv = v4.rope_inv_freqs()
    np.testing.assert_allclose(inv[5], 1e6 ** -(np.arange(0, 256, 2) / 256) / 8, rtol=1e-6)
    np.testing.assert_allclose(inv[0], 1e4 ** -(np.arange(0, 256, 2) / 256), rtol=1e-6)
    v5 = transformers.Gemma3TextConfig(**GEMMA3_V4).to_dict()  # rope_parameters per layer type
    assert "full_attention" in v5["rope_parameters"]
    assert ModelConfig.from_hf(v5) == v4
    ours = transformers.Gemma3TextConfig(**v4.to_hf())  # what `s2jax.save` writes, read back
    assert ours.layer_types == transformers.Gemma3TextConfig(**GEMMA3_V4).layer_types
    assert ours.rope_parameters == v5["rope_parameters"]
    assert ModelConfig.from_hf(ours.to_dict()) == v4
    # Gemma 2 before `layer_types`: local and global layers alternate, the first one local
    gemma2 = {k: v for k, v in GEMMA3_V4.items() if "softcapping" not in k and "rope" not in k
              and k != "sliding_window_pattern"}  # absent: transformers' defaults apply
    gemma2.update(architectures=["Gemma2ForCausalLM"], model_type="gemma2", num_hidden_layers=4)
    cfg = ModelConfig.from_hf(gemma2)
    assert cfg.sliding_windows == (512, 0, 512, 0) and cfg.local_rope_theta is None
    assert (cfg.attn_logit_softcap, cfg.final_logit_softcap, cfg.rope_theta) == (50.0, 30.0, 1e4)


@pytest.mark.parametrize("change,expected", [
    ({"architectures": ["Gemma3ForConditionalGeneration"]}, "multimodal Gemma 3 (vision tower)"),
    ({"architectures": ["Gemma3nForCausalLM"]}, "Gemma 3n is not supported"),
    ({"use_bidirectional_attention": True}, "'use_bidirectional_attention' = True"),
    ({"hidden_activation": "gelu"}, "field 'hidden_activation' is 'gelu'"),
    ({"rope_parameters": {"full_attention": {"rope_type": "default"},
                          "sliding_attention": {"rope_type": "linear", "factor": 2.0}}},
     "'rope_parameters.sliding_attention' has rope_type 'linear'"),
])
def test_unsupported_gemma_variants_are_one_line_errors(change, expected):
    with pytest.raises(S2JaxError) as e:
        ModelConfig.from_hf({**GEMMA3_V4, **change}, source="g/config.json")
    assert expected in str(e.value) and "\n" not in str(e.value), str(e.value)


@pytest.fixture(scope="module")
def gemma_chat(tmp_path_factory):
    """`gemma_chat(family)`: a tiny Gemma checkpoint with a Gemma-like tokenizer; its config
    lists only <eos> (7) as EOS, as base Gemma checkpoints do."""
    made = {}

    def make(family):
        if family not in made:
            made[family] = make_hf_checkpoint(tmp_path_factory.mktemp(family), family,
                                              tokenizer=gemma_tokenizer())
        return made[family]

    return make


def test_bos_once_and_end_of_turn_is_eos(gemma_chat, tmp_path):
    model, tok = s2jax.load(gemma_chat("gemma3"), dtype="float32")
    bos, eot = tok.bos_token_id, tok.convert_tokens_to_ids("<end_of_turn>")
    assert tok.eos_token_id == 7 and eot != 7
    # raw prompts get BOS as `transformers` tokenizes them for `generate`
    raw = encode_prompts(tok, ["The quick brown fox"], chat=False)[0]
    assert raw == tok("The quick brown fox")["input_ids"] and raw[0] == bos
    # chats: exactly the ids of transformers' apply_chat_template, one BOS (from the template)
    chat = [{"role": "user", "content": "What is 12 + 30?"}]
    ids = encode_prompts(tok, [chat], chat=True)[0]
    assert ids == list(tok.apply_chat_template(chat, add_generation_prompt=True)["input_ids"])
    assert ids[0] == bos and ids.count(bos) == 1
    # <end_of_turn> ends generation and the trained answer, and is exported as an EOS
    assert eot in model.config.eos_token_ids and eot in eos_token_ids(model, tok)
    ex = tokenize_chat(tok, chat + [{"role": "assistant", "content": "42"}],
                       stop_ids=model.config.eos_token_ids)
    assert tok.decode(ex.ids[ex.loss_mask]) == "42<end_of_turn>"
    s2jax.save(model, tok, tmp_path / "out")
    gen = json.loads((tmp_path / "out" / "generation_config.json").read_text())
    assert sorted(gen["eos_token_id"]) == [7, eot]


@pytest.mark.slow
@pytest.mark.parametrize("family", ["gemma2"])  # gemma3 passes too; one compile is enough
def test_one_sft_step_loss_and_gradient_match_torch(gemma_chat, tmp_path, family):
    """The trainer's first step on 8 devices (data, fsdp, tensor = 2): its loss and gradient
    norm equal those of the `transformers` model on the same batch (Gemma 2: soft-capped
    logits in the loss)."""
    directory = gemma_chat(family)
    model, tok = s2jax.load(directory, dtype="float32")
    rng = np.random.default_rng(0)
    words = ["red", "blue", "cat", "dog", "sun", "moon", "coin", "fox"]
    examples = [{"messages": [
        {"role": "user", "content": f"Item {i}: " + " ".join(rng.choice(words, i % 3 + 1))},
        {"role": "assistant", "content": " ".join(rng.choice(words, 3))}]} for i in range(8)]
    cfg = TrainConfig(steps=1, seq_len=32, batch_size=4, pack=False, learning_rate=1e-3,
                      progress=False, export=False, mesh="data=2,fsdp=2,tensor=2")
    finetune(model, tok, examples, cfg, tmp_path / "run")
    ours = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])

    data = tokenize_examples(tok, examples, stop_ids=model.config.eos_token_ids)
    b = next(Batches(data, seq_len=32, batch_size=4, grad_accum=1, packed=False, seed=cfg.seed))
    tokens, targets, seg, w = (torch.tensor(b[k][0]) for k in (
        "tokens", "targets", "segment_ids", "weights"))
    ref = load_reference(directory)
    logits = ref(input_ids=tokens.long(), attention_mask=(seg != 0).long()).logits
    nll = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.long().flatten(),
                                            reduction="none")
    loss = (nll * w.flatten()).sum() / w.sum()
    loss.backward()
    grad_norm = torch.sqrt(sum((p.grad**2).sum() for p in ref.parameters())).item()
    print(f"{family} SFT step: loss {ours['loss']:.6f} vs torch {loss.item():.6f}, grad norm "
          f"{ours['grad_norm']:.6f} vs {grad_norm:.6f}")
    assert w.sum() > 10
    assert ours["loss"] == pytest.approx(loss.item(), rel=1e-5)
    assert ours["grad_norm"] == pytest.approx(grad_norm, rel=1e-4)


@pytest.mark.slow
def test_parity_at_gemma3_270m_shapes(tmp_path):
    """Gemma 3 270M's shapes (vocab 262144, d 640, 4 q / 1 kv heads of 256, MLP 2048, window
    512, 5 local : 1 global) with random weights of about a trained model's scale, 6 of its 18
    layers, on 520 tokens: past the window, so the local layers drop the first keys. Logits of
    the last 8 positions (all past the window), final hidden states of all."""
    directory = make_hf_checkpoint(
        tmp_path / "g270m", "gemma3", vocab_size=262144, hidden_size=640, intermediate_size=2048,
        num_hidden_layers=6, num_attention_heads=4, num_key_value_heads=1, head_dim=256,
        query_pre_attn_scalar=256, sliding_window=512, layer_types=None, rope_parameters=None,
        max_position_embeddings=32768, weight_std=None, initializer_range=0.03)
    model, _ = s2jax.load(directory, dtype="float32")
    assert model.config.sliding_windows == (512,) * 5 + (0,)
    T, keep = 520, 8
    ids = np.random.default_rng(0).integers(8, 262144, size=(1, T)).astype(np.int32)
    hidden, _ = forward(model.config, model.params(), jnp.asarray(ids), return_hidden=True)
    logits = np.asarray(output_logits(model.config, model.params(), hidden[:, -keep:], None))
    hidden = np.asarray(hidden)
    del model
    with torch.no_grad():
        out = load_reference(directory)(input_ids=torch.tensor(ids).long(), logits_to_keep=keep,
                                        output_hidden_states=True)
    ref_hidden, ref_logits = out.hidden_states[-1].numpy(), out.logits.numpy()
    err, err_h = np.abs(logits - ref_logits).max(), np.abs(hidden - ref_hidden).max()
    print(f"Gemma 3 270M shapes: max |logit diff| {err:.2e} (max |logit| "
          f"{np.abs(ref_logits).max():.1f}), max |hidden diff| {err_h:.2e} (max |hidden| "
          f"{np.abs(ref_hidden).max():.1f})")
    assert err <= 1e-4 and err_h <= 1e-4, (err, err_h)
    assert np.abs(ref_logits).max() > 1.0
