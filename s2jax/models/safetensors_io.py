"""Lazy safetensors reading (memory-mapped, slice by slice) and atomic writing.

Own reader rather than `safetensors.safe_open`: it gives numpy views for every dtype including
bf16 (via ml_dtypes), so a process can copy out just the slice its devices hold, and it checks
the header against the file size so a truncated download is named, not a crash.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import ml_dtypes
import numpy as np

from s2jax.core.atomic import atomic_open
from s2jax.core.errors import S2JaxError
from s2jax.core.jsonl import parse_json, read_json_object
from s2jax.core.ownership import check_input

_DTYPES = {
    "F64": np.dtype(np.float64), "F32": np.dtype(np.float32), "F16": np.dtype(np.float16),
    "BF16": np.dtype(ml_dtypes.bfloat16), "I64": np.dtype(np.int64), "I32": np.dtype(np.int32),
    "I16": np.dtype(np.int16), "I8": np.dtype(np.int8), "U8": np.dtype(np.uint8),
    "BOOL": np.dtype(np.bool_),
}
_NAMES = {v: k for k, v in _DTYPES.items()}
MAX_HEADER_BYTES = 100_000_000  # the safetensors format's own limit
INDEX_NAME = "model.safetensors.index.json"


def _check_entry(path: Path, name: str, e) -> None:
    """A header entry must be {"dtype": str, "shape": [int...], "data_offsets": [int, int]}."""
    def ints(v, n=None):
        return isinstance(v, list) and (n is None or len(v) == n) and all(
            isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in v)
    ok = (isinstance(e, dict) and isinstance(e.get("dtype"), str) and ints(e.get("shape"))
          and ints(e.get("data_offsets"), 2) and e["data_offsets"][0] <= e["data_offsets"][1])
    if not ok:
        raise S2JaxError(f"{path}: corrupt safetensors header: tensor {name} needs 'dtype', "
                         "'shape' (non-negative ints) and 'data_offsets' ([start, end])")


class SafetensorsFile:
    """One .safetensors file; `view(name)` is a zero-copy memory-mapped numpy array."""

    def __init__(self, path: str | Path):
        self.path = check_input(path, "a .safetensors file")
        size = self.path.stat().st_size
        with open(self.path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise S2JaxError(f"{self.path}: truncated safetensors file (no header length)")
            (n,) = struct.unpack("<Q", head)
            if 8 + n > size:
                raise S2JaxError(
                    f"{self.path}: truncated safetensors file (header of {n} bytes, "
                    f"file has {size})")
            if n > MAX_HEADER_BYTES:
                raise S2JaxError(f"{self.path}: corrupt safetensors header ({n} bytes; the "
                                 f"format allows at most {MAX_HEADER_BYTES})")
            try:
                text = f.read(n).decode("utf-8")
            except UnicodeDecodeError:
                raise S2JaxError(f"{self.path}: corrupt safetensors header (not UTF-8)") from None
            header = parse_json(text, f"{self.path}: corrupt safetensors header",
                                "a JSON object of tensors")
        if not isinstance(header, dict):
            raise S2JaxError(f"{self.path}: corrupt safetensors header (a JSON "
                             f"{type(header).__name__}, expected an object of tensors)")
        self.metadata = header.pop("__metadata__", None) or {}
        self._base = 8 + n
        self.entries: dict[str, tuple[np.dtype, tuple[int, ...], int, int]] = {}
        for name, e in header.items():
            _check_entry(self.path, name, e)
            if e["dtype"] not in _DTYPES:
                raise S2JaxError(
                    f"{self.path}: tensor {name} has unsupported dtype {e.get('dtype')}")
            start, end = e["data_offsets"]
            dt = _DTYPES[e["dtype"]]
            if end - start != dt.itemsize * int(np.prod(e["shape"], dtype=np.int64)):
                raise S2JaxError(f"{self.path}: tensor {name}: data_offsets do not match its shape")
            if self._base + end > size:
                raise S2JaxError(
                    f"{self.path}: truncated safetensors file (tensor {name} ends at byte "
                    f"{self._base + end}, file has {size} bytes)")
            self.entries[name] = (dt, tuple(e["shape"]), start, end)
        self._mmap: np.memmap | None = None

    def view(self, name: str) -> np.ndarray:
        if self._mmap is None:
            self._mmap = np.memmap(self.path, dtype=np.uint8, mode="r")
        dt, shape, start, end = self.entries[name]
        raw = self._mmap[self._base + start:self._base + end]
        return raw.view(dt).reshape(shape)


class Checkpoint:
    """All tensors of an HF checkpoint dir: one `model.safetensors` or a sharded index."""

    def __init__(self, directory: str | Path):
        directory = Path(directory)
        index = directory / INDEX_NAME
        if index.is_file():
            weight_map = read_json_object(index, "a safetensors index").get("weight_map")
            if not (isinstance(weight_map, dict) and all(
                    isinstance(f, str) and f == Path(f).name and f.endswith(".safetensors")
                    for f in weight_map.values())):
                raise S2JaxError(f"{index}: expected a 'weight_map' object of tensor names to "
                                 "file names (*.safetensors in the same directory)")
            files = {}
            for fname in sorted(set(weight_map.values())):
                if not (directory / fname).is_file():
                    raise S2JaxError(f"{index}: names shard {fname}, which is missing")
                files[fname] = SafetensorsFile(directory / fname)
            self.location = {k: files[f] for k, f in weight_map.items()}
            for f in files.values():
                for k in f.entries:
                    self.location.setdefault(k, f)
        else:
            files = sorted(directory.glob("*.safetensors"))
            if not files:
                raise S2JaxError(
                    f"{directory}: no *.safetensors weights (and no {INDEX_NAME}); "
                    "s2jax reads only safetensors")
            self.location = {}
            for p in files:
                f = SafetensorsFile(p)
                for k in f.entries:
                    self.location[k] = f
        self.directory = directory

    def keys(self) -> list[str]:
        return list(self.location)

    def shape(self, key: str) -> tuple[int, ...]:
        return self.location[key].entries[key][1]

    def view(self, key: str) -> np.ndarray:
        return self.location[key].view(key)

    def where(self, key: str) -> str:
        return f"{self.location[key].path}: tensor {key}"

    def dtype(self, key: str) -> np.dtype:
        return self.location[key].entries[key][0]


def write_safetensors(path: str | Path, layout: dict[str, tuple[tuple[int, ...], np.dtype]],
                      produce: Callable[[str], np.ndarray],
                      metadata: dict[str, str] | None = None) -> None:
    """Writes tensors to `path` atomically as safetensors, one tensor in memory at a time.

    `layout` gives each tensor's shape and dtype (the header comes first); `produce(name)` returns
    the tensor when its bytes are due.
    """
    header: dict = {"__metadata__": metadata or {"format": "pt"}}
    offset = 0
    for name, (shape, dtype) in layout.items():
        dtype = np.dtype(dtype)
        if dtype not in _NAMES:
            raise S2JaxError(f"tensor {name}: dtype {dtype} cannot be saved as safetensors")
        nbytes = dtype.itemsize * int(np.prod(shape, dtype=np.int64))
        header[name] = {"dtype": _NAMES[dtype], "shape": list(shape),
                        "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # keep tensor data 8-byte aligned
    with atomic_open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for name, (shape, dtype) in layout.items():
            arr = np.ascontiguousarray(produce(name))
            if arr.shape != tuple(shape) or arr.dtype != np.dtype(dtype):
                raise AssertionError(f"{name}: produced {arr.shape} {arr.dtype}, "
                                     f"declared {shape} {dtype}")
            f.write(arr.tobytes())


def plan_shards(sizes: dict[str, int], max_shard_bytes: int) -> list[list[str]]:
    """Groups tensor names in order into shards of at most `max_shard_bytes` (one tensor min)."""
    shards: list[list[str]] = [[]]
    total = 0
    for name, n in sizes.items():
        if shards[-1] and total + n > max_shard_bytes:
            shards.append([])
            total = 0
        shards[-1].append(name)
        total += n
    return shards


def shard_file_names(n: int) -> Iterator[str]:
    if n == 1:
        yield "model.safetensors"
        return
    for i in range(n):
        yield f"model-{i + 1:05d}-of-{n:05d}.safetensors"
