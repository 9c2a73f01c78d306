"""System 1 and the System 2 methods as declarative prompt programs (pure Python, no JAX)."""

from s2jax.methods.catalog import METHOD_NAMES, METHODS, SYSTEM1, method
from s2jax.methods.program import FanOut, Program, Stage
from s2jax.methods.runner import StageResult, Trace, run_program, trace_tokens
from s2jax.methods.usc import UscResult, parse_choice, run_usc

__all__ = [
    "FanOut",
    "Program",
    "Stage",
    "METHOD_NAMES",
    "METHODS",
    "SYSTEM1",
    "method",
    "StageResult",
    "Trace",
    "run_program",
    "trace_tokens",
    "UscResult",
    "parse_choice",
    "run_usc",
]
