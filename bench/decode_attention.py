"""A decode step's attention on CPU: s2jax's slots-last keys and chunked sums of products against
the batched-matmul form it replaced, in the same run.

    python bench/decode_attention.py                      # SmolLM2-135M's shapes, 128 and 512 slots
    python bench/decode_attention.py --slots 128,256,1024 --rows 64

The attention of every layer (`--layers`, 30) of one decode step: `--rows` rows of one query
token, 9 query heads on 3 KV heads of 64 (SmolLM2-135M's), over a cache of `--slots` slots with
each row's position drawn in the last half of them; each layer's output feeds the next layer's
query, so the layers run in order, as in a step. "matmul" is `attention` over keys [B, K, S, H]
(batched einsums, which XLA:CPU runs as small GEMMs on one core, the form before the change);
"s2jax" is `attention(keys_last=True)` over keys [B, K, H, S], what a decode step runs on CPU.
Both sides are compiled first and timed in alternation, fastest of `--repeats` each.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slots", default="128,512", help="cache slots, comma-separated")
    ap.add_argument("--rows", type=int, default=32)
    ap.add_argument("--layers", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--chunk", type=int, help="attention.DECODE_CHUNK (default: s2jax's)")
    args = ap.parse_args()

    import jax
    import jax.numpy as jnp
    import numpy as np

    from s2jax.models import attention as attention_module
    from s2jax.models.attention import attention

    if args.chunk:
        attention_module.DECODE_CHUNK = args.chunk

    B, N, K, H, L = args.rows, 9, 3, 64, args.layers
    print(f"{jax.default_backend()}: {L} layers' decode attention, {B} rows, {N} query heads "
          f"on {K} KV heads of {H}, fp32, chunks of {attention_module.DECODE_CHUNK}; fastest of "
          f"{args.repeats}")
    for S in map(int, args.slots.split(",")):
        rng = np.random.default_rng(0)
        keys = [rng.standard_normal((B, K, S, H), np.float32) for _ in range(L)]
        values = [jnp.asarray(rng.standard_normal((B, K, S, H), np.float32)) for _ in range(L)]
        sides = {"matmul": ([jnp.asarray(k) for k in keys], False),
                 "s2jax": ([jnp.asarray(k.transpose(0, 1, 3, 2)) for k in keys], True)}
        q = jnp.asarray(rng.standard_normal((B, 1, N, H), np.float32))
        pos = rng.integers(S // 2, S, (B, 1))
        mask = jnp.asarray(np.arange(S)[None, None, :] <= pos[:, :, None])

        def step(q, ks, vs, mask, keys_last):
            x = q
            for k, v in zip(ks, vs, strict=True):
                x = attention(x, k, v, mask, keys_last=keys_last) * 0.5 + q
            return x

        progs, best, out = {}, {}, {}
        for name, (ks, last) in sides.items():
            t = time.perf_counter()
            progs[name] = jax.jit(functools.partial(step, keys_last=last)).lower(
                q, ks, values, mask).compile()
            print(f"  {S} slots, {name}: compiled in {time.perf_counter() - t:.1f}s")
            best[name] = float("inf")
        for _ in range(args.repeats):
            for name, (ks, _) in sides.items():
                t = time.perf_counter()
                out[name] = jax.block_until_ready(progs[name](q, ks, values, mask))
                best[name] = min(best[name], time.perf_counter() - t)
        err = float(jnp.abs(out["s2jax"] - out["matmul"]).max())
        print(f"  {S} slots: matmul {best['matmul'] * 1e3:.2f} ms, s2jax "
              f"{best['s2jax'] * 1e3:.2f} ms, {best['matmul'] / best['s2jax']:.2f}x faster "
              f"(max difference {err:.1e})", flush=True)


if __name__ == "__main__":
    main()
