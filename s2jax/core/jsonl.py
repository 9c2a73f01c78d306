"""Reading JSONL written by people: UTF-8 checked, each bad line named by its number."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

from s2jax.core.errors import S2JaxError


def read_utf8_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file; an S2JaxError naming the line where decoding fails."""
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
    path = Path(path)
    if not path.is_file():
        raise S2JaxError(f"{path}: no such file (expected {what})")
    for n, line in enumerate(read_utf8_lines(path), start=1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise S2JaxError(f"{where}: not valid JSON ({e.msg}; expected {what})") from None
        if not isinstance(row, dict):
            raise S2JaxError(f"{where}: a JSON {type(row).__name__}, expected an object "
                             f"({what})")
        if not utf8_encodable(row):
            raise S2JaxError(f"{where}: a string holds a lone surrogate (expected valid "
                             "Unicode text)")
        yield where, row
