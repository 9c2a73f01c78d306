"""The optimizer: global-norm clipping, then AdamW on a warmup + decay schedule.

Weight decay skips norm scales and biases: decaying them pulls a norm's gain towards 0 and a
bias towards 0, which regularises nothing and only distorts the layer.

The clipped gradients are computed once, into buffers of their own: XLA does not copy a
division into each op that reads it, so without the barrier a clipped leaf (`t / norm *
max_norm`, read by both of Adam's moments) stood beside the gradient it came from, a second
copy of the gradients in the step (bench/train_memory.py --rss; docs/benchmarks.md).
"""

from __future__ import annotations

import jax
import optax

from s2jax.train.config import TrainConfig


def learning_rate_schedule(cfg: TrainConfig, total_steps: int) -> optax.Schedule:
    """Linear warmup from 0 to the peak, then cosine / linear decay (or constant) to the end."""
    peak, floor = cfg.learning_rate, cfg.learning_rate * cfg.min_lr_ratio
    decay_steps = max(total_steps - cfg.warmup_steps, 1)
    if cfg.schedule == "cosine":
        decay = optax.cosine_decay_schedule(peak, decay_steps, alpha=cfg.min_lr_ratio)
    elif cfg.schedule == "linear":
        decay = optax.linear_schedule(peak, floor, decay_steps)
    else:
        decay = optax.constant_schedule(peak)
    if not cfg.warmup_steps:
        return decay
    warmup = optax.linear_schedule(0.0, peak, cfg.warmup_steps)
    return optax.join_schedules([warmup, decay], [cfg.warmup_steps])


def decays(name: str) -> bool:
    """Whether the weight named `name` (as in `Transformer.params()`) gets weight decay."""
    return not (name.endswith("norm") or name.endswith("bias"))


def make_optimizer(cfg: TrainConfig, total_steps: int) -> optax.GradientTransformation:
    """Clipping + AdamW for a flat {name: array} param dict."""
    schedule = learning_rate_schedule(cfg, total_steps)
    adamw = optax.adamw(schedule, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps,
                        weight_decay=cfg.weight_decay,
                        mask=lambda params: {k: decays(k) for k in params})
    if not cfg.max_grad_norm:
        return adamw
    return optax.chain(computed_once(optax.clip_by_global_norm(cfg.max_grad_norm)), adamw)


def computed_once(tx: optax.GradientTransformation) -> optax.GradientTransformation:
    """`tx` with its updates behind an optimization barrier: each leaf is computed once and
    read from memory by every later op, never recomputed from `tx`'s input (which is then
    freed). Same state and the same values as `tx`."""

    def update(updates, state, params=None):
        updates, state = tx.update(updates, state, params)
        return jax.lax.optimization_barrier(updates), state

    return optax.GradientTransformation(tx.init, update)
