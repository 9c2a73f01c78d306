"""Changing a typed config from the command line: the one way every command does it.

A change names a field by its dotted path (`sampling.n`, `lora.rank`). A string value is parsed
by the type of the field it replaces (`X | None` also takes "none"); other values are set as
they are. `run --set key=value` passes strings, `train --<field>` flags and `plan`/`demo`
options pass typed values; all go through `override`, so a bad value is reported the same way
and the config's own checks (`__post_init__`) see every change together, once.

`add_field_flags` makes one flag per field of a config (nested sections too), with each
field's comment in the config's source as its help text.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import textwrap
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from s2jax.core.errors import S2JaxError

C = TypeVar("C")


def set_flag(key: str) -> str:
    """How `run --set` names a change in errors."""
    return f"--set {key}"


def field_flag(key: str) -> str:
    """The flag `add_field_flags` makes for dotted field `key`: lora.rank -> --lora-rank."""
    return "--" + key.replace(".", "-").replace("_", "-")


def parse_assignments(items: Sequence[str]) -> dict[str, str]:
    """`key=value` strings (later ones win) as {key: value}."""
    changes = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise S2JaxError(f"--set {item!r}: expected key=value")
        changes[key.strip()] = value.strip()
    return changes


def override(config: C, changes: Mapping[str, Any], *,
             name: Callable[[str], str] = set_flag) -> C:
    """`config` with each dotted field of `changes` replaced; `name(key)` names a change in
    errors. The config (and each changed section) is rebuilt once, so cross-field checks see
    every change together and their order does not matter."""
    nested: dict[str, dict[str, Any]] = {}
    direct: dict[str, Any] = {}
    hints = typing.get_type_hints(type(config))
    for key, value in changes.items():
        head, _, rest = key.partition(".")
        if head not in hints or not any(f.name == head for f in dataclasses.fields(config)):
            fields = ", ".join(sorted(f.name for f in dataclasses.fields(config)))
            raise S2JaxError(f"{name(key)}: {type(config).__name__} has no field {head!r} "
                             f"(fields: {fields})")
        if rest:
            if not dataclasses.is_dataclass(getattr(config, head)):
                raise S2JaxError(f"{name(key)}: {head!r} is not a config section")
            nested.setdefault(head, {})[rest] = value
        else:
            direct[head] = parse_value(value, hints[head], name(key)) \
                if isinstance(value, str) else _as_float(value, hints[head])
    for head, inner in nested.items():
        direct[head] = override(getattr(config, head), inner,
                                name=lambda k, head=head: name(f"{head}.{k}"))
    try:
        return dataclasses.replace(config, **direct)
    except (ValueError, TypeError, S2JaxError) as e:
        raise S2JaxError(f"{', '.join(name(k) for k in changes)}: {e}") from None


def parse_value(value: str, hint: Any, where: str) -> Any:
    """`value` converted to a field's declared type (`X | None` accepts "none")."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if value.lower() in ("none", "null") and type(None) in typing.get_args(hint):
        return None
    kind = args[0] if args and typing.get_origin(hint) in (typing.Union, types.UnionType) \
        else hint
    if typing.get_origin(kind) is typing.Literal:
        return value
    try:
        if kind is bool:
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(value)
            return value.lower() in ("true", "1")
        if kind in (int, float):
            return kind(value)
        if typing.get_origin(kind) is tuple or kind is tuple:
            return tuple(v for v in value.split(",") if v)
    except ValueError:
        raise S2JaxError(f"{where}={value}: expected a {getattr(kind, '__name__', kind)}"
                         ) from None
    return value


def _as_float(value: Any, hint: Any) -> Any:
    """An int given for a float field as the float a string would have parsed to (`1` and
    `"1"` must make the same config, and the same fingerprint)."""
    kinds = typing.get_args(hint) or (hint,)
    if isinstance(value, int) and not isinstance(value, bool) and float in kinds \
            and int not in kinds:
        return float(value)
    return value


