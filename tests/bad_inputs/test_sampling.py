"""`s2jax generate` and `s2jax generate-method`: prompt files, sampling flags, and numeric flags
against what the machine can hold (checked before anything is allocated)."""

import os

import pytest

from s2jax.toy.demo import base_model_dir
from tests.bad_inputs.harness import Case, check, fifo, file, model_copy, nested, with_

MODEL = str(base_model_dir())
GEN = ["generate", "--model", MODEL, "--input", "{f}", "--output", "{tmp}/out.jsonl"]
OK = file("in.jsonl", '{"id": "a", "prompt": "hi"}\n')
GM = ["generate-method", "--model", MODEL, "--method", "rar_1step", "--task", "coin_flip",
      "--output", "{tmp}/g.jsonl"]
GM2 = [*GM, "--synthetic", "2"]


def _prompts(*lines: str):
    return file("in.jsonl", "".join(line + "\n" for line in lines))


def _system_template(tmp):
    d = model_copy(tmp)
    (d / "chat_template.jinja").write_text(
        "{% for m in messages %}{% if m['role'] == 'system' %}"
        "{{ raise_exception('System role not supported') }}{% endif %}"
        "<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}")
    (tmp / "in.jsonl").write_text('{"id": "a", "messages": [{"role": "system", "content": '
                                  '"be brief"}, {"role": "user", "content": "hi"}]}\n')
    return {"f": tmp / "in.jsonl", "model": d}


def _dir(name: str):
    def setup(tmp):
        (tmp / name).mkdir()
        return {"f": tmp / name}
    return setup


