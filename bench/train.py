"""SFT step throughput: s2jax's jitted train step vs a `transformers` + torch AdamW loop.

Both sides train the same Llama config on the same random batch (every token a loss token), with
AdamW and global-norm clipping, one optimizer step per batch, on the CPU (default) or one GPU.
fp32 by default; `--dtype bfloat16` is mixed precision on both sides (fp32 master weights and
optimizer state, bf16 matmuls: s2jax's compute_dtype, torch autocast). Prints tokens/s, MFU
(model FLOPs over the best measured matmul rate of the device in that dtype, its practical peak),
the s2jax / torch ratio, and each library's own matmul rate, since on CPU the GEMM library
(XLA's vs torch's MKL) sets most of the ratio.

  python bench/train.py                     # ~5M and ~100M
  python bench/train.py --sizes 5m --steps 8
  python bench/train.py --device gpu --dtype bfloat16 --sizes smollm2-135m
  python bench/train.py --model smollm2-135m-instruct   # the real model, once fetched
  S2JAX_HOST_MALLOC=keep python bench/train.py  # glibc keeps freed memory (core/host_memory.py)
  python bench/train.py --distill --sizes smollm2-135m,qwen2.5-0.5b   # distillation-shaped
  python bench/train.py --model smollm2-135m-instruct --pack \
      --data docs/real_runs/confirm/stages/distill-*/set          # real capitals sets

`--distill`: each row is one example shaped as a distillation set (a prompt of 50-300 tokens,
an answer of 5-30, right-padded), and only the answer tokens carry loss: s2jax's loss sends
only those positions through the LM head; the torch side is a TRL-style completion-only loop
(labels -100 outside the answers, padding masked; the head computes every position).
`--distill --pack`: s2jax packs the same examples into rows (next-fit, `s2jax.train.data.pack`,
what `s2jax.train.finetune` does by default) while the torch side keeps one padded example a
row, as TRL's completion-only collator does; both rates count the same examples' tokens.
`--model M --data SET [SET ...]`: real distillation sets (each a `train.parquet` that `s2jax run`
or `s2jax vote` wrote, or its directory; e.g. the capitals sets of the committed confirmation run,
docs/real_runs/confirm/stages/distill-*/set: 6 of S2A and 6 of its System 1 control), rendered
with M's chat template and tokenizer as `s2jax.train.finetune` renders them
(`s2jax.train.data`), loss on the assistant turn. Each step takes the next `--batch` examples
(a seeded shuffle; default 8, TRL's per-device default and TrainConfig's rows) on both sides:
torch pads them to the step's longest, as TRL's collator does; s2jax pads them to the set's
longest (one compiled shape). With `--pack`, s2jax trains as its finetune does by default: the
shuffled examples packed next-fit into rows of `--seq-len` (default 512, TrainConfig's),
`--batch` rows a step; torch keeps `--batch` examples a step.

The host-malloc policy is the process's, so it applies to both sides alike.
"""

from __future__ import annotations

import argparse
import itertools
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled
# imported before the work starts threads: its host-memory policy (s2jax/core/host_memory.py)
import s2jax  # noqa: E402
from bench.common import s2jax_llama  # noqa: E402

