"""The pure train and eval steps, jitted with explicit shardings (the state donated).

The loss is the mean next-token cross-entropy over the loss tokens of the whole optimizer step:
micro-batches add up summed losses and gradients, and one division by the step's loss-token count
at the end makes accumulation exactly a bigger batch (whatever the token count of each micro-batch).
The LM head and the cross-entropy are fused and chunked (`s2jax.train.loss`), so no step holds
fp32 logits for the whole micro-batch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jaxtyping import Array, Float, Int

from s2jax.models.config import ModelConfig
from s2jax.models.transformer import forward, output_logits
from s2jax.parallel.sharding import named_sharding
from s2jax.train.config import TrainConfig
from s2jax.train.loss import LogitsFn, Teacher, chunked_losses, fused_distill_loss
from s2jax.train.state import TrainState

Metrics = dict[str, Array]


def output_head(cfg: ModelConfig, params: dict[str, Array], dtype) -> tuple[LogitsFn, dict]:
    """The model's output layer as (logits_fn, the weights it reads), for the chunked loss."""
    name = "embed" if cfg.tie_word_embeddings else "lm_head"
    return (lambda head, x: output_logits(cfg, head, x, dtype)), {name: params[name]}


def _hidden(cfg, params, tokens, segment_ids, dtype, remat, mesh, reach=None
            ) -> Float[Array, "B T D"]:
    x, _ = forward(cfg, params, tokens, segment_ids=segment_ids, dtype=dtype, remat=remat,
                   mesh=mesh, return_hidden=True, reach=reach)
    if mesh is not None and mesh.size > 1:
        # rows split like the batch: the loss gathers each row's loss positions in place (the
        # final norm's output otherwise took the head's sharding, and the gather replicated it)
        x = jax.lax.with_sharding_constraint(x, batch_sharding(mesh, x.shape[:2]))
    return x


def token_losses(
    cfg: ModelConfig, params: dict[str, Array], tokens: Int[Array, "B T"],
    targets: Int[Array, "B T"], segment_ids: Int[Array, "B T"], *, dtype=None, remat="none",
    mesh: Mesh | None = None, loss_chunk: int = 0,
) -> tuple[Float[Array, "B T"], Float[Array, "B T"]]:
    """Next-token cross-entropy (fp32) and 0/1 argmax correctness at every position.

    Args:
      cfg, params: the model.
      tokens: inputs; targets: the token each position should predict.
      segment_ids: example number per token in a packed row (0 = padding).
      dtype: compute dtype (None: the params'); remat: `forward`'s remat policy.
      mesh: keeps activations split over the batch axes of this mesh (see `forward`).
      loss_chunk: tokens of logits computed at once (0: all).

    Returns:
      (nll, correct), both [B, T]; the caller weights them by the loss mask. Not for
      differentiation: the train step differentiates `fused_loss`.
    """
    dtype = dtype or params["embed"].dtype
    x = _hidden(cfg, params, tokens, segment_ids, dtype, remat, mesh)
    logits_fn, head = output_head(cfg, params, dtype)
    return chunked_losses(logits_fn, head, x, targets, loss_chunk)


def run_teacher(cfg: ModelConfig, tcfg: TrainConfig, mesh: Mesh | None, params: dict,
                batch: dict) -> Teacher:
    """The frozen teacher's side of the loss on one micro-batch: a forward pass over its own
    rows (`teacher_tokens`, `teacher_segment_ids`), never differentiated."""
    dtype = jnp.dtype(tcfg.compute_dtype)
    params = jax.lax.stop_gradient(params)
    x = _hidden(cfg, params, batch["teacher_tokens"], batch["teacher_segment_ids"], dtype,
                "none", mesh)
    logits_fn, head = output_head(cfg, params, dtype)
    return Teacher(logits_fn, head, x, batch["teacher_index"])


