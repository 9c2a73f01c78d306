"""The base model's capability check: System 2 methods work and direct answers do not (greedy)."""

from __future__ import annotations

from s2jax.core.text_generator import SamplingParams, TextGenerator
from s2jax.distill.evaluate import evaluate
from s2jax.methods import method
from s2jax.tasks.toy.world import TASKS, held_out

MIN_SYSTEM2 = 75.0  # a task passes when its System 2 method is right this often (percent)
MIN_GAIN = 25.0  # ... and beats System 1 by this many points
MIN_TASKS = 3  # the model passes when this many tasks pass


def capability(generate: TextGenerator, n: int = 20, max_new_tokens: int = 128) -> dict:
    """Greedy System 1 and System 2 accuracy on the first `n` held-out inputs of every task.

    Args:
      generate: a text generator over the model to check (e.g. `s2jax.sampling.Sampler`).
      n: test inputs per task.
      max_new_tokens: per stage.

    Returns:
      {"tasks": {task: {"system1": %, "system2": %, "passed": bool}}, "passed": bool}: a task
      passes when System 2 reaches `MIN_SYSTEM2` and beats System 1 by `MIN_GAIN` points; the
      model passes when `MIN_TASKS` tasks do.
    """
    params = SamplingParams(temperature=0.0, max_new_tokens=max_new_tokens)
    tasks = {}
    for name, t in TASKS.items():
        test, _ = held_out(t, n, 0)
        s1 = evaluate("system1", method("system1", t.task.system1), t.task, test, generate,
                      params)
        s2 = evaluate("system2", t.method, t.task, test, generate, params)
        ok = s2.accuracy >= MIN_SYSTEM2 and s2.accuracy >= s1.accuracy + MIN_GAIN
        tasks[name] = {"system1": s1.accuracy, "system2": s2.accuracy, "passed": ok}
    return {"tasks": tasks, "passed": sum(r["passed"] for r in tasks.values()) >= MIN_TASKS}
