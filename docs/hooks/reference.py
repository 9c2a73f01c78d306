"""MkDocs hook: the CLI and config reference pages, generated from the code at every build.

reference/cli.md walks the `s2jax` argparse parser (every subcommand, nested ones too: usage,
arguments, defaults, epilogs); reference/config.md walks the typed configs (each dataclass
field's type, default and the comment beside it in the source, read by
`s2jax.core.overrides.field_comments`, the same text `train --help` shows). Nothing is copied
by hand, so a new flag or field appears in the docs the next time the site is built.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import html
import importlib
import os
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CLI_PAGE = "reference/cli.md"
CONFIG_PAGE = "reference/config.md"
MODULES_PAGE = "reference/modules.md"
ROOT = Path(__file__).resolve().parents[2]  # the repository

# The repository's folders outside the package, for the code layout page.
FOLDERS = [
    ("configs/", "experiment configs: paper replications (`paper/`), the real-model runs "
     "(`real/`), model shapes for planning (`models/`)"),
    ("launch/", "local.sh, multiprocess.sh, tpu_pod.sh, slurm.sbatch (each with --dry-run)"),
    ("bench/", "s2jax against transformers / torch on the same shapes, printed as ratios"),
    ("scripts/", "the analyses behind docs/real_results.md (re-filtering, matrices, labels)"),
    ("tests/", "pytest; CPU with 8 fake devices; transformers and torch as references"),
    ("docs/", "this site; docs/hooks/ generates the references and checks the built HTML"),
]

# The configs documented, in order: (import path, how a user reaches it). Nested config
# sections (ExperimentConfig.train -> TrainConfig -> LoraConfig ...) are found by walking the
# field types, so a section added to any of these is documented without a line here.
CONFIGS = [
    ("s2jax.run.config:ExperimentConfig",
     "an experiment config file's `get_config()` (`s2jax run CONFIG`); any field is changed "
     "with `--set dotted.name=value`"),
    ("s2jax.train.config:TrainConfig",
     "`s2jax train`'s flags, one per field (`--learning-rate`, `--lora-rank`, ...), and an "
     "experiment config's `train` section"),
    ("s2jax.toy.demo:DemoConfig", "`s2jax demo`'s options (`--test`, `--unlabeled`, `--samples`, "
     "`--steps`, ...; `--quick` starts from a smaller one)"),
    ("s2jax.toy.pretrain:PretrainConfig", "`s2jax toy pretrain` (the recipe of the shipped "
     "toy base model)"),
    ("s2jax.toy.corpus:CorpusConfig", "the toy pretraining corpus (`PretrainConfig.corpus`)"),
    ("s2jax.models.config:ModelConfig", "read from a checkpoint's config.json or a GGUF "
     "file's metadata (not set by hand)"),
]


# -- the command line ------------------------------------------------------------------------


def _subcommands(parser: argparse.ArgumentParser) -> Iterator[tuple[str, str, Any]]:
    """(name, one-line help, parser) of each subcommand of `parser`, in registration order."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, sub in action.choices.items():
                yield name, helps.get(name, ""), sub


