"""The paper's tasks: data, System 1 prompts, answer extraction and scoring (pure Python)."""

from s2jax.tasks import (
    capitals,
    coin_flip,
    gsm8k,
    last_letter,
    multiplication,
    pairwise,
    triviaqa,
)
from s2jax.tasks.load import read_rows
from s2jax.tasks.task import Example, HubSource, Perturbation, Task

TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        last_letter.TASK,
        coin_flip.TASK,
        gsm8k.TASK,
        triviaqa.BIASED_TASK,
        triviaqa.UNBIASED_TASK,
        pairwise.MT_BENCH_TASK,
        pairwise.OASST2_TASK,
        capitals.TASK,
        multiplication.TASK,
    )
}


def load_examples(
    task: Task,
    source: str | None = None,
    *,
    split: str | None = None,
    limit: int | None = None,
    data_dir: str | None = None,
    seed: int = 0,
) -> list[Example]:
    """A task's examples from a file, directory, hub id or `tfds:NAME`; None: its package-
    shipped splits (`task.splits`) if it has them, else its hub default.

    Args:
      task: the task.
      source: where the rows are; see `s2jax.tasks.load.read_rows`.
      split: overrides the split (for package splits, a spec such as "test:bare").
      limit: keep the first `limit` examples.
      data_dir: TFDS data directory.
      seed: the seed of package-shipped splits.

    Returns:
      The examples.
    """
    if source is None and task.splits is not None:
        examples = task.splits(split, seed)
    else:
        examples = task.from_rows(read_rows(source, hub=task.hub, split=split, data_dir=data_dir))
    return examples[:limit] if limit is not None else examples


__all__ = ["TASKS", "Example", "HubSource", "Perturbation", "Task", "load_examples", "read_rows"]
