"""On-policy context distillation as a mode of `s2jax run` (`ExperimentConfig.onpolicy`): the
teacher reads the model's own System 2 context, LoRA keeps one copy of the base, a killed run
resumes to the same weights, and a bad config is refused in one line."""

import dataclasses
import json

import pytest

import s2jax.train.onpolicy as onpolicy_module
from s2jax.core.errors import S2JaxError
from s2jax.core.text_generator import SamplingParams
from s2jax.methods.prompts import strip_outer_quotes
from s2jax.run.config import DataConfig, ExperimentConfig, TeacherConfig
from s2jax.run.sweep import plan_sweep
from s2jax.tasks import TASKS
from s2jax.train.config import KDConfig, LoraConfig, OnPolicyConfig, TrainConfig

ROUNDS = OnPolicyConfig(rounds=2, prompts_per_round=3,
                        sampling=SamplingParams(temperature=1.0, max_new_tokens=4))


def _echo_task():
    """last_letter with an extractor that reads any text, so a random model yields answers."""
    task = TASKS["last_letter"]
    return dataclasses.replace(task, name="echo",
                               extract=lambda t: t.strip().split()[0] if t.strip() else "?")


def _config(model: str, **changes) -> ExperimentConfig:
    """A two-stage System 2 (RaR: rephrase, then answer) on 4 unlabeled and 3 test inputs;
    two LoRA rounds of one step each."""
    config = ExperimentConfig(
        name="onpolicy", model=model, task="echo", method="rar_2step",
        unlabeled=DataConfig(synthetic=4, seed=1), test=DataConfig(synthetic=3, seed=2),
        sampling=SamplingParams(n=1, max_new_tokens=5),
        eval_sampling=SamplingParams(max_new_tokens=4),
        train=TrainConfig(steps=1, seq_len=96, batch_size=2, progress=False,
                          learning_rate=1e-2, schedule="constant",
                          lora=LoraConfig(rank=2),
                          kd=KDConfig("reverse_kl", teacher_seq_len=160)),
        dtype="float32", max_batch=8, max_len=256, onpolicy=ROUNDS)
    return dataclasses.replace(config, **changes)


@pytest.mark.parametrize("changes, message", [
    ({"train": TrainConfig(steps=1)}, "config onpolicy: train.kd.divergence=none"),
    ({"train": TrainConfig(kd=KDConfig("reverse_kl"))}, "config onpolicy: train.steps=0"),
    ({"teacher": TeacherConfig(context="system1")}, "config onpolicy: teacher.context=system1"),
    ({"control": "gold"}, "config onpolicy: control='gold'"),
    ({"chat": False}, "config onpolicy: chat=False"),
])
def test_bad_onpolicy_configs_are_one_line_errors(changes, message):
    with pytest.raises(S2JaxError, match=message) as e:
        _config("m", **changes)
    assert "\n" not in str(e.value)


def test_sweeps_refuse_onpolicy_arms(tmp_path):
    with pytest.raises(S2JaxError, match="arm 'a': config onpolicy is set"):
        plan_sweep({"a": _config("m")}, tmp_path / "root")


def test_the_fingerprint_of_a_run_without_onpolicy_is_unchanged():
    config = _config("m", onpolicy=None)
    assert "onpolicy" not in json.dumps(config.fingerprint())
    assert config.fingerprint() != _config("m").fingerprint()


def test_onpolicy_run_with_lora_trains_on_one_copy_of_the_base(hf_checkpoint, tmp_path,
                                                                 monkeypatch):
    from s2jax.run.pipeline import run_experiment

    calls = []
    finetune = onpolicy_module.finetune

    def spy(model, *args, teacher=None, **kwargs):
        # each round trains on the teacher's own arrays: the base, with no second copy
        calls.append(all(model.params()[k] is v for k, v in teacher.params().items()))
        return finetune(model, *args, teacher=teacher, **kwargs)

    monkeypatch.setattr(onpolicy_module, "finetune", spy)
    config = _config(str(hf_checkpoint("llama2")))
    results = run_experiment(config, tmp_path / "run", tasks={"echo": _echo_task()},
                             log=lambda _: None, progress=False)
    assert calls == [True, True]
    assert [r["system"] for r in results["rows"]] == ["system1", "system2", "distilled"]
    assert results["distill"]["filter"] == "none (on-policy)"
    out = tmp_path / "run" / "onpolicy"
    pool = [json.loads(x) for x in (out / "prompts.jsonl").read_text().splitlines()]
    assert len(pool) == 4
    # the teacher reads RaR's answer prompt over its own rephrasing, the student the question
    assert all(p["teacher_messages"] != p["messages"] for p in pool)
    contexts = [json.loads(x) for x in (out / "contexts.jsonl").read_text().splitlines()]
    assert all(c["gold"] == [] for c in contexts)  # no label reaches the teacher's context
    for c, p in zip(contexts, pool, strict=True):
        rephrased = strip_outer_quotes(c["samples"][0]["stages"]["rephrase"]["text"])
        assert rephrased in p["teacher_messages"][-1]["content"]
    for r in range(2):
        assert (out / f"round_{r:03d}" / "train" / "adapter" / "adapter_config.json").is_file()
