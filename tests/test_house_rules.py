"""Rules the code keeps (STYLE.md): short functions, and a function-local import only where
start-up time or an optional dependency needs it, with the reason written beside it."""

import ast
from pathlib import Path

import s2jax

ROOT = Path(s2jax.__file__).parent
MAX_LINES = 60
# The train loop reads best as one piece; the other two wait for work in flight on them.
LONG = {"train/loop.py:finetune", "sampling/engine.py:generate_ids",
        "run/pipeline.py:run_distillation"}


def _functions():
    for path in sorted(ROOT.rglob("*.py")):
        source = path.read_text()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield path, source.splitlines(), node


def test_no_function_over_60_lines():
    long = [f"{p.relative_to(ROOT)}:{n.name} ({n.end_lineno - n.lineno + 1} lines)"
            for p, _, n in _functions() if n.end_lineno - n.lineno + 1 > MAX_LINES
            and f"{p.relative_to(ROOT)}:{n.name}" not in LONG]
    assert not long, "functions over 60 lines:\n" + "\n".join(long)


def test_function_local_imports_say_why():
    # one reason per function: a comment on one of its import lines or just above the first
    silent = []
    for path, lines, fn in _functions():
        imports = sorted((m for m in ast.walk(fn) if isinstance(m, (ast.Import, ast.ImportFrom))),
                         key=lambda m: m.lineno)
        if not imports:
            continue
        text = [lines[i - 1] for m in imports for i in range(m.lineno, m.end_lineno + 1)]
        if not any("#" in t for t in text) and \
                not lines[imports[0].lineno - 2].strip().startswith("#"):
            silent.append(f"{path.relative_to(ROOT)}:{imports[0].lineno} ({fn.name})")
    assert not silent, "function-local imports without a reason:\n" + "\n".join(silent)