def walk_commands(parser: argparse.ArgumentParser, prefix: str = "") -> Iterator[tuple]:
    """(full name, one-line help, parser) of every command below `parser`, depth first."""
    for name, help_text, sub in _subcommands(parser):
        full = f"{prefix}{name}"
        yield full, help_text, sub
        yield from walk_commands(sub, full + " ")


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell: one line; code spans as HTML `<code>` (a pipe
    inside a Markdown code span would still split the cell), angle brackets and pipes as
    entities."""
    parts = " ".join(text.split()).split("`")
    if len(parts) % 2 == 0:  # an unpaired backtick: no code spans
        parts = ["'".join(parts)]
    out = []
    for i, part in enumerate(parts):
        part = html.escape(part, quote=False).replace("|", "&#124;")
        out.append(f"<code>{part}</code>" if i % 2 else part)
    return "".join(out)


def _code(text: str) -> str:
    """`text` as inline code in a table cell."""
    return _cell(f"`{text}`") if "`" not in text else f"<code>{_cell(text)}</code>"


def _flag(action: argparse.Action) -> str:
    if not action.option_strings:
        return action.metavar or action.dest
    metavar = "" if action.nargs == 0 else \
        " " + (action.metavar or (("{" + ",".join(map(str, action.choices)) + "}")
                                  if action.choices else action.dest.upper()))
    return ", ".join(f"{o}{metavar}" for o in action.option_strings)


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    formatter = parser._get_formatter()
    return formatter._expand_help(action) if action.help else ""


def _usage(parser: argparse.ArgumentParser) -> str:
    formatter = parser.formatter_class(prog=parser.prog, width=100)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups)
    return formatter.format_help().strip()


def _arguments(parser: argparse.ArgumentParser) -> list[str]:
    out = []
    for group in parser._action_groups:
        actions = [a for a in group._group_actions if a.help != argparse.SUPPRESS
                   and not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))]
        if not actions:
            continue
        out += ["", f"**{group.title}**" + (f": {group.description}" if group.description
                                             else ""), "",
                "| argument | what it does |", "|---|---|"]
        out += [f"| {_code(_flag(a))} | {_cell(_help(parser, a))} |" for a in actions]
    return out


def _command_section(name: str, help_text: str, parser: argparse.ArgumentParser,
                     level: int) -> list[str]:
    out = [f"{'#' * level} `{name}`", ""]
    if help_text:
        out += [help_text[0].upper() + help_text[1:] + ("" if help_text.endswith(".") else "."),
                ""]
    if parser.description and parser.description != help_text:
        out += [parser.description, ""]
    out += ["```text", _usage(parser), "```"]
    out += _arguments(parser)
    subs = list(_subcommands(parser))
    if subs and name != "s2jax":  # the top level lists them in its table
        out += ["", "Subcommands: " + ", ".join(f"`{name} {s}`" for s, _, _ in subs) + "."]
    if parser.epilog:
        out += ["", "```text", parser.epilog.strip(), "```"]
    return out + [""]


def cli_reference() -> str:
    """The Markdown of reference/cli.md."""
    from s2jax.cli import _parser

    root = _parser()
    commands = list(walk_commands(root))
    out = ["# Command line reference", "",
           "Generated from the `s2jax` argparse parsers (`s2jax.cli`) when the site is built; "
           "`s2jax COMMAND --help` prints the same text.", "",
           "| command | what it does |", "|---|---|"]
    out += [f"| [{_code('s2jax ' + n)}](#{_anchor('s2jax ' + n)}) | {_cell(h)} |"
            for n, h, _ in commands]
    out += [""] + _command_section("s2jax", "", root, 2)
    for name, help_text, sub in commands:
        out += _command_section(f"s2jax {name}", help_text, sub, 2 + name.count(" "))
    return "\n".join(out)


def _anchor(title: str) -> str:
    """The id MkDocs' toc extension gives a heading `` `title` ``."""
    return "-".join("".join(c for c in title.lower() if c.isalnum() or c in " -_").split())


# -- the typed configs -----------------------------------------------------------------------


def _import(spec: str) -> type:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def _type_name(hint: Any) -> str:
    text = repr(hint) if not isinstance(hint, type) else hint.__name__
    return text.replace("typing.", "").replace("NoneType", "None")


def _default(field: dataclasses.Field) -> str:
    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    else:
        return "required"
    if dataclasses.is_dataclass(value):
        changed = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)
                   if getattr(value, f.name) != f.default}
        return f"{type(value).__name__}(" + ", ".join(f"{k}={v!r}" for k, v in
                                                       changed.items()) + ")"
    return repr(value)


def config_fields(cls: type, prefix: str = "") -> Iterator[tuple[str, type, Any, str, str]]:
    """(dotted name, owning class, type, default, comment) of each field of `cls`, a nested
    config section's fields after the section itself."""
    from s2jax.core.overrides import field_comments

    hints, comments = typing.get_type_hints(cls), field_comments(cls)
    for f in dataclasses.fields(cls):
        yield prefix + f.name, cls, hints[f.name], _default(f), comments.get(f.name, "")


def config_classes(cls: type) -> list[type]:
    """`cls` and every config section below it, each once, in the order first met."""
    seen = [cls]
    for c in seen:
        for hint in typing.get_type_hints(c).values():
            for kind in (hint, *typing.get_args(hint)):
                if dataclasses.is_dataclass(kind) and kind not in seen:
                    seen.append(kind)
    return seen


def _config_section(cls: type, how: str | None, users: list[str]) -> list[str]:
    doc = " ".join((cls.__doc__ or "").strip().split("\n\n")[0].split())
    out = [f"## `{cls.__name__}`", "", f"`{cls.__module__}.{cls.__name__}`: {doc}"]
    if how:
        out += ["", f"Set through {how}."]
    if users:
        out += ["", "The section of " + ", ".join(f"`{u}`" for u in users) + "."]
    out += ["", "| field | type | default | what it is |", "|---|---|---|---|"]
    for name, _, hint, default, comment in config_fields(cls):
        if dataclasses.is_dataclass(hint):
            comment = f"{comment} (section: [`{hint.__name__}`](#{hint.__name__.lower()}))"
        out.append(f"| {_code(name)} | {_code(_type_name(hint))} | {_code(default)} | "
                   f"{_cell(comment)} |")
    return out + [""]


