"""The toy world, its corpus and the shipped base model."""

import json

import numpy as np
import pytest

from s2jax.methods import method
from s2jax.tasks.toy.world import MAX_TEST, MAX_UNLABELED, TASKS, held_out, input_key
from s2jax.toy.corpus import CorpusConfig, task_corpus


@pytest.mark.parametrize("name", list(TASKS))
def test_ideal_system2_transcript_is_right_and_direct_answers_are_biased(name):
    import random

    t = TASKS[name]
    test, _ = held_out(t, 60, 0)
    rng = random.Random(0)
    s2 = [t.task.score(t.task.extract(_final(t, ex)), ex) for ex in test]
    s1 = [t.task.score(t.task.extract(t.direct(ex, rng)), ex) for ex in test]
    assert np.mean(s2) == 1.0, "the world's System 2 transcripts must be correct"
    assert np.mean(s1) <= 0.7, f"System 1 answers in the corpus should be biased: {np.mean(s1)}"


def _final(t, ex):
    out = t.solve(ex)[t.method.final_stage]
    return out[-1] if isinstance(out, list) else out


@pytest.mark.parametrize("name", list(TASKS))
def test_held_out_splits_are_disjoint_prefixes(name):
    t = TASKS[name]
    test, unlabeled = held_out(t, MAX_TEST, MAX_UNLABELED)
    small_test, small_unlabeled = held_out(t, 5, 7)
    assert [e.id for e in small_test] == [e.id for e in test[:5]]
    assert [e.id for e in small_unlabeled] == [e.id for e in unlabeled[:7]]
    keys = [input_key(t, e) for e in test + unlabeled]
    assert len(set(keys)) == len(keys)


@pytest.mark.parametrize("name", list(TASKS))
def test_corpus_renders_the_real_programs_and_leaves_out_held_out_inputs(name):
    t = TASKS[name]
    chats = task_corpus(t, CorpusConfig(system2=200, system1=100))
    users = {c[-2]["content"] for c in chats}
    assert all(c[-1]["role"] == "assistant" for c in chats)
    # every corpus example's System 1 prompt and first System 2 stage, rendered as the demo does
    # (seeds as in `task_corpus`: 1000 + 10 * size index, + 1 for System 1)
    for ex in t.generate(3, 1000, t.sizes[0]):
        assert t.method.stages[0].render(ex.fields)[-1]["content"] in users
    for ex in t.generate(3, 1001, t.sizes[0]):
        assert method("system1", t.task.system1).stages[0].render(ex.fields)[-1]["content"] in users
    if t.holdout:
        test, unlabeled = held_out(t, MAX_TEST, MAX_UNLABELED)
        for ex in test + unlabeled:
            assert t.task.system1.render(ex.fields)[-1]["content"] not in users
            if name != "judge":  # BSM's branch stage sees only the question, shared by many
                assert t.method.stages[0].render(ex.fields)[-1]["content"] not in users


# --- the shipped base model ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def shipped():
    import s2jax
    from s2jax.sampling import Sampler
    from s2jax.toy.demo import base_model_dir

    model, tokenizer = s2jax.load(base_model_dir())
    return model, tokenizer, Sampler(model, tokenizer, max_len=512)


@pytest.mark.slow
def test_shipped_model_is_small_and_loads_in_transformers_with_the_same_greedy_continuation(
        shipped):
    import torch
    from transformers import AutoModelForCausalLM

    from s2jax.core.text_generator import SamplingParams
    from s2jax.sampling.chat import encode_prompts
    from s2jax.toy.demo import base_model_dir

    d = base_model_dir()
    assert sum(f.stat().st_size for f in d.iterdir()) <= 15 * 2**20
    model, tokenizer, sampler = shipped
    # a System 2 prompt of each shape: RaR (1 stage), S2A's first stage, BSM's merge stage
    prompts = []
    for name, stage in (("last_letter", 0), ("sycophancy", 0), ("judge", 0)):
        t = TASKS[name]
        ex = held_out(t, 1, 0)[0][0]
        prompts.append(t.method.stages[stage].render(ex.fields))
    ids = encode_prompts(tokenizer, prompts, chat=True)
    ours = sampler.generate_ids(ids, SamplingParams(temperature=0.0, max_new_tokens=100))
    hf = AutoModelForCausalLM.from_pretrained(str(d), dtype=torch.float32).eval()
    eos = tokenizer.eos_token_id
    for prompt, row in zip(ids, ours, strict=True):
        with torch.no_grad():
            out = hf.generate(torch.tensor([prompt]), max_new_tokens=100, do_sample=False,
                              eos_token_id=eos, pad_token_id=tokenizer.pad_token_id)
        theirs = out[0, len(prompt):].tolist()
        sample, tokens = row[0]
        assert tokens == theirs[:len(tokens)] and len(tokens) == len(theirs), (
            tokenizer.decode(tokens), tokenizer.decode(theirs))
        assert sample.finish_reason == "stop" and tokens[-1] == eos


@pytest.mark.slow
def test_shipped_model_passes_the_capability_check(shipped):
    from s2jax.toy.capability import capability

    report = capability(shipped[2], n=12)
    assert report["passed"], json.dumps(report)


# --- the pretraining recipe ---------------------------------------------------------------------
@pytest.mark.slow
def test_pretraining_recipe_is_deterministic_and_writes_a_loadable_model(tmp_path):
    """A short version of the recipe (tiny corpus, tiny model, 3 steps) twice: same bytes."""
    import s2jax
    from s2jax.toy.pretrain import PretrainConfig, pretrain

    config = PretrainConfig(corpus=CorpusConfig(system2=6, system1=4), vocab_size=320,
                            hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2,
                            num_kv_heads=1, head_dim=16, batch_size=8, steps=3, warmup_steps=1)
    summaries = [pretrain(config, tmp_path / f"m{i}", progress=False) for i in range(2)]
    assert summaries[0]["final_loss"] == summaries[1]["final_loss"]
    a, b = ((tmp_path / f"m{i}" / "model.safetensors").read_bytes() for i in range(2))
    assert a == b
    model, tokenizer = s2jax.load(tmp_path / "m0")
    assert model.config.architecture == "LlamaForCausalLM"
    assert tokenizer.eos_token == "<|end|>" and tokenizer.chat_template


def test_toy_pretrain_command_rejects_bad_steps(capsys):
    from s2jax.cli import main

    assert main(["toy", "pretrain", "--out", "/nonexistent/x", "--steps", "0"]) == 2
    assert "--steps" in capsys.readouterr().err
