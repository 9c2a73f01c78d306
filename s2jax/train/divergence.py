"""What one loss token contributes, on one chunk of logits: cross-entropy on the target, mixed
with a divergence from a teacher's distribution, and the gradient of that in the student's
logits, in closed form (the fused loss computes gradients in its forward pass).

With p the student's softmax, q the teacher's and g the per-token loss:
  forward KL  KL(q || p) = sum q (log q - log p)            dg/dz = p - q
  reverse KL  KL(p || q) = sum p (log p - log q) = K         dg/dz = p (log p - log q - K)
  JSD(beta)   beta KL(q || m) + (1 - beta) KL(p || m),  m = beta q + (1 - beta) p
              (GKD, Agarwal et al. 2024)                     dg/dz = p (h - sum p h),
              with h = (1 - beta)(log p - log m)
  CE          -log p[target]                                 dg/dz = p - onehot(target)
The teacher is frozen: nothing flows into its logits. Everything is fp32.

Shapes: N tokens of a chunk, V vocab.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from s2jax.train.config import KDConfig


def log_softmax(z: Float[Array, "N V"]) -> tuple[Float[Array, "N V"], Float[Array, " N"]]:
    """(log-probabilities, log-normaliser) of fp32 logits."""
    top = jnp.max(z, axis=-1, keepdims=True)
    lse = top + jnp.log(jnp.sum(jnp.exp(z - top), axis=-1, keepdims=True))
    return z - lse, lse[..., 0]


def divergence(kd: KDConfig, logp: Float[Array, "N V"], logq: Float[Array, "N V"]
               ) -> tuple[Float[Array, " N"], Float[Array, "N V"]]:
    """(divergence per token, its gradient in the student's logits) for log-probabilities
    `logp` (student) and `logq` (teacher)."""
    p, q = jnp.exp(logp), jnp.exp(logq)
    if kd.divergence == "forward_kl":
        return jnp.sum(q * (logq - logp), axis=-1), p - q
    if kd.divergence == "reverse_kl":
        r = logp - logq
        k = jnp.sum(p * r, axis=-1)
        return k, p * (r - k[:, None])
    if kd.divergence == "jsd":
        b = kd.beta
        logm = jnp.logaddexp(math.log(b) + logq, math.log1p(-b) + logp)
        value = jnp.sum(b * q * (logq - logm) + (1 - b) * p * (logp - logm), axis=-1)
        h = (1 - b) * (logp - logm)
        return value, p * (h - jnp.sum(p * h, axis=-1, keepdims=True))
    raise ValueError(f"divergence {kd.divergence!r}")


def token_terms(kd: KDConfig, z: Float[Array, "N V"], targets: Int[Array, " N"],
                z_teacher: Float[Array, "N V"] | None = None):
    """(loss, cross-entropy, argmax hit, d loss / d z) of every token of a chunk.

    loss = ce_weight * CE + (1 - ce_weight) * divergence, or CE alone when `kd` is off. A hit
    is a target logit equal to the largest (a tie counts as a hit).
    """
    logp, lse = log_softmax(z)
    target_logit = jnp.take_along_axis(z, targets[:, None], axis=-1)[:, 0]
    nll = lse - target_logit
    hit = (target_logit >= jnp.max(z, axis=-1)).astype(jnp.float32)
    onehot = jnp.arange(z.shape[-1]) == targets[:, None]
    d_ce = jnp.exp(logp) - onehot
    if not kd.enabled:
        return nll, nll, hit, d_ce
    value, d_div = divergence(kd, logp, jax.lax.stop_gradient(log_softmax(z_teacher)[0]))
    a = kd.ce_weight
    if a == 0:  # 0 * d_ce is not folded away (NaN semantics): skip the dead pass over [N, V]
        return value, nll, hit, d_div
    return a * nll + (1 - a) * value, nll, hit, a * d_ce + (1 - a) * d_div
