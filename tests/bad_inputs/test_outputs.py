"""Output paths: s2jax writes only into paths it created and marked, or fresh ones. Every
existing path that is not its output (a user's file or directory, another run's, a FIFO, a link)
is refused before any work, never replaced, emptied or truncated (issue 23's ten data-loss
paths first)."""

import json
import os

import pytest

from s2jax.toy.demo import base_model_dir
from tests.bad_inputs.harness import (
    TOY_CONFIG,
    TRAIN_ARGS,
    Case,
    check,
    copy_artifact,
    file,
    generations,
    model_copy,
    record,
    toy_config,
    user_dir,
    user_file,
    with_,
)

MODEL = str(base_model_dir())
GEN_IN = file("in.jsonl", '{"id": "a", "prompt": "hi"}\n')
TRAIN_DATA = file("d.jsonl", '{"prompt": "q", "completion": "a"}\n')
VOTE = ["vote", "--generations", "{f}", "--task", "coin_flip", "--out"]
REVOTE = ["vote", "--generations", "gen.jsonl", "--task", "coin_flip", "--out", "out"]
TRAIN = ["train", "--model", MODEL, "--data", "{f}", "--out"]
GM = ["generate-method", "--model", MODEL, "--method", "rar_1step", "--task", "coin_flip",
      "--synthetic", "2", "--output"]
PLAN = ["plan", str(base_model_dir() / "config.json"), "--devices", "1", "--device-memory", "1",
        "--json"]


def _garbage_shards(tmp, names):
    (tmp / "g.jsonl").write_text('{"id": "0", "mine": true}\n')
    (tmp / "g.jsonl.shards").write_text("garbage, not an index\n")


def _user_model_sibling_run(tmp, names):
    (tmp / "model.run").mkdir()
    (tmp / "model.run" / "notes.txt").write_text("keep me")


def _added(path: str, name: str = "notes.txt"):
    def add(tmp, names):
        (tmp / path / name).write_text("mine")
    return add


def _edited(path: str):
    def edit(tmp, names):
        with open(tmp / path, "a") as f:
            f.write("my note\n")
    return edit


def _other_base(tmp, names):
    other = model_copy(tmp, "other")  # the same shapes, one weight changed
    blob = bytearray((other / "model.safetensors").read_bytes())
    blob[-8:] = bytes(8)
    (other / "model.safetensors").write_bytes(bytes(blob))
    names["other"] = other


def _trained(extra=None):
    def setup(tmp):
        copy_artifact("train", tmp)
        names = {"f": tmp / "d.jsonl", "out": tmp / "out"}
        if extra:
            extra(tmp, names)
        return names
    return setup


def _voted(extra=None):
    def setup(tmp):
        copy_artifact("set", tmp)
        names = {"f": tmp / "gen.jsonl"}
        if extra:
            extra(tmp, names)
        return names
    return setup


def _converted(extra=None):
    def setup(tmp):
        copy_artifact("model", tmp)
        names = {}
        if extra:
            extra(tmp, names)
        return names
    return setup


def _also(name: str, data: bytes):
    """Also a file `name` holding `data`, named {f}."""
    def make(tmp, names):
        (tmp / name).write_bytes(data)
        names["f"] = tmp / name
    return make


def _link(name: str, target: str):
    def make(tmp, names):
        (tmp / name).symlink_to(tmp / target)
    return make


def _fifo(name: str):
    def make(tmp, names):
        os.mkfifo(tmp / name)
    return make


def _run_dir_with(sub: str, files: dict):
    """A run dir of another s2jax run (marked with a different key) plus `files`."""
    def make(tmp, names):
        run = names["run"]
        (run / sub).mkdir(parents=True, exist_ok=True)
        (run / ".s2jax").write_text(json.dumps({"s2jax": "run", "key": "other", "files": None}))
        for name, text in files.items():
            (run / name).write_text(text)
    return make