# name -> (Llama shapes, batch, seq_len)
CONFIGS = {
    "5m": (dict(vocab_size=4096, hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                num_attention_heads=4, num_key_value_heads=4), 8, 256),
    "100m": (dict(vocab_size=8192, hidden_size=768, intermediate_size=2048,
                  num_hidden_layers=12, num_attention_heads=12, num_key_value_heads=12), 4, 256),
    # SmolLM2-135M's shapes (random weights): GQA 9/3 heads of 64, tied 49,152-token vocabulary
    "smollm2-135m": (dict(vocab_size=49152, hidden_size=576, intermediate_size=1536,
                          num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                          tie_word_embeddings=True), 4, 256),
    # Qwen2.5-0.5B's shapes: GQA 14/2 heads of 64, tied 151,936-token vocabulary
    "qwen2.5-0.5b": (dict(vocab_size=151936, hidden_size=896, intermediate_size=4864,
                          num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                          tie_word_embeddings=True), 4, 256),
    # 1B-class shapes for a GPU (bench/gpu_check.sh train_1b): Llama-3.2-1B (GQA 32/8 heads of 64,
    # tied 128,256-token vocabulary) and Qwen2.5-1.5B (GQA 12/2 heads of 128, without its q/k/v
    # biases: Llama layout)
    "llama3.2-1b": (dict(vocab_size=128256, hidden_size=2048, intermediate_size=8192,
                         num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
                         tie_word_embeddings=True), 4, 2048),
    "qwen2.5-1.5b": (dict(vocab_size=151936, hidden_size=1536, intermediate_size=8960,
                          num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2,
                          tie_word_embeddings=True), 4, 2048),
}
DISTILL_SEQ_LEN = 336  # the longest distillation-shaped example: 300 + 30 tokens, rounded up


TORCH_SLOWER_SKIP = 10  # the torch side is skipped where its matmul is this much slower