def _sums(cfg, tcfg, mesh, params, batch, teacher: Teacher | None = None, reach=None):
    """(summed weighted loss, correct count, cross-entropy) of one micro-batch (fused LM head
    and loss; with `tcfg.kd` on, against `teacher`; `reach`: see `make_train_step`)."""
    dtype = jnp.dtype(tcfg.compute_dtype)
    x = _hidden(cfg, params, batch["tokens"], batch["segment_ids"], dtype, tcfg.remat, mesh,
                reach)
    logits_fn, head = output_head(cfg, params, dtype)
    loss, correct, nll = fused_distill_loss(tcfg.kd, logits_fn, tcfg.loss_chunk, head, x,
                                            batch["targets"], batch["weights"], teacher)
    return loss, (correct, nll)


def batch_sharding(mesh: Mesh, shape: tuple[int, ...]) -> NamedSharding:
    """Rows split over (data, fsdp); for [A, B, T] train batches and [B, T] eval batches."""
    axes = ("batch", "seq") if len(shape) == 2 else (None, "batch", "seq")
    return named_sharding(mesh, axes, shape)


def batch_shapes(tcfg: TrainConfig, lead: tuple[int, ...] = ()) -> dict[str, tuple[int, ...]]:
    """The shape of every array of a batch: `lead` + (batch_size, tokens); with token-level
    distillation also the teacher's rows and, per student position, its aligned teacher
    position (`teacher_index`)."""
    rows = (*lead, tcfg.batch_size)
    shapes = dict.fromkeys(("tokens", "targets", "segment_ids", "weights"), (*rows, tcfg.seq_len))
    if tcfg.kd.enabled:
        shapes |= dict.fromkeys(("teacher_tokens", "teacher_segment_ids"),
                                (*rows, tcfg.teacher_seq_len))
        shapes["teacher_index"] = (*rows, tcfg.seq_len)
    return shapes


def batch_shardings(mesh: Mesh, tcfg: TrainConfig, lead: tuple[int, ...] = ()
                    ) -> dict[str, NamedSharding]:
    return {k: batch_sharding(mesh, shape) for k, shape in batch_shapes(tcfg, lead).items()}


@dataclasses.dataclass(frozen=True)
class TeacherModel:
    """A frozen teacher in the train step: its shapes and its weights' shardings."""

    cfg: ModelConfig
    shardings: dict[str, NamedSharding]


def make_train_step(cfg: ModelConfig, tcfg: TrainConfig, tx: optax.GradientTransformation,
                    schedule: optax.Schedule, shardings: TrainState, mesh: Mesh,
                    frozen_shardings: dict | None = None, teacher: TeacherModel | None = None,
                    reach: int | None = None
                    ) -> Callable[[TrainState, dict, dict, dict], tuple[TrainState, Metrics]]:
    """`step(state, frozen, teacher_params, batch) -> (state, metrics)`, jitted, `state` donated.

    The model's weights are `{**frozen, **state.params}`, and only `state.params` are trained:
    with LoRA `frozen` is the base (and the adapters' scale), in full fine-tuning it is {}.
    `frozen_shardings` are its shardings (None: {}). With `tcfg.kd` on, `teacher` describes the
    frozen teacher whose weights are `teacher_params` (else {}). `batch` holds the arrays of
    `batch_shapes(tcfg, (grad_accum,))`: int32 tokens / targets / segment_ids (and the
    teacher's), float32 weights; no segment of its rows is longer than `reach` (attention on
    CPU skips keys further back). Metrics: replicated fp32 scalars ("ce": KD's cross-entropy).
    """
    if tcfg.kd.enabled != (teacher is not None):
        raise ValueError(f"kd.divergence={tcfg.kd.divergence!r} with teacher={teacher}")

    def sums(params, frozen, teacher_params, mb):
        t = (None if teacher is None else
             run_teacher(teacher.cfg, tcfg, mesh, teacher_params, mb))
        return _sums(cfg, tcfg, mesh, {**frozen, **params}, mb, t, reach)

    grad_fn = jax.value_and_grad(sums, has_aux=True)

    def step(state: TrainState, frozen: dict, teacher_params: dict, batch: dict
             ) -> tuple[TrainState, Metrics]:
        def micro(carry, mb):
            grads, totals = carry
            (loss, (correct, nll)), g = grad_fn(state.params, frozen, teacher_params, mb)
            totals = jax.tree.map(jnp.add, totals, (loss, correct, nll))
            return (jax.tree.map(jnp.add, grads, g), totals), None

        if batch["tokens"].shape[0] == 1:
            (loss, (correct, nll)), grads = grad_fn(state.params, frozen, teacher_params,
                                                    jax.tree.map(lambda x: x[0], batch))
        else:
            zeros = jax.tree.map(jnp.zeros_like, state.params)
            (grads, (loss, correct, nll)), _ = jax.lax.scan(micro, (zeros, (0.0, 0.0, 0.0)),
                                                            batch)
        count = jnp.sum(batch["weights"])
        denom = jnp.maximum(count, 1.0)
        # the mean once, into buffers of its own: the sums are then freed (`optim.computed_once`)
        grads = jax.lax.optimization_barrier(
            jax.tree.map(lambda g: g / denom.astype(g.dtype), grads))
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {"loss": loss / denom, "accuracy": correct / denom,
                   "grad_norm": optax.tree.norm(grads), "lr": schedule(state.step),
                   "loss_tokens": count,
                   "tokens": jnp.sum(batch["segment_ids"] != 0).astype(jnp.float32)}
        if teacher is not None:
            metrics["ce"] = nll / denom
        return TrainState(state.step + 1, params, opt_state), metrics

    replicated = NamedSharding(mesh, PartitionSpec())
    in_shardings = (shardings, frozen_shardings or {}, teacher.shardings if teacher else {},
                    batch_shardings(mesh, tcfg, (tcfg.grad_accum,)))
    return jax.jit(step, in_shardings=in_shardings, out_shardings=(shardings, replicated),
                   donate_argnums=0, compiler_options=compiler_options(mesh))


