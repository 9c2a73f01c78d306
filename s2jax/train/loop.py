"""`finetune`: the training driver (data, state, step, checkpoints, eval, logs, export).

The host never waits on the device inside the loop: it dispatches step s+1 before it reads the
metrics of step s. It does wait before a checkpoint, to check that every step up to it had a
finite loss, so a checkpoint never holds a state that came out of a NaN or Inf step.

With a removal curriculum (`TrainConfig.curriculum`, `s2jax.train.curriculum`) the batches come
from `StagedBatches`, the optimizer is reset where a stage begins, a checkpoint closes every
stage, and `on_stage(stage, step)` runs after it with the model holding that stage's weights
(again on resume from a stage's last step, so an evaluation the kill interrupted is completed).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm import tqdm

from s2jax.core import host_memory
from s2jax.core.atomic import write_json
from s2jax.core.errors import NonResult, RunFailed, S2JaxError
from s2jax.core.memory import check_fits
from s2jax.core.ownership import TRAIN_RUN, claim_dir
from s2jax.models.attention import step_reach
from s2jax.models.hf import save_model
from s2jax.models.loading import params_identity
from s2jax.models.lora import init_adapters, merge, save_peft, with_scale
from s2jax.models.params import num_params, param_shardings
from s2jax.models.projection import LORA_SCALE
from s2jax.parallel.distributed import is_writer
from s2jax.parallel.remote_root import publish as publish_root
from s2jax.parallel.sharding import mesh_from_spec, mesh_of
from s2jax.train.checkpoint import Checkpoints
from s2jax.train.config import CurriculumConfig, KDConfig, TrainConfig
from s2jax.train.curriculum import (
    StagedBatches,
    num_stages,
    stage_ends,
    stage_of,
    total_steps,
)
from s2jax.train.data import Batch, Batches, TokenizedExample, eval_batches, tokenize_examples
from s2jax.train.metrics import MetricsLog
from s2jax.train.optim import learning_rate_schedule, make_optimizer
from s2jax.train.state import plan_state
from s2jax.train.step import (
    TeacherModel,
    batch_shardings,
    longest_segment,
    make_eval_step,
    make_train_step,
)

# Fields that may differ between a killed run and its resumption without changing its math.
_RESUMABLE_CHANGES = ("progress", "export", "log_every", "eval_every")
# Fields added to train_config.json later, with the value a run written before them had.
_ADDED_FIELDS = {"curriculum": dataclasses.asdict(CurriculumConfig()),
                 "kd": dataclasses.asdict(KDConfig()), "teacher": None}


def train_mesh(model, config: TrainConfig, mesh: Mesh | None) -> Mesh:
    """The mesh a run trains on: `config.mesh`, else `mesh`, else the model's own."""
    return mesh_from_spec(config.mesh) or mesh_of(model.param("embed").get_value(), mesh)


def _fingerprint(examples: Sequence[TokenizedExample]) -> str:
    h = hashlib.sha256()
    for ex in examples:
        h.update(np.asarray(ex.ids, np.int32).tobytes())
        h.update(np.packbits(ex.loss_mask).tobytes())
        if ex.trace != (0, 0):  # sets without traces keep the fingerprints they had
            h.update(np.asarray(ex.trace, np.int64).tobytes())
        if ex.teacher_ids is not None:  # likewise sets without a teacher context
            h.update(np.asarray(ex.teacher_ids, np.int32).tobytes())
            h.update(np.packbits(ex.teacher_loss_mask).tobytes())
    return h.hexdigest()[:16]


def recorded_config(run_dir: str | Path) -> dict | None:
    """The train_config.json of the run in `run_dir`, if it has one."""
    path = Path(run_dir) / "train_config.json"
    if not path.is_file():
        return None
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise S2JaxError(f"{path}: not valid JSON; the run dir is damaged; use a new run "
                         "dir") from None
    return old if isinstance(old, dict) else {}


