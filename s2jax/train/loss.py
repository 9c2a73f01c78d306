"""Fused, chunked LM head + cross-entropy: fp32 logits [B, T, V] never exist at once.

The loss walks the sequence in chunks of about `chunk` tokens. Each chunk computes its logits
with the model's own `logits_fn` (tied embedding or LM head, plus any family-specific final
soft-cap), reduces them to per-token statistics and drops them, so the peak holds one chunk's
logits, not the whole micro-batch's: at Gemma's 262,144-token vocabulary, 8 x 512 tokens of
fp32 logits are 4 GiB, and their softmax and gradient as much again each.

Only the positions that carry loss (a non-zero weight) reach the head: each row's loss positions
are gathered to its front and the chunks stop when every row's are scored, so on distillation
data (prompts of hundreds of tokens, answers of tens) the head's cost follows the answers.

Training wants the weighted sum of the losses, whose cotangent is one scalar, so `fused_loss`
computes the gradient of each chunk in the forward pass, while its logits are at hand: the
head's gradient is one matmul per chunk (the logits' VJP) added into one [V, D] accumulator,
and nothing is recomputed in the backward pass, which only scales the saved gradients.

Shapes use the package's einsum letters; C is the tokens of one chunk per row.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

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


@partial(jax.custom_vjp, nondiff_argnums=(0, 1))
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
    loss, correct, _ = _loop(logits_fn, chunk, head, x, targets, weights, with_grad=False)
    return loss, correct


def loss_positions(weights: Float[Array, "B T"]) -> tuple[Int[Array, "B T"], Int[Array, " B"]]:
    """Per row, the positions of non-zero weight first (in order), then the others; and their
    count. The loss gathers each row's loss positions to its front and scores chunks of them
    until every row's are done, so a row of 512 tokens with 40 answer tokens costs one chunk
    of the LM head, not four. Per row, the gather keeps the batch axis (split over the mesh's
    data and fsdp axes) where it is: each device scores its own rows."""
    order = jnp.argsort(weights == 0, axis=1, stable=True).astype(jnp.int32)
    return order, jnp.sum(weights != 0, axis=1, dtype=jnp.int32)


def _take(a: Array, order: Int[Array, "B T"]) -> Array:
    """a [B, T, ...] with each row's positions in `order`."""
    return jnp.take_along_axis(a, order.reshape(*order.shape, *[1] * (a.ndim - 2)), axis=1)


def _loop(logits_fn, chunk, head, x, targets, weights, *, with_grad: bool):
    """The chunk loop over the loss positions; with `with_grad`, also d(loss)/d(head, x) for a
    cotangent of 1. Its trip count is data-dependent: this is never differentiated (the
    custom VJP's forward computes the gradients)."""
    B, T, D = x.shape
    C = chunk_len(B, T, chunk)
    n = -(-T // C)
    order, count = loss_positions(weights)
    pad = lambda a: jnp.pad(a, [(0, 0), (0, n * C - T)] + [(0, 0)] * (a.ndim - 2))
    xs, ts, ws = (pad(_take(a, order)) for a in (x, targets, weights))

    def body(i, carry):
        d_head, loss, correct, dx = carry
        # one [B*C, D] token axis: the head's gradient then contracts one axis, which XLA:CPU
        # runs in place; over (B, C) it wrote a transposed copy of every chunk's logit gradient
        x_c, t_c, w_c = (jax.lax.dynamic_slice_in_dim(a, i * C, C, axis=1)
                         .reshape(B * C, *a.shape[2:]) for a in (xs, ts, ws))
        if not with_grad:
            _, nll, hit = _stats(logits_fn(head, x_c), t_c)
            return d_head, loss + jnp.sum(nll * w_c), correct + jnp.sum(hit * w_c), dx
        logits, vjp = jax.vjp(logits_fn, head, x_c)
        lse, nll, hit = _stats(logits, t_c)
        # d(w * nll)/d logits = w * (softmax - onehot), built in one elementwise pass
        onehot = jnp.arange(logits.shape[-1]) == t_c[..., None]
        d_logits = (jnp.exp(logits - lse[..., None]) - onehot) * w_c[..., None]
        dh, dx_c = vjp(d_logits)
        d_head = jax.tree.map(lambda a, g: a + g.astype(a.dtype), d_head, dh)
        dx = jax.lax.dynamic_update_slice_in_dim(dx, dx_c.reshape(B, C, D), i * C, axis=1)
        return d_head, loss + jnp.sum(nll * w_c), correct + jnp.sum(hit * w_c), dx

    # the head's gradient accumulates in fp32 whatever the weights' dtype
    d_head = jax.tree.map(lambda h: jnp.zeros(h.shape, jnp.float32), head) if with_grad else None
    dx = jnp.zeros_like(xs) if with_grad else None
    zero = jnp.zeros((), jnp.float32)
    trips = (jnp.max(count) + C - 1) // C  # chunks until every row's loss positions are done
    d_head, loss, correct, dx = jax.lax.fori_loop(0, trips, body, (d_head, zero, zero, dx))
    if not with_grad:
        return loss, correct, None
    # back to each row's own order: the positions that were never scored get a zero gradient
    dx = _take(dx[:, :T], jnp.argsort(order, axis=1).astype(jnp.int32))
    return loss, correct, (d_head, dx)


def _fused_fwd(logits_fn, chunk, head, x, targets, weights):
    loss, correct, (d_head, dx) = _loop(logits_fn, chunk, head, x, targets, weights,
                                        with_grad=True)
    d_head = jax.tree.map(lambda d, h: d.astype(h.dtype), d_head, head)
    return (loss, correct), (d_head, dx)


def _fused_bwd(logits_fn, chunk, res, cotangents):
    d_head, dx = res
    g = cotangents[0]  # the loss's; the hit count's is zero (see `fused_loss`)
    scale = lambda d: (g * d).astype(d.dtype)
    return jax.tree.map(scale, d_head), scale(dx), None, None


fused_loss.defvjp(_fused_fwd, _fused_bwd)