def check_types(config: Any, where: str) -> None:
    """Every field holds a value of its declared type (a `--set` or a config file can't slip)."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value, hint = getattr(config, f.name), hints[f.name]
        if not _is_a(value, hint):
            raise S2JaxError(f"{where} {f.name}={value!r}: expected {_describe(hint)}")
        if dataclasses.is_dataclass(value):
            check_types(value, f"{where} {f.name}:")


def _is_a(value: Any, hint: Any) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_is_a(value, a) for a in args)
    if origin is typing.Literal:
        return value in args
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is tuple:
        return isinstance(value, tuple)
    return isinstance(value, origin or hint)


def _describe(hint: Any) -> str:
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if typing.get_origin(hint) is typing.Literal:
        return "one of " + ", ".join(map(repr, args))
    return "none" if hint is type(None) else getattr(hint, "__name__", str(hint))


def field_comments(config: type) -> dict[str, str]:
    """Each field's comment in the class source, as its writer meant it:

    - the comment on the field's line, with the comment lines right below it when the next
      field has a comment of its own on its line (a long comment continued under its field);
    - else the comment lines just above the field, a section header (`# -- ...`) and the
      lines continuing it included when the field has no comment on its line.
    """
    lines = textwrap.dedent(inspect.getsource(config)).splitlines()
    fields = [node for node in ast.parse("\n".join(lines)).body[0].body
              if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)]
    inline = [_inline_comment(lines[node.end_lineno - 1]) for node in fields]
    out = {}
    for i, node in enumerate(fields):
        below = _comment_block(lines, node.end_lineno, fields[i + 1].lineno - 1
                               if i + 1 < len(fields) else len(lines))
        continued = i + 1 == len(fields) or bool(inline[i + 1])
        if inline[i]:
            above = [] if i and inline[i - 1] else _above(lines, node.lineno - 2, header=False)
            text = [*above, inline[i], *(below if continued else [])]
        else:
            text = _above(lines, node.lineno - 2, header=True)
        out[node.target.id] = " ".join(filter(None, text))
    return out


def _inline_comment(line: str) -> str:
    return line.split("  # ", 1)[1].strip() if "  # " in line else ""


def _comment_block(lines: list[str], start: int, end: int) -> list[str]:
    """The comment lines from line index `start` on (before `end`), up to the first other."""
    block = []
    for line in lines[start:end]:
        if not line.strip().startswith("#") or line.strip().startswith("# --"):
            break
        block.append(line.strip().lstrip("#").strip())
    return block


def _above(lines: list[str], i: int, *, header: bool) -> list[str]:
    """The comment lines ending at line index `i`; a `# --` section header ends them, and is
    their first line when `header` (the header then describes the field below it)."""
    above = []
    while i >= 0 and lines[i].strip().startswith("#"):
        text = lines[i].strip().lstrip("#").strip()
        if text.startswith("--"):
            if header:
                above.insert(0, text.lstrip("-").strip())
            break
        above.insert(0, text)
        i -= 1
    return above


def add_field_flags(parser: argparse.ArgumentParser, config: type, prefix: str = "") -> None:
    """One flag per field of `config` (a section's fields prefixed by its name, `--lora-rank`),
    its help the field's comment and default. Unset flags stay None (see `field_changes`)."""
    hints = typing.get_type_hints(config)
    comments = field_comments(config)
    for f in dataclasses.fields(config):
        key = prefix + f.name
        if dataclasses.is_dataclass(hints[f.name]):
            add_field_flags(parser, hints[f.name], key + ".")
            continue
        default = ",".join(f.default) if isinstance(f.default, tuple) else f.default
        help_text = f"{comments.get(f.name) or f.name} (default: {default})".replace("%", "%%")
        kind, choices = _flag_type(hints[f.name])
        dest = key.replace(".", "__")
        if kind is bool:
            parser.add_argument(field_flag(key), dest=dest, default=None, help=help_text,
                                action=argparse.BooleanOptionalAction)
        else:
            parser.add_argument(field_flag(key), dest=dest, type=kind, choices=choices,
                                default=None, help=help_text, metavar=None if choices
                                else key.replace(".", "_").upper())


def field_changes(args: argparse.Namespace, config: type) -> dict[str, Any]:
    """The dotted changes the flags of `add_field_flags` that were given ask for."""
    out: dict[str, Any] = {}

    def walk(cls: type, prefix: str) -> None:
        for f in dataclasses.fields(cls):
            kind = typing.get_type_hints(cls)[f.name]
            if dataclasses.is_dataclass(kind):
                walk(kind, prefix + f.name + ".")
            elif (value := getattr(args, (prefix + f.name).replace(".", "__"))) is not None:
                out[prefix + f.name] = value

    walk(config, "")
    return out


def _flag_type(hint: Any) -> tuple[Any, tuple | None]:
    if typing.get_origin(hint) is tuple:  # "q,v": parsed as the field's type by `override`
        return str, None
    args = typing.get_args(hint)
    if typing.get_origin(hint) is typing.Literal:
        return type(args[0]), args
    non_none = [a for a in args if a is not type(None)]
    return (non_none[0] if non_none else hint), None
