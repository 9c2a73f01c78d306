"""SFT: loss masking, packing, accumulation, sharding, overfitting, NaN guard, HF export."""

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import s2jax
from s2jax.core.errors import S2JaxError
from s2jax.parallel.sharding import make_mesh
from s2jax.train import TrainConfig, finetune, optim, tokenize_chat
from s2jax.train import step as train_steps
from s2jax.train.data import Batches, pack, read_examples, tokenize_examples
from s2jax.train.optim import decays, learning_rate_schedule
from s2jax.train.state import plan_state
from s2jax.train.step import token_losses
from tests.hf_fixtures import load_reference

WORDS = ["red", "blue", "green", "cat", "dog", "sun", "moon", "star", "coin", "fox"]


def _examples(n: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"messages": [
        {"role": "user", "content": f"Item {i}: " + " ".join(rng.choice(WORDS, i % 4 + 1))},
        {"role": "assistant", "content": " ".join(rng.choice(WORDS, 3))}],
        "source": "test"} for i in range(n)]


def _params(model):
    return {k: np.asarray(v) for k, v in model.params().items()}


def test_answer_mask_is_the_answer_and_its_end_token(hf_checkpoint):
    _, tok = s2jax.load(hf_checkpoint("llama3"))
    chat = [{"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is 12 + 30?"},
            {"role": "assistant", "content": "42"},
            {"role": "user", "content": "And 1 + 1?"},
            {"role": "assistant", "content": "The answer is 2."}]
    ex = tokenize_chat(tok, chat)
    # the whole chat, as the template renders it, and nothing else
    assert tok.decode(ex.ids) == tok.apply_chat_template(chat, tokenize=False)
    spans = np.flatnonzero(np.diff(np.r_[0, ex.loss_mask.astype(int), 0]))
    answers = [tok.decode(ex.ids[a:b]) for a, b in zip(spans[::2], spans[1::2], strict=True)]
    assert answers == ["42<|end|>", "The answer is 2.<|end|>"]
    # each answer is tokenized after its own generation prompt, as at inference
    prompt = tok.apply_chat_template(chat[:2], tokenize=False, add_generation_prompt=True)
    n = len(tok(prompt, add_special_tokens=False)["input_ids"])
    assert not ex.loss_mask[:n].any() and ex.loss_mask[n]
    everything = tokenize_chat(tok, chat, loss_on="all")
    assert everything.loss_mask.all() and (everything.ids == ex.ids).all()


def test_prompt_labels_do_not_change_the_loss(hf_checkpoint):
    model, tok = s2jax.load(hf_checkpoint("llama3"), dtype="float32")
    data = tokenize_examples(tok, _examples(6))
    b = pack(data, range(6), 48)
    w = b["weights"]

    def loss(targets):
        nll, _ = token_losses(model.config, model.params(), jnp.asarray(b["tokens"]),
                              jnp.asarray(targets), jnp.asarray(b["segment_ids"]))
        return float((np.asarray(nll) * w).sum() / w.sum())

    rng = np.random.default_rng(1)
    noise = rng.integers(0, model.config.vocab_size, b["targets"].shape).astype(np.int32)
    assert w.sum() > 0 and (w == 0).sum() > w.sum()
    base = loss(b["targets"])
    assert loss(np.where(w > 0, b["targets"], noise)) == base
    assert abs(loss(np.where(w > 0, noise, b["targets"])) - base) > 1e-3  # the answers do count


@pytest.mark.parametrize("family", ["mistral_window", "qwen2"])
def test_packed_batch_gives_the_unpacked_per_example_losses(hf_checkpoint, family):
    model, tok = s2jax.load(hf_checkpoint(family), dtype="float32")
    data = tokenize_examples(tok, _examples(7, seed=2))
    order = [3, 0, 6, 1, 5, 2, 4]

    def per_example(packed):
        b = pack(data, order, 64, packed)
        nll, _ = token_losses(model.config, model.params(), *(jnp.asarray(b[k]) for k in (
            "tokens", "targets", "segment_ids")))
        nll = np.asarray(nll) * b["weights"]
        out = []
        for r in range(len(nll)):
            for s in range(1, b["segment_ids"][r].max() + 1):
                out.append(nll[r][b["segment_ids"][r] == s].sum())
        return np.array(out), len(nll)

    packed, rows = per_example(True)
    unpacked, n = per_example(False)
    assert rows < n == 7
    np.testing.assert_allclose(packed, unpacked, rtol=2e-5, atol=1e-5)


