"""Unsupervised filters that decide which System 2 answers to trust: pure Python, no JAX.

Three filters, each turning the extracted answers of one input into a `Decision`:
- `majority_vote`: self-consistency (Wang et al., arXiv 2203.11171) over N samples, with a minimum
  agreement threshold, a tie policy and abstentions (`None`: the extractor could not parse it).
- `perturbation_vote`: majority on x and on a perturbed x', kept only when the answers agree after
  mapping x' answers back (BSM with responses A and B swapped: A<->B).
- `usc_vote`: Universal Self-Consistency (Chen et al., arXiv 2311.17311): a model stage chose the
  most consistent sample; the answer of that sample is kept.

Answers are compared by `key(answer)` (a task's normalisation); the answer reported for a group is
its most frequent spelling, ties broken by string order, so that a decision never depends on
sample order.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable, Iterable, Sequence
from typing import Literal

Answer = str | None  # None: the sample abstained (no parsable final answer)
TiePolicy = Literal["drop", "lowest"]
TIE_POLICIES: tuple[str, ...] = ("drop", "lowest")

# Why an input was kept or dropped; `VoteStats` counts these.
KEPT = "kept"
ALL_ABSTAIN = "all_abstain"
TIE = "tie"
BELOW_THRESHOLD = "below_threshold"
INCONSISTENT = "inconsistent"
USC_UNPARSABLE = "usc_unparsable"
USC_ABSTAIN = "usc_abstain"
REASONS: tuple[str, ...] = (
    KEPT, ALL_ABSTAIN, TIE, BELOW_THRESHOLD, INCONSISTENT, USC_UNPARSABLE, USC_ABSTAIN
)


def _identity(answer: str) -> str:
    return answer


@dataclasses.dataclass(frozen=True)
class VoteConfig:
    """How `majority_vote` decides.

    Attributes:
      threshold: minimum share of ALL samples (abstentions included) that must agree with the
        winner, in [0, 1]. 0 keeps any strict plurality; 0.5 needs half of the samples.
      tie_policy: "drop" (default) drops inputs whose top answers tie; "lowest" keeps the tied
        answer with the lowest key, which is arbitrary but independent of sample order.
    """

    threshold: float = 0.0  # share of all samples that must agree with the winner, in [0, 1]
    tie_policy: TiePolicy = "drop"  # "drop" inputs whose top answers tie, or keep the "lowest"

    def __post_init__(self):
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"vote threshold must be in [0, 1], got {self.threshold}")
        if self.tie_policy not in TIE_POLICIES:
            raise ValueError(f"tie_policy must be one of {TIE_POLICIES}, got {self.tie_policy!r}")


@dataclasses.dataclass(frozen=True)
class Decision:
    """What a filter decided for one input.

    Attributes:
      kept: whether the input enters the distillation set.
      reason: `KEPT` or why it was dropped (one of `REASONS`).
      answer: the winning answer (a spelling of the winning key); None when nothing won.
      votes: samples that agree with `answer` (0 when None).
      total: samples considered, abstentions included.
      counts: samples per answer key, abstentions under no key.
    """

    kept: bool
    reason: str
    answer: str | None
    votes: int
    total: int
    counts: dict[str, int]

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def _tally(answers: Sequence[Answer], key: Callable[[str], str]):
    """Counts per key, and each key's most frequent spelling (ties: lowest string)."""
    counts: collections.Counter[str] = collections.Counter()
    spellings: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for a in answers:
        if a is None:
            continue
        k = key(a)
        counts[k] += 1
        spellings[k][a] += 1
    spelling = {k: min(c, key=lambda s: (-c[s], s)) for k, c in spellings.items()}
    return counts, spelling


def majority_vote(
    answers: Sequence[Answer],
    config: VoteConfig = VoteConfig(),
    key: Callable[[str], str] = _identity,
) -> Decision:
    """Self-consistency: the most frequent answer among the samples of one input.

    Args:
      answers: extracted answers of the N samples; None marks an abstention.
      config: threshold and tie policy.
      key: maps an answer to the key two answers must share to count as the same.

    Returns:
      A `Decision`; dropped when every sample abstained, when the top answers tie (tie policy
      "drop"), or when the winner's share of all samples is below `config.threshold`.
    """
    counts, spelling = _tally(answers, key)
    total = len(answers)
    if not counts:
        return Decision(False, ALL_ABSTAIN, None, 0, total, {})
    top = max(counts.values())
    leaders = sorted(k for k, c in counts.items() if c == top)
    if len(leaders) > 1 and config.tie_policy == "drop":
        return Decision(False, TIE, None, 0, total, dict(counts))
    winner = leaders[0]
    if top < config.threshold * total:
        return Decision(False, BELOW_THRESHOLD, spelling[winner], top, total, dict(counts))
    return Decision(True, KEPT, spelling[winner], top, total, dict(counts))