def compiler_options(mesh: Mesh) -> dict[str, str]:
    """XLA options of the train step on `mesh`'s platform.

    XLA:CPU's default scheduler orders the program for concurrency: it starts independent work
    early, so the zero-filled gradient buffers of the backward pass were made during the
    forward, and the optimizer's buffers overlapped the backward's. Its memory-minimising
    scheduler runs the same ops in another order (bitwise the same result). With the
    gradients' mean and clip computed once (`optim.computed_once`), the temporaries of
    Qwen2.5-0.5B's full fine-tune step go from 5.06 to 3.87 GB (either change alone: none).
    """
    if mesh.devices.flat[0].platform != "cpu":
        return {}
    return {"xla_cpu_scheduler_type": "CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED"}


def make_eval_step(cfg: ModelConfig, tcfg: TrainConfig, param_shardings: dict, mesh: Mesh,
                   teacher: TeacherModel | None = None, reach: int | None = None
                   ) -> Callable[[dict, dict, dict], Metrics]:
    """`eval(params, teacher_params, batch) -> {"loss_sum", "correct", "loss_tokens"}` for a
    [B, T] batch (the loss of the train step: with `tcfg.kd` on, against the teacher; `reach`
    as there).

    `params` is every weight the forward reads (with LoRA, the base and the adapters).
    """

    def evaluate(params, teacher_params, batch):
        t = None if teacher is None else run_teacher(teacher.cfg, tcfg, mesh, teacher_params,
                                                      batch)
        loss, (correct, _) = _sums(cfg, tcfg, mesh, params, batch, t, reach)
        return {"loss_sum": loss, "correct": correct, "loss_tokens": jnp.sum(batch["weights"])}

    in_shardings = (param_shardings, teacher.shardings if teacher else {},
                    batch_shardings(mesh, tcfg))
    return jax.jit(evaluate, in_shardings=in_shardings,
                   out_shardings=NamedSharding(mesh, PartitionSpec()))


def longest_segment(segment_ids: np.ndarray) -> int:
    """The most tokens of one segment (a run of equal non-zero ids) in any row of
    `segment_ids` [..., T]: what a train step's `reach` must be at least."""
    ids = np.asarray(segment_ids).reshape(-1, segment_ids.shape[-1])
    if not ids.size:
        return 0
    # run starts: the first token of a row, and every change of id
    starts = np.ones(ids.shape, bool)
    starts[:, 1:] = ids[:, 1:] != ids[:, :-1]
    flat_start = np.flatnonzero(starts.ravel())
    runs = np.diff(np.append(flat_start, ids.size))
    return int(runs[ids.ravel()[flat_start] != 0].max(initial=0))
