"""`s2jax demo --quick`: every stage runs and every artifact is written."""

import json

import pytest

from s2jax.tasks.toy.world import TASKS


@pytest.mark.slow
def test_quick_demo_writes_every_artifact(tmp_path, capsys):
    from s2jax.cli import main

    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "| task (method) | system | accuracy % | tokens / answer | seconds |" in printed

    results = json.loads((out / "results.json").read_text())
    assert list(results["tasks"]) == list(TASKS)
    for name, row in results["tasks"].items():
        for key in ("system1", "system2"):
            s = row[key]
            assert 0 <= s["accuracy"] <= 100 and s["tokens_per_answer"] > 0 and s["examples"] == 6
        assert row["verdict"] in ("distils", "does not distil", "partly distils",
                                  "nothing kept to distil", "System 2 no better")
        lines = (out / name / "generations.jsonl").read_text().splitlines()
        assert len(lines) == row["distill_set"]["unlabeled"] == 6
        record = json.loads(lines[0])
        assert len(record["samples"]) == 2 and record["method"] == row["method"]
        if TASKS[name].vote == "perturbation":
            assert len(record["perturbed"]["samples"]) == 2
        distill = out / name / "distill"
        if row["distill_set"]["kept"]:
            stats = json.loads((distill / "vote_stats.json").read_text())
            assert stats["kept"] == row["distill_set"]["kept"]
            assert (distill / "train.parquet").stat().st_size > 0
        else:  # nothing kept: no empty set is written, and the row says so
            assert not distill.exists() and row["distilled"] is None
            assert any("kept 0" in w for w in row["warnings"])
        if row["distilled"] is not None:
            summary = json.loads((out / name / "train" / "summary.json").read_text())
            assert summary["steps"] == 3
            assert row["distilled"]["examples"] == 6
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (out / "table.md").read_text()
    assert all(f"{name} (" in table for name in TASKS)
    assert not list(out.glob("**/*.tmp"))
    # every task's run ends with its report; `s2jax report` puts the tasks side by side
    for name, row in results["tasks"].items():
        report = json.loads((out / name / "report.json").read_text())
        figures = report["splits"][0]["arms"][0]["systems"]
        assert figures["system1"]["accuracy"] == round(row["system1"]["accuracy"], 6)
    capsys.readouterr()
    assert main(["report", str(out), "--resamples", "500"]) == 0
    combined = json.loads((out / "report.json").read_text())
    assert sorted(a["path"] for a in combined["arms"]) == sorted(TASKS)


def test_demo_rejects_unknown_task(tmp_path, capsys):
    from s2jax.cli import main

    assert main(["demo", "--quick", "--out", str(tmp_path), "--tasks", "nope"]) == 2
    assert "nope" in capsys.readouterr().err


def test_demo_lora_flags_reach_the_fine_tuning_config(tmp_path):
    import dataclasses

    from s2jax.toy.demo import QUICK, task_distillation

    lora = task_distillation("coin_flip", dataclasses.replace(QUICK, lora_rank=8,
                                                               learning_rate=5e-3), tmp_path)
    assert lora.train.lora.rank == 8 and lora.train.lora.alpha == 16.0
    assert lora.train.learning_rate == 5e-3
    assert not task_distillation("coin_flip", QUICK, tmp_path).train.lora.enabled


def test_demo_rejects_bad_lora_rank_and_learning_rate(tmp_path, capsys):
    from s2jax.cli import main

    for flag, value in (("--lora-rank", "-1"), ("--learning-rate", "nan")):
        assert main(["demo", "--quick", "--out", str(tmp_path / "d"), flag, value]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and flag in err[0]
    assert not (tmp_path / "d").exists()


def test_demo_refuses_an_out_dir_it_did_not_write(tmp_path, capsys):
    from s2jax.cli import main

    mine = tmp_path / "results.json"
    mine.write_text("a user's own results")
    assert main(["demo", "--quick", "--out", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "not made by s2jax" in err and len(err.strip().splitlines()) == 1
    assert mine.read_text() == "a user's own results"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]


def test_a_task_distils_when_every_seeds_interval_is_above_zero():
    from s2jax.toy.seeds import reading

    above, across, below = ({"low": 2.0}, {"low": -3.0}, {"low": -20.0})
    assert reading([above, above]) == "distils"
    assert reading([across, below]) == "does not distil"
    assert reading([above, across]) == reading([above, None]) == "unclear"
    assert reading([None, None]) == "does not distil"  # nothing kept in any seed


@pytest.mark.slow
def test_demo_over_seeds_reports_every_seed_and_each_run_writes_tensorboard(tmp_path, capsys):
    from s2jax.cli import main
    from tests.test_tb_results import check_run_tensorboard

    out = tmp_path / "seeds"
    assert main(["demo", "--quick", "--seeds", "2", "--seed", "3", "--tasks", "sycophancy",
                 "--out", str(out), "--no-progress"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["seeds"] == ["3", "4"]
    task = results["tasks"]["sycophancy"]
    distilled = []
    for seed in results["seeds"]:  # each seed is `s2jax demo --seed S` into OUT/seed<S>
        one = json.loads((out / f"seed{seed}" / "results.json").read_text())
        assert one["config"]["seed"] == int(seed)
        row = one["tasks"]["sycophancy"]
        assert task["seeds"][seed]["distilled"]["accuracy"] == row["distilled"]["accuracy"]
        assert task["seeds"][seed]["kept"] == row["distill_set"]["kept"]
        distilled.append(row["distilled"]["accuracy"])
        check_run_tensorboard(out / f"seed{seed}" / "sycophancy")
    figure = task["accuracy:distilled"]
    assert figure["mean"] == pytest.approx(sum(distilled) / 2) and figure["n"] == 2
    report = json.loads((out / "report.json").read_text())
    (group,) = report["splits"][0]["seed_groups"]
    assert group["seeds"] == ["demo.seed=3", "demo.seed=4"]
    assert group["figures"]["accuracy:distilled"] == figure
    assert task["reading"] in ("distils", "does not distil", "unclear")
    table = (out / "table.md").read_text()
    assert "| sycophancy (s2a) |" in table and task["reading"] in table
    assert f"{figure['mean']:.1f} ± {figure['sd'] or 0:.1f}" in table
