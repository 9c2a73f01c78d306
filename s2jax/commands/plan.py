"""`s2jax plan CONFIG --mesh .. --devices N --device-memory GiB`: will this run fit? Exits 0
when training (in a `s2jax run` process) and sampling fit, 4 (a non-result, `s2jax.core.errors`)
when either does not, 2 on bad input.

CONFIG is a model (an HF config.json, e.g. configs/models/llama-2-70b-chat.json, a checkpoint
directory, a GGUF file or a fetched real model's name; only its shapes are read), with the
training shape from flags, or an experiment config file (`get_config()`, e.g.
configs/paper/rar_last_letter.py[:variant]; its `model_shape`, else its `model`). JAX must
start with N fake CPU devices, so the command sets XLA_FLAGS and JAX_PLATFORMS before importing
it, and re-runs itself in a fresh interpreter when JAX is already up with another device count
(e.g. when called from a test).
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
from pathlib import Path

from s2jax.core.errors import NonResult, S2JaxError
from s2jax.core.ownership import PLAN_REPORT, check_file, write_owned_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plan", help="per-device memory of a training + sampling config",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("config", help="model (config.json, checkpoint dir, .gguf, real model name) "
                   "or experiment config .py[:arg]")
    p.add_argument("--mesh", default=None, help="data=..,fsdp=..,tensor=.. (default: the "
                   "config's mesh, else fsdp over all devices)")
    p.add_argument("--devices", type=int, required=True, help="devices to plan for")
    p.add_argument("--device-memory", type=float, required=True, help="GiB per device")
    p.add_argument("--batch", type=int, default=None, help="train rows per step (global)")
    p.add_argument("--seq-len", type=int, default=None, help="train tokens per row")
    p.add_argument("--grad-accum", type=int, default=None)
    p.add_argument("--param-dtype", choices=("float32", "bfloat16"), default=None,
                   help="weights and Adam moments in training")
    p.add_argument("--compute-dtype", choices=("float32", "bfloat16"), default=None)
    p.add_argument("--remat", choices=("auto", "none", "full", "dots"), default=None)
    p.add_argument("--sample-batch", type=int, default=None, help="decode rows (default 64)")
    p.add_argument("--max-len", type=int, default=None,
                   help="sampler cache slots per row (default: the model's max positions)")
    p.add_argument("--sample-dtype", choices=("float32", "bfloat16"), default=None,
                   help="sampler weights and cache; with LoRA also the frozen base in training")
    p.add_argument("--lora-rank", type=int, default=None,
                   help="plan a LoRA run of this rank (0: full fine-tuning)")
    p.add_argument("--lora-alpha", type=float, default=None)
    p.add_argument("--lora-targets", default=None, help="adapted projections, e.g. q,k,v,o")
    p.add_argument("--json", default=None, help="also write the report here")
    p.set_defaults(func=run)


def _jax_ready(devices: int) -> bool:
    """Whether JAX can be used here with `devices` CPU devices (importing it if needed)."""
    flag = f"--xla_force_host_platform_device_count={devices}"
    if "jax" not in sys.modules:
        flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
                 if not f.startswith("--xla_force_host_platform_device_count")]
        os.environ["XLA_FLAGS"] = " ".join([*flags, flag])
        os.environ["JAX_PLATFORMS"] = "cpu"
        return True
    # only once XLA_FLAGS holds the device count: JAX reads it at import
    import jax

    return jax.default_backend() == "cpu" and len(jax.devices()) == devices


def _config_path(config: str) -> str:
    """CONFIG's path (a config .py without its `:arg`); an error unless it names something."""
    # imported when the command runs: building the CLI parser stays free of JAX and co.
    from s2jax.models.fetch import canonical

    path = config.partition(":")[0]
    path = path if path.endswith(".py") else config
    if not Path(path).exists() and canonical(path) is None:
        raise S2JaxError(f"{path}: no such file (expected a config.json, checkpoint dir, .gguf, "
                         f"real model name or config .py)")
    return path


