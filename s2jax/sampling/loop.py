"""The device side of sampling: a decode state, prefill into rows of it, and the decode loop.

Both are pure functions of (params, state), jitted by the engine with the state donated, so the
KV cache is updated in place. Every row is an independent sample: its prompt's keys and values
sit in slots 0..len-1 of its cache row, and the token at position p is written to slot p.

Shapes: B decode rows, S cache slots, M output slots per row, P prompts in a prefill, T prompt
slots, R rows filled by one prefill (padded with the out-of-range row B, which is dropped).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jax.sharding import Mesh
from jaxtyping import Array, Bool, Int

from s2jax.models import splash
from s2jax.models.cache import KVCache
from s2jax.models.config import ModelConfig
from s2jax.models.transformer import forward, output_logits
from s2jax.parallel.sharding import named_sharding
from s2jax.sampling.token_rules import SamplingMethod, row_keys


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class DecodeState:
    """Everything the decode loop carries. Idle rows are `done`."""

    cache: KVCache  # keys [L, B, K, H, S], values [L, B, K, S, H], or per-layer (`split`)
    tokens: Int[Array, " B"]  # last sampled token, fed at the next step
    positions: Int[Array, " B"]  # its position, i.e. the cache slot it is written to
    steps: Int[Array, " B"]  # tokens generated so far (also the RNG step of the next one)
    limits: Int[Array, " B"]  # the row's max new tokens
    done: Bool[Array, " B"]
    prompt_ids: Int[Array, " B"]  # RNG identity of the row's sample: (prompt, sample)
    sample_ids: Int[Array, " B"]
    out: Int[Array, "B M"]  # generated tokens
    seed: Int[Array, ""]

    # logical axes of each field, for the engine's shardings
    AXES = dict(tokens=("batch",), positions=("batch",), steps=("batch",), limits=("batch",),
                done=("batch",), prompt_ids=("batch",), sample_ids=("batch",),
                out=("batch", None), seed=())

    @classmethod
    def shardings(cls, mesh: Mesh, cfg: ModelConfig, batch: int, cache_len: int, out_len: int,
                  *, split: bool = False) -> DecodeState:
        """The sharding of every field: rows over the batch axes, the cache per
        `cache_shardings`."""
        shapes = dict(out=(batch, out_len), seed=())
        fields = {name: named_sharding(mesh, axes, shapes.get(name, (batch,)))
                  for name, axes in cls.AXES.items()}
        return cls(cache=cache_shardings(mesh, cfg, batch, cache_len, split=split), **fields)

    @classmethod
    def empty(cls, cfg: ModelConfig, batch: int, max_len: int, max_new: int,
              seed: Int[Array, ""], dtype, *, split: bool = False, keys_last: bool = True
              ) -> DecodeState:
        """An idle state; `split`: the cache as per-layer buffers, which `decode`
        then runs on in place (no copy of the cache in and out of a stacked array per call);
        `keys_last`: the cache's layout of keys (`KVCache.keys_last`, `cache_keys_last`)."""
        zeros = lambda: jnp.zeros((batch,), jnp.int32)
        cache = KVCache.zeros(cfg, batch, max_len, dtype, keys_last=keys_last)
        return cls(cache.split(max_len) if split else cache, zeros(), zeros(), zeros(),
                   zeros(), jnp.ones((batch,), bool), zeros(), zeros(),
                   jnp.zeros((batch, max_new), jnp.int32), jnp.asarray(seed, jnp.int32))


def cache_keys_last(mesh: Mesh | None) -> bool:
    """Whether a KV cache on `mesh`'s platform (None: the default backend's) keeps its keys
    slots-last: everywhere but on TPU (`KVCache`)."""
    platform = jax.default_backend() if mesh is None else mesh.devices.flat[0].platform
    return platform != "tpu"


def cache_shardings(mesh: Mesh, cfg: ModelConfig, batch: int, cache_len: int, *,
                    split: bool = False, keys_last: bool | None = None) -> KVCache:
    """The shardings of a KV cache of `batch` rows of `cache_len` slots on `mesh`, in its
    platform's layout unless `keys_last` says (`split`: per layer)."""
    last = cache_keys_last(mesh) if keys_last is None else keys_last
    parts = []
    for axes, shape in zip(KVCache.axes(last), KVCache.shapes(cfg, batch, cache_len,
                                                              keys_last=last), strict=True):
        parts.append((named_sharding(mesh, axes[1:], shape[1:]),) * cfg.num_layers if split
                     else named_sharding(mesh, axes, shape))
    return KVCache(*parts, last)


