"""System 2 traces as distillation targets, for stepwise internalization (Deng et al. 2024).

Distillation target "trace" keeps the reasoning of the sample the label-free filter kept (the
first sample whose answer has the winner's key): the assistant turn is that sample's output of
every stage of the program, in order, one line each, then `ANSWER_MARK` and the task's target of
the voted answer:

    <branch output>\\n<solve output>\\n<merge output>\\n#### [[A]]

The row's `trace` field is everything before the mark. A removal curriculum
(`s2jax.train.curriculum`) takes the trace away a few tokens per stage; the mark and the answer
stay, so its last stage trains "#### <answer>" (the answer-only target behind a two-character
mark, as in Deng et al.'s data). The student keeps System 1's prompt throughout. Its replies are
read by `trace_task`: the answer after the last mark, or the whole reply when it wrote no mark.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from s2jax.tasks.task import Task

ANSWER_MARK = "####"  # between the trace and the answer (GSM8K's and Deng et al.'s mark)


def sample_trace(sample: Mapping) -> str:
    """One sample path's stage outputs, in stage order, each stripped and ending in a newline."""
    texts = (stage["text"].strip() for stage in sample["stages"].values())
    return "".join(f"{t}\n" for t in texts if t)


def trace_reply(trace: str, answer_target: str) -> str:
    """The assistant turn of a trace target: the trace, the mark and the answer."""
    return f"{trace}{ANSWER_MARK} {answer_target}"


def answer_part(text: str) -> str:
    """What follows the last answer mark of a reply, or the whole reply when it has none."""
    _, mark, after = text.rpartition(ANSWER_MARK)
    return after.strip() if mark else text


def trace_task(task: Task) -> Task:
    """`task`, reading answers the way a trace-trained student writes them (`answer_part`)."""
    extract = task.extract
    return dataclasses.replace(task, extract=lambda text: extract(answer_part(text)))