def test_batches_resume_and_cover_each_epoch(hf_checkpoint):
    _, tok = s2jax.load(hf_checkpoint("llama3"))
    data = tokenize_examples(tok, _examples(10))
    make = lambda: Batches(data, seq_len=32, batch_size=2, grad_accum=1, packed=False, seed=3)
    a = make()
    first = [next(a) for _ in range(5)]  # exactly one epoch of 10 rows
    seen = sorted(tuple(r[r > 0]) for b in first for r in b["tokens"][0])
    assert seen == sorted(tuple(e.ids[:32]) for e in data)
    state = a.state()
    ahead = [next(a)["tokens"] for _ in range(3)]
    b = make()
    b.restore(json.loads(json.dumps(state)))
    for x in ahead:
        np.testing.assert_array_equal(next(b)["tokens"], x)
    assert not np.array_equal(first[0]["tokens"], ahead[0])  # epoch 1 is reshuffled


def test_schedule_and_decay_mask():
    cfg = TrainConfig(learning_rate=1.0, warmup_steps=10, schedule="cosine", min_lr_ratio=0.1)
    lr = learning_rate_schedule(cfg, 110)
    assert float(lr(0)) == 0.0 and float(lr(5)) == pytest.approx(0.5)
    assert float(lr(10)) == pytest.approx(1.0) and float(lr(60)) == pytest.approx(0.55)
    assert float(lr(110)) == pytest.approx(0.1)
    lin = learning_rate_schedule(TrainConfig(learning_rate=1.0, schedule="linear"), 100)
    assert float(lin(50)) == pytest.approx(0.5)
    assert [decays(n) for n in ("layers.q", "embed", "lm_head", "layers.attn_norm",
                                "final_norm", "layers.q_bias", "layers.k_norm")] == \
        [True, True, True, False, False, False, False]
    with pytest.raises(S2JaxError, match="schedule='exp'"):
        TrainConfig(schedule="exp")


def _run(hf_checkpoint, tmp_path, name, family="llama3", examples=None, **overrides):
    model, tok = s2jax.load(hf_checkpoint(family), dtype="float32")
    base = dict(steps=5, seq_len=48, batch_size=8, learning_rate=1e-3, progress=False,
                export=False)
    cfg = TrainConfig(**{**base, **overrides})
    return finetune(model, tok, examples or _examples(24), cfg, tmp_path / name), tok


@pytest.mark.slow
def test_eight_devices_agree_with_one(hf_checkpoint, tmp_path):
    one, _ = _run(hf_checkpoint, tmp_path, "one", family="qwen2", weight_decay=0.1)
    eight, _ = _run(hf_checkpoint, tmp_path, "eight", family="qwen2", weight_decay=0.1,
                    mesh="data=2,fsdp=2,tensor=2")
    # the step ran on the train mesh's 8 devices; the trained weights come back onto the
    # model's own shardings (one device here), as finetune hands them back to the sampler
    q = eight.param("layers.q").get_value()
    assert len(q.sharding.device_set) == 1
    start, _ = s2jax.load(hf_checkpoint("qwen2"), dtype="float32")
    a, b, s = _params(one), _params(eight), _params(start)
    for name in a:
        assert np.abs(a[name] - s[name]).max() > 1e-4, f"{name} did not train"
        np.testing.assert_allclose(a[name], b[name], atol=2e-5, rtol=0, err_msg=name)
    losses = [[json.loads(x)["loss"] for x in (tmp_path / run / "metrics.jsonl").read_text()
               .splitlines()] for run in ("one", "eight")]
    np.testing.assert_allclose(*losses, rtol=1e-5)


