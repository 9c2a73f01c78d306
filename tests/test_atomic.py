"""Atomic writes: nothing half-written on failure, ordinary permissions on success."""

import os
import stat

import pytest

from s2jax.core.atomic import atomic_dir, atomic_open, write_json


def test_failed_write_leaves_no_file(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError), atomic_open(target) as f:
        f.write("{half")
        raise RuntimeError("boom")
    assert not target.exists() and os.listdir(tmp_path) == []


def test_failed_dir_keeps_the_old_one(tmp_path):
    target = tmp_path / "d"
    with atomic_dir(target) as d:
        (d / "a").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(target) as d:
        (d / "a").write_text("new")
        raise RuntimeError("boom")
    assert (target / "a").read_text() == "old" and sorted(os.listdir(tmp_path)) == ["d"]


def test_artifacts_get_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        write_json(tmp_path / "x.json", {"a": 1})
        with atomic_dir(tmp_path / "d") as d:
            (d / "f").write_text("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "x.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755