def config_reference() -> str:
    """The Markdown of reference/config.md."""
    out = ["# Config reference", "",
           "Generated from the typed configs when the site is built: each field's type, default "
           "and the comment beside it in the source (`s2jax.core.overrides.field_comments`, "
           "the text `s2jax train --help` shows). In an experiment "
           "config a nested field is named by its dotted path: `--set train.lora.rank=16`, "
           "`--set sampling.n=8`, `--set distill.vote.threshold=0.75`; a string is parsed by "
           "the field's type (`none` for an optional field).", ""]
    classes = documented_configs()
    hows = {_import(spec): how for spec, how in CONFIGS}
    users = _sections_using(classes)
    for cls in classes:
        out += _config_section(cls, hows.get(cls), users.get(cls, []))
    return "\n".join(out)


def _sections_using(classes: list[type]) -> dict[type, list[str]]:
    """For each config section, the fields (`TrainConfig.lora`) that hold one."""
    users: dict[type, list[str]] = {}
    for cls in classes:
        for name, hint in typing.get_type_hints(cls).items():
            for kind in (hint, *typing.get_args(hint)):
                if dataclasses.is_dataclass(kind):
                    users.setdefault(kind, []).append(f"{cls.__name__}.{name}")
    return users


def documented_configs() -> list[type]:
    """Every config class reference/config.md documents."""
    done: list[type] = []
    for spec, _ in CONFIGS:
        done += [c for c in config_classes(_import(spec)) if c not in done]
    return done


# -- the code layout --------------------------------------------------------------------------


def _first_line(path: Path) -> str:
    """The first line of a module's docstring (read, not imported)."""
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    return doc.split("\n\n")[0].replace("\n", " ").strip()


def modules_reference() -> str:
    """The Markdown of reference/modules.md: each package and module, by its docstring."""
    package = ROOT / "s2jax"
    out = ["# Code layout", "",
           "Generated from the module docstrings when the site is built. Packages import only "
           "from those before them (core < parallel < models < sampling, train < methods, "
           "tasks, distill, report < run < toy, commands, cli; `tests/test_layers.py`).", "",
           "| folder | what |", "|---|---|"]
    out += [f"| {_code(name)} | {_cell(what)} |" for name, what in FOLDERS]
    out += ["", "## `s2jax`", "", _cell(_first_line(package / "__init__.py")), "",
            "| module | what |", "|---|---|"]
    out += [f"| {_code('s2jax/' + p.name)} | {_cell(_first_line(p))} |"
            for p in sorted(package.glob("*.py")) if p.name != "__init__.py"]
    for init in sorted(package.rglob("__init__.py")):
        pkg = init.parent
        if pkg == package or "__pycache__" in pkg.parts:
            continue
        name = pkg.relative_to(ROOT).as_posix()
        out += ["", f"## `{name}/`", "", _cell(_first_line(init)), "",
                "| module | what |", "|---|---|"]
        out += [f"| {_code(p.name)} | {_cell(_first_line(p))} |"
                for p in sorted(pkg.glob("*.py")) if p.name != "__init__.py"]
    return "\n".join(out) + "\n"


# -- the MkDocs hook ---------------------------------------------------------------------------


def _nav_pages(nav) -> set[str]:
    if isinstance(nav, str):
        return {nav}
    if isinstance(nav, dict):
        return set().union(*map(_nav_pages, nav.values())) if nav else set()
    if isinstance(nav, list):
        return set().union(*map(_nav_pages, nav)) if nav else set()
    return set()


def on_config(config):
    """Pages that mkdocs.yml's nav does not list yet (a page landed with other work) go under
    "More" rather than failing the strict build; placing them is an edit of mkdocs.yml."""
    docs = Path(config["docs_dir"])
    listed = _nav_pages(config["nav"] or [])
    missing = sorted(p.relative_to(docs).as_posix() for p in docs.rglob("*.md")
                     if "hooks" not in p.relative_to(docs).parts)
    missing = [p for p in missing if p not in listed]
    if missing and config["nav"] is not None:
        config["nav"].append({"More": missing})
    return config


def on_files(files, config):
    """Adds the generated pages to the site (they exist in no file of the repository)."""
    from mkdocs.structure.files import File

    os.environ.setdefault("JAX_PLATFORMS", "cpu")  # the parsers import no JAX; be sure
    for page, text in ((CLI_PAGE, cli_reference()), (CONFIG_PAGE, config_reference()),
                       (MODULES_PAGE, modules_reference())):
        files.append(File.generated(config, page, content=text))
    return files
