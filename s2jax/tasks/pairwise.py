"""Pairwise judging: which of two responses to a question is better ("A", "B" or "tie").

Two sources: MT-bench human judgments (Zheng et al., arXiv 2306.05685; hub
"lmsys/mt_bench_human_judgments", split "human") and pairs derived from OASST2 (hub
"OpenAssistant/oasst2": message trees with human ranks of sibling replies). Both also accept
already-paired rows {"question", "response_a", "response_b", "winner"?}. Verdicts are read in
MT-bench's "[[A]]"/"[[B]]"/"[[C]]" format; the score is agreement with the human judges.
"""

from __future__ import annotations

import collections
import re
import zlib
from collections.abc import Iterable, Mapping

from s2jax.core.errors import S2JaxError
from s2jax.methods import prompts
from s2jax.methods.program import Stage
from s2jax.tasks.answers import strip_markdown
from s2jax.tasks.task import Example, HubSource, Perturbation, Task

VERDICTS = ("A", "B", "tie")
_WINNER = {"model_a": "A", "model_b": "B", "tie": "tie", "tie (inconsistent)": "tie",
           "a": "A", "b": "B", "c": "tie"}


def _verdict(value) -> str:
    """A human label ("model_a", "A", "tie", ...) as one of `VERDICTS`."""
    v = _WINNER.get(str(value).strip().lower())
    if v is None:
        raise S2JaxError(f"pairwise: unknown winner label {value!r}; expected one of "
                         f"{sorted(_WINNER)}")
    return v


def _pair(rid: str, question: str, a: str, b: str, gold: tuple[str, ...]) -> Example:
    return Example(rid, {"question": question, "response_a": a, "response_b": b, "spec": ""},
                   gold)


def _paired(rows: Iterable[Mapping]) -> list[Example]:
    return [
        _pair(str(r.get("id", f"pair-{i}")), str(r["question"]), str(r["response_a"]),
              str(r["response_b"]), (_verdict(r["winner"]),) if r.get("winner") else ())
        for i, r in enumerate(rows)
    ]


def mt_bench_from_rows(rows: Iterable[Mapping]) -> list[Example]:
    """First-turn MT-bench pairs; the judgments of one pair are merged into one example whose
    gold holds every judge's verdict (turn-2 judgments are skipped)."""
    rows = list(rows)
    if rows and "response_a" in rows[0]:
        return _paired(rows)
    votes: dict[tuple, list[str]] = collections.defaultdict(list)
    first: dict[tuple, Mapping] = {}
    for i, r in enumerate(rows):
        if "conversation_a" not in r:
            raise S2JaxError(f"mt_bench row {i}: no 'conversation_a' (has {sorted(r)})")
        if int(r.get("turn", 1)) != 1:
            continue
        key = (r["question_id"], r["model_a"], r["model_b"])
        votes[key].append(_verdict(r["winner"]))
        first.setdefault(key, r)
    out = []
    for key, r in first.items():
        conv_a, conv_b = r["conversation_a"], r["conversation_b"]
        out.append(_pair(f"mtbench-{key[0]}-{key[1]}-{key[2]}", conv_a[0]["content"],
                         conv_a[1]["content"], conv_b[1]["content"], tuple(votes[key])))
    return out


def oasst2_from_rows(rows: Iterable[Mapping], lang: str = "en") -> list[Example]:
    """Pairs of the two best-ranked replies to each first-turn prompt of OASST2 in `lang`.

    Which reply is shown as A is fixed by a hash of the prompt id, so that about half of the
    pairs have the better reply second and a judge that always says "A" scores about 50%.
    """
    rows = list(rows)
    if rows and "response_a" in rows[0]:
        return _paired(rows)
    prompts_by_id = {}
    replies = collections.defaultdict(list)
    for r in rows:
        if r.get("deleted") or r.get("lang", lang) != lang:
            continue
        if r["role"] == "prompter" and r.get("parent_id") is None:
            prompts_by_id[r["message_id"]] = r
        elif r["role"] == "assistant" and r.get("rank") is not None:
            replies[r["parent_id"]].append(r)
    out = []
    for pid, p in prompts_by_id.items():
        ranked = sorted(replies.get(pid, ()), key=lambda r: r["rank"])
        if len(ranked) < 2:
            continue
        best, second = ranked[0]["text"], ranked[1]["text"]
        if zlib.crc32(str(pid).encode()) % 2:
            out.append(_pair(f"oasst2-{pid}", p["text"], second, best, ("B",)))
        else:
            out.append(_pair(f"oasst2-{pid}", p["text"], best, second, ("A",)))
    return out


_VERDICT = re.compile(r"\[\[\s*(A|B|C|tie)\s*\]\]", re.IGNORECASE)


def extract(text: str) -> str | None:
    """The last "[[A]]"/"[[B]]"/"[[C]]" verdict as "A"/"B"/"tie"; None if there is none."""
    found = _VERDICT.findall(strip_markdown(text))
    if not found:
        return None
    v = found[-1].upper()
    return "tie" if v in ("C", "TIE") else v


def target(answer: str) -> str:
    """The verdict as MT-bench writes it: "[[A]]", "[[B]]" or "[[C]]"."""
    return {"A": "[[A]]", "B": "[[B]]", "tie": "[[C]]"}[answer]


def score(answer: str | None, example: Example) -> float:
    """Agreement with the human judges: the share of their verdicts equal to `answer`."""
    if answer is None or not example.gold:
        return 0.0
    return sum(answer == g for g in example.gold) / len(example.gold)


def swap(example: Example) -> Example:
    """The same pair with responses A and B exchanged (and the human verdicts mapped)."""
    f = dict(example.fields)
    f["response_a"], f["response_b"] = example.fields["response_b"], example.fields["response_a"]
    return Example(example.id + "~swap", f, tuple(swap_answer(g) for g in example.gold))


def swap_answer(answer: str) -> str:
    """"A" <-> "B"; "tie" stays."""
    return {"A": "B", "B": "A"}.get(answer, answer)


SWAP = Perturbation("swap_ab", swap, swap_answer)


def _task(name: str, description: str, from_rows, hub: HubSource) -> Task:
    return Task(
        name=name,
        description=description,
        # System 1: MT-bench's single-call judge.
        system1=Stage("answer", prompts.MT_BENCH_PAIR_TEMPLATE, system=prompts.MT_BENCH_PAIR_SYSTEM,
                      source=prompts.MT_BENCH_SOURCE),
        extract=extract,
        score=score,
        from_rows=from_rows,
        target=target,
        hub=hub,
        perturbation=SWAP,
    )


MT_BENCH_TASK = _task(
    "mt_bench", "MT-bench human judgments, first turn (A/B/tie)", mt_bench_from_rows,
    HubSource("lmsys/mt_bench_human_judgments", None, "human"),
)
OASST2_TASK = _task("oasst2_pairs", "OASST2 first-turn reply pairs ranked by humans (A/B)",
                    oasst2_from_rows, HubSource("OpenAssistant/oasst2", None, "train"))
