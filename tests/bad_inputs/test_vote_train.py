"""`s2jax vote` and `s2jax train`: generations and distillation sets, training flags against the
data and the machine, and the non-results (a filter that kept nothing, no tokens to learn)."""

import os

import pytest

from s2jax.core.errors import EXIT_NON_RESULT
from s2jax.toy.demo import base_model_dir
from tests.bad_inputs.harness import (
    Case,
    check,
    fifo,
    file,
    generations,
    nested,
    record,
    with_,
)

MODEL = str(base_model_dir())
VOTE = ["vote", "--generations", "{f}", "--task", "coin_flip", "--out", "{tmp}/set"]
TRAIN = ["train", "--model", MODEL, "--data", "{f}", "--out", "{tmp}/run", "--no-progress"]
DATA = file("d.jsonl", '{"prompt": "q", "completion": "a"}\n')
GOOD = generations(record())


def _data(*lines: str, name: str = "d.jsonl"):
    return file(name, "".join(line + "\n" for line in lines))


def _with_index(text: str):
    def add(tmp, names):
        (tmp / "gen.jsonl.shards").write_text(text)
    return add


def _with_meta(text: str):
    def add(tmp, names):
        (tmp / "gen.meta.json").write_text(text)
    return add


LONG_PROMPT = '{"prompt": "' + "word " * 200 + '", "completion": "a"}'