def check_base(run_dir: str | Path, base: str) -> None:
    """Refuses to resume a run in `run_dir` that started from other base weights."""
    old = recorded_config(run_dir)
    if old is not None and old.get("base") not in (None, base):
        raise S2JaxError(f"{Path(run_dir) / 'train_config.json'}: the run there started from "
                         f"other base weights (identity {old.get('base')}, this run's base "
                         f"{base}); use a new run dir")


def _check_resume(run_dir: Path, record: dict, resuming: bool, writer: bool) -> None:
    """Writes the run's config; a resumed run must have the same one."""
    path = run_dir / "train_config.json"
    record = json.loads(json.dumps(record))  # tuples as the JSON read back has them: lists
    old = recorded_config(run_dir) if resuming else None
    if old is not None:
        check_base(run_dir, record["base"])
        old = {**_ADDED_FIELDS, **old}
        diff = [k for k in record if k not in _RESUMABLE_CHANGES and old.get(k) != record[k]]
        if diff:
            k = diff[0]
            raise S2JaxError(f"{path}: {k}={old.get(k)!r} but this run has {k}={record[k]!r}; "
                             "resume with the same config and data, or use a new run dir")
    if writer:
        write_json(path, record)


def _check_host_rows(data: list[TokenizedExample], config: TrainConfig) -> None:
    """Refuses before allocating when an epoch's rows (4 arrays of seq_len per row, on the
    host) cannot fit: next-fit packing makes at most twice the rows the tokens need."""
    rows = len(data)
    if config.pack:
        tokens = sum(min(len(ex.ids), config.seq_len) for ex in data)
        rows = min(rows, 2 * math.ceil(tokens / config.seq_len))
    rows = max(rows, config.batch_size * config.grad_accum)  # and one step's batch
    check_fits(2 * 16 * rows * config.seq_len, f"train data: {rows} rows of seq_len="
               f"{config.seq_len}", "lower seq_len or batch_size")


def _check_loss_tokens(data: list[TokenizedExample], seq_len: int) -> None:
    """Raises when no example keeps a loss token within `seq_len` (rows are cut there): the
    run would train on nothing and export its base unchanged."""
    if not any(ex.loss_mask[1:seq_len].any() for ex in data):
        longest = max(len(ex.ids) for ex in data)
        raise NonResult(f"train data: none of the {len(data)} examples has a token to learn "
                        f"within seq_len={seq_len} (the longest has {longest} tokens; answers "
                        "come last and are cut off); raise seq_len or shorten the prompts")


def _split(examples: list[TokenizedExample], n: int, seed: int):
    if not n:
        return examples, []
    if n >= len(examples):
        raise S2JaxError(f"eval_examples={n}: only {len(examples)} examples in all")
    held = set(np.random.default_rng([seed, 7919]).permutation(len(examples))[:n].tolist())
    return ([e for i, e in enumerate(examples) if i not in held],
            [e for i, e in enumerate(examples) if i in held])


def schedule_steps(config: TrainConfig, total: int) -> int:
    """Steps one learning-rate schedule spans: the run, or a stage when each stage resets it."""
    c = config.curriculum
    return min(c.steps_per_stage, total) if c.enabled and c.reset_optimizer else total


def check_schedule(config: TrainConfig, total: int) -> None:
    """Refuses a run whose learning rate is 0 at every step: it would export the base model."""
    total = schedule_steps(config, total)
    schedule = learning_rate_schedule(config, total)
    # warmup rises from 0 and decay starts at the peak: the first warmup+1 steps decide it
    if max(float(schedule(s)) for s in range(min(total, config.warmup_steps + 1))) == 0.0:
        raise S2JaxError(f"train config: the learning rate is 0 at every one of the {total} "
                         f"steps (learning_rate={config.learning_rate}, warmup_steps="
                         f"{config.warmup_steps}); raise learning_rate or steps, or lower "
                         "warmup_steps")


