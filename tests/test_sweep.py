"""`s2jax sweep` on the toy world: shared stages computed once, workers on one root give one
worker's bytes, a SIGKILLed worker's stage is resumed by a restart, and a selection rule is
recorded before any test evaluation."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from s2jax.run.store import events
from tests.test_tb_results import f32, read_events

CONFIG = '''
import os

from s2jax.core.text_generator import SamplingParams
from s2jax.run.config import DataConfig, ExperimentConfig
from s2jax.run.selection import Selection
from s2jax.toy.demo import base_model_dir
from s2jax.train.config import TrainConfig


def get_config(arg=None):
    return ExperimentConfig(
        name="grid", model=str(base_model_dir()), task="toy/coin_flip", method="rar_1step",
        unlabeled=DataConfig(synthetic=4, seed=2), test=DataConfig(synthetic=3, seed=1),
        validation=DataConfig(synthetic=3, seed=9) if arg == "select" else None,
        sampling=SamplingParams(n=4, temperature=0.7, top_k=40, max_new_tokens=64),
        eval_sampling=SamplingParams(max_new_tokens=64),
        train=TrainConfig(steps=1, seq_len=128, batch_size=4, learning_rate=1e-3),
        max_batch=16, max_len=256, shard_size=2)


def sweep():
    if os.environ.get("GRID") == "select":
        return {f"s{s}": {"train.steps": s} for s in (1, 2)}
    return {f"t{t}_s{s}_r{r}": {"distill.vote.threshold": t, "train.steps": s,
                                 "train.lora.rank": r, "train.lora.alpha": 2.0 * r}
            for t in (0.5, 0.75) for s in (1, 2) for r in (0, 8)}


selection = Selection(os.environ.get("RULE", "accuracy")) if os.environ.get("GRID") else None
'''


def _env(**extra) -> dict:
    """The sweeps compile into the session's cache (tests/conftest.py), shared with the other
    runs of the toy model."""
    return {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]), **extra}


def _sweep(config: Path, root: Path, *args: str, env: dict, check: bool = True):
    proc = subprocess.run([sys.executable, "-m", "s2jax.cli", "sweep", str(config), "--root",
                           str(root), "--no-progress", *args], capture_output=True, text=True,
                          env=env, timeout=1800)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _artifacts(root: Path) -> dict[str, bytes]:
    """Every file a sweep keeps, less what may differ between runs (claims, logs, timings, the
    report's markdown and chart, titled with the root's name, and s2jax's ownership marks and
    locks, which record files' mtimes and a pid; report.json is kept)."""
    out = {}
    for path in sorted(root.rglob("*")):
        parts = path.relative_to(root).parts
        if path.is_dir() or parts[0] in ("claims", "log", "report.md", "report.png") or (
                parts[0] == "stages" and len(parts) > 2 and parts[2] == "log") or (
                path.name.startswith(".s2jax") or path.name.startswith(".")
                and path.name.endswith(".s2jax")):
            continue
        out["/".join(parts)] = path.read_bytes()
    return out


def _starts(root: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for e in events(root):
        if e["event"] == "start":
            out.setdefault(e["stage"], []).append(e["worker"])
    return out


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """The 8-arm sweep by one worker: (config, root, env)."""
    tmp = tmp_path_factory.mktemp("grid")
    config = tmp / "grid.py"
    config.write_text(CONFIG)
    env = _env()
    _sweep(config, tmp / "one", env=env)
    return config, tmp / "one", env


@pytest.mark.slow
def test_eight_arms_sample_system2_once_and_evaluate_the_base_once(grid):
    _, root, _ = grid
    stages = {p.name: json.loads((p / "stage.json").read_text())
              for p in (root / "stages").iterdir() if not p.name.startswith(".")}
    kinds = [s["kind"] for s in stages.values()]
    assert kinds.count("generate") == 1  # System 2 sampled once for all 8 arms
    base = [s for s in stages.values() if s["kind"] == "eval" and "base" in s["spec"]["model"]]
    assert len(base) == 2  # the base model evaluated once per system (System 1, System 2)
    assert kinds.count("distill") == 2 and kinds.count("finetune") == 8
    assert all(len(w) == 1 for w in _starts(root).values())  # each computed exactly once
    arms = sorted(p.name for p in root.iterdir() if (p / "results.json").is_file())
    assert len(arms) == 8
    for arm in arms:  # each arm its own run dir, named for it, its rows per system
        results = json.loads((root / arm / "results.json").read_text())
        assert results["name"] == arm
        assert [r["system"] for r in results["rows"]] == ["system1", "system2", "distilled"]
        config = json.loads((root / arm / "config.json").read_text())["config"]
        assert config["name"] == arm
        for system in ("system1", "system2", "distilled"):
            rows = (root / arm / "eval" / f"{system}.jsonl").read_text().splitlines()
            assert len(rows) == 3 and all(json.loads(r)["split"] == "test" for r in rows)
    report = json.loads((root / "report.json").read_text())  # the end-of-sweep report
    assert sorted(a["name"] for a in report["arms"]) == arms
    assert all(a["notes"] == [] for a in report["arms"])
    first = json.loads((root / arms[0] / "results.json").read_text())
    assert all(json.loads((root / a / "results.json").read_text())["rows"][:2] == first["rows"][:2]
               for a in arms)  # the shared base rows


@pytest.mark.slow
def test_two_workers_on_one_root_give_one_workers_bytes(grid, tmp_path):
    config, one, env = grid
    _sweep(config, tmp_path / "two", "--workers", "2", env=env)
    assert _artifacts(tmp_path / "two") == _artifacts(one)
    starts = _starts(tmp_path / "two")
    assert all(len(w) == 1 for w in starts.values())  # no stage computed twice
    assert len({w[0] for w in starts.values()}) == 2  # and both workers did some
    assert not list((tmp_path / "two" / "claims").glob("*.broken-*"))


@pytest.mark.slow
def test_a_sigkilled_worker_is_resumed_by_a_restart(grid, tmp_path):
    config, one, env = grid
    root = tmp_path / "killed"
    cmd = [sys.executable, "-m", "s2jax.cli", "sweep", str(config), "--root", str(root),
           "--no-progress", "--worker", "0/1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 1800
    index = None
    while index is None or not index.read_bytes().strip():  # mid-stage: one shard of two
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline
        found = list((root / "stages").glob(".generate-*.partial/generations.jsonl.shards"))
        index = found[0] if found else None
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first_shard = index.read_bytes().splitlines()[0]
    _sweep(config, root, env=env)  # the restart takes the dead worker's claim over at once
    assert _artifacts(root) == _artifacts(one)
    gen = next(p for p in (root / "stages").iterdir() if p.name.startswith("generate-"))
    assert (gen / "log" / "generations.jsonl.shards").read_bytes().splitlines()[0] == first_shard
    assert len(list((root / "claims").glob(f"{gen.name}.broken-*"))) == 1
    starts = _starts(root)
    assert len(starts[gen.name]) == 2 and all(
        len(w) == 1 for s, w in starts.items() if s != gen.name)


@pytest.mark.slow
def test_selection_is_recorded_before_any_test_evaluation(tmp_path):
    config = tmp_path / "grid.py"
    config.write_text(CONFIG)
    env = _env(GRID="select")
    root = tmp_path / "select"
    _sweep(f"{config}:select", root, env=env)
    record = json.loads((root / "selection.json").read_text())
    chosen = record["chosen"]
    assert record["rule"] == {"metric": "accuracy", "system": "distilled", "split": "validation"}
    assert set(record["candidates"]) == {"s1", "s2"} and not record["after_test"]
    results = {a: json.loads((root / a / "results.json").read_text()) for a in ("s1", "s2")}
    assert record["config"] == results[chosen]["config"]
    for arm, r in results.items():
        assert r["exploratory"] is (arm != chosen)
        assert [x["split"] for x in r["validation"]] == ["validation"] * 3
        # TensorBoard: each arm's figures on both splits, and its config as hparams
        scalars, hparams = read_events(root / "log" / "tb" / arm)
        for row in [*r["rows"], *r["validation"]]:
            for k in ("accuracy", "tokens_per_answer"):
                assert scalars[f"eval/{row['split']}/{row['system']}/{k}"] == f32(row[k])
        assert hparams["name"] == arm and hparams["train.steps"] == int(arm[1:])
        assert hparams["method"] == "rar_1step" and hparams["sampling.n"] == 4
    report = json.loads((root / "report.json").read_text())  # both splits, no spurious notes
    assert {a["name"]: (a["exploratory"], a["notes"]) for a in report["arms"]} == {
        a: (a != chosen, []) for a in ("s1", "s2")}
    assert [s["split"] for s in report["splits"]] == ["test", "validation"]
    # the record was committed before any test evaluation started
    log = events(root)
    select = next(e["t"] for e in log if e["event"] == "commit"
                  and e["stage"].startswith("select-"))
    tests = {s for r in results.values() for s in (
        r["stages"]["folds"][0]["eval"]["test"], r["stages"]["base"]["system1/test"],
        r["stages"]["base"]["system2/test"])}
    started = [e for e in log if e["event"] == "start" and e["stage"] in tests]
    assert len(started) == 4 and all(e["t"] > select for e in started)
    # a new rule once test numbers exist: refused, then allowed and recorded as such
    env["RULE"] = "tokens_per_answer"
    proc = _sweep(f"{config}:select", root, env=env, check=False)
    assert proc.returncode == 2 and "--reselect-after-test" in proc.stderr
    _sweep(f"{config}:select", root, "--reselect-after-test", env=env)
    record = json.loads((root / "selection.json").read_text())
    assert record["after_test"] and record["rule"]["metric"] == "tokens_per_answer"
    for arm in ("s1", "s2"):
        r = json.loads((root / arm / "results.json").read_text())
        assert r["exploratory"] is True and any("re-selected" in w for w in r["warnings"])


def _coin_flip(test: int, **train):
    """A small toy coin_flip experiment (RaR, N=4, one training step) for end-to-end sweeps."""
    from s2jax.core.text_generator import SamplingParams
    from s2jax.run.config import DataConfig, ExperimentConfig
    from s2jax.toy.demo import base_model_dir
    from s2jax.train.config import TrainConfig

    return ExperimentConfig(
        name="c", model=str(base_model_dir()), task="toy/coin_flip", method="rar_1step",
        unlabeled=DataConfig(synthetic=4, seed=2), test=DataConfig(synthetic=test, seed=1),
        sampling=SamplingParams(n=4, temperature=0.7, top_k=40, max_new_tokens=64),
        eval_sampling=SamplingParams(max_new_tokens=64),
        train=TrainConfig(steps=1, seq_len=128, batch_size=4, progress=False, **train),
        max_batch=16, max_len=256)


@pytest.mark.slow
def test_folds_test_every_pool_item_once_and_controls_retarget_the_kept_inputs(tmp_path):
    import dataclasses

    import pyarrow.parquet as pq

    from s2jax.run.config import CrossFit, DataConfig, Suite
    from s2jax.run.sweep import plan_sweep, run_worker
    from s2jax.tasks.toy.world import TASKS as TOY

    base = _coin_flip(test=6)
    suite = Suite("last letters", "toy/last_letter", DataConfig(synthetic=2, seed=7))
    arms = {"main": dataclasses.replace(base, retention=(suite,)),
            "gold": dataclasses.replace(base, control="gold"),
            "shuffled": dataclasses.replace(base, control="shuffled"),
            "xfit": dataclasses.replace(base, cross_fit=CrossFit(folds=2, seed=3))}
    root = tmp_path / "root"
    plan = plan_sweep(arms, root)
    run_worker(plan, log=lambda _: None)
    # cross-fitting: the pool sampled once, each item tested once by the fold that never saw it
    rows = [json.loads(x) for x in (root / "xfit/eval/distilled.jsonl").read_text().splitlines()]
    base_rows = [json.loads(x) for x in (root / "xfit/eval/system1.jsonl").read_text()
                 .splitlines()]
    assert [r["id"] for r in rows] == [r["id"] for r in base_rows] and len(rows) == 6
    assert sorted({r["fold"] for r in rows}) == [0, 1]
    folds = json.loads((root / "xfit/results.json").read_text())["stages"]["folds"]
    assert len({f["generate"] for f in folds}) == 1 and len({f["finetune"] for f in folds}) == 2
    for k, f in enumerate(folds):  # fold k's distillation set holds none of fold k's items
        trained = set(pq.read_table(root / "stages" / f["distill"] / "set" / "train.parquet")
                      .column("id").to_pylist())
        assert trained and trained.isdisjoint(r["id"] for r in rows if r["fold"] == k)
    # gold and shuffled: the same kept inputs as the method, other targets
    def answers(arm):
        sid = json.loads((root / arm / "results.json").read_text())["stages"]["folds"][0][
            "distill"]
        table = pq.read_table(root / "stages" / sid / "set" / "train.parquet").to_pylist()
        return {r["id"]: r["answer"] for r in table}

    main, gold, shuffled = answers("main"), answers("gold"), answers("shuffled")
    truth = {ex.id: ex.gold[0] for ex in TOY["coin_flip"].task.synthesize(4, 2)}
    assert set(gold) == set(main) == set(shuffled) and main
    assert gold == {i: truth[i] for i in main}
    assert sorted(shuffled.values()) == sorted(main.values())
    # retention: the base and the distilled model on another task
    results = json.loads((root / "main/results.json").read_text())
    assert set(results["retention"]["last letters"]) == {"base", "distilled"}
    for who in ("base", "distilled"):
        assert len((root / "main/retention/last letters" / f"{who}.jsonl").read_text()
                   .splitlines()) == 2


@pytest.mark.slow
def test_teacher_and_kd_arms_distil_from_their_teacher(tmp_path):
    import dataclasses
    import shutil

    from s2jax.run.config import TeacherConfig
    from s2jax.run.sweep import plan_sweep, run_worker, write_report
    from s2jax.toy.demo import base_model_dir
    from s2jax.train.config import KDConfig

    base = _coin_flip(test=3, learning_rate=1e-3)
    kd = lambda div: dataclasses.replace(base.train, kd=KDConfig(div, teacher_seq_len=256))
    teacher_dir = tmp_path / "teacher"  # another checkpoint (the toy's weights: cheap)
    shutil.copytree(base_model_dir(), teacher_dir)
    teacher = TeacherConfig(model=str(teacher_dir))
    arms = {"sft": base, "kd": dataclasses.replace(base, train=kd("jsd")),
            "seq": dataclasses.replace(base, teacher=teacher),
            "seq_kd": dataclasses.replace(base, teacher=teacher, train=kd("forward_kl"))}
    root = tmp_path / "root"
    run_worker(plan_sweep(arms, root), log=lambda _: None)
    write_report(root, log=lambda _: None)
    results = {a: json.loads((root / a / "results.json").read_text()) for a in arms}
    for r in results.values():
        assert [x["system"] for x in r["rows"]] == ["system1", "system2", "distilled"]
    assert results["seq"]["teacher"] == str(teacher_dir) and "teacher" not in results["kd"]
    stage = lambda sid: json.loads((root / "stages" / sid / "stage.json").read_text())["spec"]
    ids = {a: r["stages"]["folds"][0] for a, r in results.items()}
    assert ids["seq"]["generate"] == ids["seq_kd"]["generate"] != ids["sft"]["generate"]
    assert stage(ids["seq"]["generate"])["model"]["base"] == str(teacher_dir.resolve())
    for arm, div, who in (("kd", "jsd", base_model_dir()), ("seq_kd", "forward_kl", teacher_dir)):
        spec = stage(ids[arm]["finetune"])
        assert spec["train"]["kd"]["divergence"] == div
        assert spec["teacher"]["base"] == str(Path(who).resolve())
        log = root / "stages" / ids[arm]["finetune"] / "log" / "train"
        record = json.loads((log / "train_config.json").read_text())
        assert record["kd"]["divergence"] == div and record["teacher"]["params"] > 0
    weights = {a: (root / "stages" / ids[a]["finetune"] / "model" / "model.safetensors")
               .read_bytes() for a in ("sft", "kd")}
    assert weights["sft"] != weights["kd"]  # the teacher's distributions changed the result
    report = json.loads((root / "report.json").read_text())
    methods = {a["name"]: a["method"] for a in report["arms"]}
    assert methods["seq"] == "rar_1step, teacher teacher" and methods["sft"] == "rar_1step"
