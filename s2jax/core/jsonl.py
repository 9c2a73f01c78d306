"""Reading JSON and JSONL written by people: UTF-8 checked, each bad line named by its number,
and bounded: JSON nested deeper than Python's parser can follow, numbers with more digits than
it converts, and files too large for this machine's memory are one-line errors, not tracebacks."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from s2jax.core.errors import S2JaxError
from s2jax.core.memory import check_fits
from s2jax.core.ownership import check_input

MAX_OBJECT_BYTES = 64 << 20  # a JSON settings file (config.json, adapter_config.json, ...)
# Parsed JSON takes several times its text in Python objects; a file is refused when that would
# not fit in the memory available.
OBJECT_BLOWUP = 8


def parse_json(text: str | bytes, where: str, expected: str) -> Any:
    """`json.loads(text)`; an S2JaxError naming `where` and `expected` for anything it refuses."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise S2JaxError(f"{where}: not valid JSON ({e.msg} at line {e.lineno} column "
                         f"{e.colno}; expected {expected})") from None
    except RecursionError:
        raise S2JaxError(f"{where}: JSON nested too deeply (expected {expected})") from None
    except ValueError as e:  # e.g. an integer of more digits than Python converts
        raise S2JaxError(f"{where}: unreadable JSON ({str(e).splitlines()[0]}; expected "
                         f"{expected})") from None


def read_json_object(path: str | os.PathLike, expected: str, *,
                     max_bytes: int = MAX_OBJECT_BYTES) -> dict[str, Any]:
    """The JSON object in `path`; a missing, special, oversized or malformed file is an error
    naming `expected`."""
    path = check_input(path, expected)
    if not path.is_file():
        raise S2JaxError(f"{path}: no such file (expected {expected})")
    size = path.stat().st_size
    if size > max_bytes:
        raise S2JaxError(f"{path}: {size / 2**20:.0f} MiB, larger than any {expected} "
                         f"(at most {max_bytes >> 20} MiB)")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise S2JaxError(f"{path}: not UTF-8 text (byte {e.start}; expected {expected})") from None
    obj = parse_json(text, str(path), expected)
    if not isinstance(obj, dict):
        raise S2JaxError(f"{path}: a JSON {type(obj).__name__}, expected a JSON object "
                         f"({expected})")
    return obj


def read_utf8_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file; an S2JaxError naming the line where decoding fails."""
    check_fits(path.stat().st_size * OBJECT_BLOWUP, f"{path}: reading it",
               "split the file, or use a machine with more memory")
    data = path.read_bytes()
    try:
        return data.decode("utf-8").splitlines()
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise S2JaxError(f"{path}:{line}: not UTF-8 text (byte {e.start}; expected UTF-8 "
                         "JSONL)") from None


def utf8_encodable(value) -> bool:
    """Whether every string in a JSON value can be written as UTF-8 (no lone surrogates)."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def read_objects(path: str | os.PathLike, what: str) -> Iterator[tuple[str, dict]]:
    """("path:line", object) for every non-blank line; S2JaxError on anything else.

    Args:
      path: the file.
      what: what the file should be, for the messages (e.g. "the generations JSONL").
    """
    path = check_input(path, what)
    if not path.is_file():
        raise S2JaxError(f"{path}: no such file (expected {what})")
    for n, line in enumerate(read_utf8_lines(path), start=1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        row = parse_json(line, where, what)
        if not isinstance(row, dict):
            raise S2JaxError(f"{where}: a JSON {type(row).__name__}, expected an object "
                             f"({what})")
        if not utf8_encodable(row):
            raise S2JaxError(f"{where}: a string holds a lone surrogate (expected valid "
                             "Unicode text)")
        yield where, row
