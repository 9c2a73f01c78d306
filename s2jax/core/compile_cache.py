"""JAX's persistent compilation cache, on by default for the CLI, in the user cache directory.

A second run of the same shapes (the same model, buckets and mesh) loads its compiled programs
from disk instead of compiling them again, which is most of a short job's time.

Where: `--compilation-cache DIR|off` (a flag of the `s2jax` command), else
`$S2JAX_COMPILATION_CACHE` (a directory, or `off`), else `<cache>/jax/jax-V-jaxlib-W/` under the
s2jax user cache (`$S2JAX_CACHE`, `$XDG_CACHE_HOME/s2jax` or `~/.cache/s2jax`). A cache directory
JAX was already given (`JAX_COMPILATION_CACHE_DIR`) is left as it is.

Safe across versions: JAX's own cache key hashes the program, the jaxlib version, the backend's
platform version, the XLA flags and the compile options, so a stale entry is never loaded; the
versioned directory only keeps each version's entries apart, to be deleted together.
"""

from __future__ import annotations

import os
import sys
from importlib.metadata import version
from pathlib import Path

from s2jax.core.paths import cache_dir

ENV = "S2JAX_COMPILATION_CACHE"
OFF = ("off", "0", "false", "no", "none")


def cache_path(setting: str | None = None) -> Path | None:
    """The cache directory for `setting` (the flag's value; None: the environment), or None."""
    setting = setting if setting is not None else os.environ.get(ENV, "")
    if setting.strip().lower() in OFF:
        return None
    if setting.strip():
        return Path(setting).expanduser()

    return cache_dir() / "jax" / f"jax-{version('jax')}-jaxlib-{version('jaxlib')}"


def enable(setting: str | None = None) -> Path | None:
    """Turns the persistent cache on at `cache_path(setting)`; returns it (None: off).

    Before JAX is imported this only sets JAX's environment variables (no import cost on
    paths that never compile); afterwards it updates `jax.config`, which takes effect if
    nothing has been compiled yet in this process. Every program is cached, however quickly
    it compiled: a job compiles many small programs, and they add up.
    """
    path = cache_path(setting)
    if path is None or os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return None if path is None else Path(os.environ["JAX_COMPILATION_CACHE_DIR"])
    options = {"jax_compilation_cache_dir": str(path),
               "jax_persistent_cache_min_compile_time_secs": 0.0,
               "jax_persistent_cache_min_entry_size_bytes": 0}
    if "jax" in sys.modules:
        # already imported (checked above): no start-up cost
        import jax

        if jax.config.jax_compilation_cache_dir:
            return Path(jax.config.jax_compilation_cache_dir)
        for name, value in options.items():
            jax.config.update(name, value)
    else:
        for name, value in options.items():
            os.environ[name.upper()] = str(value)
    return path
