"""Sweep: samples N x vote threshold x method, on last-letter concatenation.

  s2jax sweep configs/paper/sweep_samples_threshold.py:llama3.1-8b [--dry-run] [--workers K]
runs every arm under runs/<name>/ (a run dir per arm; shared stages once, see docs/sweeps.md):
System 2 is sampled once per method at N=16, and the N=1, 4 and 8 arms read its first samples.
"""

import itertools
import runpy
from pathlib import Path

get_config = runpy.run_path(str(Path(__file__).with_name("rar_last_letter.py")))["get_config"]

SAMPLES = (1, 4, 8, 16)
THRESHOLDS = (0.0, 0.5, 0.75)
METHODS = ("rar_1step", "rar_2step", "cot_zero_shot")


def sweep() -> dict[str, dict[str, object]]:
    """{point name: overrides}; N=1 makes every threshold the same point, so it runs once."""
    points = {}
    for n, threshold, method in itertools.product(SAMPLES, THRESHOLDS, METHODS):
        if n == 1 and threshold != THRESHOLDS[0]:
            continue
        points[f"{method}_n{n}_t{threshold:g}"] = {
            "method": method, "sampling.n": n, "distill.vote.threshold": threshold}
    return points
