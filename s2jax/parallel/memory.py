"""Whether arrays of a given size fit on a set of devices, checked before they are allocated.

CPU devices share the host's memory (`s2jax.core.memory`); an accelerator reports its own
(`Device.memory_stats`). Arrays are taken as spread evenly over the devices, which is what the
(data, fsdp, tensor) rules aim at; the check is there to turn a request that cannot fit (a
flag's typo, a model far too large) into one line before any allocation, not to plan tightly:
`s2jax plan` does that.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax

from s2jax.core.memory import check_fits, gib, host_available


def device_available(device: jax.Device) -> int | None:
    """Free bytes on an accelerator (None when it does not say)."""
    try:
        stats = device.memory_stats()
    except Exception:  # backends without memory stats raise various errors
        return None
    if not stats or "bytes_limit" not in stats:
        return None
    return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))


def check_fits_devices(total: float, devices: Sequence[jax.Device], what: str,
                       advice: str) -> None:
    """Raises when `total` bytes spread over `devices` do not fit in their free memory."""
    devices = list(devices)
    if not devices or devices[0].platform == "cpu":
        check_fits(total, what, advice, available=host_available())
        return
    free = [device_available(d) for d in devices]
    if any(f is None for f in free):
        return
    per = total / len(devices)
    if per > min(free):
        check_fits(per, f"{what} ({gib(total)} over {len(devices)} devices)", advice,
                   available=min(free))
