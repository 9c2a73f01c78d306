"""Start-up work of the `s2jax` command: what is imported before a subcommand runs.

Importing JAX, Flax or transformers costs seconds on a small machine: a command that does not
compute (`vote`, `--help`, a usage error) must not pay for any of them, and `generate` only for
the ones it uses.
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


def test_sampling_from_loaded_weights_imports_no_flax_optax_or_torch(hf_checkpoint):
    # `s2jax generate`'s path: the weights without their Flax module, and the tokenizer alone
    # (torch and transformers' model classes stay out)
    code = (f"import s2jax\nfrom s2jax.sampling import Sampler\n"
            f"weights, tok = s2jax.load_weights({str(hf_checkpoint('llama2'))!r})\n"
            "Sampler(weights, tok, max_batch=2)")
    assert set(_imported_after(code)) <= {"jax", "transformers"}


def test_version_is_the_package_version_and_imports_nothing_heavy():
    import tomllib
    from pathlib import Path

    import s2jax

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert s2jax.__version__ == project["project"]["version"]
    out = subprocess.run([sys.executable, "-m", "s2jax.cli", "--version"], check=True,
                         capture_output=True, text=True).stdout
    assert out.strip() == f"s2jax {s2jax.__version__}"
    code = ("import s2jax.cli\ntry:\n    s2jax.cli.main(['--version'])\n"
            "except SystemExit:\n    pass")
    assert _imported_after(code) == []
