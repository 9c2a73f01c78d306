"""The voting module: properties (hypothesis) and the cases the distillation relies on."""

import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s2jax.distill.vote import (
    ALL_ABSTAIN,
    BELOW_THRESHOLD,
    INCONSISTENT,
    KEPT,
    TIE,
    USC_ABSTAIN,
    USC_UNPARSABLE,
    VoteConfig,
    majority_vote,
    perturbation_vote,
    usc_vote,
    vote_stats,
)

answer = st.one_of(st.none(), st.sampled_from(["A", "B", "tie", "yes", "Yes", "no", "42"]))
answers = st.lists(answer, min_size=1, max_size=12)
threshold = st.floats(0.0, 1.0, allow_nan=False)
config = st.builds(VoteConfig, threshold, st.sampled_from(["drop", "lowest"]))


def _swap(a: str) -> str:
    return {"A": "B", "B": "A"}.get(a, a)


@pytest.mark.parametrize(
    "module", ["s2jax.distill.vote", "s2jax.tasks", "s2jax.methods", "s2jax.distill.dataset"])
def test_import_does_not_import_jax(module):
    code = f"import {module}, sys; assert 'jax' not in sys.modules, '{module} imported jax'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_majority_examples():
    d = majority_vote(["7", "7", None, "8"])
    assert (d.kept, d.reason, d.answer, d.votes, d.total) == (True, KEPT, "7", 2, 4)
    assert d.counts == {"7": 2, "8": 1}
    # Abstentions count in the denominator: 2 of 4 is not above 0.6.
    assert majority_vote(["7", "7", None, None], VoteConfig(0.6)).reason == BELOW_THRESHOLD
    assert majority_vote(["7", "7", None, None], VoteConfig(0.5)).kept


def test_ties_and_abstentions_are_dropped_by_default():
    assert majority_vote(["A", "B"]).reason == TIE
    assert majority_vote(["A", "B", None, "A", "B"]).reason == TIE
    assert majority_vote([None, None, None]).reason == ALL_ABSTAIN
    assert majority_vote([None]).answer is None
    # The alternative tie policy keeps the lowest key, whatever the order.
    lowest = VoteConfig(tie_policy="lowest")
    assert majority_vote(["B", "A"], lowest).answer == majority_vote(["A", "B"], lowest).answer


def test_key_groups_spellings_and_reports_the_most_frequent():
    d = majority_vote(["Yes", "yes", "yes", "no"], key=str.lower)
    assert (d.answer, d.votes, d.counts) == ("yes", 3, {"yes": 3, "no": 1})


def test_config_is_validated():
    with pytest.raises(ValueError):
        VoteConfig(threshold=1.5)
    with pytest.raises(ValueError):
        VoteConfig(tie_policy="coin")


@settings(max_examples=200, deadline=None)
@given(answers, config, st.randoms(use_true_random=False))
def test_majority_is_invariant_to_sample_order(xs, cfg, rnd):
    shuffled = list(xs)
    rnd.shuffle(shuffled)
    assert majority_vote(xs, cfg, str.lower) == majority_vote(shuffled, cfg, str.lower)


@settings(max_examples=200, deadline=None)
@given(st.lists(answers, min_size=1, max_size=8), threshold, threshold,
       st.sampled_from(["drop", "lowest"]))
def test_raising_the_threshold_never_adds_examples(groups, t1, t2, policy):
    lo, hi = sorted((t1, t2))
    kept_lo = {i for i, g in enumerate(groups) if majority_vote(g, VoteConfig(lo, policy)).kept}
    kept_hi = {i for i, g in enumerate(groups) if majority_vote(g, VoteConfig(hi, policy)).kept}
    assert kept_hi <= kept_lo


@settings(max_examples=200, deadline=None)
@given(answers, threshold)
def test_top_ties_and_all_abstain_are_dropped(xs, t):
    d = majority_vote(xs, VoteConfig(t, "drop"))
    present = [a for a in xs if a is not None]
    if not present:
        assert (d.kept, d.reason) == (False, ALL_ABSTAIN)
        return
    counts = sorted((present.count(a) for a in set(present)), reverse=True)
    if len(counts) > 1 and counts[0] == counts[1]:
        assert (d.kept, d.reason) == (False, TIE)
    else:
        assert d.answer is not None and xs.count(d.answer) == counts[0]
        assert d.kept == (counts[0] >= t * len(xs))


@settings(max_examples=300, deadline=None)
@given(answers, answers, threshold)
def test_perturbation_filter_is_symmetric(xs, ys, t):
    cfg = VoteConfig(t, "drop")
    forward = perturbation_vote(xs, ys, _swap, cfg)
    backward = perturbation_vote(ys, xs, _swap, cfg)
    assert forward.kept == backward.kept
    if forward.kept:
        assert backward.answer == _swap(forward.answer)
        assert forward.answer == majority_vote(xs, cfg).answer


def test_perturbation_examples():
    # Position bias: always "A" on both orders means the verdict flips with the order.
    d = perturbation_vote(["A", "A"], ["A", "A"], _swap)
    assert (d.kept, d.reason) == (False, INCONSISTENT)
    # Consistent: A on (x), B on the swapped pair means the same response won.
    d = perturbation_vote(["A", "A", "B"], ["B", "B"], _swap)
    assert (d.kept, d.answer, d.votes, d.total) == (True, "A", 4, 5)
    assert perturbation_vote(["tie"], ["tie"], _swap).answer == "tie"
    assert perturbation_vote([None], ["B"], _swap).reason == ALL_ABSTAIN


def test_usc_keeps_the_chosen_sample():
    xs = ["12", "12", "13", None]
    d = usc_vote(xs, 2)
    assert (d.kept, d.answer, d.votes) == (True, "13", 1)
    assert usc_vote(xs, None).reason == USC_UNPARSABLE
    assert usc_vote(xs, 4).reason == USC_UNPARSABLE
    assert usc_vote(xs, 3).reason == USC_ABSTAIN


@settings(max_examples=100, deadline=None)
@given(st.lists(answers, min_size=0, max_size=8), config)
def test_stats_count_every_input_once(groups, cfg):
    decisions = [majority_vote(g, cfg) for g in groups]
    stats = vote_stats(decisions, groups)
    assert stats.inputs == len(groups) == sum(stats.reasons.values())
    assert stats.kept == stats.reasons[KEPT] == sum(d.kept for d in decisions)
    assert stats.samples == sum(map(len, groups))
    assert stats.abstentions == sum(a is None for g in groups for a in g)
    assert 0.0 <= stats.mean_agreement_kept <= 1.0