CASES = {
    # s2jax generate: the prompt file
    "non-UTF-8 prompts": Case(GEN, file("in.jsonl", b'{"id": "a", "prompt": "\xff"}\n'),
                              "not UTF-8"),
    "lone surrogate in prompts": Case(GEN, _prompts('{"id": "a", "prompt": "\\ud800"}'),
                                      "lone surrogate"),
    "prompt line is a list": Case(GEN, _prompts("[1, 2]"), "expected an object"),
    "prompt line not JSON": Case(GEN, _prompts('{"id": '), "in.jsonl:1: not valid JSON"),
    "prompt line nested 100000 deep": Case(GEN, _prompts(nested(100000)), "nested too deeply"),
    "prompt id a 5000-digit number": Case(GEN, _prompts('{"id": ' + "1" * 5000 + "}"),
                                          "unreadable JSON"),
    "prompt without id": Case(GEN, _prompts('{"prompt": "x"}'), "string field 'id'"),
    "prompt id a number": Case(GEN, _prompts('{"id": 1, "prompt": "x"}'), "string field 'id'"),
    "prompt and messages both": Case(GEN, _prompts('{"id": "a", "prompt": "x", "messages": []}'),
                                     "exactly one of 'prompt'"),
    "messages empty": Case(GEN, _prompts('{"id": "a", "messages": []}'),
                           "exactly one of 'prompt'"),
    "message without content": Case(GEN, _prompts('{"id": "a", "messages": [{"role": "user"}]}'),
                                    "exactly one of 'prompt'"),
    "prompt a number": Case(GEN, _prompts('{"id": "a", "prompt": 5}'), "exactly one of"),
    "empty prompt file": Case(GEN, _prompts(""), "no prompts"),
    "prompt file missing": Case(["generate", "--model", MODEL, "--input", "{tmp}/nope.jsonl",
                                 "--output", "{tmp}/o.jsonl"], None, "nope.jsonl: no such file"),
    "prompt file a FIFO (would hang)": Case(GEN, fifo("in.jsonl"), "FIFO"),
    "prompt file a directory": Case(GEN, _dir("in"), "no such file"),
    "prompt file a device": Case(["generate", "--model", MODEL, "--input", "/dev/zero",
                                  "--output", "{tmp}/o.jsonl"], None, "character device"),
    "messages with --no-chat": Case(
        [*GEN, "--no-chat"], _prompts('{"id": "a", "messages": [{"role": "user", '
                                      '"content": "hi"}]}'), "needs chat=True"),
    "a chat template that refuses the system role": Case(
        ["generate", "--model", "{model}", "--input", "{f}", "--output", "{tmp}/out.jsonl"],
        _system_template, "System role not supported"),
    "--model missing": Case(["generate", "--model", "{tmp}/nope", "--input", "{f}", "--output",
                             "{tmp}/o.jsonl"], OK, "nope"),
    "--adapter missing": Case([*GEN, "--adapter", "{tmp}/nope"], OK, "nope"),
    # s2jax generate: sampling flags
    "--max-batch 0": Case([*GEN, "--max-batch", "0"], OK, "--max-batch"),
    "--max-len 0": Case([*GEN, "--max-len", "0"], OK, "--max-len"),
    "--temperature inf": Case([*GEN, "--temperature", "inf"], OK, "temperature must be finite"),
    "--temperature nan": Case([*GEN, "--temperature", "nan"], OK, "temperature must be finite"),
    "--temperature -1": Case([*GEN, "--temperature", "-1"], OK, "temperature must be >= 0"),
    "--top-p 0": Case([*GEN, "--top-p", "0"], OK, "top_p must be in (0, 1]"),
    "--top-p 1.5": Case([*GEN, "--top-p", "1.5"], OK, "top_p must be in (0, 1]"),
    "--min-p 1": Case([*GEN, "--min-p", "1"], OK, "min_p must be in [0, 1)"),
    "--top-k -1": Case([*GEN, "--top-k", "-1"], OK, "top_k must be >= 0"),
    "--n 0": Case([*GEN, "--n", "0"], OK, "n must be in [1,"),
    "--n 1000000000": Case([*GEN, "--n", "1000000000"], OK, "n must be in [1,"),
    "--seed 2**40": Case([*GEN, "--seed", str(2 ** 40)], OK, "seed must be a 32-bit"),
    "--max-new-tokens 0": Case([*GEN, "--max-new-tokens", "0"], OK, "max_new_tokens must be"),
    "--max-new-tokens 2**40": Case([*GEN, "--max-new-tokens", str(2 ** 40)], OK,
                                   "max_new_tokens must be < 2**31"),
    "--max-new-tokens 1000000000 (18 GB of buffers)": Case(
        [*GEN, "--max-new-tokens", "1000000000"], OK,
        "--max-new-tokens 1000000000: a row has 1024 cache slots"),
    "--max-new-tokens 1000000000 with a cache to match": Case(
        [*GEN, "--max-new-tokens", "1000000000", "--max-len", "2000000000"], OK,
        "1073741824 cache slots (max_new_tokens up to 1073741824) needs about"),
    "generate-method --max-new-tokens 1000000000": Case(
        [*GM2, "--max-new-tokens", "1000000000"], OK, "--max-new-tokens 1000000000: a row"),
    "--max-batch 10**9 with --n 60000": Case(
        [*GEN, "--max-batch", str(10 ** 9), "--n", "60000", "--max-new-tokens", "100000",
         "--max-len", "200000"], OK, "lower --max-new-tokens"),
    "--n abc": Case([*GEN, "--n", "abc"], OK, "argument --n: invalid int value"),
    "--max-new-tokens 1e9 (not an integer)": Case([*GEN, "--max-new-tokens", "1e9"], OK,
                                                  "invalid int value"),
    "--dtype float16": Case([*GEN, "--dtype", "float16"], OK, "invalid choice"),
    "--mesh beyond the devices": Case([*GEN, "--mesh", "fsdp=4096"], OK, "4096"),
    "--mesh unknown axis": Case([*GEN, "--mesh", "pipeline=2"], OK, "pipeline"),
    "--output under a regular file": Case(
        ["generate", "--model", MODEL, "--input", "{f}", "--output", "{f}/out.jsonl"], OK,
        "is a file, not a directory"),
    "--output in a missing, unwritable place": Case(
        ["generate", "--model", MODEL, "--input", "{f}", "--output", "/proc/x/out.jsonl"], OK,
        "/proc"),
    # s2jax generate-method
    "--limit -1": Case([*GM, "--input", "{f}", "--limit", "-1"], OK, "--limit -1"),
    "--synthetic 0": Case([*GM, "--synthetic", "0"], OK, "--synthetic 0"),
    "--synthetic -1": Case([*GM, "--synthetic", "-1"], OK, "--synthetic -1"),
    "--synthetic 1000000000 (unbounded memory)": Case([*GM, "--synthetic", "1000000000"], OK,
                                                      "--synthetic 1000000000: expected 1.."),
    "generate-method --n 0": Case([*GM2, "--n", "0"], OK, "n must be in [1,"),
    "generate-method --temperature inf": Case([*GM2, "--temperature", "inf"], OK,
                                              "temperature must be finite"),
    "generate-method --max-new-tokens 0": Case([*GM2, "--max-new-tokens", "0"], OK,
                                               "max_new_tokens must be"),
    "generate-method --shard-size 0": Case([*GM2, "--shard-size", "0"], OK, "--shard-size 0"),
    "generate-method --seed 2**40": Case([*GM2, "--seed", str(2 ** 40)], OK, "seed must be"),
    "generate-method --perturb on a task without one": Case([*GM2, "--perturb"], OK,
                                                            "no perturbation"),
    "generate-method --synthetic on a task without a generator": Case(
        ["generate-method", "--model", MODEL, "--method", "cot_zero_shot", "--task", "gsm8k",
         "--synthetic", "2", "--output", "{tmp}/g.jsonl"], OK, "has no generator"),
    "generate-method --input missing": Case([*GM, "--input", "{tmp}/nope.csv"], None,
                                            "nope.csv"),
    "generate-method --input a FIFO": Case([*GM, "--input", "{f}"], fifo("d.jsonl"), "FIFO"),
    "generate-method --input of an unknown type": Case([*GM, "--input", "{f}"],
                                                       file("d.xyz", "a"), "unknown data file"),
    "generate-method --input and --synthetic": Case([*GM2, "--input", "{f}"], OK,
                                                    "not allowed with argument"),
    "generate-method --method unknown": Case(
        ["generate-method", "--model", MODEL, "--method", "magic", "--task", "coin_flip",
         "--output", "{tmp}/g.jsonl"], None, "invalid choice"),
    "generate-method --task unknown": Case(
        ["generate-method", "--model", MODEL, "--method", "rar_1step", "--task", "chess",
         "--output", "{tmp}/g.jsonl"], None, "invalid choice"),
    "generate-method --output is a user's file": Case(
        ["generate-method", "--model", MODEL, "--method", "rar_1step", "--task", "coin_flip",
         "--synthetic", "2", "--output", "{f}"], OK, "not a resumable artifact"),
    "generate-method --output under a file": Case(
        ["generate-method", "--model", MODEL, "--method", "rar_1step", "--task", "coin_flip",
         "--synthetic", "2", "--output", "{f}/g.jsonl"], OK, "is a file, not a directory"),
    "generate-method --model with NaN weights": Case(
        ["generate-method", "--model", "{model}", "--method", "rar_1step", "--task",
         "coin_flip", "--synthetic", "2", "--output", "{tmp}/g.jsonl"],
        with_(None, lambda tmp, n: n.update(model=_nan_model(tmp))), "holds NaN or Inf"),
}


def _nan_model(tmp):
    import json
    import struct

    import numpy as np

    d = model_copy(tmp)
    blob = bytearray((d / "model.safetensors").read_bytes())
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    start, end = header["model.norm.weight"]["data_offsets"]
    blob[8 + n + start:8 + n + end] = np.full((end - start) // 4, np.nan, np.float32).tobytes()
    (d / "model.safetensors").write_bytes(bytes(blob))
    return d


@pytest.mark.parametrize("name", CASES)
def test_bad_sampling_input(name, tmp_path, capsys):
    check(CASES[name], tmp_path, capsys)


def test_a_fifo_output_does_not_hang_a_subprocess(tmp_path):
    """The same FIFO output through the installed command in a process of its own."""
    import subprocess
    import sys

    (tmp_path / "in.jsonl").write_text('{"id": "a", "prompt": "hi"}\n')
    os.mkfifo(tmp_path / "out")
    done = subprocess.run([sys.executable, "-m", "s2jax.cli", "generate", "--model", MODEL,
                           "--input", str(tmp_path / "in.jsonl"), "--output",
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert done.returncode == 2 and "FIFO" in done.stderr and \
        len(done.stderr.strip().splitlines()) == 1, done.stderr