def _check_finite(params: dict, step: int, checkpoints: Checkpoints) -> None:
    """Raises when an update made a weight NaN or Inf (the loss of that step was still finite)."""
    bad = [name for name, ok in jax.device_get(
        {k: jnp.isfinite(v).all() for k, v in params.items()}).items() if not ok]
    if bad:
        checkpoints.wait()
        good = checkpoints.latest_step()
        kept = (f"the last good checkpoint is step {good} in {checkpoints.directory}"
                if good is not None else "no checkpoint was saved")
        raise RunFailed(f"step {step}: the update made {len(bad)} weight(s) non-finite (first: "
                         f"{bad[0]}); this state was not saved; {kept}; lower learning_rate")


def _put(batch: Batch, shardings: dict) -> dict[str, jax.Array]:
    """The batch on the mesh; each process hands over only the slices its devices hold."""
    return {k: jax.make_array_from_callback(v.shape, shardings[k], lambda idx, v=v: v[idx])
            for k, v in batch.items()}


def _step_schedule(config: TrainConfig, total: int, stages: int):
    """The learning rate of the step after `state.step` steps, as the optimizer applies it
    (with per-stage resets: the schedule's position within the stage)."""
    schedule = learning_rate_schedule(config, schedule_steps(config, total))
    c = config.curriculum
    if not (c.enabled and c.reset_optimizer and stages > 1):
        return schedule
    first, per = c.first_steps, c.steps_per_stage

    def within_stage(step):  # `step` steps done: the next step's position in its stage
        later = first + jnp.minimum((step - first) // per, stages - 2) * per
        return schedule(step - jnp.where(step < first, 0, later))

    return within_stage


def _teacher(model, tokenizer, config: TrainConfig, teacher, teacher_tokenizer):
    """(teacher model, teacher tokenizer) of a run with `config.kd` on (default: the student
    and its tokenizer), checked to share the student's vocabulary; (None, None) without KD."""
    if not config.kd.enabled:
        return None, None
    teacher = model if teacher is None else teacher
    where = f"train config kd.divergence={config.kd.divergence}"
    if teacher.config.vocab_size != model.config.vocab_size:
        raise S2JaxError(f"{where}: the teacher's vocabulary ({teacher.config.vocab_size}) is "
                         f"not the student's ({model.config.vocab_size}); distil through text "
                         "(sequence-level) instead")
    if teacher_tokenizer is not None and teacher_tokenizer is not tokenizer and \
            teacher_tokenizer.get_vocab() != tokenizer.get_vocab():
        raise S2JaxError(f"{where}: the teacher's tokenizer is not the student's; token-level "
                         "distillation needs one tokenizer (distil through text, "
                         "sequence-level, instead)")
    return teacher, teacher_tokenizer or tokenizer


def _describe(model) -> dict:
    """What identifies a teacher in train_config.json (a resumed run must have the same)."""
    return {"architecture": model.config.architecture, "params": num_params(model.config),
            "identity": getattr(model, "identity", None) or params_identity(model.params())}


def compiled_run(cfg, config: TrainConfig, total: int, mesh: Mesh, stages: int = 0,
                 teacher_cfg=None, reach: int | None = None):
    """State init, restore target, the jitted train and eval steps of a run, the shardings
    of the frozen weights (with LoRA the base and the adapters' scale; else none), and the
    jitted optimizer reset of a curriculum's stages. `teacher_cfg`: the frozen teacher's
    shapes, with `config.kd` on. `reach`: the most tokens of one example in any row (None:
    seq_len); the steps are compiled for `step_reach` of it (see `make_train_step`).

    Cached: a process that calls `finetune` again with one config (the demo) compiles once.
    The fields the compiled functions never read are fixed first, so that runs differing only
    in them (on-policy rounds: one seed a round) share one compilation."""
    return _compiled_run(cfg, dataclasses.replace(config, seed=0, export=True, progress=False),
                         total, mesh, stages, teacher_cfg,
                         None if reach is None else step_reach(reach, config.seq_len))


@functools.lru_cache(maxsize=8)
def _compiled_run(cfg, config: TrainConfig, total: int, mesh: Mesh, stages: int,
                  teacher_cfg, reach: int | None):
    tx = make_optimizer(config, schedule_steps(config, total))
    init, target = plan_state(cfg, tx, mesh, jnp.dtype(config.param_dtype), config.lora)
    shardings = jax.tree.map(lambda x: x.sharding, target)
    frozen = ({**param_shardings(cfg, mesh), LORA_SCALE: NamedSharding(mesh, PartitionSpec())}
              if config.lora.enabled else {})
    teacher = (TeacherModel(teacher_cfg, param_shardings(teacher_cfg, mesh))
               if config.kd.enabled else None)
    train_step = make_train_step(cfg, config, tx, _step_schedule(config, total, stages),
                                 shardings, mesh, frozen, teacher, reach)
    evaluate = make_eval_step(cfg, config, {**frozen, **shardings.params}, mesh, teacher,
                              reach)
    reset = jax.jit(tx.init, in_shardings=(shardings.params,),
                    out_shardings=shardings.opt_state)
    return init, target, train_step, evaluate, frozen, reset


class _Progress:
    """Reads step metrics one step late, logs them, and drives the progress bar."""

    def __init__(self, log: MetricsLog, config: TrainConfig, total: int, start: int,
                 checkpoints: Checkpoints):
        self.log, self.config, self.checkpoints = log, config, checkpoints
        self.bar = tqdm(total=total, initial=start, unit="step",
                        disable=not (config.progress and is_writer()),
                        dynamic_ncols=True, desc="train")
        self.pending: tuple[int, dict] | None = None
        self.last: dict[str, float] = {}
        # (time, tokens) of the last reads: tokens/s over a window, as one-step-late reads
        # (and the extra reads before checkpoints) make single-step intervals jitter
        self.window: collections.deque = collections.deque([(time.perf_counter(), 0.0)],
                                                           maxlen=11)

    def push(self, step: int, metrics: dict) -> None:
        """Queues `step`'s device metrics, and reports the previously queued step."""
        self.flush()
        self.pending = (step, metrics)

    def flush(self) -> None:
        if self.pending is None:
            return
        step, metrics = self.pending
        self.pending = None
        values = {k: float(v) for k, v in jax.device_get(metrics).items()}
        self.window.append((time.perf_counter(), values["tokens"]))
        (t0, _), (t1, _) = self.window[0], self.window[-1]
        values["tokens_per_s"] = sum(n for _, n in list(self.window)[1:]) / max(t1 - t0, 1e-9)
        if not (math.isfinite(values["loss"]) and math.isfinite(values["grad_norm"])):
            self.checkpoints.wait()
            good = self.checkpoints.latest_step()
            kept = (f"the last good checkpoint is step {good} in {self.checkpoints.directory}"
                    if good is not None else "no checkpoint was saved")
            raise RunFailed(f"step {step}: loss is {values['loss']} (grad norm "
                             f"{values['grad_norm']}); training stopped and this state was not "
                             f"saved; {kept}; lower learning_rate or check the data")
        self.last = values
        if step % self.config.log_every == 0:
            self.log.write(step, values)
        self.bar.set_postfix(loss=f"{values['loss']:.4f}", lr=f"{values['lr']:.2e}",
                             tok_s=f"{values['tokens_per_s']:.0f}", refresh=False)
        self.bar.update(step - self.bar.n)

    def close(self) -> None:
        self.bar.close()


def _batches(data: list[TokenizedExample], config: TrainConfig, teacher_seq_len: int | None
             ) -> tuple[Batches, int, int]:
    """The run's batch stream, its total steps, and its curriculum stages (0: none)."""
    kwargs = dict(seq_len=config.seq_len, batch_size=config.batch_size,
                  grad_accum=config.grad_accum, packed=config.pack, seed=config.seed,
                  teacher_seq_len=teacher_seq_len)
    c = config.curriculum
    if c.enabled and any(ex.teacher_ids is not None for ex in data):
        # the trace removal shortens the student's answer only: the k-th loss token of each
        # would no longer be the same answer token
        raise S2JaxError("train config curriculum.tokens_per_stage > 0 with rows' "
                         "teacher_messages (a teacher context): not supported; drop one of them")
    if c.enabled:
        stages = num_stages(data, c)
        return (StagedBatches(data, c, stages, **kwargs),
                config.steps or total_steps(c, stages), stages)
    batches = Batches(data, **kwargs)
    return batches, config.steps or max(1, math.ceil(
        config.epochs * batches.rows_per_epoch() / config.rows_per_step)), 0


def _within(batch: dict, reach: int) -> dict:
    """`batch`, whose rows hold no example longer than the `reach` the step was compiled for
    (a longer one would lose its first tokens from later tokens' attention)."""
    longest = longest_segment(batch["segment_ids"])
    if longest > reach:
        raise AssertionError(f"a batch holds an example of {longest} tokens; the train step was "
                             f"compiled for at most {reach}")
    return batch


def _write_back(model, params: dict) -> None:
    """Puts trained weights into `model`, each in the dtype the model holds it in."""
    for name, value in params.items():
        # back onto the model's own shardings: the sampler's mesh where the train step ran on
        # another, resharded device to device
        old = model.param(name).get_value()
        model.param(name).set_value(jax.device_put(value.astype(old.dtype), old.sharding))
    model.identity = None  # the weights are no longer the files' it was loaded from


def finetune(model, tokenizer, examples: Sequence[Any], config: TrainConfig,
             run_dir: str | Path, *, eval_examples: Sequence[Any] | None = None,
             mesh: Mesh | None = None, on_stage: Callable[[int, int], None] | None = None,
             teacher=None, teacher_tokenizer=None, checkpoint_dir=None, adapters=None,
             final_checkpoint: bool = True, reach: int | None = None):
    """Fine-tunes `model` on chat examples; resumes from `run_dir`'s last checkpoint if any.

    Args:
      model: a `Transformer` (e.g. from `s2jax.load`); its weights are replaced by the result
        (with LoRA, by the merged weights; the adapters alone go to run_dir/adapter).
      tokenizer: the checkpoint's tokenizer (its chat template renders the examples).
      examples: rows with `messages` (or `prompt` + `completion`, or `text`), chats (lists of
        {role, content}), raw strings, or `TokenizedExample`s.
      config: the run's `TrainConfig`.
      run_dir: where checkpoints/, metrics.jsonl, tb/, train_config.json, summary.json and
        (with `config.export`) the exported HF model/ go, and with LoRA the PEFT adapter/.
      eval_examples: held-out examples for the eval loss; default: `config.eval_examples`
        examples split off `examples`.
      mesh: the (data, fsdp, tensor) mesh; default: `config.mesh`, else the model's own.
      on_stage: with a curriculum, `on_stage(stage, step)` after each stage's last step (its
        checkpoint written, the model holding its weights); it must be idempotent (see the
        module docstring).
      teacher: with `config.kd` on, the frozen teacher (a `Transformer` over the student's
        vocabulary); default: the student's own weights as they were loaded (no copy).
      teacher_tokenizer: renders rows' `teacher_messages` (the teacher's own context);
        default: `tokenizer`. Rows without them show the teacher the student's context.
      checkpoint_dir: where the orbax checkpoints go (default `run_dir/checkpoints`); a
        gs:// path (`etils.epath.Path`) keeps them on the object store, shared by every host.
      adapters: with LoRA, the adapters to start from (e.g. an earlier round's, without their
        scale); default: fresh ones drawn from `config.seed`.
      final_checkpoint: write a checkpoint after the last step (default). False where the
        export is the run's only product and its checkpoints are deleted after it (a sweep's
        fine-tuning stage): the weights and Adam moments, three times the export's bytes, are
        not written; a run killed before its export lands retrains from its last periodic
        checkpoint (`checkpoint_every`), else from the start. Curriculum stage ends still save.
      reach: at least the longest example the step must take (default: the longest of
        `examples` and `eval_examples`; never less). Calls on data that changes from call to
        call (on-policy rounds) pass one bound, so their steps share one compilation.

    Returns:
      The model, holding the fine-tuned weights (in its original dtype). In a full fine-tune
      without KD the train state takes over the model's weight buffers while it trains (no
      second copy): arrays taken from `model.params()` before the call are deleted, and after
      an error the model holds none (load it again).
    """
    run_dir = Path(run_dir)
    cfg = model.config
    writer = is_writer()  # logs and JSON artifacts; orbax coordinates itself
    base = getattr(model, "identity", None) or params_identity(model.params())
    mesh = train_mesh(model, config, mesh)
    split = mesh.shape["data"] * mesh.shape["fsdp"]
    if config.batch_size % split:
        raise S2JaxError(f"train config batch_size={config.batch_size}: expected a multiple of "
                         f"data x fsdp = {split} (rows are split over them)")
    kd = config.kd.enabled
    teacher, t_tok = _teacher(model, tokenizer, config, teacher, teacher_tokenizer)
    t_len = config.teacher_seq_len if kd else None
    data = tokenize_examples(tokenizer, examples, config.loss_on, stop_ids=cfg.eos_token_ids,
                             teacher_tokenizer=t_tok)
    if eval_examples is None:
        data, held = _split(data, config.eval_examples, config.seed)
    else:
        held = tokenize_examples(tokenizer, eval_examples, config.loss_on, "eval examples",
                                 cfg.eos_token_ids, teacher_tokenizer=t_tok)
    _check_loss_tokens(data, config.seq_len)
    _check_host_rows(data, config)
    cut = sum(len(e.ids) > config.seq_len for e in data)
    batches, total, stages = _batches(data, config, t_len)
    staged = lambda s: stage_of(s, config.curriculum, stages)
    ends_stage = lambda s: bool(stages) and stage_ends(s, total, config.curriculum, stages)

    check_schedule(config, total)
    claim_dir(run_dir, "run dir", TRAIN_RUN, writer=writer)  # input checked: now it writes
    checkpoints = Checkpoints(checkpoint_dir or run_dir / "checkpoints",
                              keep=config.keep_checkpoints)
    start = checkpoints.latest_step() or 0
    _check_resume(run_dir, {**dataclasses.asdict(config), "total_steps": total,
                            "examples": len(data), "data_fingerprint": _fingerprint(data),
                            "model": cfg.architecture, "base": base,
                            "teacher": _describe(teacher) if kd else None},
                  resuming=start > 0, writer=writer)
    # no example is longer in any row (curriculum stages only shorten them): attention skips
    # the keys further back (checked on every batch, `_within`)
    reach = min(config.seq_len, max([reach or 0, *(len(e.ids) for e in (*data, *held))]))
    init, target, train_step, evaluate, frozen_shardings, reset = compiled_run(
        cfg, config, total, mesh, stages, teacher.config if kd else None, reach)
    lora = config.lora
    # the frozen base stays in the model's dtype; only the trainable weights get `param_dtype`
    frozen = (jax.device_put(with_scale(lora, model.params()), frozen_shardings)
              if lora.enabled else {})
    # the teacher's weights as loaded (the student's own, by default: with LoRA the frozen
    # base, in full fine-tuning the loaded model's, which the optimizer never updates in place)
    teacher_params = (jax.device_put(teacher.params(), param_shardings(teacher.config, mesh))
                      if kd else {})
    if start:
        state, data_state = checkpoints.restore(start, target)
        batches.restore(data_state)
    elif lora.enabled:
        state = init(init_adapters(cfg, lora, jax.random.key(config.seed))
                     if adapters is None else adapters)
    else:
        # the model's buffers become the state's (one copy of the weights in memory, not two:
        # 4 bytes a parameter in fp32) until the trained weights are written back; a teacher
        # that is the student's own loaded weights still needs them
        state = init(model.params(), donate=not kd)
    held_batches = eval_batches(held, seq_len=config.seq_len, batch_size=config.batch_size,
                                packed=config.pack, teacher_seq_len=t_len) if held else []
    b_sharding = batch_shardings(mesh, config, (config.grad_accum,))
    e_sharding = batch_shardings(mesh, config)

    def run_eval(step: int) -> dict[str, float]:
        sums = [evaluate({**frozen, **state.params}, teacher_params,
                         _put(_within(b, reach), e_sharding)) for b in held_batches]
        total_sums = {k: float(sum(s[k] for s in jax.device_get(sums))) for k in sums[0]}
        n = max(total_sums["loss_tokens"], 1.0)
        result = {"eval_loss": total_sums["loss_sum"] / n,
                  "eval_accuracy": total_sums["correct"] / n}
        log.write(step, result)
        return result

    def trained() -> dict:
        return merge({**frozen, **state.params}) if lora.enabled else state.params

    def close_stage(s: int) -> None:
        if on_stage is not None:
            _write_back(model, trained())
            on_stage(staged(s), s)

    log = MetricsLog(run_dir, resume_step=start, writer=writer)
    progress = _Progress(log, config, total, start, checkpoints)
    evals: dict[str, float] = {}
    t0 = time.perf_counter()
    try:
        if start and ends_stage(start):  # its stage's evaluation may have been cut short
            close_stage(start)
        for s in range(start + 1, total + 1):
            if stages and (s == 1 or staged(s) != staged(s - 1)):
                progress.flush()  # the log stays in step order
                log.write(s, {"stage": staged(s)})
                if s > 1 and config.curriculum.reset_optimizer:
                    state = dataclasses.replace(state, opt_state=reset(state.params))
            state, metrics = train_step(state, frozen, teacher_params,
                                        _put(_within(next(batches), reach), b_sharding))
            progress.push(s, metrics)
            save = ((s == total and final_checkpoint) or ends_stage(s)
                    or (config.checkpoint_every and s % config.checkpoint_every == 0))
            if save or s == total:
                progress.flush()  # a checkpoint or export follows only steps known to be finite
                _check_finite(state.params, s, checkpoints)  # ... and holds finite weights
            if save:
                host_memory.release()  # the writer threads' buffers do not reuse the step's
                checkpoints.save(s, state, batches.state())
                publish_root()  # on a gs:// run root, the logs so far go with the checkpoint
            if held_batches and (s == total or (config.eval_every and s % config.eval_every == 0)):
                progress.flush()
                evals = run_eval(s)
            if ends_stage(s):
                close_stage(s)
        progress.flush()
        checkpoints.wait()
    finally:
        progress.close()
        log.close()
        checkpoints.close()

    _write_back(model, trained())
    # the optimizer's moments (8 bytes a parameter in fp32) go before the export, not after
    params, state = state.params, None
    seconds = time.perf_counter() - t0
    summary = {"steps": total, "resumed_from": start, "seconds": seconds,
               "examples": len(data), "examples_cut_to_seq_len": cut,
               "held_out_examples": len(held), **({"stages": stages} if stages else {}),
               **progress.last, **evals}
    if writer:
        write_json(run_dir / "summary.json", summary)
    if config.export:
        host_memory.release()
        save_model(model, tokenizer, run_dir / "model")
        if lora.enabled:
            save_peft(cfg, lora, params, run_dir / "adapter",
                      base_model=model.source)
    return model
