"""Fused, chunked LM head + cross-entropy: fp32 logits [B, T, V] never exist at once.

The loss walks the sequence in chunks of about `chunk` tokens. Each chunk computes its logits
with the model's own `logits_fn` (tied embedding or LM head, plus any family-specific final
soft-cap), reduces them to per-token statistics and drops them, so the peak holds one chunk's
logits, not the whole micro-batch's: at Gemma's 262,144-token vocabulary, 8 x 512 tokens of
fp32 logits are 4 GiB, and their softmax and gradient as much again each.

Only the positions that carry loss (a non-zero weight) reach the head: each row's loss positions
are gathered to its front and the chunks stop when every row's are scored, the last one no
larger than it needs (`tail_sizes`), so on distillation data (prompts of hundreds of tokens,
answers of tens) the head's cost follows the answers.

Training wants the weighted sum of the losses, whose cotangent is one scalar, so `fused_loss`
computes the gradient of each chunk in the forward pass, while its logits are at hand: the
head's gradient is one matmul per chunk (the logits' VJP) added into one [V, D] accumulator,
and nothing is recomputed in the backward pass, which only scales the saved gradients.

Shapes use the package's einsum letters; C is the tokens of one chunk per row.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from s2jax.train import divergence
from s2jax.train.config import KDConfig

# A distillation chunk holds `loss_chunk / KD_SPLIT` tokens. Cross-entropy keeps one [tokens, V]
# fp32 array per chunk at its peak (the gradient is written over the logits); a divergence
# keeps both models' logits, their log-softmaxes and the gradient, which XLA:CPU materialises
# separately: at Gemma 3 270M shapes, a quarter of the tokens keeps the step's peak below the
# cross-entropy step's (bench/train_memory.py --kd; half of them was 1.24x for forward KL and
# 1.41x for JSD, with the teacher's weights).
KD_SPLIT = 4

# The smallest last chunk, in positions per row: a loss of few positions (a distillation set's
# answers) computes the head on about as many, while each size is one more compiled loop body.
TAIL_MIN = 8

# logits_fn(head, x) -> fp32 logits [..., V]; `head` is the pytree of the weights it reads
LogitsFn = Callable[[dict, Float[Array, "*B D"]], Float[Array, "*B V"]]


def _chunks(x: Array, chunk: int, fill=0) -> Array:
    """[B, T, ...] -> [T / C, B, C, ...], padding T up to a multiple of C with `fill`."""
    B, T = x.shape[:2]
    n = -(-T // chunk)
    x = jnp.pad(x, [(0, 0), (0, n * chunk - T)] + [(0, 0)] * (x.ndim - 2), constant_values=fill)
    return jnp.moveaxis(x.reshape(B, n, chunk, *x.shape[2:]), 1, 0)


def _unchunk(y: Array, T: int) -> Array:
    """[T / C, B, C, ...] -> [B, T, ...], dropping the padding."""
    n, B, C = y.shape[:3]
    return jnp.moveaxis(y, 0, 1).reshape(B, n * C, *y.shape[3:])[:, :T]


def chunk_len(batch: int, seq_len: int, chunk: int) -> int:
    """Positions per row in one chunk of about `chunk` tokens (0: the whole sequence)."""
    return seq_len if chunk <= 0 else max(1, min(seq_len, chunk // batch))


def _stats(logits: Float[Array, "*B V"], targets: Int[Array, "*B"]):
    """Log-normaliser, negative log-likelihood and argmax hit of every token of a chunk.

    A hit is a target logit equal to the largest, the max that the log-normaliser takes anyway
    (an argmax is a second, variadic reduction: it was ~3% of the 5M SFT step on CPU); a tie
    for the largest logit counts as a hit.
    """
    top = jnp.max(logits, axis=-1)
    lse = top + jnp.log(jnp.sum(jnp.exp(logits - top[..., None]), axis=-1))
    target_logit = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    correct = (target_logit >= top).astype(jnp.float32)
    return lse, lse - target_logit, correct


def chunked_losses(logits_fn: LogitsFn, head: dict, x: Float[Array, "B T D"],
                   targets: Int[Array, "B T"], chunk: int
                   ) -> tuple[Float[Array, "B T"], Float[Array, "B T"]]:
    """Per-token cross-entropy (fp32) and 0/1 argmax hits, one chunk of logits at a time.

    For evaluation and inspection; differentiate `fused_loss` instead (autodiff through this
    scan would keep every chunk's logits for the backward pass).
    """
    B, T, _ = x.shape
    C = chunk_len(B, T, chunk)

    def body(_, xs):
        x_c, t_c = xs
        _, nll, correct = _stats(logits_fn(head, x_c), t_c)
        return None, (nll, correct)

    _, (nll, correct) = jax.lax.scan(body, None, (_chunks(x, C), _chunks(targets, C)))
    return _unchunk(nll, T), _unchunk(correct, T)


@partial(jax.tree_util.register_dataclass, data_fields=["head", "x", "index"],
         meta_fields=["logits_fn"])
@dataclasses.dataclass(frozen=True)
class Teacher:
    """A frozen teacher's side of the distillation loss: its output layer and hidden states.

    `x[b, index[b, t]]` is the teacher's final-normed hidden state whose next-token
    distribution is compared with the student's at position t of row b (the teacher reads its
    own context, e.g. the System 2 prompt, so its positions are not the student's)."""

    logits_fn: LogitsFn  # the teacher's output layer (static)
    head: dict  # the weights it reads
    x: Float[Array, "B S E"]  # the teacher's hidden states over its own rows (S tokens, E dims)
    index: Int[Array, "B T"]  # per student position, the teacher position aligned with it


def fused_loss(logits_fn: LogitsFn, chunk: int, head: dict, x: Float[Array, "B T D"],
               targets: Int[Array, "B T"], weights: Float[Array, "B T"]
               ) -> tuple[Float[Array, ""], Float[Array, ""]]:
    """(sum of weights x cross-entropy, sum of weights x argmax hits), chunk by chunk.

    Only positions with a non-zero weight reach the LM head (see `loss_positions`): the head's
    cost follows the answer tokens, not the row length.

    Args:
      logits_fn: `logits_fn(head, x)` -> fp32 logits, the model's output layer.
      chunk: tokens per chunk over the whole batch (rounded to whole positions per row);
        0 computes every logit at once.
      head: the weights `logits_fn` reads (e.g. {"embed": [V, D]} when tied).
      x: final-normed hidden states; targets: next tokens; weights: loss weight per token.

    Differentiable in `head` and `x`. `weights` are data: their cotangent is zero (a token of
    weight 0 is never scored, so its loss, the derivative in its weight, is not known). The hit
    count is piecewise constant, so its cotangent is zero and ignored.
    """
    loss, correct, _ = fused_distill_loss(KDConfig(), logits_fn, chunk, head, x, targets,
                                          weights, None)
    return loss, correct


def fused_distill_loss(kd: KDConfig, logits_fn: LogitsFn, chunk: int, head: dict,
                       x: Float[Array, "B T D"], targets: Int[Array, "B T"],
                       weights: Float[Array, "B T"], teacher: Teacher | None
                       ) -> tuple[Float[Array, ""], Float[Array, ""], Float[Array, ""]]:
    """(sum of weights x loss, sum of weights x argmax hits, sum of weights x cross-entropy),
    where a token's loss is `kd`'s mix of cross-entropy and divergence from `teacher`
    (s2jax/train/divergence.py; cross-entropy alone when `kd` is off).

    As `fused_loss`, chunk by chunk over the loss positions; with a teacher, a chunk holds
    `chunk / KD_SPLIT` tokens of each model's logits, so that `chunk` still bounds the memory
    of the loss at about cross-entropy's. Differentiable in `head` and `x` through the loss
    (the first output) only: the teacher is frozen, and the other two outputs are metrics.
    """
    if kd.enabled != (teacher is not None):
        raise ValueError(f"kd.divergence={kd.divergence!r} with teacher={teacher is not None}")
    return _fused(kd, logits_fn, chunk, head, x, targets, weights, teacher)


@partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _fused(kd, logits_fn, chunk, head, x, targets, weights, teacher):
    sums, _ = _loop(kd, logits_fn, chunk, head, x, targets, weights, teacher, with_grad=False)
    return sums


def loss_positions(weights: Float[Array, "B T"]) -> tuple[Int[Array, "B T"], Int[Array, " B"]]:
    """Per row, the positions of non-zero weight first (in order), then the others; and their
    count. The loss gathers each row's loss positions to its front and scores chunks of them
    until every row's are done, so a row of 512 tokens with 40 answer tokens costs one chunk
    of the LM head, not four. Per row, the gather keeps the batch axis (split over the mesh's
    data and fsdp axes) where it is: each device scores its own rows."""
    order = jnp.argsort(weights == 0, axis=1, stable=True).astype(jnp.int32)
    return order, jnp.sum(weights != 0, axis=1, dtype=jnp.int32)


def tail_sizes(chunk: int) -> list[int]:
    """The sizes a last, partial chunk of `chunk` positions per row may take: `chunk`, then
    halved (rounding up) while at least `TAIL_MIN` positions."""
    sizes = [chunk]
    while (half := -(-sizes[-1] // 2)) >= TAIL_MIN and half < sizes[-1]:
        sizes.append(half)
    return sizes


def _take(a: Array, order: Int[Array, "B T"]) -> Array:
    """a [B, S, ...] at positions `order` of each row -> [B, T, ...]."""
    return jnp.take_along_axis(a, order.reshape(*order.shape, *[1] * (a.ndim - 2)), axis=1)


def _over_chunks(body, C: int, n: int, count: Int[Array, " B"], carry):
    """`body(start, size, carry)` over every row's first `count` positions (of `n` * C): whole
    chunks of C while a row has C left, then one chunk of the smallest size of `tail_sizes(C)`
    that holds what is left (none when nothing is): 30 answer positions a row cost a chunk of
    32, not of C."""
    most = jnp.max(count)
    if n == 1:
        # one chunk holds a whole row: no loop. A loop of at most one trip whose slice start
        # clamps to 0 is loop-invariant, and XLA hoists its body out, computing the head on
        # every position even when the loop runs no trip (8 rows of 96 tokens: +1.5 s a step)
        full = 0
    else:
        full = most // C
        carry = jax.lax.fori_loop(0, full, lambda i, c: body(i * C, C, c), carry)
    sizes = tail_sizes(C)
    left = most - full * C
    tail = jnp.where(left > 0, jnp.sum(jnp.asarray(sizes) >= left), 0)
    return jax.lax.switch(tail, [lambda c: c] + [partial(body, full * C, s) for s in sizes],
                          carry)


def _loop(kd, logits_fn, chunk, head, x, targets, weights, teacher, *, with_grad: bool):
    """The chunk loop over the loss positions: ((loss, hits, nll) sums, grads or None), the
    grads being d(loss)/d(head, x) for a cotangent of 1. Its trip count is data-dependent:
    this is never differentiated (the custom VJP's forward computes the gradients)."""
    B, T, D = x.shape
    C = chunk_len(B, T, max(1, chunk // KD_SPLIT) if teacher is not None and chunk > 0 else chunk)
    n = -(-T // C)
    order, count = loss_positions(weights)
    pad = lambda a: jnp.pad(a, [(0, 0), (0, n * C - T)] + [(0, 0)] * (a.ndim - 2))
    rows = {"x": x, "t": targets, "w": weights}
    if teacher is not None:  # the teacher's states at the student's positions, in loss order
        rows["xt"] = _take(teacher.x, _take(teacher.index, order))
    rows = {k: pad(v if k == "xt" else _take(v, order)) for k, v in rows.items()}

    def body(start, size, carry):
        """Scores the `size` loss positions of every row from `start` on."""
        d_head, sums, dx = carry
        # one [B*size, D] token axis: the head's gradient then contracts one axis, which
        # XLA:CPU runs in place; over (B, size) it wrote a transposed copy of every chunk's logit
        # gradient
        c = {k: jax.lax.dynamic_slice_in_dim(v, start, size, axis=1).reshape(B * size,
                                                                             *v.shape[2:])
             for k, v in rows.items()}
        z_t = None if teacher is None else teacher.logits_fn(teacher.head, c["xt"])
        if with_grad:
            z, vjp = jax.vjp(logits_fn, head, c["x"])
        else:
            z = logits_fn(head, c["x"])
        loss, nll, hit, d_z = divergence.token_terms(kd, z, c["t"], z_t)
        w = c["w"]
        sums = tuple(s + jnp.sum(v * w) for s, v in zip(sums, (loss, hit, nll), strict=True))
        if not with_grad:
            return d_head, sums, dx
        dh, dx_c = vjp(d_z * w[:, None])
        d_head = jax.tree.map(lambda a, g: a + g.astype(a.dtype), d_head, dh)
        dx = jax.lax.dynamic_update_slice_in_dim(dx, dx_c.reshape(B, size, D), start, axis=1)
        return d_head, sums, dx

    # the head's gradient accumulates in fp32 whatever the weights' dtype
    d_head = jax.tree.map(lambda h: jnp.zeros(h.shape, jnp.float32), head) if with_grad else None
    dx = jnp.zeros_like(rows["x"]) if with_grad else None
    sums = (jnp.zeros((), jnp.float32),) * 3
    d_head, sums, dx = _over_chunks(body, C, n, count, (d_head, sums, dx))
    if not with_grad:
        return sums, None
    # back to each row's own order: the positions that were never scored get a zero gradient
    dx = _take(dx[:, :T], jnp.argsort(order, axis=1).astype(jnp.int32))
    return sums, (d_head, dx)


def _fused_fwd(kd, logits_fn, chunk, head, x, targets, weights, teacher):
    sums, (d_head, dx) = _loop(kd, logits_fn, chunk, head, x, targets, weights, teacher,
                               with_grad=True)
    d_head = jax.tree.map(lambda d, h: d.astype(h.dtype), d_head, head)
    return sums, (d_head, dx)


def _fused_bwd(kd, logits_fn, chunk, res, cotangents):
    d_head, dx = res
    g = cotangents[0]  # the loss's; the hit count's is zero, the nll sum's is ignored
    scale = lambda d: (g * d).astype(d.dtype)
    return jax.tree.map(scale, d_head), scale(dx), None, None, None


_fused.defvjp(_fused_fwd, _fused_bwd)
