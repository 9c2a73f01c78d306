"""Experiment configs (paper configs, --set overrides, sweeps) and the resumable pipeline."""

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from s2jax.core.errors import S2JaxError
from s2jax.core.overrides import override, parse_assignments
from s2jax.core.text_generator import SamplingParams
from s2jax.models.config import ModelConfig
from s2jax.models.params import num_params
from s2jax.run.config import DataConfig, ExperimentConfig, load_config
from s2jax.tasks import TASKS
from s2jax.train.config import TrainConfig

PAPER = sorted(p for p in (Path(__file__).parents[1] / "configs" / "paper").glob("*.py")
               if p.name != "common.py")


@pytest.mark.parametrize("path", PAPER, ids=lambda p: p.stem)
@pytest.mark.parametrize("variant", [None, "llama3.1-8b", "qwen2.5-7b"])
def test_paper_configs_load_and_name_real_tasks_methods_and_shapes(path, variant):
    spec = str(path) + (f":{variant}" if variant else "")
    config, _ = load_config(spec)
    assert config.task in TASKS and (config.test_task or config.task) in TASKS
    shape = ModelConfig.from_file(config.model_shape)
    expected = {None: 68.98e9, "llama3.1-8b": 8.03e9, "qwen2.5-7b": 7.62e9}[variant]
    assert abs(num_params(shape) - expected) / expected < 0.005
    if config.distill.filter == "usc":
        assert config.usc
    if config.distill.filter == "perturbation":
        assert config.perturb and TASKS[config.task].perturbation is not None


def test_paper_filters_and_sample_counts_follow_the_paper():
    by_method = {load_config(str(p))[0].method: load_config(str(p))[0] for p in PAPER
                 if not p.stem.startswith("sweep")}
    assert by_method["rar_2step"].sampling.n == 8
    assert by_method["s2a"].sampling.n == 20 and by_method["s2a"].distill.filter == "usc"
    assert by_method["cot_zero_shot"].sampling.n == 10
    assert by_method["bsm"].distill.filter == "perturbation"


def apply_overrides(config, items):
    return override(config, parse_assignments(items))


def test_overrides_parse_by_declared_type():
    base = ExperimentConfig(name="x", model="m", task="last_letter", method="rar_1step")
    c = apply_overrides(base, ["sampling.n=3", "max_len=128", "train.remat=dots",
                               "distill.vote.threshold=0.25", "chat=false", "test_task=none"])
    assert (c.sampling.n, c.max_len, c.train.remat, c.distill.vote.threshold, c.chat) == \
        (3, 128, "dots", 0.25, False)
    assert c.test_task is None
    assert apply_overrides(c, ["max_len=none"]).max_len is None
    assert base.fingerprint() != c.fingerprint()


@pytest.mark.parametrize("item,message", [
    ("sampling.q=1", "--set sampling.q: SamplingParams has no field 'q'"),
    ("sampling.n=x", "--set sampling.n=x: expected a int"),
    ("sampling.n=0", "--set sampling.n: n must be in [1, 65536], got 0"),
    ("train.remat=some", "--set train.remat: train config remat='some'"),
    ("noequals", "expected key=value"),
    ("name.x=1", "'name' is not a config section"),
])
def test_bad_overrides_are_one_line_errors(item, message):
    base = ExperimentConfig(name="x", model="m", task="last_letter", method="rar_1step")
    with pytest.raises(S2JaxError) as e:
        apply_overrides(base, [item])
    assert message in str(e.value) and "\n" not in str(e.value)


def test_stage_meshes_are_checked_when_the_config_is_built():
    # sampling on tensor=4 and training on fsdp=4 over the same 4 devices is one config ...
    base = ExperimentConfig(name="x", model="m", task="last_letter", method="rar_1step",
                            mesh="tensor=4")
    assert apply_overrides(base, ["train.mesh=fsdp=4"]).train.mesh == "fsdp=4"
    # ... but stages on different numbers of devices, or a bad mesh, are refused at once
    for item, message in [("train.mesh=fsdp=8", "train.mesh='fsdp=8' spans 8 devices but "
                                               "mesh='tensor=4' spans 4"),
                          ("train.mesh=pipe=2", "expected e.g. data=2,fsdp=2,tensor=2"),
                          ("mesh=fsdp=0", "config mesh='fsdp=0': every axis size must be >= 1")]:
        with pytest.raises(S2JaxError, match=re.escape(message)):
            apply_overrides(base, [item])


