"""What the machine can hold: checks made before allocating, so that an input or a flag that
asks for more memory than there is fails at once with one line instead of being killed later.
"""

from __future__ import annotations

import os

from s2jax.core.errors import S2JaxError


def host_available() -> int:
    """Bytes of host memory available to a new allocation (MemAvailable, else free pages)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62  # unknown: assume it fits


def gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def check_fits(need: float, what: str, advice: str, *, available: float | None = None) -> None:
    """Raises when `need` bytes exceed `available` (default: the host's available memory)."""
    available = host_available() if available is None else available
    if need > available:
        raise S2JaxError(f"{what} needs about {gib(need)} of memory, {gib(available)} is "
                         f"available; {advice}")