def distill_batch(batch: int, seq_len: int, vocab: int, seed: int = 0) -> dict:
    """Rows of one distillation-shaped example each (prompt 50-300 tokens, answer 5-30,
    right-padded to `seq_len`): tokens, targets, segment ids (0: padding) and loss weights (1
    on the answer's targets only)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    ids = rng.integers(0, vocab, (batch, seq_len + 1)).astype(np.int32)
    segment = np.zeros((batch, seq_len), np.int32)
    weights = np.zeros((batch, seq_len), np.float32)
    for r in range(batch):
        prompt = int(rng.integers(50, 301))
        answer = int(rng.integers(5, 31))
        n = min(prompt + answer, seq_len)
        segment[r, :n] = 1
        weights[r, prompt - 1:n - 1] = 1  # targets at positions prompt-1.. are answer tokens
    return {"tokens": ids[:, :-1], "targets": ids[:, 1:], "segment_ids": segment,
            "weights": weights}


def real_set(paths: list[str], tokenizer, seed: int = 0) -> tuple[list, list[int]]:
    """Distillation sets' examples (`s2jax.train.data.TokenizedExample`), tokenized as
    `s2jax.train.finetune` tokenizes them, and a seeded shuffle of their indices."""
    import numpy as np

    from s2jax.distill.dataset import PARQUET
    from s2jax.train.data import read_examples, tokenize_examples

    examples = []
    for path in paths:
        file = Path(path) / PARQUET if Path(path).is_dir() else Path(path)
        examples += tokenize_examples(tokenizer, read_examples(file), source=str(file))
    return examples, np.random.default_rng(seed).permutation(len(examples)).tolist()


def set_steps(examples: list, order: list[int], batch: int, seq_len: int | None,
              packed: bool) -> list[dict]:
    """Each step's rows (`s2jax.train.data.pack`) over the examples in `order`: `batch`
    examples a step, one a row, padded to `seq_len` (None: the step's longest, as TRL's collator
    pads); or, `packed`, the examples packed next-fit into rows of `seq_len` in turn, as
    `s2jax.train.finetune` packs them, `batch` rows a step. A last, partial step is dropped."""
    from s2jax.train.data import pack

    if packed:
        rows = pack(examples, order, seq_len)
        return [{k: v[i:i + batch] for k, v in rows.items()}
                for i in range(0, len(rows["tokens"]) - batch + 1, batch)]
    groups = [order[i:i + batch] for i in range(0, len(order) - batch + 1, batch)]
    return [pack(examples, g, seq_len or max(len(examples[i].ids) for i in g), False)
            for g in groups]


def packed(rows: dict, seq_len: int) -> dict:
    """The examples of `distill_batch` rows packed next-fit into rows of `seq_len` slots, as
    `s2jax.train.finetune` packs by default (fewer rows: no slot is padding but a row's tail)."""
    import numpy as np

    from s2jax.train.data import TokenizedExample, pack

    examples = []
    for r in range(len(rows["tokens"])):
        n = int((rows["segment_ids"][r] > 0).sum())
        mask = np.zeros(n, bool)
        mask[1:] = rows["weights"][r, :n - 1] > 0  # token t is a loss token: target t-1 is
        examples.append(TokenizedExample(rows["tokens"][r, :n], mask))
    return pack(examples, range(len(examples)), seq_len)


def model_flops_per_token(shapes: dict, seq_len: int) -> float:
    """Training FLOPs per token: 6 x matmul params + causal attention scores and values."""
    D, F, L, V = (shapes["hidden_size"], shapes["intermediate_size"],
                  shapes["num_hidden_layers"], shapes["vocab_size"])
    KV = D * shapes["num_key_value_heads"] // shapes["num_attention_heads"]
    matmul_params = L * (2 * D * D + 2 * D * KV + 3 * D * F) + D * V  # the lookup is no matmul
    attention = L * 2 * 2 * seq_len * D / 2  # QK^T and PV, half the positions under causality
    return 6 * matmul_params + 3 * attention


def matmul_rates(device: str, dtype: str, n: int, reps: int = 10) -> tuple[float, float]:
    """Best [n, n] matmul FLOP/s of JAX (XLA) and of torch on the device, in `dtype`, on random
    data (zeros run faster on some GPUs)."""
    import jax
    import jax.numpy as jnp
    import torch

    from s2jax.models.projection import matmul

    def rate(fn, m: int) -> float:
        """FLOP/s of one timed call of `fn`, an [m, m] product."""
        t = time.perf_counter()
        fn()
        sync(device)
        return 2 * m**3 / (time.perf_counter() - t)

    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32).astype(dtype)
    mm = jax.jit(lambda x: matmul(x, x, 1))  # as the model multiplies (fp32 sums of bf16 on CPU)
    jax_call = lambda: mm(a).block_until_ready()
    jax_call()
    # a small probe first: torch's bf16 reference kernel would take minutes per [n, n] product
    probe = torch.randn(256, 256, device=torch_device(device)).to(getattr(torch, dtype))
    probe @ probe
    # the best of a few: one timing alone read 2 GFLOP/s twice, right after another process
    # had been killed for memory, and skipped the torch side
    probe_rate = max(rate(lambda: probe @ probe, 256) for _ in range(5))
    # a small product's rate is lower anyway: only a gap of 4x the skip ratio stops here
    torch_runs = probe_rate >= rate(jax_call, n) / TORCH_SLOWER_SKIP / 4
    if torch_runs:
        ta = torch.randn(n, n, device=torch_device(device)).to(getattr(torch, dtype))
        ta @ ta
    best_jax = best_torch = 0.0
    for _ in range(reps):  # interleaved, so that both see the same load
        best_jax = max(best_jax, rate(jax_call, n))
        if torch_runs:
            best_torch = max(best_torch, rate(lambda: ta @ ta, n))
    return best_jax, best_torch if torch_runs else probe_rate


def torch_device(device: str) -> str:
    return "cuda" if device == "gpu" else "cpu"


def sync(device: str) -> None:
    """Waits for torch's queued GPU work (a CPU op has finished when it returns)."""
    if device == "gpu":
        import torch

        torch.cuda.synchronize()


