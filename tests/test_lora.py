"""LoRA: exact base at B = 0, frozen base, merged == unmerged, PEFT parity, sharding, sampling."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import s2jax
from s2jax.cli import main
from s2jax.core.errors import S2JaxError
from s2jax.core.overrides import override
from s2jax.core.text_generator import SamplingParams
from s2jax.models.config import ModelConfig
from s2jax.models.lora import (
    adapter_specs,
    init_adapters,
    load_peft,
    merge,
    save_peft,
    with_scale,
)
from s2jax.models.lora_config import LORA_TARGETS, PEFT_NAMES
from s2jax.models.params import param_specs
from s2jax.models.transformer import forward
from s2jax.sampling import Sampler
from s2jax.testing.checkpoints import BASE, FAMILIES
from s2jax.train import TrainConfig, finetune
from s2jax.train.config import LoraConfig
from tests.hf_fixtures import load_reference
from tests.test_train import _examples

LORA = LoraConfig(rank=4, alpha=8.0)


def _tokens(cfg, shape=(2, 11), seed=0):
    return jnp.asarray(np.random.default_rng(seed).integers(1, cfg.vocab_size, shape), jnp.int32)


def _trained_looking(cfg, lora, seed=1):
    """Adapters with a non-zero B, as after some training."""
    adapters = init_adapters(cfg, lora, jax.random.key(seed))
    keys = iter(jax.random.split(jax.random.key(seed + 1), len(adapters)))
    return {k: 0.05 * jax.random.normal(next(keys), v.shape) if k.endswith("lora_b") else v
            for k, v in adapters.items()}


def test_adapters_are_described_from_the_weights_they_adapt(hf_checkpoint):
    model, _ = s2jax.load(hf_checkpoint("qwen3"), dtype="float32")
    cfg = model.config
    specs, base = adapter_specs(cfg, LORA), param_specs(cfg)
    assert specs["layers.q.lora_a"].axes == ("layers", "embed", None)
    assert specs["layers.q.lora_b"].axes == ("layers", None, "heads", "head_dim")
    assert specs["layers.o.lora_a"].shape == (2, 4, 16, 4)  # [L, N, H, r]: o's inputs
    assert specs["layers.down.lora_b"].axes == ("layers", None, "embed")
    assert specs["layers.k.lora_a"].hf_key == \
        "base_model.model.model.layers.{i}.self_attn.k_proj.lora_A.weight"
    for name, spec in specs.items():  # each adapter shards by its weight's axes
        w = base[name.rsplit(".", 1)[0]]
        assert set(spec.axes) - {None} <= set(w.axes)
    with pytest.raises(S2JaxError, match="lora.targets=q,qq"):
        LoraConfig(rank=4, targets=("q", "qq"))


# qwen2: q/k/v biases, tied; gemma3: its own block, which projects through the same `project`.
# Merged vs unmerged differ by fp32 rounding (x @ (W + s A B) vs x @ W + s (x A) B); Gemma's
# four norms per layer carry it further (measured 1.8e-5 on this fixture's logits of O(1)).
@pytest.mark.slow
@pytest.mark.parametrize("family,tol", [("qwen2", 1e-5), ("gemma3", 3e-5)])
def test_zero_b_is_the_base_exactly_and_merge_matches_unmerged(hf_checkpoint, family, tol):
    model, _ = s2jax.load(hf_checkpoint(family), dtype="float32")
    cfg, base = model.config, model.params()
    tokens = _tokens(cfg)
    want, _ = forward(cfg, base, tokens)
    fresh = with_scale(LORA, init_adapters(cfg, LORA, jax.random.key(0)))
    got, _ = forward(cfg, {**base, **fresh}, tokens)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))

    weights = {**base, **with_scale(LORA, _trained_looking(cfg, LORA))}
    unmerged, _ = forward(cfg, weights, tokens)
    merged, _ = forward(cfg, merge(weights), tokens)
    assert np.abs(np.asarray(unmerged) - np.asarray(want)).max() > 0.1  # the adapter matters
    np.testing.assert_allclose(np.asarray(merged), np.asarray(unmerged), atol=tol, rtol=0)


def test_peft_loads_the_exported_adapter_onto_transformers(hf_checkpoint, tmp_path):
    path = hf_checkpoint("qwen3")  # untied, q/k norms, head_dim != hidden / heads
    model, _ = s2jax.load(path, dtype="float32")
    cfg = model.config
    lora = LoraConfig(rank=3, alpha=6.0, targets=("q", "v", "o", "down"))
    adapters = _trained_looking(cfg, lora)
    save_peft(cfg, lora, adapters, tmp_path / "adapter", base_model=str(path))
    tokens = _tokens(cfg)
    ours, _ = forward(cfg, {**model.params(), **with_scale(lora, adapters)}, tokens)

    import peft

    ref = peft.PeftModel.from_pretrained(load_reference(path), str(tmp_path / "adapter"))
    with torch.no_grad():
        theirs = ref(torch.from_numpy(np.asarray(tokens)).long()).logits.numpy()
    np.testing.assert_allclose(theirs, np.asarray(ours), atol=1e-4, rtol=0)

    # and back: PEFT's files import onto the s2jax model unchanged
    ref.save_pretrained(tmp_path / "resaved")
    lora2, imported = load_peft(cfg, tmp_path / "resaved")
    assert lora2 == lora
    for name, value in adapters.items():
        np.testing.assert_array_equal(np.asarray(imported[name]), np.asarray(value), name)
    (tmp_path / "resaved" / "adapter_config.json").write_text(json.dumps(
        {**json.loads((tmp_path / "resaved" / "adapter_config.json").read_text()),
         "use_dora": True}))
    with pytest.raises(S2JaxError, match="'use_dora' = True is not implemented"):
        load_peft(cfg, tmp_path / "resaved")


def _lora_run(hf_checkpoint, tmp_path, name, **overrides):
    model, tok = s2jax.load(hf_checkpoint("llama3"), dtype="float32")
    cfg = TrainConfig(**{**dict(steps=6, seq_len=48, batch_size=8, learning_rate=5e-3,
                                progress=False, lora=LORA), **overrides})
    return finetune(model, tok, _examples(24), cfg, tmp_path / name), tok


@pytest.mark.slow
def test_lora_run_trains_adapters_only_and_exports_merged_and_peft(hf_checkpoint, tmp_path):
    model, _ = _lora_run(hf_checkpoint, tmp_path, "one")
    base, _ = s2jax.load(hf_checkpoint("llama3"), dtype="float32")
    lora, adapters = load_peft(base.config, tmp_path / "one" / "adapter")
    assert lora == LORA
    b = np.asarray(adapters["layers.up.lora_b"])
    assert np.abs(b).max() > 1e-4, "B did not train"
    # the base is bit-identical: the exported model is exactly base + the exported adapter
    merged = merge({**base.params(), **adapters})
    exported, _ = s2jax.load(tmp_path / "one" / "model", dtype="float32")
    for name, value in exported.params().items():
        np.testing.assert_array_equal(np.asarray(value), np.asarray(merged[name]), name)
        np.testing.assert_array_equal(np.asarray(model.param(name).get_value()),
                                      np.asarray(value), name)
    for name in ("embed", "layers.attn_norm", "final_norm"):  # not adapted: untouched
        np.testing.assert_array_equal(np.asarray(exported.param(name).get_value()),
                                      np.asarray(base.param(name).get_value()), name)
    rows = [json.loads(x) for x in (tmp_path / "one/metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["loss"] < rows[0]["loss"]
    # `s2jax generate --adapter`: base + the exported adapter, unmerged == the merged export
    (tmp_path / "in.jsonl").write_text('{"id": "a", "prompt": "Item 3: red fox"}\n')
    outs = []
    for flags in (["--model", str(hf_checkpoint("llama3")), "--adapter",
                   str(tmp_path / "one" / "adapter")], ["--model", str(tmp_path / "one/model")]):
        out = tmp_path / f"out{len(outs)}.jsonl"
        assert main(["generate", *flags, "--input", str(tmp_path / "in.jsonl"), "--output",
                     str(out), "--max-new-tokens", "6", "--max-batch", "4", "--max-len", "48",
                     "--dtype", "float32"]) == 0
        outs.append(out.read_text())
    assert outs[0] == outs[1]
    # the checkpoint and the optimizer hold adapters only
    # PEFT's auto classes find the base from the adapter's config
    peft_config = json.loads((tmp_path / "one" / "adapter" / "adapter_config.json").read_text())
    assert peft_config["base_model_name_or_path"] == str(hf_checkpoint("llama3").resolve())
    meta = json.loads((tmp_path / "one/train_config.json").read_text())
    assert meta["lora"] == {"rank": 4, "alpha": 8.0, "targets": list(LORA.targets)}

    eight, _ = _lora_run(hf_checkpoint, tmp_path, "eight", mesh="data=2,fsdp=2,tensor=2")
    _, sharded = load_peft(base.config, tmp_path / "eight" / "adapter")
    for name, value in adapters.items():
        np.testing.assert_allclose(np.asarray(sharded[name]), np.asarray(value), atol=2e-5,
                                   rtol=0, err_msg=name)
    losses = [[json.loads(x)["loss"] for x in (tmp_path / run / "metrics.jsonl").read_text()
               .splitlines()] for run in ("one", "eight")]
    np.testing.assert_allclose(*losses, rtol=1e-5)


def test_sampler_takes_base_plus_adapter_per_call(hf_checkpoint):
    model, tok = s2jax.load(hf_checkpoint("llama3"), dtype="float32")
    cfg, base = model.config, model.params()
    sampler = Sampler(model, tok, max_batch=4, max_len=64, chat=False)
    sp = SamplingParams(max_new_tokens=12)
    prompts = ["The quick brown fox", "Take the last letters"]
    plain = sampler(prompts, sp)
    fresh = with_scale(LORA, init_adapters(cfg, LORA, jax.random.key(0)))
    assert sampler(prompts, sp, weights={**base, **fresh}) == plain  # B = 0: the base
    weights = {**base, **with_scale(LORA, _trained_looking(cfg, LORA, seed=3))}
    adapted = sampler(prompts, sp, weights=weights)
    assert adapted != plain
    assert sampler(prompts, sp, weights=merge(weights)) == adapted
    assert sampler(prompts, sp) == plain  # nothing was swapped in place


def test_lora_fields_from_experiment_overrides_and_train_flags():
    cfg = override(TrainConfig(), {"lora.rank": "8"})
    cfg = override(cfg, {"lora.targets": "q,v"})
    assert cfg.lora == LoraConfig(rank=8, targets=("q", "v")) and cfg.lora.scale == 2.0
    with pytest.raises(S2JaxError, match="lora.rank"):
        override(cfg, {"lora.rank": "-1"})
    from s2jax.cli import _parser

    args = _parser().parse_args(["train", "--model", "m", "--data", "d", "--out", "o",
                                 "--lora-rank", "16", "--lora-targets", "q,k,gate"])
    from s2jax.commands.train import train_config

    assert train_config(args).lora == LoraConfig(rank=16, targets=("q", "k", "gate"))


def test_targets_in_peft_and_trl_spelling():
    assert LoraConfig(rank=2, targets=("q_proj", "v_proj")) == LoraConfig(rank=2,
                                                                         targets=("q", "v"))
    assert LoraConfig(rank=2, targets="all-linear").targets == LORA_TARGETS
    assert override(TrainConfig(), {"lora.targets": "gate_proj,o"}).lora.targets == ("gate", "o")
    with pytest.raises(S2JaxError, match="distinct names among"):
        LoraConfig(rank=2, targets=("q_proj", "q"))
    # PEFT's names are every supported family's HF module names (the weight table's keys)
    archs = {"LlamaConfig": "LlamaForCausalLM", "MistralConfig": "MistralForCausalLM",
             "Qwen2Config": "Qwen2ForCausalLM", "Qwen3Config": "Qwen3ForCausalLM",
             "Gemma2Config": "Gemma2ForCausalLM", "Gemma3TextConfig": "Gemma3ForCausalLM"}
    for cls, extra in FAMILIES.values():
        cfg = ModelConfig.from_hf({"architectures": [archs[cls]], **BASE, **extra})
        specs = param_specs(cfg)
        assert {specs[f"layers.{t}"].hf_key.split(".")[-2]: t for t in LORA_TARGETS} \
            == PEFT_NAMES
