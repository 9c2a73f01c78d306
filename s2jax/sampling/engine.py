"""`Sampler`: the host side of generation, implementing `s2jax.core.text_generator.TextGenerator`.

The host keeps a queue of (prompt, sample) items and a decode batch of B rows. It prefills
queued prompts into free rows (one prefill per distinct prompt, its cache copied to each of its
sample rows), runs the on-device decode loop until enough rows have finished to be worth
refilling (continuous batching) or all have (static batching), reads back the finished rows,
and repeats. Once the queue is empty, continuous batching moves the last rows into a batch of
B/4 rows, so the longest samples do not drag B rows along. Each decode call runs on the
smallest cache window that holds the furthest row, among the windows worth a program of their
own (`BucketPlan.windows`: attention costs O(slots) per step, each window a compile). Shapes come
from a `BucketPlan`, so the programs compiled are few and known (`plan_programs`).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import math
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from s2jax.core.errors import S2JaxError
from s2jax.core.text_generator import Prompt, Sample, SamplingParams
from s2jax.models.cache import KVCache
from s2jax.models.lora import weight_shardings
from s2jax.models.params import out_in_weights, param_shardings, split_layers
from s2jax.models.projection import out_in_faster
from s2jax.parallel.memory import check_fits_devices
from s2jax.parallel.sharding import mesh_of, named_sharding
from s2jax.sampling import loop
from s2jax.sampling.buckets import BucketPlan, slot_cost
from s2jax.sampling.chat import encode_prompts
from s2jax.sampling.stops import finish
from s2jax.sampling.token_rules import SamplingMethod, prompt_key

WINDOW_HEADROOM = 16  # decode steps a window guarantees the furthest row before it is full
Progress = Callable[[int, int], None]  # (prompts finished, tokens generated) since last call


def eos_token_ids(model, tokenizer) -> tuple[int, ...]:
    """EOS ids from generation_config.json, else config.json, else the tokenizer."""
    eos = (getattr(model, "generation_config", None) or {}).get("eos_token_id")
    if eos is None:
        eos = list(model.config.eos_token_ids) or tokenizer.eos_token_id
    if eos is None:
        return ()
    return tuple(sorted({int(e) for e in (eos if isinstance(eos, list | tuple) else [eos])}))


def per_layer_shardings(shardings: dict[str, NamedSharding], num_layers: int) -> dict:
    """The shardings of `split_layers(weights)`: a stacked weight's, less its layer axis."""
    return {name: (NamedSharding(s.mesh, PartitionSpec(*s.spec[1:])),) * num_layers
            if name.startswith("layers.") else s for name, s in shardings.items()}


@dataclasses.dataclass
class Stats:
    """Counters of the last call (the bench and the CLI report them)."""

    prompts: int = 0
    tokens: int = 0  # generated tokens, as counted in `Sample.num_tokens`
    seconds: float = 0.0
    prefills: int = 0
    decode_calls: int = 0
    decode_steps: int = 0  # on-device decode steps, each over all B rows
    slot_steps: int = 0  # sum over decode steps of the cache window (attention cost)


# Unrolled CPU decode, measured at batch 32 on 2 cores: 3.3M Llama 1.34x tok/s; SmolLM2-135M
# shapes 246 vs 316-335 cpu-ms a step (the scan copies 66 ms of weights and 16 ms of cache
# blocks out of the stacked arrays per step, XLA:CPU dynamic slices) for 15 vs 7 s of compile
# (3 programs; once per shape with the persistent compilation cache); Qwen2.5-0.5B 0.87 vs
# 0.91 s a step with ~110 s more compile per decode program. Above this size the layer scan is
# the default.
UNROLL_MAX_PARAMS = 200_000_000
# Unrolled GPU decode, measured on an H200 at Llama-3.2-1B shapes, bf16, 128 + 256 tokens
# (bench/decode_roofline.py): 18.8k -> 38.9k tok/s at batch 64 (29% -> 60% of the bandwidth
# roofline), 39.9k -> 73.4k at batch 256: the scan's per-step copies of each layer's cache block
# and weights out of the stacked arrays cost as much as the step. The per-layer weights are a
# second copy of the weights while sampling, so above this size (8 GB in bf16) the scan stays.
GPU_UNROLL_MAX_PARAMS = 4_000_000_000


