"""Run roots on gs://: the path layer, a run root's local copy and its publishes, orbax and a
whole run, all against an in-process fake GCS (`s2jax.testing.fake_gcs`) reached through the
real clients: etils.epath/fsspec, TensorStore's gcs driver and google-cloud-storage."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from s2jax.core.errors import S2JaxError
from s2jax.core.storage import as_path, create_if_absent, files_under, read_json, write_json
from s2jax.parallel.remote_root import MANIFEST, RemoteRoot, local_copy, worked_on
from s2jax.testing.fake_gcs import fake_gcs

pytest.importorskip("google.cloud.storage", reason="orbax asks google-cloud-storage about a "
                    "gs:// bucket (the test extra installs it)")

ROOT = "gs://fake-bucket/runs/one"


@pytest.fixture
def gcs(tmp_path, monkeypatch):
    """The fake store; the user cache (local copies of roots) and the cwd in tmp_path."""
    monkeypatch.setenv("S2JAX_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    with fake_gcs(tmp_path / "gcs") as fs:
        yield fs
    assert not (tmp_path / "gs:").exists()  # never a local folder named after the scheme


def test_paths_are_local_or_epath_and_other_schemes_are_refused(gcs):
    from etils import epath

    assert type(as_path("runs/x")).__name__ == "PosixPath"
    assert isinstance(as_path(ROOT), epath.Path) and str(as_path(ROOT)) == ROOT
    with pytest.raises(S2JaxError, match=r"ftp:// is not supported"):
        as_path("ftp://host/run", "--run-dir")
    try:
        import s3fs  # noqa: F401
    except ImportError:  # an object store whose fsspec package is absent: one line, not a crash
        with pytest.raises(S2JaxError, match=r"s3://b/run: s3:// needs the s3fs package"):
            as_path("s3://b/run", "--run-dir")


def test_fake_store_has_no_directory_rename_and_no_append(gcs):
    write_json(as_path(f"{ROOT}/d/a.json"), {"a": 1})
    with pytest.raises(OSError, match="cannot rename a directory"):
        gcs.mv("fake-bucket/runs/one/d", "fake-bucket/runs/one/e")
    with pytest.raises(OSError, match="no append"):
        gcs.open("fake-bucket/runs/one/d/a.json", "ab")


def test_json_writes_go_to_the_final_object_and_read_back(gcs):
    path = as_path(f"{ROOT}/results.json")
    write_json(path, {"rows": [1, 2]})
    assert read_json(path) == {"rows": [1, 2]}
    assert files_under(as_path(ROOT)) == {"results.json": len(path.read_bytes())}  # no temps
    assert read_json(as_path(f"{ROOT}/absent.json")) is None


@pytest.mark.parametrize("where", ["local", "gs"])
def test_create_if_absent_admits_one_writer(gcs, tmp_path, where):
    path = as_path(f"{ROOT}/claims/x.claim" if where == "gs" else tmp_path / "x.claim")
    assert create_if_absent(path, b"first")
    assert not create_if_absent(path, b"second")
    assert path.read_bytes() == b"first"


def test_publish_then_pull_on_another_machine_keeps_mtimes(gcs, tmp_path, monkeypatch):
    root = RemoteRoot(ROOT)
    (root.local / "eval").mkdir(parents=True)
    (root.local / "eval" / "a.jsonl").write_text("{}\n")
    (root.local / ".x.s2jax-tmp").write_text("a writer's temp file stays local")
    assert root.publish() == 1 and root.publish() == 0  # nothing changed: nothing sent
    manifest = read_json(as_path(f"{ROOT}/{MANIFEST}"))
    assert list(manifest["files"]) == ["eval/a.jsonl"] and manifest["serial"] == 1
    monkeypatch.setenv("S2JAX_CACHE", str(tmp_path / "other-machine"))
    other = RemoteRoot(ROOT)
    assert other.local != root.local and other.pull() == 1 and other.pull() == 0
    mine, theirs = (r.local / "eval" / "a.jsonl" for r in (root, other))
    assert theirs.read_text() == "{}\n"
    assert theirs.stat().st_mtime_ns == mine.stat().st_mtime_ns  # marks record mtimes
    (root.local / "eval" / "a.jsonl").unlink()
    root.publish()  # a removed file leaves the manifest, then the store
    assert list(files_under(as_path(ROOT))) == [MANIFEST]
    assert other.pull() == 0 and not theirs.exists()
    as_path(f"{ROOT}/{MANIFEST}").unlink()  # the root deleted: a stale local copy is dropped
    (other.local / "results.json").write_text("{}")
    assert other.pull() == 0 and not any(other.local.iterdir())
    assert local_copy(ROOT, 1) != local_copy(ROOT)  # two processes on one machine: two copies


def test_a_root_not_made_by_s2jax_or_in_use_is_refused(gcs):
    write_json(as_path(f"{ROOT}/notes.json"), {})
    with pytest.raises(S2JaxError, match=r"not made by s2jax .*notes\.json"):
        RemoteRoot(ROOT).pull()
    other = "gs://fake-bucket/runs/two"
    write_json(as_path(f"{other}/.s2jax.lock"), {"host": "elsewhere", "pid": 1})
    with pytest.raises(S2JaxError, match=r"in use by another s2jax run \(host elsewhere"), \
            worked_on(other, lock=True):
        pass
    with worked_on("gs://fake-bucket/runs/three", lock=True) as local:
        assert local == local_copy("gs://fake-bucket/runs/three")
        assert as_path("gs://fake-bucket/runs/three/.s2jax.lock").exists()
    assert not as_path("gs://fake-bucket/runs/three/.s2jax.lock").exists()


def test_orbax_checkpoints_save_and_restore_on_gs(gcs):
    import jax.numpy as jnp

    from s2jax.train.checkpoint import Checkpoints

    state = {"w": jnp.arange(6.0).reshape(2, 3)}
    ckpt = Checkpoints(f"{ROOT}/train/checkpoints", keep=1)
    for step in (1, 2):
        ckpt.save(step, {"w": state["w"] * step}, {"epoch": step})
    ckpt.wait()
    ckpt.close()
    names = files_under(as_path(f"{ROOT}/train/checkpoints"))
    assert "2/commit_success.txt" in names and not any(n.startswith("1/") for n in names)
    again = Checkpoints(f"{ROOT}/train/checkpoints")
    assert again.latest_step() == 2
    restored, data = again.restore(2, state)
    assert jnp.array_equal(restored["w"], state["w"] * 2) and data == {"epoch": 2}


@pytest.mark.parametrize("argv", [["report", ROOT], ["sweep", "c.py", "--root", ROOT]])
def test_commands_that_need_a_file_system_refuse_a_gs_root(tmp_path, argv):
    proc = subprocess.run([sys.executable, "-m", "s2jax.cli", *argv], capture_output=True,
                          text=True, cwd=tmp_path)
    assert proc.returncode != 0 and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "object-store roots are not supported here" in proc.stderr
    assert not (tmp_path / "gs:").exists()


def _objects(fs) -> dict[str, bytes]:
    """{"BUCKET/NAME": bytes} of every object in the fake store."""
    root = Path(fs.root)
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*")
            if p.is_file()}


@pytest.mark.slow
def test_a_run_on_gs_completes_resumes_and_resumes_on_a_new_machine(gcs, hf_checkpoint,
                                                                     tmp_path, monkeypatch):
    from s2jax.run.pipeline import run_experiment
    from tests.test_experiment import _echo_task, _tiny_config

    config, tasks = _tiny_config(hf_checkpoint), {"echo": _echo_task()}
    results = run_experiment(config, ROOT, tasks=tasks, log=lambda _: None, progress=False)
    assert [r["system"] for r in results["rows"]] == ["system1", "system2", "distilled"]
    listed = read_json(as_path(f"{ROOT}/{MANIFEST}"))["files"]
    for name in ("config.json", "eval/system1.jsonl", "generations.jsonl", "results.json",
                 "distill/train.parquet", "train/model/config.json", "report.json", ".s2jax"):
        assert name in listed and as_path(f"{ROOT}/{name}").exists(), name
    ckpts = files_under(as_path(f"{ROOT}/train/checkpoints"))
    assert any(n.endswith("/commit_success.txt") for n in ckpts)  # orbax wrote to the store
    assert not as_path(f"{ROOT}/.s2jax.lock").exists()
    before = _objects(gcs)
    logs = []
    again = run_experiment(config, ROOT, tasks=tasks, log=logs.append, progress=False)
    assert again == results and "done already" in logs[0] and _objects(gcs) == before
    # a new machine (empty cache) after a kill before the last write: only that is redone
    manifest = read_json(as_path(f"{ROOT}/{MANIFEST}"))
    del manifest["files"]["results.json"]
    write_json(as_path(f"{ROOT}/{MANIFEST}"), manifest)
    monkeypatch.setenv("S2JAX_CACHE", str(tmp_path / "new-machine"))
    resumed = run_experiment(config, ROOT, tasks=tasks, log=lambda _: None, progress=False)
    assert [r["accuracy"] for r in resumed["rows"]] == [r["accuracy"] for r in results["rows"]]
    after = _objects(gcs)
    for name in ("generations.jsonl", "distill/train.parquet", "train/model/config.json",
                 "train/summary.json"):
        key = f"fake-bucket/runs/one/{name}"
        assert after[key] == before[key], name  # pulled and kept, not recomputed
    assert {k for k in after if "/checkpoints/" in k} == {k for k in before if "/checkpoints/"
                                                            in k}
    assert json.loads(after["fake-bucket/runs/one/results.json"])["rows"] == resumed["rows"]


# a rank of a multi-process run on the fake store: S2JAX_FAKE_GCS names the shared directory
RANK = ("import sys; from s2jax.testing.fake_gcs import from_env; from_env(); "
        "from s2jax.cli import main; sys.exit(main())")


@pytest.mark.slow  # a minute or two: two toy ranks over gloo on shared cores
def test_two_processes_share_a_gs_root_and_every_rank_reads_what_process_0_wrote(tmp_path):
    from tests.test_multihost import _env, _free_port, _run_all
    from tests.test_resume import CONFIG, _comparable

    config = tmp_path / "two.py"
    config.write_text(CONFIG.replace('shard_size=2)', 'shard_size=2, mesh="fsdp=2,tensor=2")'))
    url, port = "gs://fake-bucket/two", _free_port()
    cmd = [sys.executable, "-c", RANK, "run", str(config), "--no-progress", "--run-dir", url]
    shared = {"S2JAX_FAKE_GCS": str(tmp_path / "gcs"), "S2JAX_CACHE": str(tmp_path / "cache")}
    _run_all({f"rank{r}": (cmd, {**_env(2, r, port), **shared}) for r in (0, 1)}, tmp_path)

    with fake_gcs(tmp_path / "gcs"):
        manifest = read_json(as_path(f"{url}/{MANIFEST}"))
        objects = {rel: as_path(f"{url}/{rel}").read_bytes() for rel in manifest["files"]}
        ckpt = files_under(as_path(f"{url}/train/checkpoints"))
    copies = tmp_path / "cache" / "remote" / "gs" / "fake-bucket"
    rank0, rank1 = copies / "two", copies / "two@process1"  # each process's local copy
    assert "results.json" in objects and len(json.loads(objects["results.json"])["rows"]) == 3
    for rel, data in objects.items():  # process 0 wrote it, process 1 pulled it at a barrier
        assert (rank0 / rel).read_bytes() == data, rel
    assert _comparable(rank1) == _comparable(rank0)
    # orbax wrote the checkpoints to the store from both processes
    assert any("/ocdbt.process_1/" in n for n in ckpt) and any(
        n.endswith("commit_success.txt") for n in ckpt)
    assert not (tmp_path / "gs:").exists()