@pytest.mark.slow  # ~20 s idle: loads, trains 3 steps on 8 devices, exports, reloads
def test_a_train_mesh_of_its_own_hands_the_weights_back_resharded(hf_checkpoint, tmp_path):
    # one mesh per stage: the model samples on a tensor-parallel mesh, the step runs on fsdp;
    # the trained weights come back onto the model's own shardings, device to device, and are
    # the weights the run exported (what a resumed run reloads from disk)
    mesh = make_mesh(data=2, tensor=4)
    model, tok = s2jax.load(hf_checkpoint("llama3"), dtype="float32", mesh=mesh)
    start = model.params()
    config = TrainConfig(steps=3, seq_len=48, batch_size=8, learning_rate=1e-3, progress=False,
                         mesh="fsdp=8")
    finetune(model, tok, _examples(24), config, tmp_path / "run", mesh=mesh)
    trained = model.params()
    disk, _ = s2jax.load(tmp_path / "run" / "model", dtype="float32", mesh=mesh)
    for name, value in disk.params().items():
        assert trained[name].sharding == start[name].sharding, name
        np.testing.assert_array_equal(trained[name], value, err_msg=name)
    assert np.abs(np.asarray(trained["layers.q"]) - np.asarray(start["layers.q"])).max() > 1e-4


@pytest.mark.slow
def test_gradient_accumulation_is_a_bigger_batch(hf_checkpoint, tmp_path):
    big, _ = _run(hf_checkpoint, tmp_path, "big", steps=3, batch_size=8)
    acc, _ = _run(hf_checkpoint, tmp_path, "acc", steps=3, batch_size=4, grad_accum=2)
    # Adam hides a wrongly scaled gradient, so compare the gradient norms and losses too
    for name in ("loss", "grad_norm", "loss_tokens"):
        a, b = (np.array([json.loads(x)[name] for x in (tmp_path / run / "metrics.jsonl")
                          .read_text().splitlines()]) for run in ("big", "acc"))
        np.testing.assert_allclose(a, b, rtol=1e-5, err_msg=name)
    a, b = _params(big), _params(acc)
    for name in a:  # Adam divides tiny gradients by their tiny RMS: 1e-5 differences remain
        np.testing.assert_allclose(a[name], b[name], atol=5e-5, rtol=0, err_msg=name)


