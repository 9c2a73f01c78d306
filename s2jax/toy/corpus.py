"""The pretraining corpus: transcripts of the toy world's prompt programs, as chat conversations.

Each transcript is produced by running the real prompt program (`s2jax.methods.run_program`) with
an oracle `TextGenerator` that answers every stage with the world's ideal output, so the corpus
holds exactly the prompts the demo renders later, stage by stage. System 1 conversations answer the
task's direct prompt with the world's biased answer (see `s2jax.tasks.toy.world`).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence

from s2jax.core.errors import S2JaxError
from s2jax.core.text_generator import Message, Prompt, Sample, SamplingParams
from s2jax.methods import method, run_program
from s2jax.methods.program import Program
from s2jax.tasks.task import Example
from s2jax.tasks.toy.world import MAX_TEST, MAX_UNLABELED, TASKS, ToyTask, held_out, input_key

Chat = list[Message]


class _Oracle:
    """A `TextGenerator` replaying given stage outputs in the runner's prompt order."""

    def __init__(self, program: Program, outputs: Sequence[dict]):
        self.program, self.outputs, self.calls, self.chats = program, outputs, 0, []

    def __call__(self, prompts: Sequence[Prompt], params: SamplingParams,
                 first_sample: Sequence[int] | None = None) -> list[list[Sample]]:
        stage = self.program.stages[self.calls]
        self.calls += 1
        texts = []
        for out in self.outputs:
            value = out[stage.name]
            texts.extend(value if isinstance(value, list) else [value])
        if len(texts) != len(prompts):
            raise RuntimeError(
                f"stage {stage.name}: {len(texts)} outputs for {len(prompts)} prompts")
        for prompt, text in zip(prompts, texts, strict=True):
            self.chats.append([*prompt, {"role": "assistant", "content": text}])
        return [[Sample(text, 0, "stop")] for text in texts]


def transcripts(program: Program, examples: Sequence[Example], outputs: Sequence[dict]
                ) -> list[Chat]:
    """One conversation per stage call of `program` on each example, answered with `outputs`."""
    oracle = _Oracle(program, outputs)
    run_program(program, [ex.fields for ex in examples], oracle, SamplingParams())
    return oracle.chats


@dataclasses.dataclass(frozen=True)
class CorpusConfig:
    """How many examples of each task the corpus holds."""

    system2: int = 2500  # examples per task transcribed through the System 2 method
    system1: int = 1500  # examples per task answered directly (biased, see s2jax.tasks.toy.world)
    seed: int = 0  # the examples drawn and their order

    def __post_init__(self):
        if self.system2 < 0 or self.system1 < 0:
            raise S2JaxError(f"corpus sizes system2={self.system2}, system1={self.system1}: "
                             "expected >= 0")


def task_corpus(t: ToyTask, config: CorpusConfig) -> list[Chat]:
    """System 2 transcripts and System 1 answers of one task, held-out inputs left out."""
    skip: set[str] = set()
    if t.holdout:
        test, unlabeled = held_out(t, MAX_TEST, MAX_UNLABELED)
        skip = {input_key(t, ex) for ex in test + unlabeled}
    rng = random.Random(f"{config.seed}-{t.name}")
    chats: list[Chat] = []
    for role, count in (("system2", config.system2), ("system1", config.system1)):
        per_size = -(-round(count * t.weight) // len(t.sizes))
        examples = []
        for j, size in enumerate(t.sizes):
            seed = 1000 + 100 * config.seed + 10 * j + (role == "system1")
            examples += [ex for ex in t.generate(per_size, seed, size)
                         if input_key(t, ex) not in skip]
        if role == "system2":
            chats += transcripts(t.method, examples, [t.solve(ex) for ex in examples])
        else:
            program = method("system1", t.task.system1)
            outputs = [{t.task.system1.name: t.direct(ex, rng)} for ex in examples]
            chats += transcripts(program, examples, outputs)
    return chats


def build_corpus(config: CorpusConfig = CorpusConfig(), tasks: Sequence[str] | None = None
                 ) -> list[Chat]:
    """The whole corpus, shuffled deterministically by `config.seed`."""
    chats = [c for name in (tasks or TASKS) for c in task_corpus(TASKS[name], config)]
    random.Random(config.seed).shuffle(chats)
    return chats
