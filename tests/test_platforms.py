"""Commands start JAX on the CPU alone where no accelerator is attached (`platforms`)."""

import importlib.util
import os
import subprocess
import sys

import pytest

from s2jax.parallel.platforms import accelerator_attached, default_to_cpu


@pytest.mark.parametrize("node", ["accel0", "vfio/0", "nvidia0", "kfd"])
def test_an_accelerator_node_leaves_the_platforms_to_jax(tmp_path, node, monkeypatch):
    monkeypatch.delitem(sys.modules, "jax", raising=False)  # as before a command imports it
    (tmp_path / node).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / node).touch()
    env = {}
    assert accelerator_attached(tmp_path)
    assert not default_to_cpu(env, tmp_path) and env == {}


def test_no_accelerator_means_the_cpu_unless_a_platform_is_named(tmp_path, monkeypatch):
    (tmp_path / "vfio").mkdir()  # the vfio control node alone is no TPU
    (tmp_path / "vfio" / "vfio").touch()
    (tmp_path / "nvidiactl").touch()  # a driver without a GPU node
    monkeypatch.delitem(sys.modules, "jax", raising=False)
    env = {}
    assert default_to_cpu(env, tmp_path) and env == {"JAX_PLATFORMS": "cpu"}
    named = {"JAX_PLATFORMS": "cuda"}
    assert not default_to_cpu(named, tmp_path) and named == {"JAX_PLATFORMS": "cuda"}


@pytest.mark.skipif(importlib.util.find_spec("libtpu") is None,
                    reason="libtpu (the tpu extra) is not installed: no TPU plugin to quiet")
@pytest.mark.skipif(accelerator_attached(), reason="an accelerator is attached here")
def test_a_cpu_only_machine_with_libtpu_compiles_without_tpu_start_up_errors():
    env = {k: v for k, v in os.environ.items() if k != "JAX_PLATFORMS"}
    code = "import jax; jax.jit(lambda x: x + 1)(1).block_until_ready()"
    quiet = "from s2jax.parallel.platforms import default_to_cpu; default_to_cpu(); " + code

    def stderr(program: str) -> str:
        return subprocess.run([sys.executable, "-c", program], env=env, capture_output=True,
                              text=True, check=True).stderr

    if "TPU" not in stderr(code):
        pytest.skip("this libtpu prints nothing at start-up here: nothing to compare against")
    assert "TPU" not in stderr(quiet)
