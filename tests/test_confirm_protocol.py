"""The pre-registered confirmatory protocol's pieces (issue 25), fast and without a model:
folds by country over the whole pool, the claim's three criteria on synthetic rows, and the
frozen arms' config hashes against the ones the pre-registration printed."""

import re
from pathlib import Path

import pytest

from s2jax.core.errors import S2JaxError
from s2jax.report.claim import evaluate_claim, render
from s2jax.report.rows import ItemRow
from s2jax.run.config import CrossFit
from s2jax.run.confirm import hashes, load_arms, pick
from s2jax.run.protocol import distilled_inputs, fold_split
from s2jax.tasks.capitals import TEMPLATES, split_examples
from s2jax.tasks.country_facts import country_facts
from s2jax.tasks.splits import split_pool

ROOT = Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / "configs/real/confirm.py")
POOL_SPEC = "all:" + ",".join(TEMPLATES)


def test_all_split_is_the_whole_pool_and_the_union_of_the_others():
    facts = country_facts()
    whole = split_pool(facts, "all", 0)
    parts = [x for s in ("unlabeled", "validation", "test") for x in split_pool(facts, s, 0)]
    assert sorted(f.iso for f in whole) == sorted(f.iso for f in facts) == sorted(
        f.iso for f in parts)
    with pytest.raises(S2JaxError, match="split 'everything'"):
        split_pool(facts, "everything", 0)


def test_folds_test_every_country_once_and_never_distil_on_a_tested_country():
    pool = split_examples(POOL_SPEC, 0)
    countries = {ex.fields["country"] for ex in pool}
    assert len(pool) == 4 * len(countries) == 576
    tested: list[str] = []
    for k in range(3):
        test, train = fold_split(pool, 3, 0, k, group="country",
                                 distil_on="template=suggest_incorrect")
        test_countries = {ex.fields["country"] for ex in test}
        train_countries = {ex.fields["country"] for ex in train}
        assert not test_countries & train_countries  # no country both distilled and tested
        assert {ex.fields["template"] for ex in train} == {"suggest_incorrect"}
        assert {ex.fields["template"] for ex in test} == set(TEMPLATES)  # tested under all 4
        assert len(test_countries) + len(train_countries) == len(countries)
        tested += [ex.id for ex in test]
    assert sorted(tested) == sorted(ex.id for ex in pool)  # every input exactly once


def test_without_group_the_folds_split_a_country_across_folds():
    # the reason for `group`: dealing inputs alone would test a country under one template
    # and distil it under another
    pool = split_examples(POOL_SPEC, 0)
    test, train = fold_split(pool, 3, 0, 0, distil_on="template=suggest_incorrect")
    assert {ex.fields["country"] for ex in test} & {ex.fields["country"] for ex in train}


def test_distil_on_errors_name_the_field():
    pool = split_examples(POOL_SPEC, 0)[:8]
    with pytest.raises(S2JaxError, match="cross_fit.distil_on.*no field 'colour'"):
        distilled_inputs(pool, "colour=red")
    with pytest.raises(S2JaxError, match="cross_fit.distil_on='template=nope': no pool input"):
        distilled_inputs(pool, "template=nope")
    with pytest.raises(S2JaxError, match="cross_fit.distil_on='template'"):
        CrossFit(folds=3, distil_on="template")
    with pytest.raises(S2JaxError, match="cross_fit.group.*no field 'region'"):
        fold_split(pool, 2, 0, 0, group="region")


def _rows(scores: dict[str, list[float]]) -> list[ItemRow]:
    """Rows of one system: {template: one score per country}."""
    return [ItemRow(id=f"c{i}-{t}", score=s, tokens=5, item=f"c{i}", template=t)
            for t, ss in scores.items() for i, s in enumerate(ss)]


def _systems(n, *, s1, s2, d):
    """Per-template accuracies (fractions of n countries) -> rows of each system."""
    def make(acc):
        return _rows({t: [1.0] * round(a * n) + [0.0] * (n - round(a * n))
                      for t, a in zip(TEMPLATES, acc, strict=True)})
    return {"system1": make(s1), "system2": make(s2), "distilled": make(d)}