CASES = {
    # s2jax vote: the generations file
    "generations not UTF-8": Case(VOTE, generations(b'{"id": "\xfe"}'), "not UTF-8"),
    "generations record is a list": Case(VOTE, generations(b"[1]"), "expected an object"),
    "generations record is a string": Case(VOTE, generations(b'"x"'), "expected an object"),
    "generations record nested deep": Case(VOTE, generations(nested(100000).encode()),
                                           "nested too deeply"),
    "generations sample is not an object": Case(VOTE, generations(record(samples=[1])),
                                                "malformed sample"),
    "generations samples a string": Case(VOTE, generations(record(samples="x")),
                                         "gen.jsonl:1"),
    "generations record misses fields": Case(VOTE, generations(b'{"id": "a"}'),
                                             "field 'task' missing"),
    "generations of another task": Case(VOTE, generations(record(task="gsm8k")), "not task"),
    "generations not finished": Case(
        VOTE, with_(GOOD, _with_index('{"shard": 0}\n')), "did not finish"),
    "generations file missing": Case(["vote", "--generations", "{tmp}/nope.jsonl", "--task",
                                      "coin_flip", "--out", "{tmp}/set"], None, "no such file"),
    "generations file a FIFO": Case(VOTE, fifo("gen.jsonl"), "FIFO"),
    "generations meta file not JSON": Case(VOTE, with_(GOOD, _with_meta("{")), "meta"),
    "generations meta file a list": Case(VOTE, with_(GOOD, _with_meta("[1]")),
                                         "expected a JSON object"),
    "vote --out is a user's dir": Case(
        [*VOTE[:-1], "{tmp}/mine"], with_(GOOD, lambda tmp, n: (
            (tmp / "mine").mkdir(), (tmp / "mine" / "x").write_text("keep"))),
        "not made by s2jax"),
    "vote --out is the generations file": Case([*VOTE[:-1], "{f}"], GOOD, "is a file"),
    "vote --threshold 2": Case([*VOTE, "--threshold", "2"], GOOD, "threshold must be in [0, 1]"),
    "vote --threshold nan": Case([*VOTE, "--threshold", "nan"], GOOD, "threshold"),
    "vote --threshold -0.5": Case([*VOTE, "--threshold", "-0.5"], GOOD, "threshold"),
    "vote --filter unknown": Case([*VOTE, "--filter", "best"], GOOD, "invalid choice"),
    "vote --task unknown": Case(["vote", "--generations", "{f}", "--task", "chess", "--out",
                                 "{tmp}/s"], GOOD, "invalid choice"),
    "vote keeps nothing (a non-result)": Case(VOTE, generations(record(samples=[])),
                                              "kept no examples", EXIT_NON_RESULT),
    "vote on an empty generations file (a non-result)": Case(VOTE, generations(),
                                                             "kept no examples",
                                                             EXIT_NON_RESULT),
    # s2jax train: the data
    "corrupt parquet": Case(TRAIN, file("d.parquet", b"PAR1 not really"),
                            "not a readable parquet"),
    "train data not UTF-8": Case(TRAIN, file("d.jsonl", b'{"prompt": "\xff"}\n'), "not UTF-8"),
    "train data line is a list": Case(TRAIN, _data("[1]"), "expected an object"),
    "train data line nested deep": Case(TRAIN, _data(nested(100000)), "nested too deeply"),
    "train data of an unknown format": Case(TRAIN, file("d.csv", "a,b\n"), "unknown format"),
    "train data missing": Case(["train", "--model", MODEL, "--data", "{tmp}/nope.jsonl",
                                "--out", "{tmp}/run"], None, "no such file"),
    "train data a FIFO": Case(TRAIN, fifo("d.jsonl"), "FIFO"),
    "train data empty": Case(TRAIN, _data(), "no examples"),
    "train rows of no known columns": Case(TRAIN, _data('{"question": "q"}'),
                                           "expected a 'messages' column"),
    "train messages without an assistant turn": Case(
        TRAIN, _data('{"messages": [{"role": "user", "content": "q"}]}'), "no assistant"),
    "train messages not strings": Case(
        TRAIN, _data('{"messages": [{"role": "user", "content": 5}]}'), "'messages' must be"),
    "train --eval-data missing": Case([*TRAIN, "--eval-data", "{tmp}/nope.jsonl"], DATA,
                                      "nope.jsonl: no such file"),
    "train --eval-examples as many as the data": Case([*TRAIN, "--eval-examples", "1"], DATA,
                                                      "eval_examples=1"),
    "every example longer than --seq-len (no loss tokens: a non-result)": Case(
        [*TRAIN, "--seq-len", "16", "--eval-examples", "0"], _data(LONG_PROMPT),
        "has a token to learn within seq_len=16", EXIT_NON_RESULT),
    # s2jax train: flags
    "--learning-rate nan": Case([*TRAIN, "--learning-rate", "nan"], DATA, "learning_rate=nan"),
    "--learning-rate -1": Case([*TRAIN, "--learning-rate", "-1"], DATA, "learning_rate=-1"),
    "--learning-rate inf": Case([*TRAIN, "--learning-rate", "inf"], DATA, "learning_rate=inf"),
    "--learning-rate 0": Case([*TRAIN, "--learning-rate", "0", "--eval-examples", "0"], DATA,
                              "learning_rate=0"),
    "--warmup-steps beyond --steps": Case([*TRAIN, "--steps", "1", "--warmup-steps", "5",
                                           "--eval-examples", "0"], DATA,
                                          "learning rate is 0 at every one"),
    "train --steps -1": Case([*TRAIN, "--steps", "-1"], DATA, "steps=-1"),
    "train --batch-size 0": Case([*TRAIN, "--batch-size", "0"], DATA, "batch_size=0"),
    "train --seq-len 0": Case([*TRAIN, "--seq-len", "0"], DATA, "seq_len=0"),
    "train --grad-accum 0": Case([*TRAIN, "--grad-accum", "0"], DATA, "grad_accum=0"),
    "train --seq-len 1000000000 (memory)": Case(
        [*TRAIN, "--seq-len", "1000000000", "--eval-examples", "0"], DATA,
        "needs about"),
    "train --batch-size 1000000000 (memory)": Case(
        [*TRAIN, "--batch-size", "1000000000", "--eval-examples", "0"], DATA,
        "needs about"),
    "train --lora-rank -1": Case([*TRAIN, "--lora-rank", "-1"], DATA, "rank"),
    "train --lora-targets unknown": Case([*TRAIN, "--lora-rank", "4", "--lora-targets",
                                          "wings"], DATA, "wings"),
    "train --remat unknown": Case([*TRAIN, "--remat", "some"], DATA, "invalid choice"),
    "train --mesh beyond the devices": Case([*TRAIN, "--mesh", "fsdp=4096"], DATA, "4096"),
    "train --batch-size not divisible over the mesh": Case(
        [*TRAIN, "--mesh", "fsdp=8", "--batch-size", "3", "--eval-examples", "0"], DATA,
        "multiple of"),
    "train --steps 1.5": Case([*TRAIN, "--steps", "1.5"], DATA, "invalid int value"),
    "train --model with NaN weights": Case(
        ["train", "--model", "{model}", "--data", "{f}", "--out", "{tmp}/run"],
        with_(DATA, lambda tmp, n: n.update(model=_nan_model(tmp))), "holds NaN or Inf"),
    "train --model missing": Case(["train", "--model", "{tmp}/nope", "--data", "{f}", "--out",
                                   "{tmp}/run"], DATA, "nope"),
    "train --out under a file": Case([*TRAIN[:6], "{f}/run"], DATA, "is a file, not a"),
    # token-level distillation (TrainConfig.kd)
    "train --teacher without --kd-divergence": Case([*TRAIN, "--teacher", MODEL], DATA,
                                                    "expected --kd-divergence too"),
    "train --kd-beta 1": Case([*TRAIN, "--kd-divergence", "jsd", "--kd-beta", "1"], DATA,
                              "kd.beta=1"),
    "train --kd-divergence unknown": Case([*TRAIN, "--kd-divergence", "kl"], DATA,
                                          "invalid choice"),
    "train --teacher missing": Case([*TRAIN, "--kd-divergence", "jsd", "--teacher",
                                     "{tmp}/nope"], DATA, "nope"),
}


def _nan_model(tmp):
    from tests.bad_inputs.test_sampling import _nan_model as make

    return make(tmp)


@pytest.mark.parametrize("name", CASES)
def test_bad_vote_or_train_input(name, tmp_path, capsys):
    check(CASES[name], tmp_path, capsys)


def test_no_leftover_from_the_refused_cases():
    assert not [p for p in os.listdir(".") if p.endswith(".s2jax-tmp")]
