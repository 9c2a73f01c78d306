"""Digests of files: whole (SHA-256), and a cheap sampled one that tells models apart.

`sampled_digest` reads a fixed 4 MiB of each file (64 blocks of 64 KiB spread evenly, first and
last included) and its size, so it costs the same for 100 MB and 140 GB. It identifies which
weights a run started from (two trained models of one shape differ in every block); it is no
integrity check: for that, `sha256_file`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

BLOCKS = 64
BLOCK_BYTES = 1 << 16


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def sampled_digest(files: Iterable[str | os.PathLike]) -> str:
    """A short hex digest of the files' names, sizes and `BLOCKS` sampled blocks of each."""
    h = hashlib.sha256()
    for path in sorted(Path(p) for p in files):
        size = path.stat().st_size
        h.update(f"{path.name}\0{size}\0".encode())
        with open(path, "rb") as f:
            step = max((size - BLOCK_BYTES) // (BLOCKS - 1), 1) if size > BLOCK_BYTES else 1
            offsets = sorted({min(i * step, max(size - BLOCK_BYTES, 0)) for i in range(BLOCKS)})
            for offset in offsets:
                f.seek(offset)
                h.update(f.read(BLOCK_BYTES))
    return h.hexdigest()[:16]
