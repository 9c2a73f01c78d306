"""Where s2jax keeps per-user state (fetched models, the compilation cache)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The user cache root: $S2JAX_CACHE, else $XDG_CACHE_HOME/s2jax, else ~/.cache/s2jax."""
    if os.environ.get("S2JAX_CACHE"):
        return Path(os.environ["S2JAX_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "s2jax"
