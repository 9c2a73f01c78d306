"""Test setup: 8 fake CPU devices, and tiny random HF checkpoints made by `transformers`."""

import os

# Must precede the first JAX import of the session.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("S2JAX_COMPILATION_CACHE", "off")  # CLI calls in tests: no user cache

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
