"""The one JSON hash: stored runs resume only while its encoding stays what it was."""

import dataclasses
from pathlib import Path

from s2jax.core.hashing import json_hash
from s2jax.run.config import PROTOCOL_DEFAULTS, CrossFit, ExperimentConfig, TeacherConfig
from s2jax.run.stages import stage_key
from s2jax.train.config import KDConfig, OnPolicyConfig, TrainConfig


def test_json_hash_is_pinned():
    # values computed by the stage keys and fingerprints runs already stored: a change in the
    # encoding (separators, key order, str() of non-JSON values) breaks every stored resume
    parts = {"stage": "generate", "task": "coin_flip", "n": 8, "path": Path("a/b")}
    assert json_hash(parts) == "fe763d135286bb6c"
    assert stage_key(**parts) == "fe763d135286bb6c"
    assert json_hash({"b": 1, "a": [1, 2]}) == json_hash({"a": [1, 2], "b": 1})


def test_fingerprint_is_the_hash_of_the_config_json():
    # the sweep's protocol fields, the teacher section and train.kd count only when set: run
    # dirs made before they existed resume
    config = ExperimentConfig(name="x", model="m", task="coin_flip", method="cot_zero_shot")
    before = {k: v for k, v in config.to_json().items()
              if k not in PROTOCOL_DEFAULTS and k not in ("teacher", "onpolicy")}
    before["train"] = {k: v for k, v in before["train"].items() if k != "kd"}
    assert config.fingerprint() == json_hash(before)
    folds = dataclasses.replace(config, cross_fit=CrossFit(folds=2))
    assert folds.fingerprint() == json_hash({**before, "cross_fit": {"folds": 2, "seed": 0}})
    kd = dataclasses.replace(config, train=TrainConfig(kd=KDConfig("jsd")))
    teacher = dataclasses.replace(config, teacher=TeacherConfig(model="big"))
    assert len({config.fingerprint(), kd.fingerprint(), teacher.fingerprint()}) == 3
    student = dataclasses.replace(config, train=TrainConfig(steps=1, kd=KDConfig("reverse_kl")))
    onpolicy = dataclasses.replace(student, onpolicy=OnPolicyConfig())
    assert onpolicy.fingerprint() != student.fingerprint()
