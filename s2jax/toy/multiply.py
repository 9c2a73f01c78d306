"""`s2jax toy multiply`: k x k multiplication learned from scratch, with and without the trace.

The stepwise-internalization experiment of Deng et al. at a size a CPU allows: a Llama of the
toy recipe's shape (`s2jax.toy.pretrain`: its tokenizer recipe and `ModelConfig`), randomly
initialised, trained on seeded multiplication examples (`s2jax.tasks.multiplication`) by the
shared fine-tuning loop. Two arms on the same budget of optimizer steps, rows and tokens:

  stepwise     question -> "<partial-product trace>\\n#### <answer>", the trace removed
               `tokens_per_stage` tokens per stage (`s2jax.train.curriculum`), the student
               evaluated after every stage (System 1's prompt: the question alone)
  answer-only  question -> "#### <answer>" for as many steps as the stepwise arm takes

Artifacts under the output directory: train/ (the fine-tuning run: checkpoints, metrics,
model/), eval/<system>.json (the student after each stage, and at the end), results.json
(config, parameters, per-stage rows, final row, seconds), curve.png. A killed run resumes from
its checkpoints and keeps the evaluations it finished.
"""

from __future__ import annotations

import dataclasses
import json
import resource
import time
from pathlib import Path

from s2jax.core.atomic import write_json
from s2jax.core.errors import S2JaxError
from s2jax.core.hashing import json_hash
from s2jax.core.ownership import MULTIPLY, check_dir, claim_dir
from s2jax.core.text_generator import SamplingParams
from s2jax.distill.evaluate import EvalResult, evaluate
from s2jax.distill.trace import trace_reply, trace_task
from s2jax.methods import method
from s2jax.run.stepwise import StageEvaluations
from s2jax.tasks import multiplication as mult


@dataclasses.dataclass(frozen=True)
class MultiplyConfig:
    """One arm of the experiment. Defaults: 3 x 3 digits, a 0.8M-parameter model."""

    k: int = 3  # digits per operand
    stepwise: bool = True  # trace + removal curriculum; False: the answer-only arm
    train_examples: int = 40_000  # seeded training questions (repeats allowed)
    test: int = 200  # distinct held-out questions (pairs of the "test" split)
    # -- the model (the toy recipe's Llama, from scratch)
    hidden_size: int = 128
    intermediate_size: int = 384
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 4
    head_dim: int = 32
    vocab_size: int = 300  # byte-level BPE: bytes, specials, and " 0".." 9" etc. as tokens
    # -- training (a constant learning rate, as Deng et al.; reset per stage)
    batch_size: int = 16  # packed rows per step
    seq_len: int = 256
    learning_rate: float = 1e-3
    warmup_steps: int = 20  # per stage
    first_stage_steps: int = 1500  # full traces (stepwise arm)
    steps_per_stage: int = 300
    tokens_per_stage: int = 8
    smoothing: float = 0.0  # removal smoothing lambda (the paper: 4)
    compute_dtype: str = "float32"
    seed: int = 0

    def __post_init__(self):
        if not 1 <= self.k <= mult.MAX_K:
            raise S2JaxError(f"--k {self.k}: expected 1..{mult.MAX_K}")
        for name in ("train_examples", "test", "steps_per_stage", "tokens_per_stage"):
            if getattr(self, name) < 1:
                raise S2JaxError(f"--{name.replace('_', '-')} {getattr(self, name)}: "
                                 "expected >= 1")


def rows(config: MultiplyConfig, stepwise: bool) -> list[dict]:
    """The training rows: System 1's prompt -> trace and answer (with its `trace`), or answer."""
    out = []
    for a, b in mult.pairs(config.train_examples, config.seed, config.k):
        user = {"role": "user", "content": mult.question(a, b, config.k)}
        trace = mult.trace(a, b, config.k) + "\n" if stepwise else ""
        reply = {"role": "assistant", "content": trace_reply(trace, mult.answer(a, b, config.k))}
        out.append({"messages": [user, reply], **({"trace": trace} if trace else {})})
    return out


def train_config(config: MultiplyConfig, steps: int):
    """The fine-tuning config of an arm (`steps` 0: the curriculum's own length)."""
    # JAX and co. only when an arm runs: the CLI parser imports this module for MultiplyConfig
    from s2jax.train import TrainConfig
    from s2jax.train.config import CurriculumConfig

    curriculum = (CurriculumConfig(config.tokens_per_stage, config.steps_per_stage,
                                   config.first_stage_steps, smoothing=config.smoothing)
                  if config.stepwise else CurriculumConfig())
    return TrainConfig(steps=steps, seq_len=config.seq_len, batch_size=config.batch_size,
                       learning_rate=config.learning_rate, warmup_steps=config.warmup_steps,
                       schedule="constant", b2=0.98, seed=config.seed,
                       compute_dtype=config.compute_dtype, log_every=10, progress=False,
                       curriculum=curriculum)


