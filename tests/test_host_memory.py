"""The host-memory policy (s2jax/core/host_memory.py): which processes keep freed memory, and that a
kept process stops faulting in a compiled program's temporaries at every call."""

import os
import subprocess
import sys

import pytest

from s2jax import cli
from s2jax.core import host_memory

# a program with ~40 MB of temporaries ([3000, 3000] fp32), called three times after a warm-up;
# prints the policy in effect and the page faults per call
PROBE = """
import resource
import s2jax
import jax, jax.numpy as jnp
f = jax.jit(lambda x: jnp.sum(jnp.exp(jnp.tanh(x @ x.T)) @ x))
x = jnp.ones((3000, 600))
f(x).block_until_ready()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    f(x).block_until_ready()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(s2jax.core.host_memory.applied, faults / 3)
"""


@pytest.mark.parametrize("env, mode", [
    ({}, "system"),  # glibc's own behaviour unless asked
    ({"S2JAX_HOST_MALLOC": "keep"}, "keep"),
    ({"S2JAX_HOST_MALLOC": " Keep "}, "keep"),
    ({"S2JAX_HOST_MALLOC": "system"}, "system"),
])
def test_policy_comes_from_the_environment(env, mode):
    assert host_memory.requested(env) == mode


def test_a_bad_setting_is_a_one_line_cli_error(monkeypatch, capsys):
    with pytest.raises(ValueError, match="S2JAX_HOST_MALLOC"):
        host_memory.requested({"S2JAX_HOST_MALLOC": "always"})
    # `import s2jax` records it; the command reports it and exits 2
    monkeypatch.setattr(host_memory, "error", "$S2JAX_HOST_MALLOC='always': expected one of "
                        "system, keep")
    assert cli.main(["fetch-models", "--list"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("s2jax fetch-models: error: $S2JAX_HOST_MALLOC") and "\n" not in err


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_kept_memory_is_reused_without_page_faults():
    def probe(mode):
        env = {**os.environ, "S2JAX_HOST_MALLOC": mode, "JAX_PLATFORMS": "cpu"}
        out = subprocess.run([sys.executable, "-c", PROBE], env=env, check=True,
                             capture_output=True, text=True).stdout.split()
        return out[0], float(out[1])

    applied, kept = probe("keep")
    assert applied == "keep"
    released, faults = probe("system")
    assert released == "system"
    # glibc's default maps the temporaries afresh at every call: thousands of 4 KiB pages
    assert faults > 1000
    assert kept < 0.05 * faults