def perturbation_vote(
    answers: Sequence[Answer],
    perturbed_answers: Sequence[Answer],
    map_answer: Callable[[str], str],
    config: VoteConfig = VoteConfig(),
    key: Callable[[str], str] = _identity,
) -> Decision:
    """Consistency under an input perturbation: keep only answers that survive it.

    Args:
      answers: extracted answers of the samples on the original input x.
      perturbed_answers: extracted answers of the samples on the perturbed input x'.
      map_answer: maps an answer to x' onto the answer it means for x (for BSM's swap of A and B:
        "A" <-> "B", "tie" -> "tie"). It must be an involution for the filter to be symmetric.
      config: threshold and tie policy, applied to each side's majority vote.
      key: answer equivalence, as in `majority_vote`.

    Returns:
      The original side's decision when both sides are kept and their (mapped) winners share a
      key; otherwise a dropped decision (the first side's reason, else `INCONSISTENT`).
    """
    mapped = [None if a is None else map_answer(a) for a in perturbed_answers]
    first = majority_vote(answers, config, key)
    second = majority_vote(mapped, config, key)
    counts = dict(collections.Counter(first.counts) + collections.Counter(second.counts))
    total = first.total + second.total
    for side in (first, second):
        if not side.kept:
            return Decision(False, side.reason, None, 0, total, counts)
    assert first.answer is not None and second.answer is not None
    if key(first.answer) != key(second.answer):
        return Decision(False, INCONSISTENT, None, 0, total, counts)
    return Decision(True, KEPT, first.answer, first.votes + second.votes, total, counts)


def usc_vote(
    answers: Sequence[Answer],
    choice: int | None,
    key: Callable[[str], str] = _identity,
) -> Decision:
    """Universal Self-Consistency: trust the sample the model judged most consistent.

    Args:
      answers: extracted answers of the N samples, in the order they were shown to the model.
      choice: the index the USC stage picked (None when its output could not be parsed).
      key: answer equivalence, used only to report agreement counts.

    Returns:
      A kept decision with the chosen sample's answer, or a dropped one when the choice is
      missing or out of range (`USC_UNPARSABLE`) or the chosen sample abstained (`USC_ABSTAIN`).
    """
    counts, _ = _tally(answers, key)
    total = len(answers)
    if choice is None or not 0 <= choice < total:
        return Decision(False, USC_UNPARSABLE, None, 0, total, dict(counts))
    picked = answers[choice]
    if picked is None:
        return Decision(False, USC_ABSTAIN, None, 0, total, dict(counts))
    return Decision(True, KEPT, picked, counts[key(picked)], total, dict(counts))


@dataclasses.dataclass(frozen=True)
class VoteStats:
    """What a filter kept and dropped, and why, over a whole generations file."""

    inputs: int
    kept: int
    reasons: dict[str, int]  # every reason in `REASONS`, zero when unseen
    samples: int
    abstentions: int  # samples whose answer could not be parsed
    mean_agreement_kept: float  # mean votes/total over kept inputs (0 when none kept)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def vote_stats(decisions: Iterable[Decision], answers: Iterable[Sequence[Answer]]) -> VoteStats:
    """Summarises decisions and the answers they were made from.

    Args:
      decisions: one decision per input.
      answers: the answers each decision saw (perturbed answers included where used).

    Returns:
      Counts of inputs, kept inputs, drop reasons, samples and abstentions.
    """
    decisions = list(decisions)
    reasons = dict.fromkeys(REASONS, 0)
    for d in decisions:
        reasons[d.reason] += 1
    flat = [a for group in answers for a in group]
    kept = [d for d in decisions if d.kept]
    agreement = sum(d.votes / d.total for d in kept) / len(kept) if kept else 0.0
    return VoteStats(
        inputs=len(decisions),
        kept=len(kept),
        reasons=reasons,
        samples=len(flat),
        abstentions=sum(a is None for a in flat),
        mean_agreement_kept=agreement,
    )