def s2jax_stepper(model, batch: int, seq_len: int, dtype: str,
                  rows: dict | list[dict] | None = None, remat: str = "auto"
                  ) -> Callable[[], None]:
    """One call = one step of `s2jax.train`'s jitted, donated train step on `model`'s weights
    (compiled here), on `rows` (a `distill_batch`; a list: one per step, in turn, all of one
    shape) or random tokens that all carry loss."""
    import jax
    import numpy as np

    from s2jax.models.attention import step_reach
    from s2jax.parallel.sharding import make_mesh
    from s2jax.train.config import TrainConfig
    from s2jax.train.optim import learning_rate_schedule, make_optimizer
    from s2jax.train.state import plan_state
    from s2jax.train.step import longest_segment, make_train_step

    cfg = model.config
    tcfg = TrainConfig(steps=100, seq_len=seq_len, batch_size=batch, learning_rate=1e-4,
                       compute_dtype=dtype, remat=remat)
    mesh = make_mesh(devices=jax.devices()[:1])
    tx = make_optimizer(tcfg, 100)
    init, target = plan_state(cfg, tx, mesh)
    state = init(model.params())
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, cfg.vocab_size, (1, batch, seq_len + 1)).astype(np.int32)
    steps = [rows] if isinstance(rows, dict) else rows or [
        {"tokens": tokens[0, :, :-1], "targets": tokens[0, :, 1:],
         "segment_ids": np.ones((batch, seq_len), np.int32),
         "weights": np.ones((batch, seq_len), np.float32)}]
    # as `finetune` compiles its step: for no example longer than the longest in any row
    reach = step_reach(max(longest_segment(d["segment_ids"]) for d in steps), seq_len)
    step = make_train_step(cfg, tcfg, tx, learning_rate_schedule(tcfg, 100),
                           jax.tree.map(lambda x: x.sharding, target), mesh, reach=reach)
    data = [jax.device_put({k: v[None] for k, v in d.items()}) for d in steps]
    state_box, turn = [state], itertools.count()

    def run() -> None:
        # no frozen weights or teacher
        state_box[0], metrics = step(state_box[0], {}, {}, data[next(turn) % len(data)])
        jax.block_until_ready(metrics)

    run()  # compiles
    return run


