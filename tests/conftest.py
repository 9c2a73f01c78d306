"""Test setup: 8 fake CPU devices, and tiny random HF checkpoints made by `transformers`."""

import os

# Must precede the first JAX import of the session.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("S2JAX_COMPILATION_CACHE", "off")  # CLI calls in tests: no user cache
# On a GPU (JAX_PLATFORMS=cuda, bench/gpu_check.sh), XLA's default fp32 matmul is TF32: logits
# then differ from torch's fp32 by ~5e-3 and near-tie greedy tokens flip. The parity tests check
# the model's arithmetic, so there they ask for full fp32 matmuls.
if os.environ["JAX_PLATFORMS"] in ("cuda", "gpu"):
    os.environ.setdefault("JAX_DEFAULT_MATMUL_PRECISION", "highest")

import pytest  # noqa: E402

from tests.hf_fixtures import make_hf_checkpoint  # noqa: E402


@pytest.fixture(scope="session")
def hf_checkpoint(tmp_path_factory):
    """`hf_checkpoint(family)` -> path of a tiny random checkpoint (cached per session)."""
    cache = {}

    def make(family: str):
        if family not in cache:
            cache[family] = make_hf_checkpoint(tmp_path_factory.mktemp(family), family)
        return cache[family]

    return make
