"""Atomic writes and the ownership rule: nothing half-written on failure, ordinary permissions on
success, nothing replaced that s2jax did not write, stale temps of killed writers cleaned."""

import fcntl
import json
import os
import stat
import subprocess
import sys

import pytest

from s2jax.core.atomic import TEMP_SUFFIX, atomic_open, clean_stale, write_json
from s2jax.core.errors import S2JaxError
from s2jax.core.ownership import (
    MARK,
    MODEL,
    check_dir,
    check_file,
    claim_dir,
    open_owned_file,
    replace_dir,
)


def test_failed_write_leaves_no_file(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError), atomic_open(target) as f:
        f.write("{half")
        raise RuntimeError("boom")
    assert not target.exists() and os.listdir(tmp_path) == []


def test_failed_dir_keeps_the_old_one(tmp_path):
    target = tmp_path / "d"
    with replace_dir(target, MODEL) as d:
        (d / "a").write_text("old")
    with pytest.raises(RuntimeError), replace_dir(target, MODEL) as d:
        (d / "a").write_text("new")
        raise RuntimeError("boom")
    assert (target / "a").read_text() == "old" and sorted(os.listdir(tmp_path)) == ["d"]


def test_artifacts_get_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        write_json(tmp_path / "x.json", {"a": 1})
        with replace_dir(tmp_path / "d", MODEL) as d:
            (d / "f").write_text("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "x.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755


def test_a_replaced_dir_is_marked_with_its_files_and_refused_once_changed(tmp_path):
    target = tmp_path / "d"
    with replace_dir(target, MODEL) as d:
        (d / "a").write_text("x")
    mark = json.loads((target / MARK).read_text())
    assert mark["s2jax"] == MODEL and set(mark["files"]) == {"a"}
    assert check_dir(target, "--out", MODEL, whole=True)  # ours, unchanged: may be replaced
    (target / "notes.txt").write_text("mine")
    with pytest.raises(S2JaxError, match="notes.txt was added"):
        check_dir(target, "--out", MODEL, whole=True)
    with pytest.raises(S2JaxError, match="notes.txt was added"), replace_dir(target, MODEL):
        pass
    assert (target / "notes.txt").read_text() == "mine"


def test_a_users_dir_and_file_are_refused_and_kept(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "x").write_text("keep")
    (tmp_path / "f").write_text("keep")
    with pytest.raises(S2JaxError, match="not made by s2jax"):
        claim_dir(tmp_path / "mine", "--out", MODEL)
    with pytest.raises(S2JaxError, match="not made by s2jax"), replace_dir(tmp_path / "mine",
                                                                           MODEL):
        pass
    with pytest.raises(S2JaxError, match="a file, not a directory"):
        check_dir(tmp_path / "f", "--out", MODEL)
    with pytest.raises(S2JaxError, match="not an s2jax generate output"):
        check_file(tmp_path / "f", "--output", "generate-output")
    assert (tmp_path / "mine" / "x").read_text() == "keep" and (tmp_path / "f").read_text() == \
        "keep"


def test_an_owned_file_may_be_replaced_until_someone_changes_it(tmp_path):
    out = tmp_path / "o.jsonl"
    with open_owned_file(out, "generate-output") as f:
        f.write("a\n")
    with open_owned_file(out, "generate-output") as f:  # a rerun replaces its own output
        f.write("b\n")
    assert out.read_text() == "b\n"
    with open(out, "a") as f:
        f.write("my note\n")
    with pytest.raises(S2JaxError, match="changed since"):
        check_file(out, "--output", "generate-output")


def test_fifos_and_links_are_never_outputs(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    for name in ("fifo", "link"):
        with pytest.raises(S2JaxError, match="FIFO|symbolic link"):
            check_file(tmp_path / name, "--output", "generate-output")
        with pytest.raises(S2JaxError, match="FIFO|symbolic link"):
            check_dir(tmp_path / name, "--out", MODEL)


def test_a_killed_writers_temp_dir_is_removed_by_the_next_write(tmp_path):
    # a child process starts an export and is killed inside it (SIGKILL: no clean-up runs)
    code = ("import os, sys, time; from s2jax.core.ownership import replace_dir\n"
            f"with replace_dir({str(tmp_path / 'm')!r}, 'model') as d:\n"
            "    (d / 'w').write_bytes(b'x' * 1000); print('in', flush=True); time.sleep(60)\n")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                             env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert child.stdout.readline().strip() == b"in"
    temps = [p for p in tmp_path.iterdir() if p.name.endswith(TEMP_SUFFIX)]
    assert len(temps) == 1 and clean_stale(tmp_path / "m") == []  # alive: locked, kept
    child.kill()
    child.wait()
    # a user's look-alike: named like a temp, but with no s2jax mark in it
    lookalike = tmp_path / f".m.abcdefgh{TEMP_SUFFIX}"
    lookalike.mkdir()
    with replace_dir(tmp_path / "m", MODEL) as d:
        (d / "w").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == [lookalike.name, "m"]


def test_a_live_temp_file_is_locked_and_kept(tmp_path):
    target = tmp_path / "x.json"
    with atomic_open(target) as f:
        f.write("{}")
        [temp] = [p for p in tmp_path.iterdir() if p.name.endswith(TEMP_SUFFIX)]
        assert clean_stale(target) == [] and temp.exists()
    fd = os.open(tmp_path / f".x.json.zzzzzzzz{TEMP_SUFFIX}", os.O_CREAT | os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    assert clean_stale(target) == []  # another live writer's
    os.close(fd)
    assert [p.name for p in clean_stale(target)] == [f".x.json.zzzzzzzz{TEMP_SUFFIX}"]
