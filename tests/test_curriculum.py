"""The removal curriculum of stepwise internalization: exact removal per stage, smoothing's
distribution, stage 0 = plain trace SFT, optimizer resets, and bit-exact resume mid-curriculum."""

import argparse
import dataclasses
import json
import math
import shutil

import numpy as np
import pytest

import s2jax
from s2jax.core.errors import S2JaxError
from s2jax.train import TrainConfig, finetune
from s2jax.train.config import CurriculumConfig
from s2jax.train.curriculum import (
    StagedBatches,
    num_stages,
    remove_trace,
    smoothing_offsets,
    stage_of,
)
from s2jax.train.data import Batches, tokenize_chat, tokenize_examples

WORDS = ["red", "blue", "green", "cat", "dog", "sun", "moon", "star", "coin", "fox"]


def _rows(n: int, seed: int = 0) -> list[dict]:
    """Chats whose assistant turn is a trace of 1-6 words, a newline and '#### ' + an answer."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        trace = " ".join(rng.choice(WORDS, i % 6 + 1)) + ".\n"
        answer = f"#### {rng.choice(WORDS)}"
        rows.append({"messages": [{"role": "user", "content": f"Item {i}: {rng.choice(WORDS)}"},
                                  {"role": "assistant", "content": trace + answer}],
                     "trace": trace})
    return rows


def _reference(tok, row: dict, removed: int) -> tuple[list[int], list[int]]:
    """(ids, ids trained on) of `row` with `removed` trace tokens gone, built by hand."""
    encode = lambda text: tok(text, add_special_tokens=False)["input_ids"]
    chat = row["messages"]
    prompt = tok.apply_chat_template(chat[:1], tokenize=False, add_generation_prompt=True)
    full = tok.apply_chat_template(chat, tokenize=False)
    turn = full[len(prompt):]
    trace, rest = encode(row["trace"]), encode(turn[len(row["trace"]):])
    end = rest.index(tok.eos_token_id) + 1  # trained up to and including the end of turn
    kept = trace[removed:] + rest[:end]
    return encode(prompt) + trace[removed:] + rest, kept


@pytest.fixture(scope="module")
def tok(hf_checkpoint):
    return s2jax.load(hf_checkpoint("llama3"))[1]


def test_trace_span_is_the_trace_tokens(tok):
    row = _rows(3)[2]
    ex = tokenize_chat(tok, row["messages"], trace=row["trace"])
    ids, _ = _reference(tok, row, 0)
    assert ex.ids.tolist() == ids
    start, end = ex.trace
    assert tok.decode(ex.ids[start:end]) == row["trace"]
    assert ex.loss_mask[start:end].all() and not ex.loss_mask[:start].any()
    with pytest.raises(S2JaxError, match="not the start of the last assistant"):
        tokenize_chat(tok, row["messages"], trace="something else")


def test_removal_per_stage_is_exact(tok):
    rows = _rows(12)
    data = tokenize_examples(tok, rows)
    c = CurriculumConfig(tokens_per_stage=3, steps_per_stage=2)
    longest = max(e.trace[1] - e.trace[0] for e in data)
    stages = num_stages(data, c)
    assert stages == math.ceil(longest / 3) + 1 and longest > 6
    # one row per example, the whole epoch in one batch: each batch is one stage's data
    batches = StagedBatches(data, c, stages, seq_len=64, batch_size=12, packed=False, seed=5)
    for stage in range(stages):
        for _ in range(c.steps_per_stage):
            batch = {k: v[0] for k, v in next(batches).items()}
            got = sorted((tuple(t[s > 0]), tuple(t[1:][w[:-1] > 0]))
                         for t, s, w in zip(batch["tokens"], batch["segment_ids"],
                                            batch["weights"], strict=True))
            want = sorted(tuple(map(tuple, _reference(tok, r, 3 * stage))) for r in rows)
            assert got == want, f"stage {stage}"
    assert batches.stage == stages - 1  # the last stage: no trace token left
    assert all(remove_trace(e, 3 * (stages - 1)).trace[1] == e.trace[0] for e in data)


def test_smoothing_offsets_follow_exp_minus_lambda_o():
    rng = np.random.default_rng(0)
    for lam in (0.5, 4.0):
        o = smoothing_offsets(rng, 200_000, lam)
        for k in range(4):
            want = (1 - math.exp(-lam)) * math.exp(-lam * k)
            assert abs(np.mean(o == k) - want) < 4 * math.sqrt(want * (1 - want) / len(o)) + 1e-4
    assert not smoothing_offsets(rng, 10, 0.0).any()


def test_smoothed_stage_removes_stage_tokens_plus_the_drawn_offsets(tok):
    rows = _rows(12, seed=1)
    data = tokenize_examples(tok, rows)
    c = CurriculumConfig(tokens_per_stage=2, steps_per_stage=1, smoothing=0.7)
    batches = StagedBatches(data, c, num_stages(data, c), seq_len=64, batch_size=12,
                            packed=False, seed=3)
    next(batches)
    batch = next(batches)  # stage 1, epoch 0
    removed = batches.removal(1, 0)
    assert batches.stage == 1 and (removed >= 2).all() and (removed > 2).any()
    want = sorted(tuple(_reference(tok, r, int(k))[0]) for r, k in zip(rows, removed,
                                                                         strict=True))
    got = sorted(tuple(t[s > 0]) for t, s in zip(batch["tokens"][0], batch["segment_ids"][0],
                                                 strict=True))
    assert got == want


def test_stage_zero_batches_are_plain_batches(tok):
    data = tokenize_examples(tok, _rows(20, seed=2))
    c = CurriculumConfig(tokens_per_stage=2, steps_per_stage=7)
    kw = dict(seq_len=48, batch_size=2, seed=11)
    staged, plain = StagedBatches(data, c, num_stages(data, c), **kw), Batches(data, **kw)
    for _ in range(7):  # across an epoch boundary of the packed rows
        a, b = next(staged), next(plain)
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(next(staged)["tokens"], next(plain)["tokens"])


def test_stage_of_a_longer_first_stage_and_its_schedule():
    from s2jax.train.curriculum import stage_start, total_steps
    from s2jax.train.loop import _step_schedule

    c = CurriculumConfig(tokens_per_stage=2, steps_per_stage=3, first_stage_steps=5)
    assert [stage_of(s, c, 4) for s in range(1, 16)] == [0] * 5 + [1] * 3 + [2] * 3 + [3] * 4
    assert [stage_start(k, c) for k in range(4)] == [0, 5, 8, 11] and total_steps(c, 4) == 14
    config = TrainConfig(learning_rate=1.0, warmup_steps=2, schedule="linear", curriculum=c)
    lr = _step_schedule(config, 14, 4)
    # warmup restarts where each stage begins; stage 0 runs past its 3-step schedule
    got = [float(lr(s)) for s in range(14)]
    assert got[:5] == pytest.approx([0.0, 0.5, 1.0, 0.0, 0.0])
    assert got[5:8] == got[8:11] == got[11:14] == pytest.approx([0.0, 0.5, 1.0])


def _config(**kw) -> TrainConfig:
    return TrainConfig(seq_len=48, batch_size=4, learning_rate=3e-3, warmup_steps=1,
                       schedule="cosine", progress=False, export=False, log_every=1, **kw)


def _params(model) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in model.params().items()}


@pytest.mark.slow
def test_stage_zero_equals_plain_trace_sft_and_later_stages_reset_adam(hf_checkpoint, tmp_path):
    rows = _rows(16, seed=3)
    c = CurriculumConfig(tokens_per_stage=2, steps_per_stage=4, stages=3)
    seen = {}

    def on_stage(stage, step):
        seen[stage] = (step, _params(model))

    model, tok = s2jax.load(hf_checkpoint("llama3"), dtype="float32")
    finetune(model, tok, rows, _config(curriculum=c), tmp_path / "staged", on_stage=on_stage)
    assert sorted(seen) == [0, 1, 2] and [seen[k][0] for k in range(3)] == [4, 8, 12]
    plain, tok = s2jax.load(hf_checkpoint("llama3"), dtype="float32")
    finetune(plain, tok, rows, _config(steps=4), tmp_path / "plain")
    for name, value in _params(plain).items():
        np.testing.assert_array_equal(seen[0][1][name], value, err_msg=name)
    # the learning rate restarts its warmup + cosine in every stage (a fresh optimizer)
    lrs = [r["lr"] for r in map(json.loads, (tmp_path / "staged" / "metrics.jsonl")
                                .read_text().splitlines()) if "lr" in r]
    assert lrs[:4] == lrs[4:8] == lrs[8:] and lrs[0] == 0.0
    assert not np.array_equal(seen[1][1]["embed"], seen[2][1]["embed"])


def test_curriculum_refuses_rows_without_traces(hf_checkpoint, tmp_path):
    model, tok = s2jax.load(hf_checkpoint("llama3"))
    rows = [{"messages": r["messages"]} for r in _rows(4)]
    c = CurriculumConfig(tokens_per_stage=2, steps_per_stage=1)
    with pytest.raises(S2JaxError, match="no example has a trace"):
        finetune(model, tok, rows, _config(curriculum=c), tmp_path / "run")
    with pytest.raises(S2JaxError, match="steps_per_stage"):
        CurriculumConfig(tokens_per_stage=2)


class _Killed(Exception):
    pass


@pytest.mark.slow
def test_resume_at_a_stage_boundary_is_bit_exact(hf_checkpoint, tmp_path):
    """Stopped right after stage 1's checkpoint (inside its evaluation), then run again."""
    rows = _rows(16, seed=4)
    c = CurriculumConfig(tokens_per_stage=2, steps_per_stage=3, smoothing=1.0)
    config = _config(curriculum=c, checkpoint_every=2)
    model, tok = s2jax.load(hf_checkpoint("llama3"), dtype="float32")
    whole = []
    finetune(model, tok, rows, config, tmp_path / "whole",
             on_stage=lambda k, s: whole.append((k, s)))
    final = _params(model)

    calls = []

    def stop_in_stage_1(stage, step):
        calls.append((stage, step))
        if stage == 1 and calls.count((1, step)) == 1:
            raise _Killed

    model, tok = s2jax.load(hf_checkpoint("llama3"), dtype="float32")
    with pytest.raises(_Killed):
        finetune(model, tok, rows, config, tmp_path / "cut", on_stage=stop_in_stage_1)
    model, tok = s2jax.load(hf_checkpoint("llama3"), dtype="float32")
    finetune(model, tok, rows, config, tmp_path / "cut", on_stage=stop_in_stage_1)
    # stage 1's evaluation ran again on resume, then every later stage once
    assert calls == [whole[0], whole[1], *whole[1:]]
    for name, value in _params(model).items():
        np.testing.assert_array_equal(value, final[name], err_msg=name)


