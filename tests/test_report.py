"""`s2jax report` end to end on run dirs built here, and its refusals of bad input."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from s2jax.cli import main
from s2jax.core.shards import index_path
from s2jax.core.text_generator import Sample, SamplingParams
from s2jax.distill.evaluate import score_examples
from s2jax.methods.catalog import SYSTEM1, method
from s2jax.report import load_arm, stats
from s2jax.report.build import ReportSettings, arm_split, build_report
from s2jax.report.render import MD_MARK, markdown
from s2jax.tasks import TASKS

CONFIG = {"name": "x", "task": "capitals", "method": "s2a", "sampling": {"n": 4, "seed": 0},
          "distill": {"vote": {"threshold": 0.75}}, "test": {"split": "test", "seed": 0}}


def _rows(scores, *, tokens=3, templates=None, ids=None):
    """Eval rows of 0/1 scores; with `templates`, ids are ITEM-TEMPLATE for each item."""
    if templates is None:
        ids = ids or [f"q{i:02d}" for i in range(len(scores))]
        return [{"id": i, "item": i, "template": None, "split": "test",
                 "answer": "yes" if s else "no", "score": float(s), "tokens": tokens,
                 "replies": [f"reply {i}"]} for i, s in zip(ids, scores, strict=True)]
    out = []
    k = len(templates)
    for n, s in enumerate(scores):
        item, template = f"item{n // k:02d}", templates[n % k]
        out.append({"id": f"{item}-{template}", "item": item, "template": template,
                    "split": "test", "answer": None if s is None else str(s),
                    "score": float(s or 0), "tokens": tokens, "replies": ["..."]})
    return out


def make_run(path: Path, systems: dict, *, name="x", config=None, exploratory=None,
             accuracy_override=None):
    """A finished run dir as `s2jax run` leaves it: config.json, eval/<system>.jsonl,
    results.json."""
    (path / "eval").mkdir(parents=True)
    summary = []
    for system, rows in systems.items():
        (path / "eval" / f"{system}.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in rows))
        acc = 100 * sum(r["score"] for r in rows) / len(rows)
        if accuracy_override and system in accuracy_override:
            acc = accuracy_override[system]
        summary.append({"system": system, "method": "s2a" if system == "system2" else "system1",
                        "accuracy": acc, "tokens_per_answer": 0.0, "seconds": 1.0,
                        "examples": len(rows), "abstentions": 0})
    results = {"name": name, "task": "capitals", "method": "s2a", "rows": summary,
               "warnings": []}
    if exploratory is not None:
        results["exploratory"] = exploratory
    (path / "results.json").write_text(json.dumps(results))
    (path / "config.json").write_text(json.dumps(
        {"fingerprint": "f", "config": {**CONFIG, "name": name, **(config or {})}}))


def _seeded(seed):
    return {"sampling": {"n": 4, "seed": seed}}


def make_root(root: Path) -> Path:
    """Five arms: the 43-item arm of the known figures, three seeds of one recipe, and an
    exploratory arm with two templates per item."""
    # distilled 21/43; against System 1: 18 right only when distilled, 1 only under System 1
    d = [1] * 21 + [0] * 22
    s1 = [1] * 3 + [0] * 18 + [1] + [0] * 21
    s2 = [1] * 25 + [0] * 18
    make_run(root / "a_vote75", {"system1": _rows(s1, tokens=10),
                                 "system2": _rows(s2, tokens=30),
                                 "distilled": _rows(d, tokens=9)},
             name="vote75", config={"distill": {"vote": {"threshold": 0.75}}},
             accuracy_override={"system2": 50.0})
    for seed, dist in ((0, [1, 1, 1, 0, 0, 0, 1, 1, 0, 0]), (1, [1, 1, 1, 1, 0, 0, 1, 1, 0, 0]),
                       (2, [1, 1, 0, 0, 0, 0, 1, 1, 0, 1])):
        make_run(root / f"b_seed{seed}", {"system1": _rows([0, 1] * 5),
                                          "system2": _rows([1] * 8 + [0] * 2, tokens=20),
                                          "distilled": _rows(dist)},
                 name="vote50", config={"distill": {"vote": {"threshold": 0.5}},
                                        **_seeded(seed)})
    t = ["bare", "suggest_incorrect"]
    make_run(root / "c_explore", {
        "system1": _rows([1, 0, 1, 0, 1, 0, 0, 0, 1, 1], templates=t),
        "system2": _rows([1, 1, 1, 1, 1, 0, 0, 1, 1, 1], templates=t),
        "distilled": _rows([1, 1, 0, 1, 1, 1, 0, 0, 1, 1], templates=t)},
        name="replay", config={"train": {"replay": True}}, exploratory=True)
    return root


def _run(capsys, *argv):
    code = main(["report", *map(str, argv)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_report_end_to_end_recomputes_every_figure_from_rows(tmp_path, capsys):
    root = make_root(tmp_path / "sweep")
    code, out, err = _run(capsys, root, "--resamples", "2000")
    assert code == 0, err
    md = (root / "report.md").read_text()
    assert out == md and md.startswith(MD_MARK)
    assert (root / "report.png").read_bytes().startswith(b"\x89PNG")
    report = json.loads((root / "report.json").read_text())
    assert report["settings"] == {"margin": 10.0, "level": 0.95, "resamples": 2000, "seed": 0}
    (split,) = report["splits"]
    assert split["split"] == "test"
    arms = {e["arm"]: e for e in split["arms"]}
    assert sorted(arms) == ["a_vote75", "b_seed0", "b_seed1", "b_seed2", "c_explore"]

    a = arms["a_vote75"]
    dist = a["systems"]["distilled"]
    assert (round(dist["accuracy"], 1), round(dist["low"], 1), round(dist["high"], 1)) == \
        (48.8, 34.6, 63.2)
    assert (dist["n"], dist["tokens_per_answer"], a["systems"]["system2"]["tokens_per_answer"]) \
        == (43, 9.0, 30.0)
    vs1, vs2 = a["paired"]["system1"], a["paired"]["system2"]
    assert (vs1["only_distilled"], vs1["only_other"]) == (18, 1)
    assert vs1["mcnemar_p"] == pytest.approx(7.62939453125e-05)
    assert vs1["difference"] == pytest.approx(100 * 17 / 43, abs=1e-5)
    assert vs2["difference"] == pytest.approx(-100 * 4 / 43, abs=1e-5)
    assert vs2["noninferior"]["passed"] == (vs2["low"] > -10)
    assert "48.8 [34.6, 63.2]" in md and "| 18 / 1 | 7.6e-05 |" in md

    # Holm across the five arms, each comparison its own family
    for other in ("system1", "system2"):
        ps = [arms[n]["paired"][other]["mcnemar_p"] for n in sorted(arms)]
        holm = stats.holm(ps)
        assert [arms[n]["paired"][other]["holm_p"] for n in sorted(arms)] == \
            pytest.approx(holm)
        assert {arms[n]["paired"][other]["holm_family"] for n in arms} == {5}

    # seeds of one recipe: mean +- sd with every seed listed
    (group,) = split["seed_groups"]
    assert group["arms"] == ["b_seed0", "b_seed1", "b_seed2"]
    assert group["seeds"] == ["sampling.seed=0", "sampling.seed=1", "sampling.seed=2"]
    f = group["figures"]["accuracy:distilled"]
    assert f["values"] == {"sampling.seed=0": 50.0, "sampling.seed=1": 60.0,
                           "sampling.seed=2": 50.0}
    assert f["mean"] == pytest.approx(160 / 3, abs=1e-5)
    assert f["sd"] == pytest.approx(5.773503, abs=1e-5)
    assert "| 53.3 ± 5.8 | sampling.seed=0: 50.0; sampling.seed=1: 60.0; sampling.seed=2: 50.0 |"\
        in md

    # templates: per-template accuracy, template means, paired differences from System 1
    c = arms["c_explore"]
    assert c["exploratory"] and "c_explore *(exploratory)*" in md
    t = c["templates"]
    assert t["names"] == ["bare", "suggest_incorrect"]
    s1 = t["systems"]["system1"]
    assert s1["per_template"]["bare"]["accuracy"] == 80.0
    assert s1["per_template"]["suggest_incorrect"]["accuracy"] == 20.0 and s1["mean"] == 50.0
    assert t["vs_base"]["distilled"]["mean"]["difference"] == pytest.approx(20.0)
    per = t["vs_base"]["distilled"]["per_template"]  # distilled: bare 60%, suggest 80%
    assert (per["bare"]["difference"], per["suggest_incorrect"]["difference"]) == \
        pytest.approx((-20.0, 60.0))
    assert c["paired"]["system1"]["clustered"] and "†" in md

    # figures come from the rows: results.json's wrong System 2 summary is called out
    notes = {x["name"]: x["notes"] for x in report["arms"]}
    assert any("results.json gives system2 50.0%" in n for n in notes["a_vote75"])
    assert "rows give 58.1%" in md

    # deterministic: the same rows give the same bytes
    before = {n: (root / n).read_bytes() for n in ("report.md", "report.json", "report.png")}
    assert _run(capsys, root, "--resamples", "2000")[0] == 0
    assert {n: (root / n).read_bytes() for n in before} == before


def test_a_single_run_dir_is_a_root_and_splits_are_kept_apart(tmp_path, capsys):
    run = tmp_path / "run"
    rows = _rows([1, 0, 1, 1])
    val = [{**r, "id": "v" + r["id"], "split": "validation"} for r in _rows([0, 0, 1, 1])]
    make_run(run, {"system1": rows + val, "system2": rows + val})
    code, out, err = _run(capsys, run, "--resamples", "500")
    assert code == 0, err
    report = json.loads((run / "report.json").read_text())
    assert [s["split"] for s in report["splits"]] == ["test", "validation"]
    assert [s["arms"][0]["systems"]["system1"]["n"] for s in report["splits"]] == [4, 4]
    assert report["splits"][1]["arms"][0]["systems"]["system1"]["accuracy"] == 50.0
    assert report["splits"][0]["arms"][0]["paired"] == {}  # no distilled system: nothing paired


def test_results_summaries_are_checked_against_their_own_split(tmp_path, capsys):
    """A sweep arm's results.json: "rows" summarise the test split and "validation" the
    validation split of files holding both; each is checked against its split only."""
    run = tmp_path / "arm"
    test, val = _rows([1, 0, 1, 1]), [{**r, "id": "v" + r["id"], "split": "validation"}
                                      for r in _rows([0, 0, 1, 1])]
    make_run(run, {"system1": test + val, "system2": test + val})
    results = json.loads((run / "results.json").read_text())
    for r in results["rows"]:
        r.update(split="test", accuracy=75.0, examples=4)
    results["validation"] = [{**r, "split": "validation", "accuracy": 50.0}
                             for r in results["rows"]]
    (run / "results.json").write_text(json.dumps(results))
    assert _run(capsys, run, "--resamples", "500")[0] == 0
    assert json.loads((run / "report.json").read_text())["arms"][0]["notes"] == []
    results["validation"][1]["accuracy"] = 25.0  # a wrong validation summary is called out
    (run / "results.json").write_text(json.dumps(results))
    assert _run(capsys, run, "--resamples", "500")[0] == 0
    assert json.loads((run / "report.json").read_text())["arms"][0]["notes"] == [
        "results.json gives system2 (validation) 25.0% on 4 examples; its rows give 50.0% on 4"]


def test_report_imports_no_jax(tmp_path):
    root = make_root(tmp_path / "r")
    code = ("import sys\nfrom s2jax.report import report_root, ReportSettings\n"
            f"report_root({str(root)!r}, ReportSettings(resamples=200))\n"
            "print(sorted(m for m in ('jax', 'flax', 'torch', 'transformers') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout
    assert out.strip() == "[]"


def _tree(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None
            for p in sorted(root.rglob("*"))}


def _drop_system(root):
    (root / "a_vote75" / "eval" / "distilled.jsonl").unlink()


def _edit_row(root, system="distilled", drop="score", line=3):
    path = root / "a_vote75" / "eval" / f"{system}.jsonl"
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    del rows[line][drop]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _other_items(root):
    path = root / "b_seed1" / "eval" / "system2.jsonl"
    path.write_text(path.read_text().replace('"q07"', '"q77"'))


def _repeat_id(root):
    path = root / "b_seed1" / "eval" / "system1.jsonl"
    path.write_text(path.read_text().replace('"q07"', '"q06"'))


def _unfinished(root):
    path = root / "b_seed2" / "eval" / "distilled.jsonl"
    index_path(path).write_text('{"shard": 0, "ids": [], "key": "k", "start": 0, "end": 0}\n')


def _no_results(root):
    (root / "b_seed0" / "results.json").unlink()


def _foreign_report(root):
    (root / "report.md").write_text("my own notes\n")


def _foreign_png(root):
    (root / "report.png").write_bytes(b"\x89PNG\r\n\x1a\nnot ours")


BAD = {
    "a system's rows missing": (_drop_system, [], "distilled.jsonl: missing"),
    "a row without its score": (_edit_row, [], "distilled.jsonl:4: no field 'score'"),
    "systems on different items": (_other_items, [], "evaluated on different items"),
    "an id twice": (_repeat_id, [], "appears twice"),
    "an unfinished evaluation": (_unfinished, [], "did not finish"),
    "an unfinished run": (_no_results, [], "no results.json"),
    "a user's report.md": (_foreign_report, [], "not written by s2jax report"),
    "a user's report.png": (_foreign_png, [], "not written by s2jax report"),
    "a negative margin": (None, ["--margin", "-1"], "margin=-1.0"),
    "too few resamples": (None, ["--resamples", "10"], "resamples=10"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, tmp_path, capsys):
    setup, extra, expected = BAD[case]
    root = make_root(tmp_path / "sweep")
    if setup:
        setup(root)
    before = _tree(tmp_path)
    code, out, err = _run(capsys, root, "--resamples", "200", *extra)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and expected in err, err
    assert err.startswith("s2jax report: error: ")
    assert _tree(tmp_path) == before


@pytest.mark.parametrize("make,expected", [
    (lambda p: None, "no such directory"),
    (lambda p: (p.mkdir(), (p / "notes.txt").write_text("hi")), "no run dirs"),
])
def test_a_root_without_runs_is_refused(tmp_path, capsys, make, expected):
    root = tmp_path / "root"
    make(root)
    code, _, err = _run(capsys, root)
    assert code == 2 and expected in err and len(err.strip().splitlines()) == 1


class _Echo:
    """A generator that always answers "Paris" (right for the gold below, under any template)."""

    def __call__(self, prompts, params):
        return [[Sample("Paris.", 2, "stop")] * params.n for _ in prompts]


def test_evaluation_rows_carry_item_template_and_split_for_the_report(tmp_path):
    task = TASKS["triviaqa_biased"]
    rows = [{"id": "q1", "question": "What is the capital of France?", "answer": ["Paris"],
             "incorrect_answer": "Lyon"},
            {"id": "q2", "question": "What is the capital of Spain?", "answer": ["Madrid"],
             "incorrect_answer": "Seville"}]
    examples = task.from_rows(rows)
    out = score_examples(method(SYSTEM1, task.system1), task, examples, _Echo(),
                         SamplingParams(), split="test")
    assert len(out) == len(examples) > 2
    assert {r["item"] for r in out} == {"What is the capital of France?",
                                        "What is the capital of Spain?"}
    assert all(r["template"] == ex.fields["template"] and r["split"] == "test"
               for r, ex in zip(out, examples, strict=True))
    assert [r["score"] for r in out] == [1.0 if r["item"].endswith("France?") else 0.0
                                         for r in out]
    run = tmp_path / "run"
    make_run(run, {"system1": out, "distilled": out})
    arm = load_arm(run)
    entry = arm_split(arm, "test", ReportSettings(resamples=200))
    assert entry["paired"]["system1"]["clustered"] and entry["paired"]["system1"]["items"] == 2
    assert entry["templates"]["names"] == sorted({ex.fields["template"] for ex in examples})
    # long template texts are printed as T1, T2, ... with the texts in a legend
    md = markdown(build_report([arm], ReportSettings(resamples=200)), "t")
    assert "| system | T1 | T2 | T3 | template mean |" in md
    assert f"- T1: `{entry['templates']['names'][0]}`" in md