def test_sweep_dry_run_lists_every_point_once():
    sweep = [p for p in PAPER if p.stem.startswith("sweep")][0]
    proc = subprocess.run([sys.executable, "-m", "s2jax.cli", "run", f"{sweep}:llama3.1-8b",
                           "--sweep", "--print-config"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    points = [json.loads(line) for line in proc.stdout.splitlines()]
    dirs = {p["run_dir"] for p in points}
    assert len(dirs) == len(points) == 3 * (1 + 3 * 3)  # N=1 needs no threshold sweep
    combos = {(p["config"]["method"], p["config"]["sampling"]["n"],
               p["config"]["distill"]["vote"]["threshold"]) for p in points}
    assert len(combos) == len(points)


def test_run_rejects_missing_config_file(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "s2jax.cli", "run", str(tmp_path / "nope.py")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "no such config file" in proc.stderr


def _echo_task():
    """last_letter with an extractor that reads any text, so a random model yields answers."""
    task = TASKS["last_letter"]
    return dataclasses.replace(task, name="echo",
                               extract=lambda t: t.strip().split()[0] if t.strip() else "?")


def _tiny_config(hf_checkpoint) -> ExperimentConfig:
    """The cheapest whole run: 4 test and 6 unlabeled inputs, 2 samples, 2 train steps."""
    return ExperimentConfig(
        name="tiny", model=str(hf_checkpoint("llama2")), task="echo", method="rar_1step",
        unlabeled=DataConfig(synthetic=6, seed=1), test=DataConfig(synthetic=4, seed=2),
        sampling=SamplingParams(n=2, max_new_tokens=6), eval_sampling=SamplingParams(
            max_new_tokens=6),
        train=TrainConfig(steps=2, seq_len=64, batch_size=2, progress=False),
        dtype="float32", max_batch=8, max_len=256)


@pytest.mark.slow
def test_pipeline_end_to_end_and_resume(hf_checkpoint, tmp_path):
    from s2jax.run.pipeline import run_experiment

    config = _tiny_config(hf_checkpoint)
    tasks = {"echo": _echo_task()}
    results = run_experiment(config, tmp_path / "run", tasks=tasks, log=lambda _: None)
    assert [r["system"] for r in results["rows"]] == ["system1", "system2", "distilled"]
    assert all(r["examples"] == 4 for r in results["rows"])
    assert results["distill"]["inputs"] == 6
    for name in ("config.json", "eval_base.json", "generations.jsonl", "distill/train.parquet",
                 "distill/provenance.json", "train/model/config.json", "results.json"):
        assert (tmp_path / "run" / name).exists(), name
    gens = [json.loads(x) for x in (tmp_path / "run" / "generations.jsonl").read_text()
            .splitlines()]
    assert len(gens) == 6 and all(g["gold"] == [] for g in gens)  # labels never reach System 2
    task = tasks["echo"]
    for system in ("system1", "system2", "distilled"):  # each answer with the reply it came from
        rows = [json.loads(x) for x in (tmp_path / "run" / "eval" / f"{system}.jsonl")
                .read_text().splitlines()]
        assert len(rows) == 4
        assert all(len(r["replies"]) == 1 and r["answer"] == task.extract(r["replies"][0])
                   for r in rows), system
        # the report's per-item row: the split, and the item (its own id without templates)
        assert all(r["split"] == "test" and r["item"] == r["id"] and r["template"] is None
                   for r in rows), system
    # the run ends with its report, every figure recomputed from those rows
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    figures = report["splits"][0]["arms"][0]["systems"]
    assert [figures[r["system"]]["accuracy"] for r in results["rows"]] == \
        pytest.approx([r["accuracy"] for r in results["rows"]])
    assert set(report["splits"][0]["arms"][0]["paired"]) == {"system1", "system2"}
    assert (tmp_path / "run" / "report.md").is_file() and (tmp_path / "run" / "report.png")\
        .is_file()
    # a run killed after training resumes at the last stage and leaves earlier artifacts alone
    (tmp_path / "run" / "results.json").unlink()
    stamp = (tmp_path / "run" / "generations.jsonl").stat().st_mtime_ns
    again = run_experiment(config, tmp_path / "run", tasks=tasks, log=lambda _: None)
    assert [r["accuracy"] for r in again["rows"]] == [r["accuracy"] for r in results["rows"]]
    assert (tmp_path / "run" / "generations.jsonl").stat().st_mtime_ns == stamp
    other = dataclasses.replace(config, sampling=SamplingParams(n=3, max_new_tokens=6))
    with pytest.raises(S2JaxError, match="different config"):
        run_experiment(other, tmp_path / "run", tasks=tasks, log=lambda _: None)
