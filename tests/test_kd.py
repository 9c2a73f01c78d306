"""Token-level distillation: the divergences' closed-form gradients, the fused chunked loss
against full logits, GKD's reduction to SFT, finite differences through a tiny model, teacher
contexts packed beside the student's, and the sharded step."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import s2jax
from s2jax.core.errors import S2JaxError
from s2jax.models.config import ModelConfig
from s2jax.models.module import Transformer
from s2jax.models.params import num_params
from s2jax.train import TrainConfig, finetune
from s2jax.train.config import KDConfig
from s2jax.train.data import pack, tokenize_examples
from s2jax.train.divergence import token_terms
from s2jax.train.loss import Teacher, fused_distill_loss
from s2jax.train.step import _sums, run_teacher

KINDS = [KDConfig("forward_kl"), KDConfig("reverse_kl"), KDConfig("jsd", beta=0.3),
         KDConfig("jsd", beta=0.9, ce_weight=0.4), KDConfig("reverse_kl", ce_weight=0.5)]


def reference_terms(kd: KDConfig, z, targets, z_t):
    """A token's loss by the definitions, from full log-softmaxes (differentiated by JAX)."""
    logp, logq = jax.nn.log_softmax(z), jax.nn.log_softmax(z_t)
    p, q = jnp.exp(logp), jnp.exp(logq)
    ce = optax.softmax_cross_entropy_with_integer_labels(z, targets)
    if kd.divergence == "forward_kl":
        div = jnp.sum(q * (logq - logp), -1)
    elif kd.divergence == "reverse_kl":
        div = jnp.sum(p * (logp - logq), -1)
    else:
        m = kd.beta * q + (1 - kd.beta) * p
        div = (kd.beta * jnp.sum(q * (logq - jnp.log(m)), -1)
               + (1 - kd.beta) * jnp.sum(p * (logp - jnp.log(m)), -1))
    return kd.ce_weight * ce + (1 - kd.ce_weight) * div


