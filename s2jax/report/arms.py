"""Arms: the runs a report compares, each with its per-item rows per system.

A run dir is an arm: `eval/<system>.jsonl` rows (`s2jax.report.rows`), `results.json` (its name,
task, method, warnings, and which systems it evaluated), `config.json` (seeds and recipe). A
report root is one run dir, or a directory whose immediate subdirectories are run dirs.

An arm is exploratory (its test figures are not a pre-registered result: chosen after seeing
test numbers, or not the arm a selection rule picked) when its results.json, or a
selection.json beside it, holds `"exploratory": true`. Arms whose configs differ only in
fields named `seed` (at any depth) are seeds of one recipe and are aggregated over seeds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from s2jax.core.errors import S2JaxError
from s2jax.report.rows import ItemRow, check_same_items, check_subset, read_rows

SYSTEMS = ("system1", "system2", "distilled")  # the pipeline's files, in table order
SEED_FIELD = "seed"
# the system that may be evaluated on part of the items (a costly System 2: cross_fit.system2_on)
SUBSET_SYSTEM = "system2"


@dataclasses.dataclass(frozen=True)
class Arm:
    """One run of a report.

    Attributes:
      name: shown in every table (unique within a report).
      rows: system name -> its rows (every split); "system1", "system2", "distilled" are the
        systems the paired tests compare, others are listed only.
      task, method: labels (method: System 2's program, and its teacher when that is another
        checkpoint than the student).
      seed: this arm's seed label (e.g. "sampling.seed=1"), when it is one seed of a recipe.
      group: the recipe shared by arms that differ only by seed; None: not aggregated.
      exploratory: its figures are not a confirmatory result (labelled as such everywhere).
      notes: lines printed under the arm (warnings of the run, a re-selection after test).
      path: where the arm was read from, relative to the report root ("." for the root).
    """

    name: str
    rows: Mapping[str, Sequence[ItemRow]]
    task: str = ""
    method: str = ""
    seed: str | None = None
    group: str | None = None
    exploratory: bool = False
    notes: tuple[str, ...] = ()
    path: str = "."

    def __post_init__(self):
        if not self.rows:
            raise S2JaxError(f"arm {self.name}: no systems (expected evaluation rows)")
        for split in sorted({r.split for rs in self.rows.values() for r in rs}):
            systems = {s: [r for r in rs if r.split == split] for s, rs in self.rows.items()
                       if any(r.split == split for r in rs)}
            where = f"arm {self.name} (split {split})"
            check_same_items({s: rs for s, rs in systems.items() if s != SUBSET_SYSTEM}, where)
            if SUBSET_SYSTEM in systems and len(systems) > 1:
                check_subset(systems, SUBSET_SYSTEM, where)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise S2JaxError(f"{path}: not valid JSON ({e}); expected the run's own file") from None


def split_seeds(config: Any, path: str = "") -> tuple[Any, dict[str, Any]]:
    """(the config without its seed fields, {dotted path: seed}) of a JSON config."""
    if isinstance(config, dict):
        rest, seeds = {}, {}
        for k, v in config.items():
            where = f"{path}.{k}" if path else k
            if k == SEED_FIELD and not isinstance(v, dict | list):
                seeds[where] = v
                continue
            rest[k], inner = split_seeds(v, where)
            seeds.update(inner)
        return rest, seeds
    if isinstance(config, list):
        parts = [split_seeds(v, f"{path}.{i}") for i, v in enumerate(config)]
        return [p[0] for p in parts], {k: v for p in parts for k, v in p[1].items()}
    return config, {}


def recipe_and_seeds(config: Mapping) -> tuple[str, dict[str, Any]]:
    """(a hash of the recipe: the config without name and seeds, {dotted path: seed})."""
    rest, seeds = split_seeds({k: v for k, v in config.items() if k != "name"})
    blob = json.dumps(rest, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12], seeds


def seed_labels(seeds: Sequence[Mapping[str, Any]]) -> list[str]:
    """A label per arm of one recipe naming only the seed fields that differ among them."""
    keys = sorted({k for s in seeds for k in s})
    varying = [k for k in keys if len({json.dumps(s.get(k)) for s in seeds}) > 1]
    return [",".join(f"{k}={s.get(k)}" for k in varying) or "same seeds" for s in seeds]


def _expected_systems(results: Mapping, where: Path) -> list[str]:
    rows = results.get("rows")
    if not isinstance(rows, list) or not all(isinstance(r, dict) and isinstance(
            r.get("system"), str) for r in rows):
        raise S2JaxError(f"{where}: field 'rows' is not a list of systems (expected the "
                         "results.json of an s2jax run)")
    return [r["system"] for r in rows]


def load_arm(run_dir: str | Path, root: str | Path | None = None) -> Arm:
    """The arm of a finished run dir (results.json, eval/<system>.jsonl, config.json).

    Raises S2JaxError on an unfinished run, a system of results.json without its rows, a bad
    row, or systems evaluated on different items.
    """
    return _load(Path(run_dir), root)[0]


def _load(run_dir: Path, root: str | Path | None) -> tuple[Arm, dict[str, Any]]:
    """(the arm, its config's seed fields)."""
    results_path = run_dir / "results.json"
    if not results_path.is_file():
        raise S2JaxError(f"{run_dir}: no results.json (expected a finished s2jax run dir)")
    results = _read_json(results_path)
    if not isinstance(results, dict):
        raise S2JaxError(f"{results_path}: expected a JSON object (an s2jax run's results)")
    rows = {}
    for system in _expected_systems(results, results_path):
        path = run_dir / "eval" / f"{system}.jsonl"
        if not path.is_file():
            raise S2JaxError(f"{path}: missing (results.json lists system {system!r}; its "
                             "per-item rows are what the report is computed from)")
        rows[system] = read_rows(path)
    selection = run_dir / "selection.json"
    marks = [results, _read_json(selection) if selection.is_file() else {}]
    group, seeds = None, {}
    if (run_dir / "config.json").is_file():
        config = _read_json(run_dir / "config.json")
        if isinstance(config, dict):
            group, seeds = recipe_and_seeds(config.get("config", config))
    notes = [str(w) for w in results.get("warnings", [])]
    notes += _results_mismatch(results, rows)
    rel = str(run_dir.relative_to(root)) if root is not None else run_dir.name
    method = str(results.get("method", ""))
    if results.get("teacher"):  # System 2 is another checkpoint's: its rows say whose
        method += f", teacher {Path(str(results['teacher'])).name}"
    arm = Arm(name=str(results.get("name") or run_dir.name), rows=rows,
              task=str(results.get("task", "")), method=method,
              group=group, notes=tuple(notes), path=rel,
              exploratory=any(isinstance(m, dict) and m.get("exploratory") is True
                              for m in marks))
    return arm, seeds


def _results_mismatch(results: Mapping, rows: Mapping[str, Sequence[ItemRow]]) -> list[str]:
    """Where results.json's summary disagrees with the rows (the rows are what is reported).

    A summary row naming its split (a sweep arm's "rows" are its test split, "validation" its
    validation split) is checked against that split's rows; one without, against them all (a
    run's file holds one split).
    """
    out = []
    for r in [*results.get("rows", []), *results.get("validation", [])]:
        if not isinstance(r, dict) or not isinstance(r.get("accuracy"), int | float):
            continue
        split = r.get("split")
        mine = [x for x in rows.get(r.get("system"), ()) if split is None or x.split == split]
        if not mine:
            continue
        acc = 100 * sum(x.score for x in mine) / len(mine)
        if abs(acc - r["accuracy"]) > 1e-6 or r.get("examples", len(mine)) != len(mine):
            where = f" ({split})" if split is not None else ""
            out.append(f"results.json gives {r['system']}{where} {r['accuracy']:.1f}% on "
                       f"{r.get('examples')} examples; its rows give {acc:.1f}% on {len(mine)}")
    return out


def is_run_dir(path: Path) -> bool:
    """A run dir holds eval/ (a demo's or sweep's root may hold a results.json of its own)."""
    return (path / "eval").is_dir()


def find_arms(root: str | Path) -> list[Arm]:
    """The arms under a report root: the root itself if it is a run dir, else its immediate
    subdirectories that are (sorted by name; hidden ones skipped)."""
    root = Path(root)
    if not root.is_dir():
        raise S2JaxError(f"{root}: no such directory (expected a run dir or a dir of run dirs)")
    if is_run_dir(root):
        return [_load(root, root)[0]]
    dirs = sorted(p for p in root.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and is_run_dir(p))
    if not dirs:
        raise S2JaxError(f"{root}: no run dirs (expected results.json and eval/*.jsonl in it "
                         "or in its subdirectories)")
    return arms_of(dirs, root)


def arms_of(dirs: Sequence[str | Path], root: str | Path) -> list[Arm]:
    """The arms of finished run dirs at any depth under `root` (`s2jax demo --seeds`), with
    seeds labelled and repeated names replaced by paths, as `find_arms` reads a root's."""
    loaded = [_load(Path(d), root) for d in dirs]
    arms = [a for a, _ in loaded]
    for group in {a.group for a in arms if a.group is not None}:
        members = [i for i, a in enumerate(arms) if a.group == group]
        labels = seed_labels([loaded[i][1] for i in members])
        for i, label in zip(members, labels, strict=True):
            arms[i] = dataclasses.replace(arms[i], seed=label)
    names = [a.name for a in arms]
    if len(set(names)) != len(names):  # every point of a sweep carries its config's name
        arms = [dataclasses.replace(a, name=a.path) for a in arms]
    return arms
