"""Stepwise internalization end to end: the demo and `s2jax run` with a removal curriculum
(trace targets, an evaluation after every stage, the curve), and `s2jax toy multiply`."""

import dataclasses
import json

import pyarrow.parquet as pq
import pytest

from s2jax.core.errors import S2JaxError
from s2jax.toy.demo import QUICK, task_distillation


def test_demo_stepwise_flags_reach_the_distillation(tmp_path):
    plain = task_distillation("last_letter", QUICK, tmp_path)
    staged = task_distillation("last_letter", dataclasses.replace(
        QUICK, tokens_per_stage=8, steps_per_stage=5, smoothing=4.0), tmp_path)
    assert plain.distill.target == "answer" and not plain.train.curriculum.enabled
    assert staged.distill.target == "trace" and staged.train.steps == 0
    c = staged.train.curriculum
    assert (c.tokens_per_stage, c.steps_per_stage, c.smoothing, c.reset_optimizer) == (
        8, 5, 4.0, True)
    # answer-only demos keep the fingerprints (and run dirs) they had before these fields
    assert "tokens_per_stage" not in plain.config["demo"]
    assert staged.fingerprint != plain.fingerprint


def test_experiment_config_wants_trace_targets_for_a_curriculum():
    from s2jax.distill.dataset import DistillConfig
    from s2jax.run.config import ExperimentConfig
    from s2jax.train import TrainConfig
    from s2jax.train.config import CurriculumConfig

    train = TrainConfig(curriculum=CurriculumConfig(tokens_per_stage=4, steps_per_stage=2))
    kw = dict(name="x", model="m", task="last_letter", method="rar_1step", train=train)
    with pytest.raises(S2JaxError, match="needs distill.target=trace"):
        ExperimentConfig(**kw)
    ExperimentConfig(**kw, distill=DistillConfig(target="trace"))


@pytest.mark.slow
def test_quick_stepwise_demo_evaluates_every_stage(tmp_path, capsys):
    from s2jax.cli import main

    out = tmp_path / "demo"
    argv = ["demo", "--quick", "--tasks", "last_letter", "--out", str(out), "--no-progress",
            "--tokens-per-stage", "24", "--steps-per-stage", "2"]
    assert main(argv) == 0
    row = json.loads((out / "results.json").read_text())["tasks"]["last_letter"]
    stages = row["curriculum"]
    summary = json.loads((out / "last_letter" / "train" / "summary.json").read_text())
    assert [s["stage"] for s in stages] == list(range(summary["stages"]))
    assert [s["removed"] for s in stages] == [24 * k for k in range(len(stages))]
    assert [s["step"] for s in stages] == [2 * (k + 1) for k in range(len(stages))]
    assert summary["steps"] == 2 * len(stages) and all(s["examples"] == 6 for s in stages)
    for s in stages:
        assert (out / "last_letter" / "eval" / f"stage{s['stage']}.jsonl").is_file()
    rows = out / "last_letter" / "distill" / "train.parquet"
    assert "trace" in pq.read_table(rows).column_names
    assert (out / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "stage 1 (24 trace tokens removed)" in (out / "table.md").read_text()
    # a finished run is read back, not redone: the stage rows come from their files
    (out / "results.json").unlink()
    (out / "last_letter" / "results.json").unlink()
    assert main(argv) == 0
    again = json.loads((out / "results.json").read_text())["tasks"]["last_letter"]
    assert [s["accuracy"] for s in again["curriculum"]] == [s["accuracy"] for s in stages]


@pytest.mark.slow
def test_multiply_arms_share_a_budget(tmp_path):
    from s2jax.toy.multiply import MultiplyConfig, run_multiply

    tiny = MultiplyConfig(k=2, train_examples=300, test=12, first_stage_steps=4,
                          steps_per_stage=2, tokens_per_stage=5, hidden_size=32,
                          intermediate_size=64, num_layers=2, head_dim=8, batch_size=4,
                          seq_len=96)
    staged = run_multiply(tiny, tmp_path / "stepwise", log=lambda _: None)
    plain = run_multiply(dataclasses.replace(tiny, stepwise=False), tmp_path / "answer",
                         log=lambda _: None)
    # a 2 x 2 trace is 9 tokens with its newline ("1 9 0 + 0 5 5 4\n"): 2 stages remove it,
    # a third has none
    assert staged["stages"] == 3 and staged["steps"] == plain["steps"] == 4 + 2 * 2
    assert [s["removed"] for s in staged["curriculum"]] == [0, 5, 10]
    assert [s["step"] for s in staged["curriculum"]] == [4, 6, 8]
    for r in (staged, plain):
        summary = json.loads((tmp_path / ("stepwise" if r is staged else "answer") / "train"
                              / "summary.json").read_text())
        assert summary["steps"] == 8 and r["final"]["examples"] == 12
    assert plain["curriculum"] == [] and plain["arm"] == "answer-only"
    assert (tmp_path / "stepwise" / "curve.png").is_file()