def test_bf16_compute_keeps_fp32_master_weights(hf_checkpoint, tmp_path):
    model, _ = _run(hf_checkpoint, tmp_path, "bf16", steps=8, compute_dtype="bfloat16",
                    remat="dots", learning_rate=3e-3)
    assert model.param("layers.q").get_value().dtype == jnp.float32
    rows = [json.loads(x) for x in (tmp_path / "bf16/metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["loss"] < rows[0]["loss"] - 0.5


@pytest.fixture(scope="module")
def overfit_run(hf_checkpoint, tmp_path_factory):
    """A tiny model trained to memorise 32 examples, exported to an HF dir."""
    run = tmp_path_factory.mktemp("overfit")
    examples = _examples(32, seed=5)
    model, tok = s2jax.load(hf_checkpoint("llama3"), dtype="float32")
    cfg = TrainConfig(steps=160, seq_len=64, batch_size=8, learning_rate=3e-3, warmup_steps=10,
                      checkpoint_every=80, progress=False)
    model = finetune(model, tok, examples, cfg, run, eval_examples=examples)
    return model, run


def test_tiny_model_overfits_32_examples(overfit_run):
    _, run = overfit_run
    summary = json.loads((run / "summary.json").read_text())
    assert summary["eval_accuracy"] > 0.99, summary
    assert (run / "tb").is_dir() and any((run / "tb").iterdir())
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == list(range(1, 161))
    assert {"loss", "lr", "grad_norm", "tokens_per_s", "accuracy"} <= set(rows[0])
    assert sorted(int(p.name) for p in (run / "checkpoints").iterdir() if p.name.isdigit()) \
        == [80, 160]


def test_exported_model_loads_in_transformers_with_same_logits(overfit_run):
    model, run = overfit_run
    rng = np.random.default_rng(0)
    ids = rng.integers(8, model.config.vocab_size, (2, 12)).astype(np.int32)
    ours = np.asarray(model(jnp.asarray(ids)))
    ref = load_reference(run / "model")
    with torch.no_grad():
        theirs = ref(input_ids=torch.tensor(ids, dtype=torch.long)).logits.numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=0)
    start, _ = s2jax.load(run / "model")
    assert np.abs(np.asarray(start.param("embed").get_value())
                  - np.asarray(model.param("embed").get_value())).max() == 0


def test_nan_guard_stops_and_keeps_the_last_good_checkpoint(hf_checkpoint, tmp_path):
    with pytest.raises(S2JaxError) as e:
        _run(hf_checkpoint, tmp_path, "nan", steps=40, learning_rate=1e12, max_grad_norm=0,
             checkpoint_every=1, warmup_steps=3)
    msg = str(e.value)
    assert "loss is nan" in msg or "loss is inf" in msg, msg
    bad = int(msg.split()[1].rstrip(":"))
    kept = sorted(int(p.name) for p in (tmp_path / "nan/checkpoints").iterdir()
                  if p.name.isdigit())
    assert kept and max(kept) == bad - 1 and f"last good checkpoint is step {bad - 1}" in msg
    assert not (tmp_path / "nan/model").exists()


def test_reads_parquet_and_prompt_completion(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = _examples(3)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    assert read_examples(tmp_path / "d.parquet") == rows
    (tmp_path / "pc.jsonl").write_text(json.dumps({"prompt": "a", "completion": "b"}) + "\n")
    assert read_examples(tmp_path / "pc.jsonl") == [{"prompt": "a", "completion": "b"}]


def test_bad_data_is_a_one_line_error(hf_checkpoint, tmp_path):
    import subprocess
    import sys

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    proc = subprocess.run([sys.executable, "-m", "s2jax.cli", "train", "--model",
                           str(hf_checkpoint("llama3")), "--data", str(bad), "--out",
                           str(tmp_path / "run")], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == ("s2jax train: error: examples row 0: 'messages' has no "
                                   "assistant message to train on")
    with pytest.raises(S2JaxError, match="batch_size=6: expected a multiple of data x fsdp = 4"):
        _run(hf_checkpoint, tmp_path, "m", batch_size=6, mesh="data=2,fsdp=2,tensor=2")


def test_sharded_state_is_born_sharded(hf_checkpoint):
    from s2jax.train.optim import make_optimizer
    from s2jax.train.state import plan_state

    model, _ = s2jax.load(hf_checkpoint("qwen2"), dtype="float32")
    mesh = make_mesh(data=2, fsdp=2, tensor=2)
    init, target = plan_state(model.config, make_optimizer(TrainConfig(), 10), mesh)
    state = init(model.params())
    mu = state.opt_state[1][0].mu["layers.gate"]
    assert mu.sharding == state.params["layers.gate"].sharding
    assert mu.addressable_shards[0].data.size * 4 == mu.size  # fsdp x tensor
    assert jax.tree.map(lambda x: x.sharding, target).params["embed"] == \
        state.params["embed"].sharding


def test_full_finetune_holds_one_copy_of_the_weights(hf_checkpoint, tmp_path):
    # the train state takes over the model's buffers (donated), so a full fine-tune holds the
    # weights once, not twice; the trained weights come back into the model at the end
    model, tok = s2jax.load(hf_checkpoint("llama3"), dtype="float32")
    before = model.params()
    # a copy: a numpy view of a buffer (np.asarray on CPU) would keep it from being donated
    start_q = np.array(before["layers.q"], copy=True)
    config = TrainConfig(steps=2, seq_len=48, batch_size=8, learning_rate=1e-3, progress=False,
                         export=False)
    finetune(model, tok, _examples(16), config, tmp_path / "run")
    assert all(v.is_deleted() for v in before.values())
    assert np.abs(np.asarray(model.param("layers.q").get_value()) - start_q).max() > 1e-5


def test_metrics_log_writes_tensorboard_events_without_importing_torch(tmp_path):
    # a fresh process (this one has torch loaded): tensorboardX would import it, 3 s a run; nor
    # is torch left unimportable (no None in sys.modules)
    code = ("import sys; from s2jax.train.metrics import MetricsLog; "
            f"log = MetricsLog({str(tmp_path)!r}); log.write(1, {{'loss': 2.5}}); "
            "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False"]
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert json.loads((tmp_path / "metrics.jsonl").read_text()) == {"step": 1, "loss": 2.5}


def test_the_steps_memory_layout_keeps_its_arithmetic(hf_checkpoint, monkeypatch):
    # The step computes its mean and clipped gradients once, behind optimization barriers, and
    # on CPU compiles with the memory-minimising scheduler (1.2 GB less at Qwen2.5-0.5B). Without
    # clipping the state after two steps is bitwise that of the step without either (measured);
    # with clipping (on here: 1e-3), XLA no longer folds the mean's division and the clip's into
    # one scalar factor: (g / n) / norm as written, and the last bits differ
    model, _ = s2jax.load(hf_checkpoint("qwen2"), dtype="float32")
    tcfg = TrainConfig(batch_size=2, seq_len=8, grad_accum=2, max_grad_norm=1e-3,
                       learning_rate=1e-3, warmup_steps=0)
    mesh = make_mesh(devices=jax.devices()[:1])
    rng = np.random.default_rng(0)
    shape = (2, 2, 8)
    tokens = rng.integers(0, model.config.vocab_size, shape, dtype=np.int32)
    batch = {"tokens": tokens, "targets": np.roll(tokens, -1, axis=-1),
             "segment_ids": np.ones(shape, np.int32),
             "weights": (rng.random(shape) < 0.5).astype(np.float32)}

    def two_steps():
        tx = optim.make_optimizer(tcfg, 10)
        init, target = plan_state(model.config, tx, mesh)
        shardings = jax.tree.map(lambda x: x.sharding, target)
        train_step = train_steps.make_train_step(
            model.config, tcfg, tx, learning_rate_schedule(tcfg, 10), shardings, mesh)
        state = init(model.params())
        for _ in range(2):
            state, metrics = train_step(state, {}, {}, batch)
        return jax.device_get((state, metrics))

    new = two_steps()
    # the step's barriers (`matmul_out_in` keeps its own, bound at import)
    monkeypatch.setattr(jax.lax, "optimization_barrier", lambda x: x)
    monkeypatch.setattr(train_steps, "compiler_options", lambda mesh: {})
    old = two_steps()
    assert new[1]["grad_norm"] > 1e-3  # the clip was on
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(new), jax.tree.leaves(old),
                            strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=2e-7, err_msg=jax.tree_util.keystr(path))


def test_longest_segment_is_the_longest_run_of_one_nonzero_id():
    rng = np.random.default_rng(0)
    for _ in range(50):
        ids = np.sort(rng.integers(0, 4, (3, 2, 17)), axis=-1)  # runs, padding (0) first
        want = max((len(list(run)) for row in ids.reshape(-1, 17)
                    for s, run in itertools.groupby(row) if s != 0), default=0)
        assert train_steps.longest_segment(ids) == want
    # equal ids at the end of one row and the start of the next are two runs
    assert train_steps.longest_segment(np.array([[0, 1, 1], [1, 1, 0]])) == 2


def test_finetune_compiles_for_its_longest_example_and_trains_as_without(hf_checkpoint,
                                                                         tmp_path, monkeypatch):
    """The step is compiled with `reach` = the longest example (attention on CPU skips keys out
    of every query's reach in rows of 256, blocks of 96), and trains the weights it trains
    without; a batch holding a longer example is refused rather than trained wrong."""
    from s2jax.models.attention import step_reach
    from s2jax.train import loop

    compiled = loop.compiled_run
    reaches = []

    def spy(*args):
        reaches.append(args[6])
        return compiled(*args)

    monkeypatch.setattr(loop, "compiled_run", spy)
    kw = dict(seq_len=256, steps=2, weight_decay=0.1)
    with_reach, tok = _run(hf_checkpoint, tmp_path, "reach", **kw)
    longest = max(len(e.ids) for e in tokenize_examples(tok, _examples(24)))
    assert reaches == [longest] and step_reach(longest, 256) is not None
    # a caller's bound (on-policy rounds pass whole rows: one compilation for every round)
    without, _ = s2jax.load(hf_checkpoint("llama3"), dtype="float32")
    finetune(without, tok, _examples(24), TrainConfig(
        **kw, batch_size=8, learning_rate=1e-3, progress=False, export=False),
        tmp_path / "whole", reach=256)
    assert reaches[1] == 256 and step_reach(256, 256) is None
    a, b = _params(with_reach), _params(without)
    for name in a:
        np.testing.assert_allclose(a[name], b[name], atol=2e-6, rtol=0, err_msg=name)
    with pytest.raises(AssertionError, match="an example of 3 tokens; the train step was "
                       "compiled for at most 2"):
        loop._within({"segment_ids": np.array([[1, 1, 1, 0]])}, 2)