def _finish(state: DecodeState, rows: Int[Array, " R"], new: Int[Array, " R"],
            eos_ids: tuple[int, ...]) -> Bool[Array, " R"]:
    """Whether `rows`, having just emitted `new`, are finished (EOS or their token limit)."""
    eos = jnp.isin(new, jnp.asarray(eos_ids, jnp.int32)) if eos_ids else jnp.zeros_like(new, bool)
    return eos | (state.steps[rows] >= state.limits[rows])


PREFILL_CHUNK = 128  # prompt tokens per prefill pass (see `prefill_cache`)


def prefill_cache(cfg: ModelConfig, dtype, params: dict[str, Array], tokens: Int[Array, "P T"],
                  lengths: Int[Array, " P"], cache_dtype, *, chunk: int = PREFILL_CHUNK,
                  mesh: Mesh | None = None, keys_last: bool | None = None
                  ) -> tuple[Array, KVCache]:
    """The KV cache (`KVCache`, T slots) of P right-padded prompts and each one's last hidden
    state; `keys_last`: its layout of keys (default: `cache_keys_last(mesh)`).

    The prompt is fed `chunk` tokens at a time, each chunk attending to the cache the earlier
    ones filled (slots <= its positions), so attention scores are [P, N, chunk, T] rather than
    [P, N, T, T]: prefill memory grows linearly in the prompt length, not quadratically. A
    prompt of at most `chunk` slots is one pass; longer ones take passes of the largest divisor
    of T up to `chunk`; the result does not depend on `chunk`. On TPU
    the prompt is always one pass: splash attention never holds the scores.
    """
    P, T = tokens.shape
    # passes of equal length: the largest divisor of T within `chunk` (T = 192: two of 96)
    C = T if splash.use_splash(mesh) or chunk >= T else max(
        c for c in range(1, chunk + 1) if T % c == 0)
    keys_last = cache_keys_last(mesh) if keys_last is None else keys_last
    pre = KVCache.zeros(cfg, P, T, cache_dtype, keys_last=keys_last)
    if mesh is not None:  # rows over the batch axes, as the decode state's: unconstrained, the
        # partitioner may keep every row's cache on every device (70B, 64 x 4096: 40 GiB each)
        pre = jax.lax.with_sharding_constraint(
            pre, cache_shardings(mesh, cfg, P, T, keys_last=keys_last))
    rows = jnp.arange(P)

    def one(carry, start):
        pre, last = carry
        ids = jax.lax.dynamic_slice_in_dim(tokens, start, C, axis=1)
        positions = jnp.broadcast_to(start + jnp.arange(C, dtype=jnp.int32), (P, C))
        hidden, pre = forward(cfg, params, ids, positions, cache=pre, dtype=dtype,
                              return_hidden=True, mesh=mesh, prefill=C == T)
        at = lengths - 1 - start  # the prompt's last token, if it is in this chunk
        mine = (at >= 0) & (at < C)
        last = jnp.where(mine[:, None], hidden[rows, jnp.clip(at, 0, C - 1)], last)
        return (pre, last), None

    last = jnp.zeros((P, cfg.hidden_size), dtype or params["embed"].dtype)
    if C == T:
        (pre, last), _ = one((pre, last), jnp.int32(0))
    else:
        starts = jnp.arange(0, T, C, dtype=jnp.int32)
        (pre, last), _ = jax.lax.scan(one, (pre, last), starts)
    return last, pre


def prefill_into(
    cfg: ModelConfig,
    method: SamplingMethod,
    eos_ids: tuple[int, ...],
    dtype,
    params: dict[str, Array],
    state: DecodeState,
    tokens: Int[Array, "P T"],
    lengths: Int[Array, " P"],
    dest: Int[Array, " R"],
    src: Int[Array, " R"],
    prompt_ids: Int[Array, " R"],
    sample_ids: Int[Array, " R"],
    limits: Int[Array, " R"],
    *,
    chunk: int = PREFILL_CHUNK,
    mesh: Mesh | None = None,
) -> DecodeState:
    """Prefills P right-padded prompts once and starts rows `dest` from prompt `src` each.

    Each prompt's cache is computed once (`prefill_cache`, `chunk` tokens at a time) and copied
    into every row that samples from it (N samples per prompt share one prefill); each row draws
    its first token with its own key.
    """
    B = state.done.shape[0]
    # Pad slots hold garbage keys: a row attends only to slots <= its position, and decode
    # overwrites slot `len` before it is first read.
    last, pre = prefill_cache(cfg, dtype, params, tokens, lengths, state.cache.k[0].dtype,
                              chunk=chunk, mesh=mesh, keys_last=state.cache.keys_last)
    logits = output_logits(cfg, params, last, dtype)[src]  # [R, V]
    keys = row_keys(state.seed, prompt_ids, sample_ids, jnp.zeros_like(dest))
    first = method(logits, keys)

    cache = state.cache.with_rows(dest, pre, src)
    put = lambda a, v: a.at[dest].set(v, mode="drop")
    state = dataclasses.replace(
        state, cache=cache, tokens=put(state.tokens, first),
        positions=put(state.positions, lengths[src]), steps=put(state.steps, 1),
        limits=put(state.limits, limits), prompt_ids=put(state.prompt_ids, prompt_ids),
        sample_ids=put(state.sample_ids, sample_ids),
        out=state.out.at[dest, 0].set(first, mode="drop"))
    valid = dest < B
    done = _finish(state, jnp.where(valid, dest, 0), first, eos_ids)
    return dataclasses.replace(state, done=state.done.at[dest].set(done, mode="drop"))


