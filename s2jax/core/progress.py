"""Progress bars of the long stages: inputs done (resumed shards included), tokens/s and ETA.

`StageBar` wraps a `TextGenerator`: one bar per stage over its inputs, advanced shard by shard,
and inside it one transient bar per generator call (the prompts of one program stage).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from s2jax.core.text_generator import Prompt, Sample, SamplingParams, TextGenerator


class StageBar:
    """A `TextGenerator` that drives the bars of one stage; a no-op wrapper when disabled."""

    def __init__(self, generate: TextGenerator, label: str, enabled: bool = True):
        self.generate, self.label, self.enabled = generate, label, enabled
        self.bar = None
        self.calls = 0
        self.tokens = 0
        self.t0 = time.perf_counter()

    def shards(self, done: int, total: int) -> None:
        """`run_sharded`'s progress callback: (inputs finished, inputs in all)."""
        if not self.enabled:
            return
        if self.bar is None:
            # tqdm only when a bar is shown
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=done, desc=self.label, unit="input",
                            dynamic_ncols=True)
            self.t0 = time.perf_counter()
            return
        rate = self.tokens / max(time.perf_counter() - self.t0, 1e-9)
        self.bar.set_postfix(tok_s=f"{rate:.0f}", refresh=False)
        self.bar.update(done - self.bar.n)

    def __call__(self, prompts: Sequence[Prompt], params: SamplingParams,
                 **kwargs) -> list[list[Sample]]:
        if not self.enabled:
            return self.generate(prompts, params, **kwargs)
        # tqdm only when a bar is shown
        from tqdm import tqdm

        self.calls += 1
        with tqdm(total=len(prompts), desc=f"  {self.label} [call {self.calls}]",
                  unit="prompt", leave=False, dynamic_ncols=True) as bar:
            def progress(prompts_done: int, tokens: int) -> None:
                self.tokens += tokens
                bar.update(prompts_done)
                rate = self.tokens / max(time.perf_counter() - self.t0, 1e-9)
                bar.set_postfix(tok_s=f"{rate:.0f}", refresh=False)
            return self.generate(prompts, params, progress=progress, **kwargs)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> StageBar:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
