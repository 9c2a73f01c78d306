"""Every config shipped in configs/ resolves: it loads, names a task, a test task, a method and
a model s2jax knows (a shape file, or a pinned real model), and every sweep point applies."""

import runpy
from pathlib import Path

import pytest

from s2jax.core.overrides import override
from s2jax.methods.catalog import METHODS
from s2jax.models.config import ModelConfig
from s2jax.models.fetch import canonical
from s2jax.run.config import load_config
from s2jax.run.pipeline import resolve_task
from s2jax.tasks import TASKS

CONFIGS = Path(__file__).parents[1] / "configs"


def _specs() -> list[str]:
    """Each experiment config, once per variant: its own VARIANTS where it names them (e.g.
    real/s2a_capitals_teacher.py's teacher set-ups), else each model its directory's common.py
    offers."""
    specs = []
    for path in sorted(CONFIGS.rglob("*.py")):
        if path.name == "common.py":
            continue
        variants = runpy.run_path(str(path)).get("VARIANTS") or \
            runpy.run_path(str(path.with_name("common.py")))["MODELS"]
        specs += [f"{path}:{variant}" for variant in variants]
    return specs


@pytest.mark.parametrize("spec", _specs(), ids=lambda s: s.split("configs/")[1])
def test_config_resolves(spec):
    config, namespace = load_config(spec)
    resolve_task(config.task, TASKS, "task")
    resolve_task(config.test_task or config.task, TASKS, "test_task")
    assert config.method in METHODS
    if config.model_shape:
        assert ModelConfig.from_file(config.model_shape).num_layers > 0
    else:  # a real model, loaded by name
        assert canonical(config.model) is not None, config.model
    for point in namespace.get("sweep", dict)().values():
        override(config, point)


@pytest.mark.parametrize("shape", sorted((CONFIGS / "models").glob("*.json")),
                         ids=lambda p: p.stem)
def test_model_shape_files_read(shape):
    assert ModelConfig.from_file(shape).num_layers > 0


def test_every_config_directory_is_covered():
    # a new directory of configs needs a common.py with MODELS, or this test to learn about it
    dirs = {p.parent for p in CONFIGS.rglob("*.py")}
    assert dirs == {CONFIGS / "paper", CONFIGS / "real"}
    assert len(_specs()) >= 10
