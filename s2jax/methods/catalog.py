"""The catalogue of methods: System 1 and the System 2 prompt programs, as `Program` values
(their type is in `program.py`)."""

from __future__ import annotations

from s2jax.core.errors import S2JaxError
from s2jax.methods import prompts
from s2jax.methods.program import FanOut, Program, Stage

_FEW_SHOT, _FEW_SHOT_SOURCE = prompts.cot_few_shot_template()

COT_ZERO_SHOT = Program(
    "cot_zero_shot",
    (Stage("answer", prompts.COT_ZERO_SHOT, source=prompts.COT_ZERO_SHOT_SOURCE),),
    "zero-shot chain of thought",
)
COT_FEW_SHOT = Program(
    "cot_few_shot",
    (Stage("answer", _FEW_SHOT, source=_FEW_SHOT_SOURCE),),
    "8-shot chain of thought (math word problem exemplars)",
)
RAR_1STEP = Program(
    "rar_1step",
    (Stage("respond", prompts.RAR_ONE_STEP, source=prompts.RAR_SOURCE),),
    "Rephrase and Respond, one generation",
)
RAR_2STEP = Program(
    "rar_2step",
    (
        Stage("rephrase", prompts.RAR_REPHRASE, clean=prompts.strip_outer_quotes,
              source=prompts.RAR_SOURCE),
        Stage("respond", prompts.RAR_RESPOND, source=prompts.RAR_SOURCE),
    ),
    "Rephrase and Respond: rephrase, then answer given the original and the rephrasing",
)
S2A = Program(
    "s2a",
    (
        Stage("rewrite", prompts.S2A_REWRITE, source=prompts.S2A_SOURCE),
        Stage("answer", prompts.S2A_ANSWER, source=prompts.S2A_ANSWER_SOURCE),
    ),
    "System 2 Attention: regenerate the unbiased context and question, then answer it",
)
BSM = Program(
    "bsm",
    (
        Stage("branch", prompts.BSM_BRANCH, source=prompts.BSM_SOURCE),
        Stage("solve", prompts.BSM_SOLVE, fan_out=FanOut("branch"), source=prompts.BSM_SOURCE),
        Stage("merge", prompts.BSM_MERGE, source=prompts.BSM_SOURCE),
    ),
    "Branch-Solve-Merge: plan criteria, judge A and B per criterion, merge into a verdict",
)

SYSTEM1 = "system1"
# System 2 methods by name; System 1 is the task's own direct prompt (see `method`).
METHODS: dict[str, Program] = {
    p.name: p for p in (COT_ZERO_SHOT, COT_FEW_SHOT, RAR_1STEP, RAR_2STEP, S2A, BSM)
}
METHOD_NAMES: tuple[str, ...] = (SYSTEM1, *METHODS)


def method(name: str, system1: Stage) -> Program:
    """The program called `name`.

    Args:
      name: "system1" or a key of `METHODS`.
      system1: the task's direct-answer stage, which "system1" runs.

    Returns:
      The program.
    """
    if name == SYSTEM1:
        return Program(SYSTEM1, (system1,), "System 1: answer directly, no reasoning")
    if name not in METHODS:
        raise S2JaxError(f"unknown method {name!r}; expected one of {list(METHOD_NAMES)}")
    return METHODS[name]
