"""Toy variants of the System 2 prompt programs: the same stages, shorter wording (toy data).

The toy base model has ~2M parameters and a 320-token context, so it cannot afford MT-bench's
150-word judge prompt or the 90-word S2A regeneration prompt. Where the published prompt is short
(RaR 1-step, zero-shot CoT, S2A's answer stage, the RaR direct prompt) the toy world uses the
real program from `s2jax.methods` verbatim. Elsewhere it uses the TOY variants below: each keeps
its stage's role, inputs and output format (S2A's two labelled parts, BSM's numbered plan,
MT-bench's "[[A]]" verdicts) so that the shared extractors, runner and filters apply unchanged.
"""

from __future__ import annotations

from s2jax.methods import prompts
from s2jax.methods.program import FanOut, Program, Stage

TOY_SOURCE = "s2jax toy world: a shortened variant of {}"

# TOY: the question and two answers, as MT-bench's pair template lays them out, shorter.
PAIR = "[Question]\n{question}\n[Answer A]\n{response_a}\n[Answer B]\n{response_b}"

# TOY System 1 judge: MT-bench's single-call judge, one line of instruction.
JUDGE = 'Which answer is better? Reply "[[A]]", "[[B]]" or "[[C]]" for a tie.\n\n' + PAIR

# TOY S2A step 1: regenerate the user's text as its unbiased context and its question.
S2A_REWRITE = (
    "Extract the part of the text that is unbiased and not the user's opinion, and the actual "
    "question. Label them Unbiased text context: and Question/Query:.\n\nText by User: {question}"
)
# TOY BSM modules: branch (a numbered evaluation plan), solve (one criterion), merge (verdict).
BSM_BRANCH = (
    "Propose an evaluation plan to compare two answers to this question: a numbered list of "
    "criteria.\n\n[Question]\n{question}\n\nEvaluation Plan:"
)
BSM_SOLVE = (
    "Evaluate the two answers on this criterion only and say which is better.\n\n"
    "Criterion: {item}\n\n" + PAIR
)
BSM_MERGE = (
    'Combine the evaluations into one final verdict: "[[A]]", "[[B]]" or "[[C]]" for a tie.\n\n'
    + PAIR + "\n\n[Evaluations]\n{solve}"
)

S2A = Program(
    "s2a",
    (
        Stage("rewrite", S2A_REWRITE, source=TOY_SOURCE.format(prompts.S2A_SOURCE)),
        Stage("answer", prompts.S2A_ANSWER, source=prompts.S2A_ANSWER_SOURCE),
    ),
    "System 2 Attention (toy wording): regenerate the unbiased question, then answer it",
)
BSM = Program(
    "bsm",
    (
        Stage("branch", BSM_BRANCH, source=TOY_SOURCE.format(prompts.BSM_SOURCE)),
        Stage("solve", BSM_SOLVE, fan_out=FanOut("branch"),
              source=TOY_SOURCE.format(prompts.BSM_SOURCE)),
        Stage("merge", BSM_MERGE, source=TOY_SOURCE.format(prompts.BSM_SOURCE)),
    ),
    "Branch-Solve-Merge (toy wording): plan criteria, judge per criterion, merge a verdict",
)
JUDGE_STAGE = Stage("answer", JUDGE, source=TOY_SOURCE.format(prompts.MT_BENCH_SOURCE))
