"""Rows of a dataset from a local file or directory, the Hugging Face hub, or TFDS.

`datasets` reads local files (json/jsonl, parquet, csv) and hub ids; TFDS is read through the
optional `tfds` extra (`pip install s2jax[tfds]`), with sources written `tfds:NAME[:SPLIT]`.
"""

from __future__ import annotations

from pathlib import Path

from s2jax.core.errors import S2JaxError
from s2jax.core.ownership import check_input
from s2jax.tasks.task import HubSource

_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}


def _decode(value):
    """TFDS yields bytes for text and numpy values; make them plain Python."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, dict):
        return {k: _decode(v) for k, v in value.items()}
    if hasattr(value, "tolist"):
        return _decode(value.tolist())
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def read_tfds(name: str, split: str, data_dir: str | None = None) -> list[dict]:
    """All rows of a TFDS dataset split, as plain Python dicts.

    Args:
      name: a registered TFDS name (`name` or `name/config`), or a prepared builder directory.
      split: the split to read.
      data_dir: where TFDS keeps prepared datasets.

    Returns:
      The rows.
    """
    try:
        # optional dependency (the `tfds` extra)
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise S2JaxError(
            f"source tfds:{name} needs tensorflow-datasets: pip install 's2jax[tfds]'"
        ) from e
    if Path(name).is_dir():
        ds = tfds.builder_from_directory(name).as_dataset(split=split)
    else:
        ds = tfds.load(name, split=split, data_dir=data_dir, download=False)
    return [_decode(row) for row in tfds.as_numpy(ds)]


def read_rows(
    source: str | None,
    *,
    hub: HubSource | None = None,
    split: str | None = None,
    limit: int | None = None,
    data_dir: str | None = None,
) -> list[dict]:
    """Rows of a dataset.

    Args:
      source: a local file or directory, `tfds:NAME[:SPLIT]`, or a hub id; None uses `hub`.
      hub: the task's default hub dataset (its config and split are used for hub reads).
      split: overrides the split (hub, directory and TFDS sources).
      limit: keep only the first `limit` rows.
      data_dir: TFDS data directory.

    Returns:
      The rows, as dicts of the dataset's columns.
    """
    if source is None:
        if hub is None:
            raise S2JaxError("this task has no default dataset: pass a file, hub id or tfds:NAME")
        source = hub.path
    if source.startswith("tfds:"):
        name, _, tfds_split = source[len("tfds:"):].partition(":")
        rows = read_tfds(name, split or tfds_split or "train", data_dir)
        return rows[:limit] if limit is not None else rows
    import datasets  # heavy; only when data is read

    path = Path(source)
    if path.exists():
        check_input(path, "a data file or directory")
    try:
        if path.is_file():
            builder = _BUILDERS.get(path.suffix.lower())
            if builder is None:
                raise S2JaxError(
                    f"{source}: unknown data file type {path.suffix!r}; "
                    f"expected one of {sorted(_BUILDERS)}"
                )
            ds = datasets.load_dataset(builder, data_files=str(path), split="train")
        elif path.is_dir():
            ds = datasets.load_dataset(str(path), split=split or "train")
        else:
            same = hub is not None and hub.path == source
            ds = datasets.load_dataset(
                source,
                hub.config if same else None,
                split=split or (hub.split if same else "train"),
            )
    except S2JaxError:
        raise
    except Exception as e:  # datasets raises many types; the user needs one line
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise S2JaxError(f"cannot read dataset {source!r}: {type(e).__name__}: {first[:300]}"
                         ) from e
    if limit is not None:
        ds = ds.select(range(min(limit, len(ds))))
    return list(ds)
