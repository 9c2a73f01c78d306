"""`s2jax plan`: compiled per-device memory against the hand formula of docs/plan.md."""

import dataclasses
import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

from s2jax.cli import main
from s2jax.core.atomic import write_json
from s2jax.core.errors import S2JaxError
from s2jax.models.config import ModelConfig
from s2jax.models.params import num_params, param_specs
from s2jax.parallel.sharding import make_mesh
from s2jax.run.plan import GiB, hand_estimate, plan, plan_inputs, unrolled_weights
from s2jax.train.config import KDConfig, LoraConfig, TrainConfig

SHAPES = Path(__file__).resolve().parents[1] / "configs" / "models"


def _small() -> ModelConfig:
    big = ModelConfig.from_file(SHAPES / "llama-2-70b-chat.json")
    return dataclasses.replace(big, vocab_size=512, hidden_size=256, intermediate_size=768,
                               num_layers=3, num_heads=8, num_kv_heads=4, head_dim=32,
                               sliding_windows=(0,) * 3)


def _close(got: int, want: int, what: str, tol: float = 0.10) -> None:
    assert abs(got - want) <= tol * want, f"{what}: compiled {got} vs hand {want} bytes"


@pytest.mark.slow
@pytest.mark.parametrize("mesh,param_dtype,whole", [
    (dict(data=2, tensor=2), "float32", True),
    # under fsdp XLA gathers the batch inside the layer scan (docs/plan.md), so only the
    # state is compared there
    (dict(fsdp=2, tensor=2), "bfloat16", False),
])
def test_small_plan_agrees_with_the_hand_formula(mesh, param_dtype, whole):
    cfg = _small()
    train = TrainConfig(batch_size=8, seq_len=64, remat="full", param_dtype=param_dtype,
                        compute_dtype="bfloat16")
    r = plan(cfg, train, mesh, 4, 1.0, 8, 128)
    h = r.hand
    _close(r.params, h["params"], "params")
    _close(r.opt_state, h["adam"], "Adam moments")
    # XLA's own argument bytes: the sharded state and batch, and the sampler's weights + cache
    _close(r.train_arguments, h["params"] + h["adam"] + h["batch"], "train step arguments")
    _close(r.sample_arguments, h["sample_params"] + h["kv_cache"], "decode step arguments")
    L, K, H = cfg.num_layers, cfg.num_kv_heads, cfg.head_dim
    rows = 8 // (mesh.get("data", 1) * mesh.get("fsdp", 1))
    assert r.kv_cache == 2 * L * rows * 128 * (K // mesh.get("tensor", 1)) * H * 2
    # temporaries hold at least the gradients; the total is more than the state
    assert r.activations >= h["grads"]
    if whole:
        # bf16 products take fp32 outputs on CPU (`projection.xla_cpu_16bit`), which left
        # XLA:CPU 11.5 MB of temporaries here against 12.3 MB before and 13.0 by hand
        _close(r.activations, h["temp"], "gradients + update + activations (temp)", tol=0.15)
        _close(r.train_total, h["train_total"], "train total")
    assert r.train_total > r.train_arguments
    assert r.fits_train and r.fits_sample
    tight = plan(cfg, train, mesh, 4, r.train_total / GiB * 0.9, 8, 128)
    assert not tight.fits_train


@pytest.mark.slow
def test_remat_and_dtype_change_the_plan_the_way_the_formula_says():
    cfg = _small()
    base = TrainConfig(batch_size=8, seq_len=128, remat="none")
    full = dataclasses.replace(base, remat="full")
    mesh = dict(data=2, tensor=2)
    none_r, full_r = plan(cfg, base, mesh, 4, 1, 8, 64), plan(cfg, full, mesh, 4, 1, 8, 64)
    assert full_r.activations < none_r.activations
    # the default "auto" depends on the run's backend, which a plan cannot see: it plans "none",
    # the larger (GPU/TPU), and says so
    auto_r = plan(cfg, dataclasses.replace(base, remat="auto"), mesh, 4, 1, 8, 64)
    assert auto_r.activations == none_r.activations
    assert auto_r.remat.startswith("auto, planned as none") and auto_r.remat in auto_r.table()
    h32 = hand_estimate(cfg, base, mesh, 8, 64, "float32")
    h16 = hand_estimate(cfg, dataclasses.replace(base, param_dtype="bfloat16"), mesh, 8, 64,
                        "bfloat16")
    assert h16["params"] * 2 == pytest.approx(h32["params"], rel=1e-6)
    assert h16["kv_cache"] * 2 == h32["kv_cache"]


@pytest.mark.parametrize("mesh,devices,match", [
    (dict(fsdp=4), 2, "needs 4 devices but --devices is 2"),
    (dict(fsdp=16), 16, "this process has 8 devices"),
    (dict(data=3), 3, "batch_size 8: expected a multiple of data x fsdp = 3"),
    (dict(pipeline=2), 2, "unknown axes"),
])
def test_bad_mesh_or_devices_is_one_line_error(mesh, devices, match):
    with pytest.raises(S2JaxError, match=match) as e:
        plan(_small(), TrainConfig(batch_size=8), mesh, devices, 80, 8, 64)
    assert "\n" not in str(e.value)


@pytest.mark.slow  # ~30-55 s: two plans (six programs) compiled on 4 fake devices
def test_sampling_planned_on_a_mesh_of_its_own():
    # tensor parallel for decode, fsdp for the step: each stage's terms split by its own mesh
    cfg = _small()
    train = TrainConfig(batch_size=8, seq_len=64, remat="full")
    r = plan(cfg, train, dict(fsdp=4), 4, 1.0, 8, 128, sample_mesh=dict(tensor=4))
    one = plan(cfg, train, dict(fsdp=4), 4, 1.0, 8, 128)
    assert r.sample_mesh == dict(data=1, fsdp=1, tensor=4) and "(sampling)" in r.table()
    L, K, H = cfg.num_layers, cfg.num_kv_heads, cfg.head_dim
    assert r.kv_cache == 2 * L * 8 * 128 * (K // 4) * H * 4  # every row, a quarter of the heads
    assert one.kv_cache == 2 * L * (8 // 4) * 128 * K * H * 4  # a quarter of the rows
    assert (r.train_total, r.params) == (one.train_total, one.params)  # same train step
    assert r.hand["kv_cache"] == r.kv_cache and one.hand["kv_cache"] == one.kv_cache
    with pytest.raises(S2JaxError, match="--sample-mesh .* needs 2 devices"):
        plan(cfg, train, dict(fsdp=4), 4, 1.0, 8, 128, sample_mesh=dict(tensor=2))


def test_a_run_config_plans_each_stage_on_its_own_mesh(tmp_path):
    # a run samples on `mesh` and trains on `train.mesh`; --mesh alone puts both on one mesh
    shape = tmp_path / "config.json"
    write_json(shape, _small().to_hf())
    config = tmp_path / "exp.py"
    config.write_text(
        "from s2jax.run.config import ExperimentConfig\n"
        "from s2jax.train.config import TrainConfig\n"
        "def get_config(arg=None):\n"
        f"    return ExperimentConfig(name='x', model={str(shape)!r}, task='last_letter',\n"
        "        method='rar_1step', mesh='tensor=4', train=TrainConfig(mesh='fsdp=4'))\n")
    mesh = lambda **kw: dict(data=1, fsdp=1, tensor=1) | kw
    p = plan_inputs(str(config), 4)
    assert (p.mesh, p.sample_mesh) == (mesh(fsdp=4), mesh(tensor=4))
    p = plan_inputs(str(config), 4, mesh="data=4")
    assert (p.mesh, p.sample_mesh) == (mesh(data=4), mesh(data=4))
    p = plan_inputs(str(config), 4, mesh="data=4", sample_mesh="data=2,tensor=2")
    assert p.sample_mesh == mesh(data=2, tensor=2)
    p = plan_inputs(str(shape), 4)  # a bare model: fsdp over every device, for both
    assert (p.mesh, p.sample_mesh) == (mesh(fsdp=4), mesh(fsdp=4))


def test_hand_only_plans_without_compiling(tmp_path, capsys):
    shape = tmp_path / "config.json"
    write_json(shape, _small().to_hf())
    out = tmp_path / "hand.json"
    argv = ["plan", str(shape), "--hand-only", "--devices", "4", "--mesh", "fsdp=4",
            "--sample-mesh", "tensor=4", "--json", str(out), "--device-memory"]
    assert main([*argv, "80"]) == 0
    text = capsys.readouterr().out
    assert "train on fsdp=4, sample on tensor=4" in text and "train: fits" in text
    report = json.loads(out.read_text())
    assert report["sample_mesh"] == dict(data=1, fsdp=1, tensor=4)
    assert report["hand"]["train_total"] > 0
    # a stage that does not fit is a non-result (exit 4), as a compiled plan's
    assert main([*argv, "0.001"]) == 4
    out, err = capsys.readouterr()
    assert "does NOT fit" in out and "would not fit in 0.001 GiB" in err


def test_hand_only_counts_a_teacher_apart_from_the_student(tmp_path, capsys):
    student, shape, big = _small(), tmp_path / "config.json", tmp_path / "teacher.json"
    teacher = dataclasses.replace(student, hidden_size=512, intermediate_size=1024)
    write_json(shape, student.to_hf())
    write_json(big, teacher.to_hf())
    argv = ["plan", str(shape), "--hand-only", "--devices", "4", "--mesh", "fsdp=2,tensor=2",
            "--device-memory", "80", "--teacher", str(big), "--teacher-dtype", "bfloat16"]

    def hand(*extra):
        out = tmp_path / f"hand{len(extra)}.json"
        assert main([*argv, *extra, "--json", str(out)]) == 0
        return json.loads(out.read_text())["hand"], capsys.readouterr().out

    seq, text = hand()
    kd, kd_text = hand("--kd", "reverse_kl")
    weights = num_params(teacher) * 2 // 4  # bf16, split over fsdp x tensor
    # sequence-level: the teacher samples with its own weights and stays loaded in training
    assert seq["teacher_train"] == 0 and "frozen teacher" not in text
    assert seq["teacher_sample_params"] == weights and seq["teacher_kv_cache"] > 0
    assert seq["run_total"] == seq["train_total"] + weights
    assert "teacher sampling total" in text and "run with the teacher loaded: fits" in text
    # logit KD: its weights are frozen in the train step as well
    assert kd["teacher_train"] == weights and kd["train_total"] == seq["train_total"] + weights
    assert "frozen teacher (KD)" in kd_text


@pytest.mark.slow
def test_cli_reruns_itself_with_the_requested_fake_devices(tmp_path, capsys):
    shape = tmp_path / "config.json"
    write_json(shape, _small().to_hf())
    out = tmp_path / "plan.json"
    rc = main(["plan", str(shape), "--mesh", "fsdp=4", "--devices", "4", "--device-memory",
               "1", "--batch", "8", "--seq-len", "32", "--sample-batch", "4", "--max-len", "64",
               "--json", str(out)])
    assert rc == 0
    report = json.loads(out.read_text())
    assert report["mesh"] == {"data": 1, "fsdp": 4, "tensor": 1} and report["fits_train"]
    # a `s2jax run` process also holds the loaded model's weights while it trains
    assert report["run_total"] == report["train_total"] + report["sample_params"]
    # a plan that does not fit is a non-result: exit status 4 (a usage error is 2)
    assert main(["plan", str(shape), "--mesh", "fsdp=4", "--devices", "4", "--device-memory",
                 "0.001", "--batch", "8", "--seq-len", "32", "--sample-batch", "4",
                 "--max-len", "64"]) == 4
    assert main(["plan", str(shape), "--mesh", "fsdp=4", "--devices", "2",
                 "--device-memory", "1"]) == 2
    assert main(["plan", str(tmp_path / "missing.json"), "--devices", "1",
                 "--device-memory", "1"]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["plan", str(shape), "--devices", "4"]) == 2
    assert "--devices and --device-memory are required without --target" in \
        capsys.readouterr().err
    assert main(["plan", str(shape), "--target", "v5p-8", "--devices", "8"]) == 2
    assert "v5p-8 has 4 chips" in capsys.readouterr().err


@pytest.mark.slow
def test_llama2_70b_plan_on_32_fake_devices(tmp_path):
    """The acceptance case; about 30 s of compiling on 2 CPU cores."""
    out = tmp_path / "plan.json"
    rc = main(["plan", str(SHAPES / "llama-2-70b-chat.json"), "--mesh", "fsdp=32", "--devices",
               "32", "--device-memory", "95", "--batch", "32", "--seq-len", "512", "--remat",
               "full", "--compute-dtype", "bfloat16", "--sample-batch", "64", "--max-len",
               "1024", "--json", str(out)])
    assert rc == 0
    r = json.loads(out.read_text())
    assert r["num_params"] == pytest.approx(68.98e9, rel=1e-3)
    _close(r["params"], 68.98e9 * 4 / 32, "70B fp32 params per device", 0.01)
    _close(r["opt_state"], 2 * 68.98e9 * 4 / 32, "70B Adam moments per device", 0.01)
    _close(r["kv_cache"], 2 * 80 * (64 // 32) * 1024 * 8 * 128 * 2, "70B KV cache", 0.01)
    assert r["fits_train"] and r["fits_sample"]


@pytest.mark.slow
def test_lora_plan_freezes_the_base_and_trains_adapters_only():
    cfg = _small()
    train = TrainConfig(batch_size=8, seq_len=64, remat="full", compute_dtype="bfloat16",
                        lora=LoraConfig(rank=8, targets=("q", "v", "o", "down")))
    r = plan(cfg, train, dict(fsdp=2, tensor=2), 4, 1.0, 8, 128, sample_dtype="bfloat16")
    h = r.hand
    _close(r.frozen, h["frozen"], "frozen base")
    _close(r.params, h["params"], "adapters")
    _close(r.opt_state, h["adam"], "adapters' Adam moments")
    _close(r.train_arguments, h["frozen"] + h["params"] + h["adam"] + h["batch"], "arguments")
    full = hand_estimate(cfg, dataclasses.replace(train, lora=LoraConfig()), dict(fsdp=2,
                         tensor=2), 8, 128, "bfloat16")
    assert r.opt_state < full["adam"] / 10 and r.fits_train
    assert "frozen base (LoRA)" in r.table() and "rank 8 on q,v,o,down" in r.table()


@pytest.mark.slow
def test_a_teacher_is_counted_in_the_step_and_in_sampling():
    student = _small()
    teacher = dataclasses.replace(student, hidden_size=512, intermediate_size=1024,
                                  num_layers=4, sliding_windows=(0,) * 4)
    mesh = dict(fsdp=2, tensor=2)
    train = TrainConfig(batch_size=8, seq_len=64, remat="full")
    sft = plan(student, train, mesh, 4, 1.0, 8, 128, name="student")
    kd_train = dataclasses.replace(train, kd=KDConfig("reverse_kl"))
    kd = plan(student, kd_train, mesh, 4, 1.0, 8, 128, name="student", teacher_cfg=teacher,
              teacher_name="big", teacher_dtype="bfloat16")
    # the frozen teacher's bf16 weights, split over fsdp x tensor, are arguments of the step
    teacher_bytes = num_params(teacher) * 2 / 4
    _close(kd.teacher_train, teacher_bytes, "teacher weights per device", 0.02)
    _close(kd.train_arguments - sft.train_arguments, teacher_bytes, "step arguments", 0.05)
    # ... and it samples System 2 with its own weights beside the student's
    _close(kd.teacher_sample_params, teacher_bytes, "teacher sampling weights", 0.02)
    assert kd.teacher_sample_total > kd.teacher_sample_params and kd.separate_teacher
    assert kd.run_total == kd.train_total + kd.sample_params  # its KD weights are the loaded ones
    table = kd.table()
    assert "frozen teacher (KD)" in table and "teacher sampling total" in table
    assert "; teacher big" in table.splitlines()[0]
    # sequence-level: the teacher only samples, and stays loaded while the student trains
    seq = plan(student, train, mesh, 4, 1.0, 8, 128, teacher_cfg=teacher, teacher_name="big",
               teacher_dtype="bfloat16")
    assert seq.teacher_train == 0 and seq.train_total == sft.train_total
    assert seq.run_total == sft.run_total + seq.teacher_sample_params
    # no teacher named, KD on: the student's own weights, counted once more in the step
    own = plan(student, kd_train, mesh, 4, 1.0, 8, 128)
    assert own.teacher == "student" and own.teacher_train == sft.params


def test_the_unrolled_decodes_copy_of_the_layers_is_counted_in_sampling():
    # the sampler decodes with its layers unrolled on CPU under 200M params and on GPU under 4B:
    # a per-layer copy of the layer weights, beside the stacked ones its programs take
    cfg, mesh = _small(), make_mesh(devices=jax.devices()[:1])
    layers = sum(math.prod(s.shape) for name, s in param_specs(cfg).items()
                 if name.startswith("layers.")) * 4
    assert unrolled_weights(cfg, mesh, jnp.float32) == layers  # this process: CPU
    assert unrolled_weights(cfg, mesh, jnp.float32, "gpu") == layers
    assert unrolled_weights(cfg, mesh, jnp.float32, "tpu") == 0
    big = ModelConfig.from_file(SHAPES / "llama-3.1-8b-instruct.json")  # over both limits
    assert unrolled_weights(big, mesh, jnp.bfloat16, "gpu") == 0
    gemma = ModelConfig.from_file(SHAPES / "gemma-3-270m-it.json")  # a GPU unrolls it, not CPU
    assert unrolled_weights(gemma, mesh, jnp.bfloat16, "cpu") == 0
    assert unrolled_weights(gemma, mesh, jnp.bfloat16, "gpu") > 0
    r = plan(cfg, TrainConfig(batch_size=8, seq_len=64, remat="full"), {}, 1, 1.0, 8, 128)
    assert r.unrolled_weights == layers and "layer copy (unrolled decode)" in r.table()
    assert r.sample_total >= r.sample_params + r.kv_cache + layers
    assert r.prefill_total >= r.sample_params + r.kv_cache + layers