def decode_step(cfg: ModelConfig, method: SamplingMethod, eos_ids: tuple[int, ...], dtype,
                params: dict[str, Array], state: DecodeState, *, mesh: Mesh | None = None
                ) -> DecodeState:
    """Feeds every row's last token, samples the next one; finished rows stay frozen."""
    B, M = state.out.shape
    logits, cache = forward(cfg, params, state.tokens[:, None], state.positions[:, None],
                            cache=state.cache, dtype=dtype, mesh=mesh)
    keys = None if method.greedy else row_keys(state.seed, state.prompt_ids, state.sample_ids,
                                                state.steps)
    new = method(logits[:, 0], keys)
    live = ~state.done
    rows = jnp.arange(B)
    out = state.out.at[rows, jnp.where(live, state.steps, M)].set(new, mode="drop")
    inc = live.astype(jnp.int32)
    state = dataclasses.replace(
        state, cache=cache, out=out, tokens=jnp.where(live, new, state.tokens),
        positions=state.positions + inc, steps=state.steps + inc)
    return dataclasses.replace(state, done=state.done | (live & _finish(state, rows, new,
                                                                         eos_ids)))


def decode(cfg: ModelConfig, method: SamplingMethod, eos_ids: tuple[int, ...], dtype,
           window: int, params: dict[str, Array], state: DecodeState,
           max_steps: Int[Array, ""], exit_done: Int[Array, ""], *, mesh: Mesh | None = None
           ) -> tuple[DecodeState, Int[Array, ""]]:
    """Runs up to `max_steps` decode steps on device, or until `exit_done` rows are done.

    Returns the state and the number of steps run.

    The engine sets `exit_done` to the number of finished rows worth refilling, so one host
    call covers many tokens, and returns as soon as continuous batching has work to do.

    Attention reads every cache slot it is given, so a step costs O(slots). The loop runs on
    the first `window` slots only (copied out once, written back once) and also returns when a
    live row reaches the window's end; the engine then calls again with a larger window.

    A state whose cache is per-layer buffers (`DecodeState.empty(split=True)`) runs with the
    layers unrolled, and `params` must then hold per-layer weights (`split_layers`, which the
    engine applies once per sampler call, not per decode call: it copies every weight): on
    XLA:CPU a layer scan copies each layer's weights and cache block out of the stacked arrays
    at every step, which costs more than the step's arithmetic at small batch sizes. Such a
    cache is run on in place when the window is the whole cache, and otherwise only its first
    `window` slots are copied out and back.
    """
    full = state.cache
    if window < full.slots:
        state = dataclasses.replace(state, cache=full.first_slots(window))

    def cond(carry):
        state, i = carry
        room = jnp.all(state.done | (state.positions < window))
        return (i < max_steps) & (jnp.sum(state.done.astype(jnp.int32)) < exit_done) & room

    def body(carry):
        state, i = carry
        return decode_step(cfg, method, eos_ids, dtype, params, state, mesh=mesh), i + 1

    state, steps = jax.lax.while_loop(cond, body, (state, jnp.int32(0)))
    if window < full.slots:
        state = dataclasses.replace(state, cache=full.with_first_slots(state.cache))
    return state, steps


def take_rows(state: DecodeState, rows: Int[Array, " R"], keep: Bool[Array, " R"]
              ) -> DecodeState:
    """A state of R rows copied from `rows` of `state`; rows not `keep` are idle."""
    cache = state.cache.take_rows(rows)
    fields = {f.name: getattr(state, f.name)[rows] for f in dataclasses.fields(state)
              if f.name not in ("cache", "seed")}
    fields["done"] = fields["done"] | ~keep
    return DecodeState(cache=cache, seed=state.seed, **fields)


def mark_done(state: DecodeState, rows: Bool[Array, " B"]) -> DecodeState:
    """Ends rows the host stopped (a stop string), so they count as free."""
    return dataclasses.replace(state, done=state.done | rows)