@pytest.mark.parametrize("kd", KINDS, ids=str)
def test_closed_form_gradients_equal_autodiff_of_the_definitions(kd):
    k = jax.random.split(jax.random.PRNGKey(0), 3)
    z, z_t = 2 * jax.random.normal(k[0], (6, 23)), 2 * jax.random.normal(k[1], (6, 23))
    targets = jax.random.randint(k[2], (6,), 0, 23)
    loss, nll, _, d_z = token_terms(kd, z, targets, z_t)
    want = reference_terms(kd, z, targets, z_t)
    np.testing.assert_allclose(loss, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(nll, optax.softmax_cross_entropy_with_integer_labels(z, targets),
                               rtol=1e-6)
    grad = jax.grad(lambda z: jnp.sum(reference_terms(kd, z, targets, z_t)))(z)
    np.testing.assert_allclose(d_z, grad, rtol=1e-5, atol=1e-6)
    assert np.all(np.asarray(loss) > 0) and np.abs(np.asarray(d_z)).max() > 1e-2
    # a divergence from itself is zero, with no gradient
    same, _, _, d_same = token_terms(dataclasses.replace(kd, ce_weight=0.0), z, targets, z)
    np.testing.assert_allclose(same, 0.0, atol=1e-6)
    np.testing.assert_allclose(d_same, 0.0, atol=1e-6)


B, T, S, D, E, V = 2, 11, 14, 8, 6, 37


def _teacher_data(seed=0):
    """Student states [B, T, D]; a teacher over its own rows of S tokens ([B, S, E]) whose
    positions are aligned with the student's by `index`; targets, weights and both heads."""
    k = jax.random.split(jax.random.PRNGKey(seed), 7)
    x = jax.random.normal(k[0], (B, T, D))
    xt = jax.random.normal(k[1], (B, S, E))
    index = jax.random.randint(k[2], (B, T), 0, S)
    targets = jax.random.randint(k[3], (B, T), 0, V)
    weights = (jax.random.uniform(k[4], (B, T)) > 0.4).astype(jnp.float32)
    head = {"embed": 0.5 * jax.random.normal(k[5], (V, D))}
    t_head = {"lm_head": 0.7 * jax.random.normal(k[6], (V, E))}
    return x, xt, index, targets, weights, head, t_head


STUDENT = lambda h, x: 3.0 * jnp.tanh(jnp.einsum("...d,vd->...v", x, h["embed"]) / 3.0)
TEACHER = lambda h, x: jnp.einsum("...d,vd->...v", x, h["lm_head"])


# every chunk length for one divergence (0: all positions at once; 2: many chunks; 24 and 100:
# more than a row's positions), and the others at a chunking each: the chunking does not depend
# on the divergence, and each case compiles three steps (CI time)
@pytest.mark.parametrize("kd,chunk", [*((KINDS[0], c) for c in (0, 2, 24, 100)),
                                      (KINDS[1], 2), (KINDS[2], 24)], ids=str)
def test_chunked_kd_equals_the_unchunked_reference(kd, chunk):
    x, xt, index, targets, weights, head, t_head = _teacher_data()

    def reference(head, x):
        z_t = TEACHER(t_head, jnp.take_along_axis(xt, index[..., None], axis=1))
        return jnp.sum(reference_terms(kd, STUDENT(head, x), targets, z_t) * weights)

    def fused(head, x, chunk=chunk):
        teacher = Teacher(TEACHER, t_head, xt, index)
        return fused_distill_loss(kd, STUDENT, chunk, head, x, targets, weights, teacher)[0]

    # against full logits differentiated by JAX (the closed forms round differently: 5e-6),
    # and against the fused loss computing every logit at once (1e-6)
    for ref, tol in ((reference, 5e-6), (lambda h, x: fused(h, x, 0), 1e-6)):
        want, want_g = jax.jit(jax.value_and_grad(ref, (0, 1)))(head, x)
        got, got_g = jax.jit(jax.value_and_grad(fused, (0, 1)))(head, x)
        assert abs(float(got) - float(want)) <= tol * abs(float(want))
        for g, w in zip(jax.tree.leaves(got_g), jax.tree.leaves(want_g), strict=True):
            assert np.abs(g - w).max() <= tol * np.abs(w).max()
    # positions of weight 0 are never scored: any teacher position there changes nothing
    # (the same program on both indices: a value-and-gradient program may round differently)
    moved = jnp.where(weights > 0, index, (index + 5) % S)
    loss = jax.jit(lambda h, x, i: fused_distill_loss(
        kd, STUDENT, chunk, h, x, targets, weights, Teacher(TEACHER, t_head, xt, i))[0])
    assert float(loss(head, x, moved)) == float(loss(head, x, index))


TINY = dict(architecture="LlamaForCausalLM", vocab_size=64, hidden_size=16,
            intermediate_size=24, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=4)


def _model_batch(seed=0):
    """A packed student batch (3 segments in row 0) and a teacher batch of other tokens."""
    rng = np.random.default_rng(seed)
    Bm, Tm, Sm = 2, 12, 15
    tokens = rng.integers(0, 64, (Bm, Tm)).astype(np.int32)
    seg = np.ones((Bm, Tm), np.int32)
    seg[0, 4:9], seg[0, 9:] = 2, 3
    weights = np.zeros((Bm, Tm), np.float32)
    weights[:, [2, 3, 6, 7, 10]] = 1.0
    return dict(tokens=tokens, targets=rng.integers(0, 64, (Bm, Tm)).astype(np.int32),
                segment_ids=seg, weights=weights,
                teacher_tokens=rng.integers(0, 64, (Bm, Sm)).astype(np.int32),
                teacher_segment_ids=np.ones((Bm, Sm), np.int32),
                teacher_index=rng.integers(0, Sm, (Bm, Tm)).astype(np.int32))


@pytest.mark.parametrize("ce_weight", [0.0, 0.3])
def test_gkd_with_a_one_hot_teacher_is_sft(ce_weight):
    # GKD without sampling (on the fixed data) with forward KL from a one-hot teacher is the
    # cross-entropy on the targets: the same loss and gradients, to 1e-6
    cfg = ModelConfig(**TINY)
    params = Transformer(cfg, rngs=nnx.Rngs(1)).params()
    batch = _model_batch()
    kd = TrainConfig(kd=KDConfig("forward_kl", ce_weight=ce_weight), loss_chunk=6, remat="none")
    sft = dataclasses.replace(kd, kd=KDConfig())
    # a teacher whose logits are 1e4 x onehot(target): exactly one-hot after its softmax
    onehot = Teacher(lambda h, x: 1e4 * x, {}, jax.nn.one_hot(batch["targets"], 64),
                     jnp.broadcast_to(jnp.arange(12), (2, 12)))
    want, want_g = jax.value_and_grad(lambda p: _sums(cfg, sft, None, p, batch)[0])(params)
    got, got_g = jax.value_and_grad(lambda p: _sums(cfg, kd, None, p, batch, onehot)[0])(params)
    assert abs(float(got) - float(want)) <= 1e-6 * abs(float(want))
    for name in params:
        assert np.abs(got_g[name] - want_g[name]).max() <= 1e-6 * np.abs(want_g[name]).max()


@pytest.mark.parametrize("kd", [KDConfig("forward_kl"), KDConfig("reverse_kl"),
                                KDConfig("jsd", beta=0.5, ce_weight=0.2)], ids=str)
def test_kd_gradients_match_finite_differences_on_a_tiny_model(kd):
    cfg = ModelConfig(**TINY)
    t_cfg = ModelConfig(**{**TINY, "hidden_size": 24, "num_layers": 1})
    # weights 10x the init's scale: peaked distributions, a loss of ~10 and gradients ~1 that
    # central differences in fp32 resolve to ~1e-3
    sharpen = lambda p: {k: v if "norm" in k else 10 * v for k, v in p.items()}
    params = sharpen(Transformer(cfg, rngs=nnx.Rngs(3)).params())
    t_params = sharpen(Transformer(t_cfg, rngs=nnx.Rngs(4)).params())
    batch = _model_batch(1)

    def loss_fn(tcfg):
        teacher = lambda: (run_teacher(t_cfg, tcfg, None, t_params, batch)
                           if tcfg.kd.enabled else None)
        return jax.jit(lambda p: _sums(cfg, tcfg, None, p, batch, teacher())[0])

    f = loss_fn(TrainConfig(kd=kd, loss_chunk=8, remat="none"))
    grad = jax.jit(jax.grad(f))(params)
    sft = jax.jit(jax.grad(loss_fn(TrainConfig(loss_chunk=8, remat="none"))))(params)
    rng = np.random.default_rng(0)
    for name in ("embed", "layers.q", "layers.k", "layers.down", "final_norm"):
        # along the gradient, tilted by a random direction
        g, r = np.asarray(grad[name]), rng.standard_normal(params[name].shape)
        v = (g / np.linalg.norm(g) + 0.5 * r / np.linalg.norm(r)).astype(np.float32)
        v /= np.linalg.norm(v)
        eps = 3e-3 * float(np.linalg.norm(params[name]))
        shift = lambda s, name=name, v=v: {**params, name: params[name] + s * v}
        fd = (float(f(shift(eps))) - float(f(shift(-eps)))) / (2 * eps)
        exact = float(jnp.sum(grad[name] * v))
        assert abs(fd - exact) <= 1e-2 * abs(exact), (name, fd, exact)
        # the check can fail: the cross-entropy's gradient is not this loss's
        if kd.ce_weight == 0:
            assert abs(fd - float(jnp.sum(sft[name] * v))) > 5e-2 * abs(exact), name


WORDS = ["red", "blue", "green", "cat", "dog", "sun", "moon", "star", "coin", "fox"]


def _context_examples(n: int, seed: int = 0) -> list[dict]:
    """Chats whose teacher reads a longer context (a hint before the question), answering the
    same words: context distillation's data."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        question = f"Item {i}: " + " ".join(rng.choice(WORDS, i % 4 + 1))
        answer = {"role": "assistant", "content": " ".join(rng.choice(WORDS, 3))}
        hint = "Hint: " + " ".join(rng.choice(WORDS, 6)) + ". "
        rows.append({"messages": [{"role": "user", "content": question}, answer],
                     "teacher_messages": [{"role": "user", "content": hint + question}, answer]})
    return rows


def test_teacher_contexts_pack_beside_the_students_aligned_on_answer_tokens(hf_checkpoint):
    _, tok = s2jax.load(hf_checkpoint("llama3"))
    data = tokenize_examples(tok, _context_examples(9), teacher_tokenizer=tok)
    assert all(len(e.teacher_ids) > len(e.ids) for e in data)
    b = pack(data, range(9), 128, teacher_seq_len=192)
    r, t = np.nonzero(b["weights"])
    i = b["teacher_index"][r, t]
    # the teacher's position predicts the same answer token, within the same example
    np.testing.assert_array_equal(b["teacher_tokens"][r, i + 1], b["targets"][r, t])
    np.testing.assert_array_equal(b["teacher_segment_ids"][r, i], b["segment_ids"][r, t])
    assert len(t) == sum(int(e.loss_mask[1:].sum()) for e in data)
    assert b["segment_ids"].max() > 1  # packed, and no row over either length
    assert (b["teacher_segment_ids"] > 0).sum() == sum(len(e.teacher_ids) for e in data)
    # a teacher cut short of the answer: those answer tokens carry no loss
    cut = len(data[0].teacher_ids) - 3
    kept = data[0].teacher_loss_mask[1:cut].sum()
    assert 0 < kept < data[0].loss_mask[1:].sum()
    short = pack(data[:1], [0], 64, teacher_seq_len=cut)
    assert short["weights"].sum() == kept
    bad = [{**_context_examples(1)[0], "teacher_messages": [
        {"role": "user", "content": "x"}, {"role": "assistant", "content": "another answer"}]}]
    with pytest.raises(S2JaxError, match="examples row 0: the teacher's context has answer"):
        tokenize_examples(tok, bad, teacher_tokenizer=tok)


def _kd_run(hf_checkpoint, tmp_path, name, **overrides):
    model, tok = s2jax.load(hf_checkpoint("qwen2"), dtype="float32")
    teacher, _ = s2jax.load(hf_checkpoint("llama3"), dtype="float32")
    base = dict(steps=3, seq_len=48, batch_size=8, learning_rate=1e-3, progress=False,
                export=False, kd=KDConfig("jsd", beta=0.5, ce_weight=0.25, teacher_seq_len=64))
    cfg = TrainConfig(**{**base, **overrides})
    return finetune(model, tok, _context_examples(24), cfg, tmp_path / name, teacher=teacher)


def _metrics(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


@pytest.mark.slow
def test_kd_step_on_eight_devices_equals_one(hf_checkpoint, tmp_path):
    one = _kd_run(hf_checkpoint, tmp_path, "one")
    eight = _kd_run(hf_checkpoint, tmp_path, "eight", mesh="data=2,fsdp=2,tensor=2")
    # the step ran on the train mesh's 8 devices; the trained weights come back onto the
    # model's own shardings (one device here), as finetune hands them back to the sampler
    assert len(eight.param("layers.q").get_value().sharding.device_set) == 1
    record = json.loads((tmp_path / "eight" / "train_config.json").read_text())
    assert record["mesh"] == "data=2,fsdp=2,tensor=2"
    start, _ = s2jax.load(hf_checkpoint("qwen2"), dtype="float32")
    for name, value in one.params().items():
        a, b = np.asarray(value), np.asarray(eight.param(name).get_value())
        assert np.abs(a - np.asarray(start.param(name).get_value())).max() > 1e-4, name
        np.testing.assert_allclose(a, b, atol=2e-5, rtol=0, err_msg=name)
    rows = [_metrics(tmp_path / run / "metrics.jsonl") for run in ("one", "eight")]
    for key in ("loss", "ce", "grad_norm"):
        np.testing.assert_allclose([r[key] for r in rows[0]], [r[key] for r in rows[1]],
                                   rtol=1e-5, err_msg=key)
    assert all(r["ce"] != r["loss"] for r in rows[0])  # the mix is not the cross-entropy


@pytest.mark.slow
def test_context_distillation_with_lora_from_the_frozen_base(hf_checkpoint, tmp_path):
    # the default teacher is the student's own base; with LoRA it is the frozen base itself.
    # It reads the hinted context, the student the bare question: the student's divergence
    # from it falls as the adapters learn
    from s2jax.train.config import LoraConfig

    model, tok = s2jax.load(hf_checkpoint("qwen2"), dtype="float32")
    cfg = TrainConfig(steps=12, seq_len=48, batch_size=8, learning_rate=1e-2, progress=False,
                      export=False, lora=LoraConfig(rank=4, alpha=8.0),
                      kd=KDConfig("reverse_kl", teacher_seq_len=64))
    finetune(model, tok, _context_examples(16), cfg, tmp_path / "lora")
    rows = _metrics(tmp_path / "lora" / "metrics.jsonl")
    assert rows[0]["loss"] > 1e-3  # the contexts differ, so the distributions do
    assert rows[-1]["loss"] < 0.7 * rows[0]["loss"], [r["loss"] for r in rows]
    record = json.loads((tmp_path / "lora" / "train_config.json").read_text())
    assert record["kd"]["divergence"] == "reverse_kl" and record["teacher"]["params"] > 0
    # the same data without teacher contexts: student and teacher agree, nothing to learn
    plain = [{"messages": r["messages"]} for r in _context_examples(16)]
    model, tok = s2jax.load(hf_checkpoint("qwen2"), dtype="float32")
    finetune(model, tok, plain, dataclasses.replace(cfg, steps=1), tmp_path / "same")
    assert abs(_metrics(tmp_path / "same" / "metrics.jsonl")[0]["loss"]) < 1e-6


def test_kd_refuses_a_teacher_of_another_vocabulary(hf_checkpoint, tmp_path):
    model, tok = s2jax.load(hf_checkpoint("qwen2"), dtype="float32")
    other = Transformer(ModelConfig(**TINY), rngs=nnx.Rngs(0))  # 64 tokens, not 320
    with pytest.raises(S2JaxError, match="teacher's vocabulary .64. is not the student's .320"):
        finetune(model, tok, _context_examples(8), TrainConfig(kd=KDConfig("forward_kl")),
                 tmp_path / "run", teacher=other)
    assert not (tmp_path / "run" / "checkpoints").exists()
    with pytest.raises(S2JaxError, match="kd.beta=1"):
        KDConfig("jsd", beta=1)


def _echo_task():
    """last_letter with an extractor that reads any text, so a random model yields answers."""
    from s2jax.tasks import TASKS

    return dataclasses.replace(TASKS["last_letter"], name="echo",
                               extract=lambda t: t.strip().split()[0] if t.strip() else "?")


def _run_config(hf_checkpoint, teacher, **train):
    from s2jax.core.text_generator import SamplingParams
    from s2jax.run.config import DataConfig, ExperimentConfig

    return ExperimentConfig(
        name="kd", model=str(hf_checkpoint("llama2")), task="echo", method="rar_1step",
        unlabeled=DataConfig(synthetic=6, seed=1), test=DataConfig(synthetic=3, seed=2),
        sampling=SamplingParams(n=2, max_new_tokens=6),
        eval_sampling=SamplingParams(max_new_tokens=6), teacher=teacher, dtype="float32",
        train=TrainConfig(steps=2, seq_len=96, batch_size=2, progress=False, **train),
        max_batch=8, max_len=256)


@pytest.mark.slow
def test_a_teacher_apart_from_the_student_runs_system2_and_teaches_its_context(
        hf_checkpoint, tmp_path):
    import pyarrow.parquet as pq

    from s2jax.run.config import TeacherConfig
    from s2jax.run.pipeline import run_experiment

    teacher = TeacherConfig(model=str(hf_checkpoint("qwen2")), method="rar_2step")
    config = _run_config(hf_checkpoint, teacher, kd=KDConfig("jsd", teacher_seq_len=256))
    results = run_experiment(config, tmp_path / "run", tasks={"echo": _echo_task()},
                             log=lambda _: None)
    assert results["teacher"] == teacher.model and results["method"] == "rar_2step"
    assert [r["system"] for r in results["rows"]] == ["system1", "system2", "distilled"]
    gens = [json.loads(x) for x in (tmp_path / "run/generations.jsonl").read_text().splitlines()]
    assert {g["method"] for g in gens} == {"rar_2step"}
    rephrased = {s["stages"]["rephrase"]["text"].strip() for g in gens for s in g["samples"]}
    rows = pq.read_table(tmp_path / "run/distill/train.parquet").to_pylist()
    assert rows
    for row in rows:  # the teacher read its own System 2 prompt, answering as the student does
        assert row["teacher_messages"][-1] == row["messages"][-1]
        assert any(r and r in row["teacher_messages"][-2]["content"] for r in rephrased)
        assert row["teacher_messages"][-2] != row["messages"][-2]
    record = json.loads((tmp_path / "run/train/train_config.json").read_text())
    qwen, _ = s2jax.load(teacher.model)
    assert record["teacher"]["params"] == num_params(qwen.config)
    assert all("ce" in r for r in _metrics(tmp_path / "run/train/metrics.jsonl") if "loss" in r)


@pytest.mark.slow
def test_another_tokenizer_distils_through_text_and_not_by_tokens(hf_checkpoint, tmp_path):
    from s2jax.run.config import TeacherConfig
    from s2jax.run.pipeline import run_experiment
    from s2jax.testing.tokenizers import gemma_tokenizer
    from tests.hf_fixtures import make_hf_checkpoint

    # a teacher with its own tokenizer and chat template (Gemma-style; the same vocabulary size)
    path = make_hf_checkpoint(tmp_path / "teacher", "qwen2", tokenizer=gemma_tokenizer())
    teacher = TeacherConfig(model=str(path), method="rar_1step")
    config = _run_config(hf_checkpoint, teacher)
    results = run_experiment(config, tmp_path / "seq", tasks={"echo": _echo_task()},
                             log=lambda _: None)
    assert results["teacher"] == teacher.model and len(results["rows"]) == 3
    kd = _run_config(hf_checkpoint, teacher, kd=KDConfig("forward_kl"))
    with pytest.raises(S2JaxError, match="needs one tokenizer"):
        run_experiment(kd, tmp_path / "tok", tasks={"echo": _echo_task()}, log=lambda _: None)


def test_a_run_from_before_kd_resumes_and_a_changed_kd_does_not(tmp_path):
    from s2jax.train.loop import _check_resume

    record = {"steps": 3, "base": "b", "kd": dataclasses.asdict(KDConfig()), "teacher": None}
    before = {"steps": 3, "base": "b"}  # written before kd
    (tmp_path / "train_config.json").write_text(json.dumps(before))
    _check_resume(tmp_path, record, resuming=True, writer=False)
    changed = {**record, "kd": dataclasses.asdict(KDConfig("reverse_kl"))}
    with pytest.raises(S2JaxError, match="train_config.json: kd="):
        _check_resume(tmp_path, changed, resuming=True, writer=False)


def test_train_command_distils_from_a_teacher(hf_checkpoint, tmp_path):
    from s2jax.cli import main

    data = tmp_path / "set.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _context_examples(8)))
    common = ["train", "--model", str(hf_checkpoint("qwen2")), "--data", str(data), "--steps", "2",
              "--batch-size", "4", "--seq-len", "64", "--no-progress", "--no-export"]
    assert main([*common, "--out", str(tmp_path / "bad"), "--teacher",
                 str(hf_checkpoint("llama3"))]) == 2  # a teacher without a divergence
    assert main([*common, "--out", str(tmp_path / "run"), "--teacher",
                 str(hf_checkpoint("llama3")), "--kd-divergence", "jsd", "--kd-beta", "0.3",
                 "--kd-teacher-seq-len", "96"]) == 0
    record = json.loads((tmp_path / "run/train_config.json").read_text())
    assert record["kd"]["divergence"] == "jsd" and record["kd"]["beta"] == 0.3
    llama, _ = s2jax.load(hf_checkpoint("llama3"))
    assert record["teacher"]["params"] == num_params(llama.config)
    assert all("ce" in r for r in _metrics(tmp_path / "run/metrics.jsonl"))


def test_logit_kd_across_vocabularies_is_one_line_error_before_any_work(hf_checkpoint, tmp_path):
    # e.g. a Qwen2.5 teacher (151,936 tokens) and a SmolLM2 student (49,152): its sampled
    # answers may teach through text, its logits may not
    from s2jax.run.config import TeacherConfig
    from s2jax.run.pipeline import resolve
    from s2jax.run.plan import plan

    other = tmp_path / "other"
    other.mkdir()
    shapes = json.loads((hf_checkpoint("llama2") / "config.json").read_text())
    shapes["vocab_size"] *= 2
    (other / "config.json").write_text(json.dumps(shapes))
    teacher = TeacherConfig(model=str(other), method="rar_1step")
    tasks = {"echo": _echo_task()}
    with pytest.raises(S2JaxError) as e:
        resolve(_run_config(hf_checkpoint, teacher, kd=KDConfig("forward_kl")), tmp_path / "kd",
                tasks=tasks)
    assert "\n" not in str(e.value) and "needs one vocabulary" in str(e.value)
    assert "train.kd.divergence=none" in str(e.value) and not (tmp_path / "kd").exists()
    d = resolve(_run_config(hf_checkpoint, teacher), tmp_path / "seq", tasks=tasks)
    assert d.teacher == str(other) and not d.teacher_context  # sequence-level: through text
    student, big = (ModelConfig.from_file(p / "config.json") for p in (hf_checkpoint("llama2"),
                                                                        other))
    with pytest.raises(S2JaxError, match=r"^--kd forward_kl: the teacher big has \d+ tokens"):
        plan(student, TrainConfig(kd=KDConfig("forward_kl")), dict(fsdp=1), 1, 1.0, 8, 128,
             teacher_cfg=big, teacher_name="big")


def test_kd_refuses_a_curriculum_over_teacher_contexts(hf_checkpoint, tmp_path):
    # (sweeps take a teacher and train.kd: tests/test_sweep_plan.py, tests/test_sweep.py)
    from s2jax.train.config import CurriculumConfig

    model, tok = s2jax.load(hf_checkpoint("qwen2"), dtype="float32")
    rows = [{**r, "trace": r["messages"][-1]["content"].split()[0]}
            for r in _context_examples(8)]
    cfg = TrainConfig(steps=2, seq_len=48, batch_size=4, progress=False, export=False,
                      kd=KDConfig("reverse_kl", teacher_seq_len=64),
                      curriculum=CurriculumConfig(tokens_per_stage=1, steps_per_stage=1))
    # the removal shortens the student's answers only: the teacher's would no longer align
    with pytest.raises(S2JaxError, match="curriculum.tokens_per_stage > 0 with rows' teacher_"):
        finetune(model, tok, rows, cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_the_train_memory_check_counts_a_kd_teachers_frozen_weights(monkeypatch):
    from s2jax.run import stages
    from s2jax.toy.demo import base_model_dir

    model, _ = s2jax.load(base_model_dir(), dtype="float32")
    seen = []
    monkeypatch.setattr("s2jax.parallel.memory.check_fits_devices",
                        lambda total, devices, what, advice: seen.append((total, what)))
    cfg = TrainConfig(steps=1, seq_len=64, batch_size=2, remat="none")
    for kd in (KDConfig(), KDConfig("jsd")):
        stages.check_train_memory(model, dataclasses.replace(cfg, kd=kd))
    (sft, _), (kd, what) = seen
    # by default the teacher is the student's own base: its fp32 weights, once more
    assert kd - sft == num_params(model.config) * 4 / stages.TRAIN_MEMORY_SLACK
    assert "a frozen teacher's too" in what