def torch_stepper(shapes: dict | None, batch: int, seq_len: int, device: str, dtype: str,
                  checkpoint: Path | None = None, rows: dict | list[dict] | None = None
                  ) -> Callable[[], None]:
    """One call = one step of the `transformers` model (default attention: sdpa, flash on GPU)
    with torch AdamW; bf16 through autocast over fp32 weights. The model is a random Llama of
    `shapes`, or the HF checkpoint directory `checkpoint`. With `rows` (a `distill_batch`; a
    list: one per step, in turn), a completion-only loss as TRL computes it: labels -100 outside
    the answers, padding masked."""
    import contextlib

    import torch
    import transformers

    torch.manual_seed(0)
    dev = torch_device(device)
    if checkpoint is None:
        config = transformers.LlamaConfig(**{"tie_word_embeddings": False, **shapes},
                                          rms_norm_eps=1e-6)
        model = transformers.LlamaForCausalLM(config)
    else:
        model = transformers.AutoModelForCausalLM.from_pretrained(checkpoint,
                                                                  dtype=torch.float32)
        config = model.config
    model = model.to(dev).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0,
                            fused=device == "gpu")
    def inputs(rows: dict) -> tuple:
        """(input ids, attention mask, labels); HF shifts labels itself: label t is the target
        of position t-1."""
        tokens = torch.as_tensor(rows["tokens"], dtype=torch.long, device=dev)
        mask = torch.as_tensor(rows["segment_ids"] > 0, dtype=torch.long, device=dev)
        labels = torch.full_like(tokens, -100)
        targets = torch.as_tensor(rows["targets"], dtype=torch.long, device=dev)
        keep = torch.as_tensor(rows["weights"] > 0, device=dev)
        labels[:, 1:][keep[:, :-1]] = targets[:, :-1][keep[:, :-1]]
        return tokens, mask, labels

    if rows is None:
        tokens = torch.randint(0, config.vocab_size, (batch, seq_len), device=dev)
        steps = [(tokens, None, tokens)]
    else:
        steps = [inputs(r) for r in ([rows] if isinstance(rows, dict) else rows)]
    turn = itertools.count()
    autocast = (lambda: torch.autocast(dev, dtype=torch.bfloat16)) if dtype == "bfloat16" else (
        contextlib.nullcontext)

    def run() -> None:
        tokens, mask, labels = steps[next(turn) % len(steps)]
        with autocast():
            loss = model(input_ids=tokens, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync(device)

    run()  # warms up allocator and kernels
    return run


def interleaved_times(runs: dict[str, Callable[[], None]], steps: int
                      ) -> tuple[dict[str, list], dict[str, list], dict[str, list]]:
    """Wall, CPU and system seconds (all threads of this process) per step of each runner,
    alternating steps so that both see the same load. System time is mostly the kernel faulting
    in (and zeroing) freshly mapped memory: see s2jax/core/host_memory.py."""
    times = {name: [] for name in runs}
    cpu = {name: [] for name in runs}
    sys_time = {name: [] for name in runs}
    for _ in range(steps):
        for name, run in runs.items():
            t, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
            run()
            times[name].append(time.perf_counter() - t)
            after = resource.getrusage(resource.RUSAGE_SELF)
            sys_time[name].append(after.ru_stime - before.ru_stime)
            cpu[name].append(after.ru_utime - before.ru_utime + sys_time[name][-1])
    return times, cpu, sys_time


def real_set_run(args, model, tokenizer, shapes: dict, checkpoint: Path, torch_runs: bool,
                 peak: float) -> str:
    """`--data`: each side steps through the set in turn. A torch call runs as many steps as
    hold about one s2jax step's tokens; a rate is the example tokens of all timed calls over
    their summed seconds (the median call's in brackets)."""
    from s2jax.core.errors import S2JaxError
    from s2jax.train.config import TrainConfig

    examples, order = real_set(args.data, tokenizer)
    lengths = [len(e.ids) for e in examples]
    batch = args.batch or TrainConfig.batch_size  # also TRL's per-device default, 8
    seq_len = args.seq_len or (TrainConfig.seq_len if args.pack else -(-max(lengths) // 8) * 8)
    ours = set_steps(examples, order, batch, seq_len, args.pack)
    theirs = set_steps(examples, order, batch, None, False)
    if not ours or not theirs:
        raise S2JaxError(f"{', '.join(args.data)}: {len(examples)} examples, fewer than one "
                         f"step of {batch} {'rows' if args.pack else 'examples'}")
    real = lambda step: int((step["segment_ids"] > 0).sum())
    loss = sum(int(e.loss_mask[1:].sum()) for e in examples)
    per_call = max(1, round(statistics.mean(map(real, ours)) / statistics.mean(map(real, theirs))))
    layout = (f"packs them into rows of {seq_len}, {batch} a step (as its finetune does)"
              if args.pack else f"pads {batch} a step to {seq_len} (the longest)")
    print(f"{len(args.data)} set(s): {len(examples)} examples of {min(lengths)}-{max(lengths)} "
          f"tokens (mean {statistics.mean(lengths):.0f}, {loss / len(examples):.1f} loss "
          f"tokens); s2jax {layout}, {len(ours)} steps; torch pads {batch} a step to the step's "
          f"longest, {len(theirs)} steps, {per_call} a timed call")
    calls = args.steps or min(len(ours), 8)
    runs = {"s2jax": s2jax_stepper(model, batch, seq_len, args.dtype, ours, args.remat)}
    del model
    if torch_runs:
        step = torch_stepper(shapes, batch, seq_len, args.device, args.dtype, checkpoint, theirs)
        runs["torch"] = lambda: [step() for _ in range(per_call)]
    shutil.rmtree(checkpoint.parent)
    times, cpu, sys_time = interleaved_times(runs, calls)
    # each side's warm-up took its first step; call c then takes steps 1 + c*k .. c*k + k
    tokens = {"s2jax": [real(ours[(1 + c) % len(ours)]) for c in range(calls)],
              "torch": [sum(real(theirs[(1 + c * per_call + j) % len(theirs)])
                            for j in range(per_call)) for c in range(calls)]}
    flops = model_flops_per_token(shapes, statistics.mean(lengths))
    row = f"{'real set':12s} {int(statistics.mean(tokens['s2jax'])):11d} "
    rate = {}
    for name in runs:
        rate[name] = sum(tokens[name]) / sum(times[name])
        med = statistics.median(n / t for n, t in zip(tokens[name], times[name], strict=True))
        row += (f"{rate[name]:9.0f} [{med:8.0f}] {flops * rate[name] / peak:6.1%} "
                f"{statistics.median(cpu[name]):6.2f} ({statistics.median(sys_time[name]):4.2f}) ")
    if torch_runs:
        row += f"{rate['s2jax'] / rate['torch']:5.2f}x"
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="5m,100m", help="comma-separated: " + ",".join(CONFIGS))
    p.add_argument("--steps", type=int, default=0, help="timed steps per side (default: 8 / 4)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (CPU)")
    p.add_argument("--model", default=None,
                   help="train a real model instead of --sizes: anything `s2jax.load` takes, e.g. "
                   "smollm2-135m-instruct once fetched (`s2jax fetch-models`); transformers "
                   "trains the same weights, from an HF directory written by `s2jax.save`")
    p.add_argument("--batch", type=int, default=0, help="rows per step (default: the size's)")
    p.add_argument("--seq-len", type=int, default=0, help="tokens per row (default: the size's)")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                   help="where both sides run (gpu: JAX's first GPU and torch's cuda:0)")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                   help="matmul dtype of both sides (weights and optimizer stay fp32)")
    p.add_argument("--remat", default="auto", choices=("auto", "none", "full", "dots"),
                   help="s2jax's per-layer rematerialisation (TrainConfig.remat; torch keeps "
                   "every activation)")
    p.add_argument("--distill", action="store_true",
                   help="distillation-shaped rows, loss on the answers only (module docstring)")
    p.add_argument("--pack", action="store_true",
                   help="with --distill: s2jax packs the examples (its finetune default), torch "
                   "pads one a row (TRL's completion-only collator)")
    p.add_argument("--data", nargs="+", default=None, metavar="SET",
                   help="with --model: real distillation sets, train.parquet files or their "
                   "directories (module docstring)")
    args = p.parse_args()
    if args.pack and not (args.distill or args.data):
        p.error("--pack packs the distillation-shaped examples: it needs --distill or --data")
    if args.data and not args.model:
        p.error("--data is rendered with a real model's chat template and tokenizer: it needs "
                "--model")
    if args.data and args.distill:
        p.error("--data and --distill are two sources of examples: give one")
    os.environ["JAX_PLATFORMS"] = "cuda" if args.device == "gpu" else "cpu"
    import jax
    import torch

    torch.set_num_threads(args.threads)
    n = 2048 if args.device == "cpu" else 8192
    jax_mm, torch_mm = matmul_rates(args.device, args.dtype, n)
    # torch's bf16 CPU matmul on a CPU without bf16 dot products (AVX2: Zen 3) runs a reference
    # kernel, ~1.3 GFLOP/s against 128 in fp32 on 2 Zen 3 cores: its steps would take hours
    torch_runs = torch_mm >= jax_mm / TORCH_SLOWER_SKIP
    peak = max(jax_mm, torch_mm)
    gpu = torch.cuda.get_device_name() if args.device == "gpu" else "none"
    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}, torch {torch.__version__} "
          f"(GPU {gpu}); {args.dtype} {n}^3 matmul: JAX {jax_mm / 1e9:.0f} GFLOP/s, torch "
          f"{torch_mm / 1e9:.0f} GFLOP/s (torch threads {args.threads}); MFU below is against "
          f"{peak / 1e9:.0f}; host malloc {s2jax.core.host_memory.applied} (both sides)")
    print("tokens/s from the fastest of the interleaved steps (the machine is shared); "
          "median in brackets; cpu (sys): median CPU seconds per step, all threads (of them, "
          "system)")
    cpu_head = "cpu (sys)"
    print(f"{'config':12s} {'tokens/step':>11s} {'s2jax tok/s':>20s} {'MFU':>6s} {cpu_head:>12s} "
          f"{'torch tok/s':>20s} {'MFU':>6s} {cpu_head:>12s} {'ratio':>6s}")
    if not torch_runs:
        print(f"torch side skipped: its {args.dtype} matmul runs at under 1/{TORCH_SLOWER_SKIP} "
              "of JAX's here (a CPU without bf16 dot products); s2jax's steps alone")
    for name in [args.model] if args.model else args.sizes.split(","):
        if args.model:  # SmolLM2-135M's batch shape, which the smollm2-135m size mimics
            model, tokenizer = s2jax.load(args.model, dtype="float32")
            shapes, (_, batch, seq_len) = model.config.to_hf(), CONFIGS["smollm2-135m"]
            checkpoint = Path(tempfile.mkdtemp(prefix="s2jax_bench_"))
            s2jax.save(model, tokenizer, checkpoint / "model")
            checkpoint /= "model"
            name = f"{Path(name).stem[:7]} real"
        else:
            shapes, batch, seq_len = CONFIGS[name]
            model, checkpoint = s2jax_llama(shapes), None
        if args.data:  # the call holds the model's only reference: its stepper frees it
            models = [model]
            del model
            print(real_set_run(args, models.pop(), tokenizer, shapes, checkpoint, torch_runs,
                               peak), flush=True)
            continue
        batch = args.batch or batch
        seq_len = args.seq_len or (DISTILL_SEQ_LEN if args.distill else seq_len)
        rows = distill_batch(batch, seq_len, shapes["vocab_size"]) if args.distill else None
        steps = args.steps or (20 if args.device == "gpu" else 8 if name == "5m" else 4)
        tokens = batch * seq_len if rows is None else int(rows["segment_ids"].sum())
        if rows is not None:
            print(f"{name}: {batch} distillation-shaped rows of {seq_len} slots, {tokens} "
                  f"tokens (the rate below counts these), {int(rows['weights'].sum())} loss "
                  "tokens")
        flops = model_flops_per_token(shapes, seq_len) * tokens
        ours_rows = packed(rows, seq_len) if args.pack else rows
        if args.pack:
            assert int(ours_rows["weights"].sum()) == int(rows["weights"].sum())
            print(f"{name}: s2jax packs them into {len(ours_rows['tokens'])} rows of {seq_len} "
                  f"slots (torch: {batch} padded rows)")
        runs = {"s2jax": s2jax_stepper(model, len(ours_rows["tokens"]) if args.pack else batch,
                                       seq_len, args.dtype, ours_rows, args.remat)}
        del model  # the train state holds its own copy
        if torch_runs:
            runs["torch"] = torch_stepper(shapes, batch, seq_len, args.device, args.dtype,
                                          checkpoint, rows)
        if checkpoint is not None:
            shutil.rmtree(checkpoint.parent)
        times, cpu, sys_time = interleaved_times(runs, steps)
        ours = min(times["s2jax"])
        med = {k: statistics.median(v) for k, v in times.items()}
        med_cpu = {k: f"{statistics.median(v):6.2f} ({statistics.median(sys_time[k]):4.2f})"
                   for k, v in cpu.items()}
        row = (f"{name:12s} {tokens:11d} {tokens / ours:9.0f} [{tokens / med['s2jax']:8.0f}] "
               f"{flops / ours / peak:6.1%} {med_cpu['s2jax']:>12s} ")
        if torch_runs:
            theirs = min(times["torch"])
            row += (f"{tokens / theirs:9.0f} [{tokens / med['torch']:8.0f}] "
                    f"{flops / theirs / peak:6.1%} {med_cpu['torch']:>12s} {theirs / ours:5.2f}x")
        print(row, flush=True)
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