@pytest.mark.slow
def test_resume_mid_stage_is_bit_exact(hf_checkpoint, tmp_path):
    """A run whose checkpoints stop mid-stage (steps 4 and 5 of 3-step stages) resumes into
    the same weights, optimizer resets and smoothing draws as an uninterrupted run."""
    rows = _rows(16, seed=5)
    c = CurriculumConfig(tokens_per_stage=2, steps_per_stage=3, smoothing=1.0)
    model, tok = s2jax.load(hf_checkpoint("llama3"), dtype="float32")
    finetune(model, tok, rows, _config(curriculum=c), tmp_path / "whole")
    final = _params(model)
    stages = num_stages(tokenize_examples(tok, rows), c)
    total = stages * 3
    # the first 5 steps of the same run: the same config except `steps` would be refused on
    # resume, so the cut run is the full config stopped by its callback's exception at step 6
    model, tok = s2jax.load(hf_checkpoint("llama3"), dtype="float32")
    cut = _config(curriculum=c, checkpoint_every=1, keep_checkpoints=8)

    def stop(stage, step):
        if step == 6:
            raise _Killed

    with pytest.raises(_Killed):
        finetune(model, tok, rows, cut, tmp_path / "cut", on_stage=stop)
    # drop the checkpoint of step 6 (a stage end): resume from 5, inside stage 1
    shutil.rmtree(tmp_path / "cut" / "checkpoints" / "6")
    model, tok = s2jax.load(hf_checkpoint("llama3"), dtype="float32")
    finetune(model, tok, rows, cut, tmp_path / "cut")
    summary = (tmp_path / "cut" / "summary.json").read_text()
    assert '"resumed_from": 5' in summary and stage_of(5, c, stages) == 1 and total > 6
    for name, value in _params(model).items():
        np.testing.assert_array_equal(value, final[name], err_msg=name)


def test_curriculum_fields_are_train_flags():
    from s2jax.commands.train import register, train_config

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["train", "--model", "m", "--data", "d", "--out", "o",
                              "--curriculum-tokens-per-stage", "8",
                              "--curriculum-steps-per-stage", "50",
                              "--curriculum-smoothing", "4", "--no-curriculum-reset-optimizer"])
    got = train_config(args).curriculum
    assert got == CurriculumConfig(tokens_per_stage=8, steps_per_stage=50, smoothing=4.0,
                                   reset_optimizer=False)
    assert dataclasses.replace(got, tokens_per_stage=0).enabled is False
