"""Start-up work of the `s2jax` command: what is imported before a subcommand runs.

Importing JAX and Flax costs seconds on a small machine; a command that does not compute
(`vote`, `--help`, a usage error) must not pay for them.
"""

import subprocess
import sys

HEAVY = ("jax", "flax", "optax", "transformers", "torch")


def _imported_after(code: str) -> list[str]:
    probe = (f"import sys\n{code}\n"
             f"print('imported:', *(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True,
                         text=True).stdout
    return out.rsplit("imported:", 1)[1].split()


def test_cli_parser_imports_no_heavy_module():
    # building the parser registers every subcommand: none of them may import JAX to do so
    assert _imported_after("import s2jax.cli; s2jax.cli._parser()") == []


def test_vote_help_imports_no_heavy_module():
    code = ("import s2jax.cli\ntry:\n    s2jax.cli.main(['vote', '--help'])\n"
            "except SystemExit:\n    pass")
    assert _imported_after(code) == []
