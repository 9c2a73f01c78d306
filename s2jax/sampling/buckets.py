"""Shape buckets: prompt lengths, batch sizes and cache lengths rounded up to a small set.

Every distinct shape is a compiled program, so a run over any number of prompts compiles at most
(prompt-length buckets x prefill-batch buckets) prefill programs and one decode program per
cache window per sampling method. `plan_programs` computes that set from the prompt lengths alone.
"""

from __future__ import annotations

import dataclasses
import math

MIN_LEN = 16  # smallest prompt/cache bucket: tiny prompts share one program
# A smaller decode window gets a program of its own only if a step on it is at least this much
# cheaper than on the next larger window kept (see `BucketPlan.windows`).
WINDOW_SAVING = 0.25


def slot_cost(num_layers: int, num_heads: int, head_dim: int, num_params: int) -> float:
    """What one cache slot adds to a decode step, as a fraction of the step's weight cost.

    Per row, a step multiplies by every weight (2 flops per parameter) and, for each of the N
    query heads, takes a score and a weighted value over every slot (4 L N H flops; grouped
    heads share the keys and values they read, not this work). Measured on XLA:CPU, a slot
    costs 16 L N H / params of the weight cost: 0.0036 at batch 64 on a 3.3M-parameter Llama
    (N = K), 0.0020 at batch 32 at SmolLM2-135M shapes (N = 9 query heads on K = 3; counting
    KV heads, as this did before, put it at a third of that).
    """
    return 16 * num_layers * num_heads * head_dim / max(num_params, 1)


def pow2_at_least(n: int, lo: int = 1) -> int:
    """The smallest power of two >= max(n, lo)."""
    n = max(n, lo, 1)
    return 1 << (n - 1).bit_length()


def bucket_at_least(n: int, lo: int = 1) -> int:
    """The smallest prompt bucket >= max(n, lo): four steps per power of two, each a multiple of
    8, so 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, ... (one eighth of the next power
    of two, but at least 8). Padding then costs at most a fifth of a prefill above 32 tokens."""
    p = pow2_at_least(n, lo)
    step = max(p // 8, 8)
    return min(p, round_up(max(n, lo, 1), step))


def round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


@dataclasses.dataclass(frozen=True)
class BucketPlan:
    """The static shapes of one sampler call.

    Attributes:
      batch: decode rows B (a multiple of the batch-sharding factor).
      cache_len: cache slots S, enough for the longest prompt plus `max_new_tokens`.
      out_len: output slots M per row (>= max_new_tokens, or the cache's slots if fewer).
      shards: the batch-sharding factor (data x fsdp); prefill batches are multiples of it.
      slot_cost: a cache slot's share of a decode step's cost (`slot_cost`); decides which
        cache windows are worth a program (inf: every window, as if attention were all).
    """

    batch: int
    cache_len: int
    out_len: int
    shards: int
    slot_cost: float = math.inf

    @classmethod
    def make(cls, lengths: list[int], n: int, max_new_tokens: int, *, max_batch: int,
             max_len: int, shards: int = 1, slot_cost: float = math.inf) -> BucketPlan:
        rows = len(lengths) * n
        batch = round_up(min(pow2_at_least(rows), round_up(max_batch, shards)), shards)
        longest = max(lengths, default=1)
        cache_len = min(pow2_at_least(longest + max_new_tokens, MIN_LEN), max_len)
        cache_len = max(cache_len, min(pow2_at_least(longest, MIN_LEN), max_len))
        # a row never generates more tokens than its cache has slots left
        out_len = min(pow2_at_least(max_new_tokens, MIN_LEN), cache_len)
        return cls(batch, cache_len, out_len, shards, slot_cost)

    def prompt_len(self, length: int) -> int:
        """Prompt slots T for a prefill whose longest prompt has `length` tokens
        (`bucket_at_least`): SmolLM2's 37-38-token chat prompts take 40 slots, where a ladder of
        powers of two and 1.5x them gave 48, and their prefill 0.91 against 1.09 s on 2 Zen 4
        cores (bf16). Each bucket in use is a program per prefill batch size, twice as many as
        that ladder's over a wide spread of prompt lengths."""
        return min(bucket_at_least(length, MIN_LEN), self.cache_len)

    def row_limit(self, length: int, max_new_tokens: int) -> int:
        """The new tokens a row whose prompt has `length` tokens may make: `max_new_tokens`,
        or fewer where its cache runs out of slots."""
        return min(max_new_tokens, self.cache_len - length)

    def prefill_batch(self, prompts: int) -> int:
        """Prefill rows P for `prompts` distinct prompts."""
        return min(round_up(pow2_at_least(prompts), self.shards), self.batch)

    def windows(self) -> list[int]:
        """Cache windows the decode loop runs on: S, and smaller ones worth their program.

        Candidates are powers of two and 1.5x steps; going down from S, a candidate is kept
        when a step on it costs at most 1 - `WINDOW_SAVING` of a step on the last one kept
        (step cost 1 + slots x `slot_cost`). Each window is a program to compile (or trace and
        load from the persistent cache), so where the weights dominate a step, as for short
        jobs of small models, one or two windows do, and where attention over long caches
        dominates, every candidate does.
        """
        sizes = {m << k for k in range(32) for m in (2, 3)}
        candidates = sorted((w for w in sizes if MIN_LEN <= w < self.cache_len), reverse=True)
        kept = [self.cache_len]
        for w in candidates:
            if math.isinf(self.slot_cost) or (1 + w * self.slot_cost) <= (
                    (1 - WINDOW_SAVING) * (1 + kept[-1] * self.slot_cost) + 1e-9):
                kept.append(w)
        return sorted(kept)

    def window(self, slots: int) -> int:
        """The smallest window with at least `slots` slots."""
        return next(w for w in self.windows() if w >= min(slots, self.cache_len))

    def tail_batch(self) -> int:
        """Rows the last few samples of a run move to once the queue is empty (B/4)."""
        return self.prefill_batch(max(self.batch // 4, 1))

    def prefill_batches(self) -> list[int]:
        out, p = set(), 1
        while p <= self.batch:
            out.add(self.prefill_batch(p))
            p *= 2
        return sorted(out)


def plan_programs(lengths: list[int], n: int, max_new_tokens: int, *, max_batch: int,
                  max_len: int, shards: int = 1, stop: bool = False,
                  slot_cost: float = math.inf, unroll_layers: bool = False) -> set[tuple]:
    """An upper bound on the programs a call compiles, from the prompt lengths alone
    (`unroll_layers`: the sampler's, which adds the program splitting the weights per layer).

    Prefill batches depend on how many rows free up at once, so every batch bucket is counted
    for every prompt-length bucket in use.
    """
    plan = BucketPlan.make(lengths, n, max_new_tokens, max_batch=max_batch, max_len=max_len,
                           shards=shards, slot_cost=slot_cost)
    shape = (plan.batch, plan.cache_len, plan.out_len)
    programs = {("init", *shape)} | {("decode", w, *shape) for w in plan.windows()}
    if unroll_layers:
        programs.add(("split_layers",))
    tail = plan.tail_batch()
    if tail < plan.batch:  # the tail of a continuous run moves its last rows to B/4 rows
        small = (tail, plan.cache_len, plan.out_len)
        programs |= {("take_rows", plan.batch, *small)}
        programs |= {("decode", w, *small) for w in plan.windows()}
        if stop:
            programs.add(("mark_done", *small))
    if stop:
        programs.add(("mark_done", *shape))
    for t in {plan.prompt_len(x) for x in lengths}:
        programs |= {("prefill", p, t, *shape) for p in plan.prefill_batches()}
    return programs
