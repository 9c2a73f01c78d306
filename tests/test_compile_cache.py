"""The persistent compilation cache: where it lives, that it can be turned off, that it is used."""

import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

from s2jax.core.compile_cache import ENV, cache_path

ROOT = Path(__file__).resolve().parents[1]


def test_cache_path_follows_flag_then_env_then_user_cache(monkeypatch, tmp_path):
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.delenv("S2JAX_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    default = cache_path()
    assert default == (tmp_path / "xdg" / "s2jax" / "jax" /
                       f"jax-{version('jax')}-jaxlib-{version('jaxlib')}")
    monkeypatch.setenv(ENV, str(tmp_path / "env"))
    assert cache_path() == tmp_path / "env"
    assert cache_path(str(tmp_path / "flag")) == tmp_path / "flag"  # the flag wins
    assert cache_path("off") is None
    monkeypatch.setenv(ENV, "off")
    assert cache_path() is None


def test_generate_fills_the_given_cache_dir_and_reuses_it(hf_checkpoint, tmp_path):
    """A fresh process (the cache is per process): the first run writes entries, the second
    finds every program there and writes none."""
    (tmp_path / "in.jsonl").write_text(json.dumps({"id": "a", "prompt": "Hello there"}) + "\n")
    cache = tmp_path / "jax-cache"
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    env.update(PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu", XLA_FLAGS="")
    cmd = [sys.executable, "-m", "s2jax.cli", "--compilation-cache", str(cache), "generate",
           "--model", str(hf_checkpoint("llama2")), "--input", str(tmp_path / "in.jsonl"),
           "--output", str(tmp_path / "out.jsonl"), "--max-new-tokens", "4", "--no-chat"]
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    entries = sorted(p.name for p in cache.iterdir())
    assert entries, "no compiled program was cached"
    first = (tmp_path / "out.jsonl").read_text()
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    assert sorted(p.name for p in cache.iterdir()) == entries
    assert (tmp_path / "out.jsonl").read_text() == first