def unrolls_layers(num_params: int, platform: str) -> bool:
    """Whether a `Sampler` of a model of `num_params` on `platform` ("cpu", "gpu", "tpu")
    decodes with its layers unrolled by default (see the constants above)."""
    return num_params < {"cpu": UNROLL_MAX_PARAMS, "gpu": GPU_UNROLL_MAX_PARAMS}.get(platform, 0)


class Sampler:
    """Generates `params.n` samples per prompt with a KV cache on one device or a mesh.

    Args:
      model: an `s2jax` `Transformer` (`s2jax.load`) or its `Weights` (`s2jax.load_weights`).
      tokenizer: its `transformers` tokenizer.
      mesh: a (data, fsdp, tensor) mesh; None uses the mesh the weights are on. Decode rows are
        split over data x fsdp, weights follow the model's logical rules.
      max_batch: decode rows B at most.
      max_len: cache slots per row at most (prompt + generated tokens); default: the model's
        `max_position_embeddings`. A row whose prompt leaves fewer slots than
        `max_new_tokens` stops early with finish_reason "length".
      chat: render prompts with the tokenizer's chat template (False: raw text).
      continuous: refill finished rows while others decode (False: static batches).
      refill_rows: with `continuous`, return to the host to refill once this many rows are free
        (default: B / 8).
      stop_check_steps: decode steps between host checks for stop strings.
      prefill_chunk: prompt tokens per prefill pass; bounds prefill attention memory to
        [rows, heads, prefill_chunk, prompt slots] (`loop.prefill_cache`).
      unroll_layers: decode over per-layer weight and cache buffers with the layers unrolled
        (the decode state keeps its cache per layer, and `loop.decode` unrolls over it), at the cost
        of one copy of the weights per call;
        default: on CPU for models under `UNROLL_MAX_PARAMS`, where it makes a step up to 2.4x
        faster (larger models gain <= 5% a step and pay minutes of compile), and on GPU for
        models under `GPU_UNROLL_MAX_PARAMS`, where it doubles decode at 1B (see the constants).
      cache_dtype: the KV cache's dtype (default: the model's).
    """

    def __init__(self, model, tokenizer, *, mesh: Mesh | None = None, max_batch: int = 64,
                 max_len: int | None = None, chat: bool = True, continuous: bool = True,
                 refill_rows: int | None = None, stop_check_steps: int = 32,
                 keep_special_tokens: bool = False, prefill_chunk: int = loop.PREFILL_CHUNK,
                 unroll_layers: bool | None = None, cache_dtype=None):
        self.cfg = model.config
        self.keep_special_tokens = keep_special_tokens  # else dropped from texts, as in HF
        self.tokenizer = tokenizer
        self.dtype = getattr(model, "dtype", None)
        self.chat = chat
        self.continuous = continuous
        self.refill_rows = refill_rows
        self.stop_check_steps = stop_check_steps
        self.prefill_chunk = prefill_chunk
        self.max_batch = max_batch
        self.max_len = max_len or self.cfg.max_position_embeddings
        self.eos_ids = eos_token_ids(model, tokenizer)
        params = model.params()
        num_params = sum(v.size for v in params.values())
        if unroll_layers is None:
            unroll_layers = unrolls_layers(num_params, jax.default_backend())
        self.unroll_layers = unroll_layers
        self.mesh = mesh_of(next(iter(params.values())), mesh)
        self._param_shardings = param_shardings(self.cfg, self.mesh)
        self.params = jax.device_put(params, self._param_shardings)
        self.slot_cost = slot_cost(self.cfg.num_layers, self.cfg.num_heads, self.cfg.head_dim,
                                   num_params)
        self.cache_dtype = jnp.dtype(cache_dtype or self.dtype or params["embed"].dtype)
        self.shards = self.mesh.shape["data"] * self.mesh.shape["fsdp"]
        self._programs: dict[tuple, Callable] = {}
        self.stats = Stats()

    def set_params(self, params: dict[str, jax.Array]) -> None:
        """Swaps in new weights of the same shapes (e.g. after fine-tuning): no recompile."""
        old = {k: (v.shape, v.dtype) for k, v in self.params.items()}
        new = {k: (v.shape, v.dtype) for k, v in params.items()}
        if old != new:
            raise ValueError("set_params: the new weights' names, shapes or dtypes differ")
        self.params = jax.device_put(params, self._param_shardings)

    @property
    def compile_count(self) -> int:
        """Distinct programs (prefill, decode, mark_done shapes x methods) compiled so far."""
        return len(self._programs)

    def plan(self, lengths: list[int], params: SamplingParams) -> BucketPlan:
        return BucketPlan.make(lengths, params.n, params.max_new_tokens,
                               max_batch=self.max_batch, max_len=self.max_len,
                               shards=self.shards, slot_cost=self.slot_cost)

    def check_max_new_tokens(self, params: SamplingParams, flag: str = "max_new_tokens") -> None:
        """Refuses `params.max_new_tokens` that no row could reach: a row's cache holds its
        prompt and its new tokens in `max_len` slots (a library caller may ask for more and get
        finish_reason "length"; a command line asking for more is a typo)."""
        if params.max_new_tokens >= self.max_len:
            raise S2JaxError(f"{flag} {params.max_new_tokens}: a row has {self.max_len} cache "
                             "slots for its prompt and new tokens (--max-len, default the "
                             "model's max_position_embeddings); expected fewer")

    def check_memory(self, plan: BucketPlan) -> None:
        """Raises before allocating when a call's decode state (the KV cache, the output
        buffer, a step's logits and scores) cannot fit on the mesh's devices."""
        cfg, B, S = self.cfg, plan.batch, plan.cache_len
        cache = sum(map(math.prod, KVCache.shapes(cfg, B, S))) * self.cache_dtype.itemsize
        step = 4 * B * (plan.out_len + 2 * cfg.vocab_size + cfg.num_heads * S)  # fp32
        check_fits_devices(
            cache + step, self.mesh.devices.flat,
            f"sampling {B} rows x {S} cache slots (max_new_tokens up to {plan.out_len})",
            "lower --max-new-tokens, --max-len (cache slots) or --max-batch")

    # -- programs ------------------------------------------------------------------------------

    def _state_shardings(self, plan: BucketPlan) -> loop.DecodeState:
        return loop.DecodeState.shardings(self.mesh, self.cfg, plan.batch, plan.cache_len,
                                          plan.out_len, split=self.unroll_layers)

    def _program(self, kind: str, key: tuple, plan: BucketPlan, method: SamplingMethod,
                  weights: dict | None = None):
        # init and mark_done do not depend on the method
        method = method if kind in ("prefill", "decode") else None  # others do not sample
        names = tuple(weights) if kind in ("prefill", "decode") else ()  # base, or + adapters
        full = (kind, *key, plan.batch, plan.cache_len, plan.out_len, method, names)
        if full in self._programs:
            return self._programs[full]
        state = self._state_shardings(plan)
        w_shardings = weight_shardings(self.cfg, self.mesh, weights or {})
        replicated = NamedSharding(self.mesh, PartitionSpec())
        static = (self.cfg, method, self.eos_ids, self.dtype)
        if kind == "prefill":
            P, T = key
            batch = named_sharding(self.mesh, ("batch", None), (P, T))
            fn = jax.jit(functools.partial(loop.prefill_into, *static, chunk=self.prefill_chunk,
                                           mesh=self.mesh),
                         in_shardings=(w_shardings, state, batch,
                                       *[replicated] * 6),
                         out_shardings=state, donate_argnums=1)
        elif kind == "decode":
            window, out_in = key
            if self.unroll_layers:  # it runs on `_decode_weights`
                w_shardings = self._decode_shardings(weights, out_in)
            fn = jax.jit(functools.partial(loop.decode, *static, window, mesh=self.mesh),
                         in_shardings=(w_shardings, state, replicated, replicated),
                         out_shardings=(state, replicated), donate_argnums=1)
        elif kind == "take_rows":
            source = self._state_shardings(dataclasses.replace(plan, batch=key[0]))
            # no donation: the smaller state cannot reuse the larger one's buffers
            fn = jax.jit(loop.take_rows, in_shardings=(source, replicated, replicated),
                         out_shardings=state)
        elif kind == "init":  # born sharded: the cache never exists on one device
            empty = functools.partial(loop.DecodeState.empty, self.cfg, plan.batch,
                                      plan.cache_len, plan.out_len, dtype=self.cache_dtype,
                                      split=self.unroll_layers,
                                      keys_last=loop.cache_keys_last(self.mesh))
            fn = jax.jit(empty, in_shardings=replicated, out_shardings=state)
        else:
            fn = jax.jit(loop.mark_done, in_shardings=(state, replicated), out_shardings=state,
                         donate_argnums=0)
        self._programs[full] = fn
        return fn

    def _out_in(self, plan: BucketPlan) -> bool:
        """Whether this call's decode programs multiply by transposed projection weights
        (`out_in_weights`): with the layers unrolled (the per-layer copy is made anyway) where
        that product is the faster one for the call's rows (`out_in_faster`; SmolLM2-135M at
        batch 32 on 2 Zen 3 cores: the step's matmuls ~1.4x as fast)."""
        return self.unroll_layers and out_in_faster(
            plan.batch, self.dtype or self.params["embed"].dtype)

    def _decode_form(self, out_in: bool) -> Callable[[dict], dict]:
        """The call's weights as the decode programs take them, before `split_layers`."""
        return functools.partial(out_in_weights, self.cfg) if out_in else dict

    def _decode_shardings(self, weights: dict, out_in: bool) -> dict:
        """The shardings of `_decode_weights(weights, out_in)` (with `unroll_layers`)."""
        shapes = jax.eval_shape(self._decode_form(out_in), weights)
        return per_layer_shardings(weight_shardings(self.cfg, self.mesh, shapes),
                                   self.cfg.num_layers)

    def _decode_weights(self, weights: dict, out_in: bool) -> dict:
        """The weights the decode programs take: with `unroll_layers`, per-layer copies
        (`split_layers`), made once per call rather than in every decode call (a copy of every
        weight: ~110 ms at SmolLM2 shapes, about one decode step); with `out_in`, the
        projections transposed in the same copy (`out_in_weights`)."""
        if not self.unroll_layers:
            return weights
        key = ("split_layers", tuple(weights), out_in)
        if key not in self._programs:
            form = self._decode_form(out_in)
            self._programs[key] = jax.jit(
                lambda w: split_layers(form(w)),
                in_shardings=(weight_shardings(self.cfg, self.mesh, weights),),
                out_shardings=self._decode_shardings(weights, out_in))
        return self._programs[key](weights)

    # -- the call ------------------------------------------------------------------------------

    def __call__(self, prompts: Sequence[Prompt], params: SamplingParams, *,
                 weights: dict[str, jax.Array] | None = None,
                 progress: Progress | None = None,
                 first_sample: Sequence[int] | None = None) -> list[list[Sample]]:
        """`params.n` samples for each prompt, in prompt order.

        Args:
          prompts: strings or chat message lists.
          params: how to sample; `params.seed`, the prompt's tokens and the sample's index fix
            each sample, independently of batching, the mesh and the other prompts of the call.
          weights: the model's weights for this call (default: the model's own), e.g.
            `{**model.params(), **adapters}` to sample base + LoRA adapter unmerged.
          progress: called with (prompts finished, tokens generated) as rows finish.
          first_sample: the sample index of each prompt's first sample (default 0): a later
            stage of a prompt program continues sample path s of an input with index s.

        Returns:
          samples[i][j]: sample j of prompt i.
        """
        ids = encode_prompts(self.tokenizer, prompts, chat=self.chat)
        return [[s for s, _ in row]
                for row in self.generate_ids(ids, params, weights=weights, progress=progress,
                                             first_sample=first_sample)]

    def generate_ids(self, ids: Sequence[Sequence[int]], params: SamplingParams, *,
                     weights: dict[str, jax.Array] | None = None,
                     progress: Progress | None = None,
                     first_sample: Sequence[int] | None = None
                     ) -> list[list[tuple[Sample, list[int]]]]:
        """Like `__call__` on prompts given as token ids; also returns each sample's tokens.

        Samples are keyed by their prompt's tokens (`prompt_key`) and their index, so a run
        split over processes, shards or folds draws the same samples as one call.

        Returns:
          `out[i][j]` = (sample, generated token ids, `sample.num_tokens` of them).
        """
        start = time.perf_counter()
        ids = [list(map(int, x)) for x in ids]
        if not ids:
            return []
        lengths = [len(x) for x in ids]
        if min(lengths) == 0:
            raise S2JaxError(f"prompt {lengths.index(0)} has no tokens (expected at least one)")
        plan = self.plan(lengths, params)
        self.check_memory(plan)
        too_long = [i for i, n in enumerate(lengths) if n >= plan.cache_len]
        if too_long:
            i = too_long[0]
            raise S2JaxError(f"prompt {i} has {lengths[i]} tokens; max_len={self.max_len} "
                             "leaves no room to generate (raise max_len or shorten it)")
        method = SamplingMethod.from_params(params)
        weights = self.params if weights is None else jax.device_put(
            weights, weight_shardings(self.cfg, self.mesh, weights))
        out_in = self._out_in(plan)  # one weight layout for every decode program of the call
        decode_weights = None  # made at the first decode call: a call of one new token has none
        self.stats = Stats(prompts=len(ids))
        if first_sample is not None and len(first_sample) != len(ids):
            raise S2JaxError(f"first_sample has {len(first_sample)} entries for {len(ids)} "
                             "prompts (expected one per prompt)")
        self._streams = [(prompt_key(x), 0 if first_sample is None else int(first_sample[i]))
                         for i, x in enumerate(ids)]

        # longest prompts first: refills then prefill prompts of similar lengths together
        order = sorted(range(len(ids)), key=lambda i: -lengths[i])
        queue = collections.deque((i, j) for i in order for j in range(params.n))
        B = plan.batch
        refill = B if not self.continuous else max(1, self.refill_rows or B // 8)
        chunk = self.stop_check_steps if params.stop else plan.out_len
        # host values (numpy) go to the programs as arguments: `jnp.int32(x)` or `jnp.asarray`
        # would trace, compile (or load) and run a conversion program of their own first
        state = self._program("init", (), plan, method)(np.int32(params.seed))
        rows: list[tuple[int, int] | None] = [None] * B
        results: list[list] = [[None] * params.n for _ in ids]
        left = [params.n] * len(ids)
        positions = np.zeros(B, np.int64)  # host copy of each row's next position

        while queue or any(r is not None for r in rows):
            free = [r for r in range(B) if rows[r] is None]
            busy = B - len(free)
            if queue and free and (len(free) >= min(refill, len(queue)) or busy == 0):
                state = self._prefill(state, plan, method, ids, queue, free, rows, params,
                                      weights)
                for r in free:
                    if rows[r] is not None:
                        positions[r] = len(ids[rows[r][0]])
            live = [r for r in range(B) if rows[r] is not None]
            if queue:  # return when enough rows are free to refill
                exit_done = min(B, B - len(live) + min(refill, len(queue)))
            elif self.continuous and plan.tail_batch() < len(live):  # ... or to move the tail
                exit_done = B - plan.tail_batch()
            else:
                exit_done = B
            # a live row whose limit is one token took it at its prefill and is done; any
            # other live row has a step to take
            if any(plan.row_limit(len(ids[rows[r][0]]), params.max_new_tokens) > 1
                   for r in live):
                if decode_weights is None:
                    decode_weights = self._decode_weights(weights, out_in)
                # enough slots for the furthest row to make progress (see `loop.decode`)
                window = plan.window(max(positions[live]) + 1 + WINDOW_HEADROOM)
                state, ran = self._program("decode", (window, out_in), plan, method, weights)(
                    decode_weights, state, np.int32(chunk), np.int32(exit_done))
                self.stats.decode_calls += 1
            else:
                ran = window = 0
            done, steps, out, positions, ran = map(np.array, jax.device_get(
                (state.done, state.steps, state.out, state.positions, ran)))
            self.stats.decode_steps += int(ran)
            self.stats.slot_steps += int(ran) * window
            stopped = np.zeros(B, bool)
            for r, item in enumerate(rows):
                if item is None:
                    continue
                sample = finish(self.tokenizer, out[r, :steps[r]].tolist(), eos_ids=self.eos_ids,
                                stop=params.stop, device_done=bool(done[r]),
                                keep_special=self.keep_special_tokens)
                if sample is None:
                    continue
                i, j = item
                results[i][j] = (sample, out[r, :sample.num_tokens].tolist())
                rows[r] = None
                stopped[r] = not done[r]
                left[i] -= 1
                self.stats.tokens += sample.num_tokens
                if progress:
                    progress(int(left[i] == 0), sample.num_tokens)
            if stopped.any():
                state = self._program("mark_done", (), plan, method)(state, stopped)
            live = [r for r in range(B) if rows[r] is not None]
            tail = plan.tail_batch()
            if self.continuous and not queue and live and len(live) <= tail < B:
                # the tail: move the last rows into a smaller batch rather than pay for idle ones
                small = dataclasses.replace(plan, batch=tail)
                take = live + [live[0]] * (small.batch - len(live))
                keep = np.arange(small.batch) < len(live)
                state = self._program("take_rows", (B,), small, method)(
                    state, np.asarray(take, np.int32), keep)
                rows = [rows[r] if k else None for r, k in zip(take, keep, strict=True)]
                positions = positions[take]
                plan, B = small, small.batch
        self.stats.seconds = time.perf_counter() - start
        return results

    def _prefill(self, state, plan: BucketPlan, method: SamplingMethod, ids: list[list[int]],
                 queue: collections.deque, free: list[int], rows: list, params: SamplingParams,
                 weights: dict):
        """Takes items off the queue into `free` rows, prefilling each distinct prompt once."""
        take = [queue.popleft() for _ in range(min(len(free), len(queue)))]
        prompts = list(dict.fromkeys(i for i, _ in take))
        P = plan.prefill_batch(len(prompts))
        T = plan.prompt_len(max(len(ids[i]) for i in prompts))
        pad = self.cfg.pad_token_id or 0
        tokens = np.full((P, T), pad, np.int32)
        lengths = np.ones(P, np.int32)
        for p, i in enumerate(prompts):
            tokens[p, :len(ids[i])] = ids[i]
            lengths[p] = len(ids[i])
        B = plan.batch
        dest = np.full(B, B, np.int32)  # B: an out-of-range row, dropped by the scatter
        src, pid, sid = (np.zeros(B, np.int32) for _ in range(3))
        limits = np.ones(B, np.int32)
        where = {i: p for p, i in enumerate(prompts)}
        for k, ((i, j), r) in enumerate(zip(take, free, strict=False)):
            stream, first = self._streams[i]
            dest[k], src[k], pid[k], sid[k] = r, where[i], stream, first + j
            limits[k] = plan.row_limit(len(ids[i]), params.max_new_tokens)
            rows[r] = (i, j)
        self.stats.prefills += 1
        fn = self._program("prefill", (P, T), plan, method, weights)
        return fn(weights, state, tokens, lengths, dest, src, pid, sid, limits)
