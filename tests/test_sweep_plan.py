"""A sweep's plumbing without a model: stage keys, sharing, claims, folds, controls, selection."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from s2jax.core.claims import ClaimBoard
from s2jax.core.errors import S2JaxError
from s2jax.core.overrides import override, parse_assignments
from s2jax.core.text_generator import SamplingParams
from s2jax.distill.dataset import DistillSet
from s2jax.distill.vote import vote_stats
from s2jax.run.config import CrossFit, DataConfig, ExperimentConfig, TeacherConfig
from s2jax.run.protocol import apply_control, fold_of, fold_split, unbiased
from s2jax.run.selection import Selection, choose
from s2jax.run.sweep import describe, plan_sweep
from s2jax.tasks.task import Example
from s2jax.tasks.toy.world import TASKS as TOY
from s2jax.toy.demo import base_model_dir
from s2jax.train.config import KDConfig, TrainConfig


def _config(**kw) -> ExperimentConfig:
    base = ExperimentConfig(
        name="toy", model=str(base_model_dir()), task="toy/coin_flip", method="rar_1step",
        unlabeled=DataConfig(synthetic=6, seed=2), test=DataConfig(synthetic=4, seed=1),
        sampling=SamplingParams(n=4, temperature=0.7, top_k=40, max_new_tokens=32),
        eval_sampling=SamplingParams(max_new_tokens=32),
        train=TrainConfig(steps=2, seq_len=128, batch_size=4, progress=False), max_len=256)
    return dataclasses.replace(base, **kw)


def _arms(config, sets: dict[str, list[str]]):
    return {name: override(config, parse_assignments(kv)) for name, kv in sets.items()}


def test_arms_share_the_stages_their_settings_do_not_change(tmp_path):
    grid = {f"t{t}_s{s}_r{r}": [f"distill.vote.threshold={t}", f"train.steps={s}",
                                f"train.lora.rank={r}", "train.progress=true"]
            for t in (0.5, 0.75) for s in (1, 2) for r in (0, 8)}
    plan = plan_sweep(_arms(_config(), grid), tmp_path / "root")
    kinds = [n.kind for n in plan.graph.nodes.values()]
    # System 2 sampled once, the base evaluated once per system: shared by all 8 arms
    assert kinds.count("generate") == 1 and kinds.count("distill") == 2
    assert kinds.count("finetune") == 8 and kinds.count("eval") == 2 + 8
    base = [n.id for n in plan.graph.nodes.values() if n.phase == "eval_base_test"]
    assert all(len(plan.graph.uses[i]) == 8 for i in base)
    text = describe(plan)
    assert "21 stages instead of 48 as separate runs" in text
    # the run's name, progress and shard size change no artifact; the model's weights do
    other = plan_sweep(_arms(_config(name="other", shard_size=3), grid), tmp_path / "root")
    assert set(other.graph.nodes) == set(plan.graph.nodes)
    lr = plan_sweep(_arms(_config(), {k: [*v, "train.learning_rate=0.5"]
                                      for k, v in grid.items()}), tmp_path / "root")
    assert {n for n in lr.graph.nodes if not n.startswith("finetune")} - set(
        plan.graph.nodes) == {n for n in lr.graph.nodes if n.startswith("eval")
                              and lr.graph.nodes[n].phase == "eval_distilled_test"}


def test_one_stored_sample_set_serves_every_smaller_n(tmp_path):
    arms = _arms(_config(), {f"n{n}": [f"sampling.n={n}"] for n in (2, 4, 8)})
    plan = plan_sweep(arms, tmp_path / "root")
    gens = [n for n in plan.graph.nodes.values() if n.kind == "generate"]
    assert [g.id.rsplit("-n", 1)[1] for g in gens] == ["8"]  # the largest N, once
    distills = [n for n in plan.graph.nodes.values() if n.kind == "distill"]
    assert sorted(d.spec["n"] for d in distills) == [2, 4, 8]
    # a later sweep asking for N <= 8 reads the committed N=8 set; N=16 needs its own
    family = gens[0].id.rsplit("-n", 1)[0]
    (plan.store.path(f"{family}-n8")).mkdir(parents=True)
    (plan.store.path(f"{family}-n8") / "stage.json").write_text("{}")
    (tmp_path / "root" / "sweep.json").write_text('{"kind": "s2jax sweep"}')
    small = plan_sweep(_arms(_config(), {"n4": ["sampling.n=4"]}), tmp_path / "root")
    assert [n.id for n in small.graph.nodes.values() if n.kind == "generate"] == [gens[0].id]
    big = plan_sweep(_arms(_config(), {"n16": ["sampling.n=16"]}), tmp_path / "root")
    assert [n.id for n in big.graph.nodes.values() if n.kind == "generate"] == [
        f"{family}-n16"]
    # USC reads all N samples: no prefix sharing there
    usc = plan_sweep(_arms(_config(), {f"n{n}": [f"sampling.n={n}", "usc=true"]
                                       for n in (2, 4)}), tmp_path / "root")
    assert sum(n.kind == "generate" for n in usc.graph.nodes.values()) == 2


def test_bad_arm_names_and_configs_fail_before_any_work(tmp_path):
    with pytest.raises(S2JaxError, match="expected a name"):
        plan_sweep({"stages": _config()}, tmp_path / "root")
    with pytest.raises(S2JaxError, match="has no validation split"):
        plan_sweep({"a": _config()}, tmp_path / "root", selection=Selection())
    with pytest.raises(S2JaxError, match="validation and test share"):
        plan_sweep({"a": _config(validation=DataConfig(synthetic=4, seed=1))}, tmp_path / "r")
    assert not (tmp_path / "root").exists() and not (tmp_path / "r").exists()
    mine = tmp_path / "mine"  # a user's directory is neither a root nor an arm's run dir
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(S2JaxError, match="not this run's output"):
        plan_sweep({"a": _config()}, mine)
    (tmp_path / "root" / "a").mkdir(parents=True)
    (tmp_path / "root" / "a" / "notes.txt").write_text("mine")
    (tmp_path / "root" / "sweep.json").write_text('{"kind": "s2jax sweep"}')
    with pytest.raises(S2JaxError, match="run dir .* not made by s2jax"):
        plan_sweep({"a": _config()}, tmp_path / "root")
    assert (mine / "notes.txt").read_text() == "mine"


def test_selection_waits_for_validation_and_gates_every_test_stage(tmp_path):
    config = _config(validation=DataConfig(synthetic=3, seed=5))
    plan = plan_sweep(_arms(config, {"a": [], "b": ["train.steps=1"]}), tmp_path / "root",
                      selection=Selection("accuracy"))
    graph = plan.graph
    select = graph.nodes[graph.select_id]
    validation = {f.evals["validation"] for r in graph.arms.values() for f in r.folds}
    assert set(select.deps) == validation
    for node in graph.nodes.values():
        test = node.phase in ("eval_base_test", "eval_distilled_test")
        assert (graph.select_id in node.deps) == test, node.id
    order = [n.phase for n in graph.ordered()]
    assert order.index("select") > max(i for i, p in enumerate(order) if "validation" in p)


def test_choose_picks_the_best_validation_arm_and_breaks_ties_by_tokens_then_order():
    rows = lambda scores, tokens: [{"score": s, "tokens": tokens} for s in scores]
    candidates = {"a": rows([1, 0], 5), "b": rows([1, 1], 9), "c": rows([0, 1, 1, 1], 9),
                  "d": rows([1, 1], 4), "e": []}
    hashes = {k: f"h{k}" for k in candidates}
    record = choose(Selection("accuracy"), candidates, hashes)
    assert record["chosen"] == "d" and record["config"] == "hd"  # 100% like b, fewer tokens
    assert "e" not in record["candidates"]  # kept nothing: not a candidate
    assert choose(Selection("tokens_per_answer"), candidates, hashes)["chosen"] == "d"
    tie = {"x": rows([1], 3), "y": rows([1], 3)}
    assert choose(Selection(), tie, {"x": "1", "y": "2"})["chosen"] == "x"
    with pytest.raises(S2JaxError, match="no arm"):
        choose(Selection(), {"e": []}, {"e": "1"})


@pytest.mark.parametrize("n,k", [(10, 3), (7, 2), (5, 5), (1, 2)])
def test_folds_test_every_item_exactly_once_and_train_on_the_rest(n, k):
    pool = [Example(f"x{i}", {"q": str(i)}, ("g",)) for i in range(n)]
    seen = []
    for fold in range(k):
        test, train = fold_split(pool, k, seed=3, k=fold)
        assert {e.id for e in test}.isdisjoint({e.id for e in train})
        assert len(test) + len(train) == n
        seen += [e.id for e in test]
    assert sorted(seen) == sorted(e.id for e in pool)  # every item tested exactly once
    sizes = [sum(v == f for v in fold_of([e.id for e in pool], k, 3).values()) for f in range(k)]
    assert max(sizes) - min(sizes) <= 1
    assert fold_of([e.id for e in pool], k, 3) != fold_of([e.id for e in pool], k, 4) or n < 3


def test_cross_fit_samples_the_pool_once_and_distils_each_fold_on_its_own_inputs(tmp_path):
    config = _config(cross_fit=CrossFit(folds=2, seed=1), test=DataConfig(synthetic=6, seed=1))
    plan = plan_sweep({"x": config}, tmp_path / "root")
    kinds = [n.kind for n in plan.graph.nodes.values()]
    assert kinds.count("generate") == 1 and kinds.count("finetune") == 2
    roles = plan.graph.arms["x"]
    assert sorted(i for f in roles.folds for i in f.test_ids) == sorted(e.id for e in roles.d.test)
    for f in roles.folds:
        keep = plan.graph.nodes[f.distill].job["keep"]
        assert set(keep).isdisjoint(f.test_ids) and len(keep) + len(f.test_ids) == 6
    with pytest.raises(S2JaxError, match="cross_fit.folds=1"):
        CrossFit(folds=1)


def test_controls_are_one_line_variants(tmp_path):
    arms = _arms(_config(), {c or "main": [f"control={c}"] for c in
                             ("", "system1", "gold", "shuffled")})
    graph = plan_sweep(arms, tmp_path / "root").graph
    gen = {a: r.folds[0].generate for a, r in graph.arms.items()}
    dist = {a: r.folds[0].distill for a, r in graph.arms.items()}
    assert gen["main"] == gen["gold"] == gen["shuffled"] != gen["system1"]
    assert graph.nodes[gen["system1"]].job["program"].name == "system1"
    assert len(set(dist.values())) == 4
    syco = _config(task="toy/sycophancy", method="s2a", control="own_unbiased")
    g = plan_sweep({"own": syco}, tmp_path / "root").graph
    job = g.nodes[g.arms["own"].folds[0].generate].job
    assert job["program"].name == "system1"
    assert all(e.fields["question"] == e.fields["base_question"] for e in job["examples"])
    with pytest.raises(S2JaxError, match="no 'base_question'"):
        unbiased([Example("a", {"question": "q"})], TOY["coin_flip"].task)


def test_gold_and_shuffled_controls_retarget_the_kept_inputs():
    task = TOY["coin_flip"].task
    examples = [{"id": i, "answer": a, "messages": [{"role": "user", "content": i},
                                                    {"role": "assistant", "content": a}]}
                for i, a in (("a", "yes"), ("b", "no"), ("c", "no"), ("d", "yes"))]
    dset = DistillSet(examples, [], vote_stats([], []))
    gold = {"a": ("no",), "b": ("no",), "c": ("yes",), "d": ("yes",)}
    got = apply_control(dset, "gold", task, gold, seed=0).examples
    assert [e["answer"] for e in got] == ["no", "no", "yes", "yes"]
    assert [e["messages"][-1]["content"] for e in got] == [task.target(a) for a in
                                                           ("no", "no", "yes", "yes")]
    assert [e["messages"][0] for e in got] == [e["messages"][0] for e in examples]
    shuffled = apply_control(dset, "shuffled", task, {}, seed=0).examples
    assert sorted(e["answer"] for e in shuffled) == ["no", "no", "yes", "yes"]
    assert [e["id"] for e in shuffled] == ["a", "b", "c", "d"]
    assert apply_control(dset, "", task, {}, seed=0) is dset
    with pytest.raises(S2JaxError, match="no gold answer"):
        apply_control(dset, "gold", task, {}, seed=0)


def test_a_claim_is_exclusive_until_its_holder_dies_or_falls_silent(tmp_path):
    a = ClaimBoard(tmp_path, "a", lease=0.4)
    b = ClaimBoard(tmp_path, "b", lease=0.4)
    held = a.try_claim("s")
    assert held is not None and b.try_claim("s") is None
    time.sleep(0.3)
    assert b.try_claim("s") is None  # alive: its beat moves
    held._stop.set()
    held._thread.join()  # a holder that stalls: its beat stops
    assert b.try_claim("s") is None  # first look at the silent beat
    time.sleep(0.6)
    taken = b.try_claim("s")
    assert taken is not None and b.taken_over("s") == 1
    assert not held.held()  # the stalled holder finds out before it commits
    taken.release()


def test_a_dead_workers_claim_on_this_host_is_taken_over_at_once(tmp_path):
    code = ("import sys; from s2jax.core.claims import ClaimBoard; "
            f"c = ClaimBoard({str(tmp_path)!r}, 'dead').try_claim('s'); print(c.token)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": os.getcwd()}, check=True)
    info = json.loads((tmp_path / "claims" / "s.claim").read_text())
    assert info["token"] == out.stdout.strip() and info["pid"] != os.getpid()
    claim = ClaimBoard(tmp_path, "next", lease=3600).try_claim("s")
    assert claim is not None and (tmp_path / "claims" / f"s.broken-{info['token']}").is_file()
    claim.release()


def test_run_sends_protocol_configs_to_sweep_and_sweep_dry_run_prints_the_plan(tmp_path):
    config = tmp_path / "c.py"
    config.write_text(
        "from s2jax.run.config import DataConfig, ExperimentConfig\n"
        "from s2jax.toy.demo import base_model_dir\n"
        "def get_config(arg=None):\n"
        "    return ExperimentConfig(name='c', model=str(base_model_dir()), task='toy/coin_flip',"
        " method='rar_1step', unlabeled=DataConfig(synthetic=4, seed=2),"
        " test=DataConfig(synthetic=3, seed=1), control='gold')\n"
        "def sweep():\n"
        "    return {'a': {'train.steps': 1}, 'b': {'train.steps': 2}}\n")
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    run = subprocess.run([sys.executable, "-m", "s2jax.cli", "run", str(config), "--run-dir",
                          str(tmp_path / "r")], capture_output=True, text=True, env=env)
    assert run.returncode == 2 and "s2jax sweep" in run.stderr and not (tmp_path / "r").exists()
    dry = subprocess.run([sys.executable, "-m", "s2jax.cli", "run", str(config), "--sweep",
                          "--dry-run", "--run-dir", str(tmp_path / "s")], capture_output=True,
                         text=True, env=env)
    assert dry.returncode == 0, dry.stderr
    assert "2 arm(s)" in dry.stdout and "all arms" in dry.stdout
    assert not (tmp_path / "s").exists()  # a plan writes nothing


def test_a_teacher_samples_once_for_its_students_and_kd_names_it(tmp_path):
    teacher_dir, student_dir = tmp_path / "teacher", tmp_path / "student2"
    for d in (teacher_dir, student_dir):  # other checkpoints (the same weights: cheap)
        shutil.copytree(base_model_dir(), d)
    teacher = TeacherConfig(model=str(teacher_dir), method="rar_2step")
    plain = {"plain": _config(), "plain_kd": _config(train=TrainConfig(
        steps=2, seq_len=128, batch_size=4, progress=False, kd=KDConfig("forward_kl")))}
    arms = {**plain, "t1": _config(teacher=teacher),
            "t2": _config(teacher=teacher, train=TrainConfig(steps=1, seq_len=128, batch_size=4)),
            "t3": _config(teacher=teacher, model=str(student_dir))}
    plan = plan_sweep(arms, tmp_path / "root")
    graph = plan.graph
    fold = {a: r.folds[0] for a, r in graph.arms.items()}
    # one teacher, three students (other train settings, another model): one sample set,
    # named for the teacher's model and program, and one teacher System 2 evaluation
    gen = graph.nodes[fold["t1"].generate]
    assert fold["t2"].generate == fold["t3"].generate == gen.id != fold["plain"].generate
    assert gen.spec["model"]["base"] == str(teacher_dir.resolve())
    assert gen.spec["program"]["name"] == "rar_2step" and "by teacher teacher" in gen.label
    assert gen.job["config"].model == str(teacher_dir)
    s2 = {a: graph.arms[a].base[("system2", "test")] for a in arms}
    assert s2["t1"] == s2["t3"] != s2["plain"]
    assert graph.nodes[s2["t1"]].label.startswith("teacher rar_2step on test")
    s1 = {a: graph.arms[a].base[("system1", "test")] for a in arms}
    assert s1["t1"] == s1["plain"] != s1["t3"]  # System 1 is the student's
    assert len({fold[a].finetune for a in arms}) == 5
    # token-level KD (default teacher: the student's own base): the finetune stage names it,
    # and the distillation set carries the teacher's System 2 context; the samples are shared
    kd = graph.nodes[fold["plain_kd"].finetune]
    assert kd.spec["teacher"] == kd.spec["model"] and kd.spec["train"]["kd"]["divergence"] == (
        "forward_kl") and "KD forward_kl from the base" in kd.label
    assert fold["plain_kd"].generate == fold["plain"].generate
    assert graph.nodes[fold["plain_kd"].distill].spec["teacher_context"] == "rar_1step"
    assert graph.nodes[fold["plain_kd"].distill].job["context"].name == "rar_1step"
    text = describe(plan)
    assert "teacher rar_2step on test" in text and "by teacher teacher" in text
    # arms without a teacher or train.kd: the stages (and ids) of a sweep without such arms
    alone = plan_sweep({"plain": _config()}, tmp_path / "root").graph
    assert set(alone.nodes) == {i for i, users in graph.uses.items() if "plain" in users}
    assert not any("teacher" in n.spec or "teacher_context" in n.spec
                   for n in alone.nodes.values())
    # token-level KD from a teacher of another vocabulary: refused before any work
    shapes = json.loads((teacher_dir / "config.json").read_text())
    (teacher_dir / "config.json").write_text(json.dumps({**shapes, "vocab_size": 640}))
    other = _config(teacher=teacher, train=plain["plain_kd"].train)
    with pytest.raises(S2JaxError, match="needs one vocabulary"):
        plan_sweep({"bad": other}, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