CASES = {
    # issue 23's ten data-loss paths
    "1 convert into a user's directory": Case(
        ["convert", MODEL, "{tmp}/mine"], with_(None, user_dir()), "not made by s2jax"),
    "2 convert onto a user's file": Case(
        ["convert", MODEL, "{tmp}/f"], with_(None, user_file("f")), "is a file"),
    "3 convert a user's model onto itself": Case(
        ["convert", "{model}", "{model}"], lambda tmp: {"model": model_copy(tmp)},
        "not made by s2jax"),
    "4 plan --json onto a user's notes": Case(
        [*PLAN, "{tmp}/notes.json"], with_(None, user_file("notes.json", '{"mine": 1}')),
        "not an s2jax plan report"),
    "5 toy pretrain into a user's directory": Case(
        ["toy", "pretrain", "--out", "{tmp}/mine", "--steps", "1"], with_(None, user_dir()),
        "not made by s2jax"),
    "6 toy pretrain beside a user's OUT.run": Case(
        ["toy", "pretrain", "--out", "{tmp}/model", "--steps", "1"],
        with_(None, _user_model_sibling_run), "model.run: exists"),
    "7 vote rerun over a set with a user's file": Case(
        REVOTE, _voted(_added("out")), "notes.txt was added"),
    "8 train rerun over model/ with a user's file": Case(
        [*TRAIN, "{out}", *TRAIN_ARGS], _trained(_added("out/model")), "notes.txt was added"),
    "9 generate --output onto a user's file shaped like an output": Case(
        ["generate", "--model", MODEL, "--input", "{f}", "--output", "{tmp}/o.jsonl"],
        with_(GEN_IN, user_file("o.jsonl", '{"id": "x", "samples": []}\n')),
        "not an s2jax generate output"),
    "10 generate-method beside a garbage .shards": Case(
        [*GM, "{tmp}/g.jsonl"], with_(None, _garbage_shards), "not a shard index"),
    # the same rules, on every command's outputs
    "train --out from another base of the same shape": Case(
        ["train", "--model", "{other}", "--data", "{f}", "--out", "{out}", *TRAIN_ARGS],
        _trained(_other_base), "other base weights"),
    "train --out with an edited model/config.json": Case(
        [*TRAIN, "{out}", *TRAIN_ARGS], _trained(_edited("out/model/config.json")),
        "config.json was added, changed"),
    "train --out is a user's directory": Case(
        [*TRAIN, "{tmp}/mine"], with_(TRAIN_DATA, user_dir()), "not made by s2jax"),
    "train --out is a user's file": Case(
        [*TRAIN, "{tmp}/x"], with_(TRAIN_DATA, user_file("x")), "is a file"),
    "train --out is a distillation set": Case(
        [*TRAIN, "{tmp}/out"], _voted(_also("d.jsonl", b'{"prompt": "q", "completion": "a"}\n')),
        "is an s2jax distillation set, not a training run"),
    "train --out is a FIFO": Case([*TRAIN, "{tmp}/p"], with_(TRAIN_DATA, _fifo("p")), "FIFO"),
    "train --out is a link": Case(
        [*TRAIN, "{tmp}/l"], with_(TRAIN_DATA, _link("l", "elsewhere")), "symbolic link"),
    "vote --out is a user's file": Case(
        [*VOTE, "{tmp}/x"], with_(generations(record()), user_file("x")), "is a file"),
    "vote --out holds a set of other generations": Case(
        ["vote", "--generations", "other.jsonl", "--task", "coin_flip", "--out", "out"],
        _voted(lambda tmp, n: (tmp / "other.jsonl").write_bytes(record() + b"\n")),
        "of a different generations file"),
    "vote --out with an edited decisions.jsonl": Case(
        REVOTE, _voted(_edited("out/decisions.jsonl")), "decisions.jsonl was"),
    "vote --out is a link": Case(
        [*VOTE, "{tmp}/l"], with_(generations(record()), _link("l", "elsewhere")),
        "symbolic link"),
    "vote --out is a FIFO": Case(
        [*VOTE, "{tmp}/p"], with_(generations(record()), _fifo("p")), "FIFO"),
    "vote --out is a model dir of s2jax": Case(
        [*VOTE, "{tmp}/out"], _converted(_also("gen.jsonl", record() + b"\n")),
        "is an s2jax HF model directory, not a distillation set"),
    "convert onto an s2jax model a user added to": Case(
        ["convert", MODEL, "{tmp}/out"], _converted(_added("out")), "notes.txt was added"),
    "convert onto a distillation set": Case(
        ["convert", MODEL, "{tmp}/out"], _voted(), "is an s2jax distillation set"),
    "convert onto a FIFO": Case(["convert", MODEL, "{tmp}/p"], with_(None, _fifo("p")), "FIFO"),
    "convert onto a link to a user's dir": Case(
        ["convert", MODEL, "{tmp}/l"], with_(with_(None, user_dir()), _link("l", "mine")),
        "symbolic link"),
    "convert under a user's file": Case(
        ["convert", MODEL, "{tmp}/f/sub"], with_(None, user_file("f")), "is a file, not a"),
    "generate --output edited after s2jax wrote it": Case(
        ["generate", "--model", MODEL, "--input", "in.jsonl", "--output", "out"],
        lambda tmp: copy_artifact("gen", tmp) and _edited("out")(tmp, {}) or {},
        "changed since s2jax wrote it"),
    "generate --output is a FIFO (would hang)": Case(
        ["generate", "--model", MODEL, "--input", "{f}", "--output", "{tmp}/p"],
        with_(GEN_IN, _fifo("p")), "FIFO"),
    "generate --output is /dev/null's kind (a device)": Case(
        ["generate", "--model", MODEL, "--input", "{f}", "--output", "/dev/null"], GEN_IN,
        "character device"),
    "generate --output is a link": Case(
        ["generate", "--model", MODEL, "--input", "{f}", "--output", "{tmp}/l"],
        with_(GEN_IN, _link("l", "in.jsonl")), "symbolic link"),
    "generate --output is a directory": Case(
        ["generate", "--model", MODEL, "--input", "{f}", "--output", "{tmp}/mine"],
        with_(GEN_IN, user_dir()), "is a directory"),
    "generate-method --output is a FIFO": Case([*GM, "{tmp}/p"], with_(None, _fifo("p")),
                                               "FIFO"),
    "generate-method --output's .shards is a FIFO": Case(
        [*GM, "{tmp}/g.jsonl"], with_(None, _fifo("g.jsonl.shards")), "FIFO"),
    "generate-method --output's meta file is a user's": Case(
        [*GM, "{tmp}/g.jsonl"], with_(None, user_file("g.meta.json", '{"mine": 1}')),
        "not an s2jax generations meta file"),
    "generate-method --output is a user's file": Case(
        [*GM, "{tmp}/g.jsonl"], with_(None, user_file("g.jsonl")), "not a resumable artifact"),
    "plan --json onto a user's empty-looking JSON object": Case(
        [*PLAN, "{tmp}/r.json"], with_(None, user_file("r.json", "{}")), "not an s2jax plan"),
    "plan --json is a FIFO": Case([*PLAN, "{tmp}/p"], with_(None, _fifo("p")), "FIFO"),
    "plan --json is a directory": Case([*PLAN, "{tmp}/mine"], with_(None, user_dir()),
                                       "is a directory"),
    "toy pretrain --out is an s2jax run dir": Case(
        ["toy", "pretrain", "--out", "{tmp}/out", "--steps", "1"], _trained(),
        "is an s2jax training run directory, not a HF model"),
    "toy pretrain --out is a FIFO": Case(
        ["toy", "pretrain", "--out", "{tmp}/p", "--steps", "1"], with_(None, _fifo("p")),
        "FIFO"),
    "demo --out is a user's directory": Case(
        ["demo", "--quick", "--out", "{tmp}/mine", "--no-progress"], with_(None, user_dir()),
        "not made by s2jax"),
    "demo --out is an s2jax model": Case(
        ["demo", "--quick", "--out", "{tmp}/out", "--no-progress"], _converted(),
        "is an s2jax HF model directory, not a demo"),
    "demo --out is a file": Case(["demo", "--out", "{tmp}/f"], with_(None, user_file("f")),
                                 "is a file"),
    "run --run-dir is a link": Case(
        ["run", "{f}", "--run-dir", "{tmp}/l", "--dry-run"],
        with_(toy_config, _link("l", "c.py")), "symbolic link"),
    "run --run-dir is a FIFO": Case(
        ["run", "{f}", "--run-dir", "{tmp}/p", "--dry-run"], with_(toy_config, _fifo("p")),
        "FIFO"),
    "run --run-dir holds another run": Case(
        ["run", "{f}", "--run-dir", "{run}", "--dry-run"],
        with_(toy_config, _run_dir_with("eval", {"config.json": "{}"})), "different config"),
    "run --run-dir is an s2jax model dir": Case(
        ["run", "{f}", "--run-dir", "{tmp}/out", "--dry-run"],
        _converted(_also("c.py", TOY_CONFIG.encode())),
        "is an s2jax HF model directory, not a run"),
}


@pytest.mark.parametrize("name", CASES)
def test_output_path_is_refused_and_kept(name, tmp_path, capsys):
    check(CASES[name], tmp_path, capsys)