def budget(config: MultiplyConfig, tokenizer) -> tuple[int, int]:
    """(stages, optimizer steps) of the stepwise arm: the answer-only arm takes as many steps."""
    # JAX and co. only when an arm runs: the CLI parser imports this module for MultiplyConfig
    from s2jax.train.curriculum import num_stages, total_steps
    from s2jax.train.data import tokenize_examples

    stepwise = dataclasses.replace(config, stepwise=True)
    data = tokenize_examples(tokenizer, rows(stepwise, True)[:2000])  # one length per k
    c = train_config(stepwise, 0).curriculum
    stages = num_stages(data, c)
    return stages, total_steps(c, stages)


def _model(config: MultiplyConfig):
    """A random toy-recipe Llama and its tokenizer, trained on both arms' texts."""
    # JAX and co. only when an arm runs: the CLI parser imports this module for MultiplyConfig
    from flax import nnx

    from s2jax.models.module import Transformer
    from s2jax.toy.pretrain import PretrainConfig, model_config, tokenizer_for

    shape = PretrainConfig(vocab_size=config.vocab_size, hidden_size=config.hidden_size,
                           intermediate_size=config.intermediate_size,
                           num_layers=config.num_layers, num_heads=config.num_heads,
                           num_kv_heads=config.num_kv_heads, head_dim=config.head_dim)
    sample = dataclasses.replace(config, train_examples=500)
    chats = [r["messages"] for arm in (True, False) for r in rows(sample, arm)]
    tokenizer = tokenizer_for(chats, config.vocab_size)
    cfg = model_config(shape, tokenizer)
    return Transformer(cfg, rngs=nnx.Rngs(config.seed)), tokenizer


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_multiply(config: MultiplyConfig, out: str | Path, *, log=print) -> dict:
    """Trains one arm from scratch, evaluating after every stage; writes the artifacts.

    Returns:
      results.json's contents.
    """
    # JAX and co. only when an arm runs: the CLI parser imports this module for MultiplyConfig
    from s2jax.models.params import num_params
    from s2jax.sampling import Sampler
    from s2jax.toy.report import curve
    from s2jax.train import finetune

    # a rerun resumes its own arm's dir; a user's dir or another config's is refused
    key = json_hash(dataclasses.asdict(config))
    check_dir(out, "--out", MULTIPLY, key=key, key_name="config")
    start, cpu0 = time.perf_counter(), _cpu_seconds()
    model, tokenizer = _model(config)
    stages, steps = budget(config, tokenizer)
    test = mult.synthesize(config.test, config.seed, config.k, split="test")
    task = trace_task(mult.task(config.k))
    program = method("system1", task.system1)
    longest = len(tokenizer(rows(config, True)[0]["messages"][1]["content"])["input_ids"])
    params = SamplingParams(temperature=0.0, max_new_tokens=longest + 16)
    sampler = Sampler(model, tokenizer, max_batch=64, max_len=params.max_new_tokens + 64)

    def evaluate_as(system: str) -> EvalResult:
        path = out / "eval" / f"{system}.json"  # a resumed run keeps what it evaluated
        if path.is_file():
            return EvalResult(**json.loads(path.read_text()))
        row = evaluate(system, program, task, test, sampler, params)
        write_json(path, row.to_json())
        log(f"[multiply k={config.k}] {system}: {row.accuracy:.1f}% at "
            f"{row.tokens_per_answer:.1f} tokens/answer")
        return row

    out = claim_dir(out, "--out", MULTIPLY, key=key, key_name="config")  # inputs checked
    staged = StageEvaluations(evaluate_as, sampler, model, train_config(config, 0).curriculum)
    arm = train_config(config, 0 if config.stepwise else steps)
    finetune(model, tokenizer, rows(config, config.stepwise), arm, out / "train",
             on_stage=staged if config.stepwise else None)
    sampler.set_params(model.params())
    final = evaluate_as("final")
    summary = json.loads((out / "train" / "summary.json").read_text())
    results = {
        "config": dataclasses.asdict(config), "params": num_params(model.config),
        "arm": "stepwise" if config.stepwise else "answer-only", "steps": steps,
        "stages": stages, "tokens_per_step": config.batch_size * config.seq_len,
        "curriculum": staged.table(), "final": final.to_json(),
        "train_seconds": summary["seconds"], "seconds": round(time.perf_counter() - start, 1),
        "cpu_seconds": round(_cpu_seconds() - cpu0, 1), "final_loss": summary.get("loss"),
    }
    write_json(out / "results.json", results)
    points = {"final": (final.tokens_per_answer, final.accuracy)}
    curve({results["arm"]: {"stages": results["curriculum"], "points": points}},
          out / "curve.png", f"{config.k} x {config.k} multiplication, {results['params']:,} "
          f"parameters, {steps} steps")
    return results