def test_claim_passes_only_when_all_three_criteria_hold():
    n = 200
    good = _systems(n, s1=[.6, .1, .9, .7], s2=[.5, .5, .5, .5], d=[.6, .5, .6, .6])
    control = _rows({"suggest_incorrect": [1.0] * 40 + [0.0] * 160})  # 20% vs distilled 50%
    claim = evaluate_claim(good, control)
    k = claim["criteria"]
    assert claim["verdict"] == "PASS", k
    assert k["s2a"]["difference"] == 0.0 and k["s2a"]["low"] > -10
    assert k["retention"]["distilled"] == pytest.approx(57.5)
    assert k["retention"]["base"] == pytest.approx(57.5)
    assert k["control"]["difference"] == pytest.approx(30.0) and k["control"]["low"] > 0
    assert "**PASS**" in render([{"arm": "x", **claim}])

    # (1) fails: distilled far below S2A on the wrong-suggestion template
    bad1 = _systems(n, s1=[.6, .1, .9, .7], s2=[.5, .5, .5, .5], d=[.6, .3, .7, .7])
    c = evaluate_claim(bad1, control)
    assert c["verdict"] == "FAIL" and c["criteria"]["s2a"]["passed"] is False
    assert c["criteria"]["retention"]["passed"] is True
    # (2) fails: the template mean drops more than 2 points below the base's
    bad2 = _systems(n, s1=[.6, .1, .9, .7], s2=[.5, .5, .5, .5], d=[.4, .5, .5, .5])
    c = evaluate_claim(bad2, control)
    assert c["criteria"]["retention"]["passed"] is False and c["verdict"] == "FAIL"
    assert c["criteria"]["retention"]["difference"] == pytest.approx(-10.0)
    # (3) fails: the own-bare-reply control is as good
    same = _rows({"suggest_incorrect": [1.0] * 100 + [0.0] * 100})
    c = evaluate_claim(good, same)
    assert c["criteria"]["control"]["passed"] is False and c["verdict"] == "FAIL"
    # (3) not run: the claim is not passed
    c = evaluate_claim(good, None)
    assert c["verdict"] == "INCOMPLETE" and c["criteria"]["control"]["passed"] is None
    assert "not run" in render([{"arm": "x", **c}])


def test_claim_refuses_unpaired_rows():
    n = 20
    systems = _systems(n, s1=[.5] * 4, s2=[.5] * 4, d=[.5] * 4)
    control = _rows({"suggest_incorrect": [1.0] * (n - 1)})  # one country short
    with pytest.raises(S2JaxError, match="claim 3.*different items"):
        evaluate_claim(systems, control)
    with pytest.raises(S2JaxError, match="no system2 rows"):
        evaluate_claim({k: v for k, v in systems.items() if k != "system2"}, None)


def test_arm_config_hashes_are_the_preregistered_ones():
    arms, claims = load_arms(f"{CONFIG}:qwen2.5-coder-0.5b")
    got = hashes(arms)
    assert got == hashes(load_arms(f"{CONFIG}:qwen2.5-coder-0.5b")[0])  # stable across loads
    doc = (ROOT / "docs/real_preregistration.md").read_text()
    table = {}
    for line in doc.splitlines():
        m = re.match(r"\| ([\w, ]+) \| .* \| ([0-9a-f, ]+) \|$", line)
        if m:
            names = [n.strip() for n in m.group(1).split(",")]
            table.update(zip(names, [h.strip() for h in m.group(2).split(",")], strict=True))
    assert table == got  # every arm registered, with the hash its config has now
    assert claims == {"chosen_s0": "own_bare_chosen_s0", "fixed_s0": "own_bare_fixed_s0"}
    assert arms["chosen_s0"].distill.vote.threshold == 0.75 and arms["chosen_s0"].train.steps == 3
    assert arms["fixed_s0"].distill.vote.threshold == 0.5 and arms["fixed_s0"].train.steps == 8
    assert len(set(got.values())) == len(got)


def test_pick_names_the_bad_arm():
    arms, _ = load_arms(f"{CONFIG}:smollm2-135m,quick", quick=True)
    assert list(pick(arms, ["own_bare_chosen_s0"])) == ["own_bare_chosen_s0"]
    with pytest.raises(S2JaxError, match="--arms: unknown arm 'chosen_s9'"):
        pick(arms, ["chosen_s9"])


def test_report_pairs_a_system2_evaluated_on_one_template_on_those_items_only():
    from s2jax.report import Arm, ReportSettings, build_report
    from s2jax.report.render import markdown

    n = 30
    systems = _systems(n, s1=[.6, .1, .9, .7], s2=[.5, .5, .5, .5], d=[.6, .4, .6, .6])
    systems["system2"] = [r for r in systems["system2"] if r.template == "suggest_incorrect"]
    report = build_report([Arm("chosen_s0", systems)], ReportSettings(resamples=200))
    entry = report["splits"][0]["arms"][0]
    assert entry["systems"]["system2"]["n"] == n and entry["systems"]["distilled"]["n"] == 4 * n
    vs_s2 = entry["paired"]["system2"]
    assert vs_s2["rows"] == n and vs_s2["difference"] == pytest.approx(-10.0)
    t = entry["templates"]
    assert t["systems"]["system2"]["mean"] is None
    assert list(t["systems"]["system2"]["per_template"]) == ["suggest_incorrect"]
    assert t["systems"]["distilled"]["mean"] == pytest.approx(55.0)
    assert "—" in markdown(report, "x")
    extra = [*systems["system2"], ItemRow(id="elsewhere", score=1.0, tokens=1)]
    with pytest.raises(S2JaxError, match="evaluated on different items: 1 only in system2"):
        Arm("bad", {**systems, "system2": extra})