# plan's options that change a `TrainConfig` field
TRAIN_FLAGS = {"batch": "batch_size", "seq_len": "seq_len", "grad_accum": "grad_accum",
               "param_dtype": "param_dtype", "compute_dtype": "compute_dtype", "remat": "remat",
               "lora_rank": "lora.rank", "lora_alpha": "lora.alpha",
               "lora_targets": "lora.targets"}


def _argv(args) -> list[str]:
    """The command line that reproduces `args`, for the re-run in a fresh interpreter."""
    out = [args.config]
    for name in ("mesh", "devices", "device_memory", "batch", "seq_len", "grad_accum",
                 "param_dtype", "compute_dtype", "remat", "sample_batch", "max_len",
                 "sample_dtype", "lora_rank", "lora_alpha", "lora_targets", "json"):
        value = getattr(args, name)
        if value is not None:
            out += [f"--{name.replace('_', '-')}", str(value)]
    return out


def _check(args) -> None:
    """The checks that need no JAX, so that bad input never waits for a JAX start-up."""
    if args.devices < 1:
        raise S2JaxError(f"--devices {args.devices}: expected >= 1")
    if not (math.isfinite(args.device_memory) and args.device_memory > 0):
        raise S2JaxError(f"--device-memory {args.device_memory}: expected GiB > 0")
    if args.json:
        check_file(args.json, "--json", PLAN_REPORT, marked_inside=True)
    _config_path(args.config)
    if args.mesh:
        # parse_mesh's module imports JAX: only when a mesh is given
        from s2jax.parallel.sharding import parse_mesh

        want = math.prod(parse_mesh(args.mesh).values())
        if want != args.devices:
            raise S2JaxError(f"--mesh {args.mesh} needs {want} devices but --devices is "
                             f"{args.devices}")


def _inputs(args):
    """`run.plan.plan_inputs` of the command line (reads the config: a bad one raises)."""
    # the planner imports JAX, which must start with the planned device count first
    from s2jax.run.plan import plan_inputs

    flag_of = {key: "--" + flag.replace("_", "-") for flag, key in TRAIN_FLAGS.items()}
    return plan_inputs(args.config, args.devices, mesh=args.mesh,
                       train_changes={key: getattr(args, flag) for flag, key in
                                      TRAIN_FLAGS.items() if getattr(args, flag) is not None},
                       change_name=flag_of.__getitem__, sample_batch=args.sample_batch,
                       max_len=args.max_len, sample_dtype=args.sample_dtype)


def _rerun(args) -> int:
    """Runs the plan in a fresh interpreter whose JAX has `args.devices` fake CPU devices."""
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS=f"--xla_force_host_platform_device_count={args.devices}")
    root = str(Path(__file__).resolve().parents[2])  # the checkout, if not installed
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    for k in ("S2JAX_COORDINATOR", "S2JAX_NUM_PROCESSES", "S2JAX_PROCESS_ID"):
        env.pop(k, None)
    cmd = [sys.executable, "-m", "s2jax.cli", "plan", *_argv(args)]
    return subprocess.run(cmd, env=env).returncode


def run(args) -> int:
    _check(args)
    if not _jax_ready(args.devices):
        _inputs(args)  # JAX is up already: a bad config is reported here, in this process
        return _rerun(args)
    # the planner imports JAX, which must start with the planned device count first
    from s2jax.run.plan import plan

    p = _inputs(args)
    report = plan(p.model, p.train, p.mesh, args.devices, args.device_memory, p.sample_batch,
                  p.max_len, sample_dtype=p.sample_dtype, name=p.name)
    print(report.table())
    if args.json:
        write_owned_json(args.json, PLAN_REPORT, report.to_json(), what="--json")
    misfits = [what for what, ok in (("training", report.fits_run),
                                     ("sampling", report.fits_sample)) if not ok]
    if misfits:  # a plan that does not fit is a non-result (exit 4), its report kept
        raise NonResult(f"{args.config}: {' and '.join(misfits)} would not fit in "
                        f"{args.device_memory:g} GiB per device (see the plan above)")
    return 0
