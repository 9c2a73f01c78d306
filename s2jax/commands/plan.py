"""`s2jax plan CONFIG --mesh .. (--devices N --device-memory GiB | --target v5p-64)`: will it fit?
Exits 0 when training (in a `s2jax run` process) and sampling fit, 4 (a non-result,
`s2jax.core.errors`) when either does not, 2 on bad input.

CONFIG is a model (an HF config.json, e.g. configs/models/llama-2-70b-chat.json, a checkpoint
directory, a GGUF file or a fetched real model's name; only its shapes are read), with the
training shape from flags, or an experiment config file (`get_config()`, e.g.
configs/paper/rar_last_letter.py[:variant]; its `model_shape`, else its `model`). JAX must
start with N fake CPU devices, so the command sets XLA_FLAGS and JAX_PLATFORMS before importing
it, and re-runs itself in a fresh interpreter when JAX is already up with another device count
(e.g. when called from a test). With `--target` (a TPU slice) the programs are compiled by the
TPU compiler for the slice's chips instead (`s2jax.parallel.targets`; needs the `tpu` extra).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import subprocess
import sys
from pathlib import Path

from s2jax.core.errors import NonResult, S2JaxError
from s2jax.core.ownership import PLAN_REPORT, check_file, write_owned_json
from s2jax.parallel.targets import libtpu_missing, parse_target, quiet_env


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plan", help="per-device memory of a training + sampling config",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("config", help="model (config.json, checkpoint dir, .gguf, real model name) "
                   "or experiment config .py[:arg]")
    p.add_argument("--mesh", default=None, help="data=..,fsdp=..,tensor=.. (default: the "
                   "config's mesh, else fsdp over all devices)")
    p.add_argument("--sample-mesh", default=None, help="prefill and decode's mesh (default: "
                   "--mesh, else the config's mesh)")
    p.add_argument("--target", default=None, help="a TPU slice (v5p-64, v5e-16, v4-32, "
                   "v6e-8): compile with the TPU compiler for its chips, on this machine")
    p.add_argument("--devices", type=int, default=None,
                   help="devices to plan for (default: the target's chips)")
    p.add_argument("--device-memory", type=float, default=None,
                   help="GiB per device (default: the target's HBM per chip)")
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
    p.add_argument("--hand-only", action="store_true", help="only the closed-form estimate "
                   "(docs/plan.md), with flash attention: no compile (e.g. for GPU nodes)")
    p.add_argument("--teacher", default=None, help="a teacher apart from the student (same "
                   "forms as CONFIG's model): it samples System 2 and, with --kd, runs frozen "
                   "in the train step")
    p.add_argument("--teacher-dtype", choices=("float32", "bfloat16"), default=None,
                   help="the teacher's weights (default: --sample-dtype)")
    p.add_argument("--kd", choices=("none", "forward_kl", "reverse_kl", "jsd"), default=None,
                   help="token-level distillation in the train step (train.kd.divergence)")
    p.add_argument("--json", default=None, help="also write the report here")
    # a plan compiles for devices it does not use: it never joins a multi-process runtime
    p.set_defaults(func=run, distributed=False)


def _env(devices: int, target: bool) -> dict[str, str]:
    """What the planning process's environment needs: JAX on the CPU with `devices` fake
    devices, and with a TPU target, a quiet libtpu."""
    env = {"JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    return env | (quiet_env() if target else {})


def _jax_ready(devices: int, target: bool = False) -> bool:
    """Whether JAX can be used here with `devices` CPU devices (importing it if needed); for a
    TPU target, any number of CPU devices does."""
    flag = f"--xla_force_host_platform_device_count={devices}"
    if "jax" not in sys.modules:
        for k, v in _env(devices, target).items():
            if k != "XLA_FLAGS":
                os.environ.setdefault(k, v)
        flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
                 if not f.startswith("--xla_force_host_platform_device_count")]
        os.environ["XLA_FLAGS"] = " ".join([*flags, flag])
        os.environ["JAX_PLATFORMS"] = "cpu"
        return True
    # only once XLA_FLAGS holds the device count: JAX reads it at import
    import jax

    return jax.default_backend() == "cpu" and (target or len(jax.devices()) == devices)


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
               "lora_targets": "lora.targets", "kd": "kd.divergence"}


def _argv(args) -> list[str]:
    """The command line that reproduces `args`, for the re-run in a fresh interpreter."""
    out = [args.config]
    if args.hand_only:
        out.append("--hand-only")
    for name in ("mesh", "sample_mesh", "target", "devices", "device_memory", "batch",
                 "seq_len", "grad_accum", "param_dtype", "compute_dtype", "remat",
                 "sample_batch", "max_len", "sample_dtype", "lora_rank", "lora_alpha",
                 "lora_targets", "teacher", "teacher_dtype", "kd", "json"):
        value = getattr(args, name)
        if value is not None:
            out += [f"--{name.replace('_', '-')}", str(value)]
    return out


def _check(args) -> int:
    """The checks that need no JAX, so that bad input never waits for a JAX start-up; returns
    the device count (--devices, else the target's chips)."""
    _config_path(args.config)
    if args.target:
        chips = parse_target(args.target).chips
        if args.devices not in (None, chips):
            raise S2JaxError(f"--devices {args.devices}: {args.target} has {chips} chips")
        args.devices = chips
        why = None if args.hand_only else libtpu_missing()  # hand figures need no compiler
        if why:
            raise S2JaxError(f"--target {args.target}: {why}")
        if "jax" not in sys.modules:  # libtpu reads these when JAX loads it (parse_mesh, below)
            for k, v in quiet_env().items():
                os.environ.setdefault(k, v)
    elif args.devices is None or args.device_memory is None:
        raise S2JaxError("--devices and --device-memory are required without --target")
    if args.devices < 1:
        raise S2JaxError(f"--devices {args.devices}: expected >= 1")
    if args.device_memory is not None and not (math.isfinite(args.device_memory)
                                               and args.device_memory > 0):
        raise S2JaxError(f"--device-memory {args.device_memory}: expected GiB > 0")
    if args.json:
        check_file(args.json, "--json", PLAN_REPORT, marked_inside=True)
    if args.teacher:
        _config_path(args.teacher)
    # parse_mesh's module imports JAX, which the parser must not; checked before JAX starts
    from s2jax.parallel.sharding import parse_mesh

    for flag, spec in (("--mesh", args.mesh), ("--sample-mesh", args.sample_mesh)):
        want = math.prod(parse_mesh(spec).values()) if spec else args.devices
        if want != args.devices:
            raise S2JaxError(f"{flag} {spec} needs {want} devices but --devices is "
                             f"{args.devices}")
    return args.devices


def _inputs(args):
    """`run.plan.plan_inputs` of the command line (reads the config: a bad one raises)."""
    # the planner imports JAX, which must start with the planned device count first
    from s2jax.run.plan import plan_inputs

    flag_of = {key: "--" + flag.replace("_", "-") for flag, key in TRAIN_FLAGS.items()}
    return plan_inputs(args.config, args.devices, mesh=args.mesh, sample_mesh=args.sample_mesh,
                       train_changes={key: getattr(args, flag) for flag, key in
                                      TRAIN_FLAGS.items() if getattr(args, flag) is not None},
                       change_name=flag_of.__getitem__, sample_batch=args.sample_batch,
                       max_len=args.max_len, sample_dtype=args.sample_dtype,
                       teacher=args.teacher, teacher_dtype=args.teacher_dtype)


def _rerun(args, devices: int) -> int:
    """Runs the plan in a fresh interpreter whose JAX has `devices` fake CPU devices (one, for
    a TPU target: the TPU compiler plans its chips)."""
    env = dict(os.environ, **_env(1 if args.target else devices, bool(args.target)))
    root = str(Path(__file__).resolve().parents[2])  # the checkout, if not installed
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    for k in ("S2JAX_COORDINATOR", "S2JAX_NUM_PROCESSES", "S2JAX_PROCESS_ID"):
        env.pop(k, None)
    cmd = [sys.executable, "-m", "s2jax.cli", "plan", *_argv(args)]
    return subprocess.run(cmd, env=env).returncode


def _require_fit(args, fits_run: bool, fits_sample: bool) -> None:
    """A plan that does not fit is a non-result (exit 4); its report is printed and kept."""
    misfits = [what for what, ok in (("training", fits_run), ("sampling", fits_sample))
               if not ok]
    if misfits:
        memory = args.device_memory or parse_target(args.target).hbm_gib
        raise NonResult(f"{args.config}: {' and '.join(misfits)} would not fit in "
                        f"{memory:g} GiB per device (see the plan above)")


def run(args) -> int:
    devices = _check(args)
    if not args.hand_only and not _jax_ready(devices, bool(args.target)):
        _inputs(args)  # JAX is up already: a bad config is reported here, in this process
        return _rerun(args, devices)
    p = _inputs(args)
    if args.hand_only:
        return _hand_only(args, p)
    # the planner compiles with JAX: imported only once the device count is set
    from s2jax.run.plan import plan

    report = plan(p.model, p.train, p.mesh, devices, args.device_memory, p.sample_batch,
                  p.max_len, sample_dtype=p.sample_dtype, name=p.name, sample_mesh=p.sample_mesh,
                  target=args.target, teacher_cfg=p.teacher, teacher_name=p.teacher_name,
                  teacher_dtype=p.teacher_dtype)
    print(report.table())
    if args.json:
        write_owned_json(args.json, PLAN_REPORT, report.to_json(), what="--json")
    _require_fit(args, report.fits_run, report.fits_sample)
    return 0


def _hand_only(args, p) -> int:
    """`--hand-only`: the closed form for the plan inputs `p`, with flash attention; exits 4
    where a stage does not fit, as a compiled plan does."""
    # JAX-importing modules, reached only after `run`'s checks
    from s2jax.models.params import num_params
    from s2jax.run.plan import hand_estimate, hand_table, hand_teacher, planned_remat

    train = dataclasses.replace(p.train, remat=planned_remat(p.train.remat))
    memory = args.device_memory or parse_target(args.target).hbm_gib
    dtype = p.sample_dtype or train.compute_dtype
    hand = hand_estimate(p.model, train, p.mesh, p.sample_batch, p.max_len, dtype,
                         sample_mesh=p.sample_mesh, flash=True)
    if p.teacher is not None:
        hand = hand_teacher(hand, p.teacher, train, p.mesh, p.sample_batch, p.max_len,
                            p.teacher_dtype or dtype, sample_mesh=p.sample_mesh)
    show = lambda sizes: ",".join(f"{k}={v}" for k, v in sizes.items() if v > 1) or "one device"
    print(hand_table(hand, f"{p.name}: {num_params(p.model) / 1e9:.2f}B params, train on "
                     f"{show(p.mesh)}, sample on {show(p.sample_mesh)} ({args.devices} devices "
                     f"x {memory:.0f} GiB); batch {train.batch_size} x {train.seq_len}, remat "
                     f"{train.remat}; sampling {p.sample_batch} x {p.max_len}", memory))
    if args.json:
        write_owned_json(args.json, PLAN_REPORT, {"hand": hand, "mesh": p.mesh,
                                                  "sample_mesh": p.sample_mesh}, what="--json")
    _require_fit(args, hand.get("run_total", hand["train_total"]) <= memory * 2**30,
                 max(hand["sample_total"], hand.get("teacher_sample_total", 0)) <= memory * 2**30)
    return 0
