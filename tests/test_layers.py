"""The package layering (s2jax/__init__.py): imports point down or sideways, never up, and no
two modules or packages import each other, directly or through others."""

import ast
from pathlib import Path

import s2jax

ROOT = Path(s2jax.__file__).parent
# Lower numbers are lower layers. Packages on one layer may import each other, without a cycle.
LAYERS = {
    "core": 0, "parallel": 1, "models": 2, "sampling": 3, "train": 3,
    "methods": 4, "tasks": 4, "distill": 4, "report": 4, "run": 5, "toy": 6,
    "commands": 7, "cli": 8, "testing": 9,
}
TOP_LEVEL_API = "models"  # `import s2jax` / `s2jax.load`: the loaders of s2jax.models.loading


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """s2jax modules `path` imports, function-local imports included (TYPE_CHECKING excluded)."""
    tree = ast.parse(path.read_text())
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for n in ast.walk(node))
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "s2jax")
        elif (isinstance(node, ast.ImportFrom) and node.module and node.level == 0
              and node.module.split(".")[0] == "s2jax"):
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


def _resolve(name: str, modules: set[str]) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _graph():
    files = {_module_name(p): p for p in ROOT.rglob("*.py")}
    modules = set(files)
    return {m: {r for i in _imports(p) if (r := _resolve(i, modules)) and r != m}
            for m, p in files.items()}


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else TOP_LEVEL_API


def test_every_package_has_a_layer():
    assert {_package(m) for m in _graph()} <= set(LAYERS)


def test_no_import_points_up_a_layer():
    up = [f"{m} -> {d}" for m, deps in _graph().items() for d in deps
          if m != "s2jax" and LAYERS[_package(d)] > LAYERS[_package(m)]]
    assert not up, "imports running up a layer:\n" + "\n".join(sorted(up))


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v), on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def test_no_module_import_cycle():
    graph = {m: {d for d in deps if d != "s2jax"} for m, deps in _graph().items() if m != "s2jax"}
    assert not _cycles(graph)


def test_no_package_import_cycle():
    packages: dict[str, set[str]] = {}
    for m, deps in _graph().items():
        if m != "s2jax":
            packages.setdefault(_package(m), set()).update(
                _package(d) for d in deps if _package(d) != _package(m))
    assert not _cycles(packages)


def test_the_checker_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
