"""Test setup: 8 fake CPU devices, and tiny random HF checkpoints made by `transformers`."""

import os
import shutil
import tempfile

# Must precede the first JAX import of the session.
# XLA:CPU compiles with LLVM at -O0 here: the suite's models are tiny, so its time is mostly
# compiling, and -O0 halves it (tests/test_kd.py 153 -> 80 s on 2 cores). XLA's HLO passes
# (fusion, layout, scheduling), which the HLO-inspecting tests read, are the same at any level;
# only the generated loops are less optimised. S2JAX_TEST_XLA_OPT=1 keeps XLA's default.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8" + (
    "" if os.environ.get("S2JAX_TEST_XLA_OPT") else " --xla_backend_optimization_level=0"))
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# CLI processes share one persistent compilation cache, made for the session (never the user's):
# a test that runs the same shapes in several processes (a run, then killed and resumed ones)
# compiles them once. Inherited by pytest-xdist's workers, removed by the process that made it.
_MADE_CACHE = None
if "S2JAX_COMPILATION_CACHE" not in os.environ:
    _MADE_CACHE = os.environ["S2JAX_COMPILATION_CACHE"] = tempfile.mkdtemp(
        prefix="s2jax-test-jax-cache-")
# On a GPU (JAX_PLATFORMS=cuda, bench/gpu_check.sh), XLA's default fp32 matmul is TF32: logits
# then differ from torch's fp32 by ~5e-3 and near-tie greedy tokens flip. The parity tests check
# the model's arithmetic, so there they ask for full fp32 matmuls.
if os.environ["JAX_PLATFORMS"] in ("cuda", "gpu"):
    os.environ.setdefault("JAX_DEFAULT_MATMUL_PRECISION", "highest")

import jax  # noqa: E402
import pytest  # noqa: E402

from tests.hf_fixtures import make_hf_checkpoint  # noqa: E402

# This process keeps compiling without it, as before: an in-process `main()` would otherwise turn
# it on in the middle of the session, and the in-process TPU plans compile programs that cannot
# be loaded back from it (s2jax/parallel/targets.py).
jax.config.update("jax_enable_compilation_cache", False)


def pytest_unconfigure(config):
    if _MADE_CACHE:
        shutil.rmtree(_MADE_CACHE, ignore_errors=True)


@pytest.fixture(scope="session")
def hf_checkpoint(tmp_path_factory):
    """`hf_checkpoint(family)` -> path of a tiny random checkpoint (cached per session)."""
    cache = {}

    def make(family: str):
        if family not in cache:
            cache[family] = make_hf_checkpoint(tmp_path_factory.mktemp(family), family)
        return cache[family]

    return make
