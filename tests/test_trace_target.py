"""Distillation target "trace": the kept sample's every stage, then '#### <answer>', chosen by
the same label-free filter as the answer-only target; and how a trace-trained student is read."""

import json

import pyarrow.parquet as pq

from s2jax.cli import main
from s2jax.core.atomic import write_jsonl
from s2jax.core.text_generator import SamplingParams
from s2jax.distill.dataset import DistillConfig, build_distill_set, provenance, write_distill_set
from s2jax.distill.trace import ANSWER_MARK, answer_part, sample_trace, trace_task
from s2jax.distill.vote import VoteConfig
from s2jax.methods.catalog import RAR_2STEP
from s2jax.methods.records import generate_records
from s2jax.tasks import TASKS, Example
from s2jax.testing.tokenizers import tiny_tokenizer
from s2jax.train.data import tokenize_examples
from tests.test_distill import ScriptedGenerator

LAST = TASKS["last_letter"]
NAMES = "Ann Bob Cy Di"
EX = Example("ll", {"question": f'Take the last letters of the words in "{NAMES}" and '
                                "concatenate them.", "spec": ""})
# the respond stage's prompt holds "(rephrased)"; sample s gets reply s of each stage
SCRIPT = {
    "(rephrased)": ["Ann ends in n. The answer is nbyi.", "The answer is xyz.",
                    "n, b, y, i: the answer is nbyi.", "I cannot tell."],
    "rephrase and expand": ["Join the last letters of Ann, Bob, Cy, Di.",
                            "Concatenate the final letters.", "Last letters of four names.",
                            "  "],
}


def _records():
    return generate_records(RAR_2STEP, [EX], ScriptedGenerator(SCRIPT),
                            SamplingParams(n=4, temperature=0.7), task="last_letter")


def test_trace_target_is_the_first_agreeing_samples_every_stage():
    records = _records()
    answers = {t: build_distill_set(records, LAST, DistillConfig(vote=VoteConfig(0.5), target=t))
               for t in ("answer", "trace")}
    plain, traced = answers["answer"].examples[0], answers["trace"].examples[0]
    # the same filter decides: same input kept, same answer (2 of 4 samples say "nbyi")
    assert answers["answer"].decisions == answers["trace"].decisions
    assert plain["answer"] == traced["answer"] == "nbyi"
    assert plain["messages"][:-1] == traced["messages"][:-1]  # System 1's prompt, unchanged
    want = ("Join the last letters of Ann, Bob, Cy, Di.\nAnn ends in n. The answer is nbyi.\n")
    assert traced["trace"] == want
    assert traced["messages"][-1] == {"role": "assistant", "content": want + "#### nbyi"}
    assert plain["messages"][-1]["content"] == "nbyi" and "trace" not in plain


def test_sample_trace_skips_empty_stages_and_keeps_stage_order():
    sample = {"stages": {"branch": {"text": " 1. Correct? "}, "solve": {"text": ""},
                         "merge": {"text": "[[B]]\n"}}}
    assert sample_trace(sample) == "1. Correct?\n[[B]]\n"


def test_trace_task_reads_the_answer_after_the_last_mark():
    read = trace_task(LAST).extract
    assert read("Ann ends in n. The answer is abc.\n#### nbyi") == "nbyi"  # not the trace's
    assert read("#### nbyi") == "nbyi" and read(f"{ANSWER_MARK}nbyi") == "nbyi"
    assert read("The answer is nbyi.") == "nbyi"  # no mark: the whole reply
    assert answer_part("a #### b #### c") == "c" and answer_part("no mark") == "no mark"


def test_trace_set_writes_a_trace_column_that_tokenizes_to_the_trace(tmp_path):
    records = _records()
    config = DistillConfig(vote=VoteConfig(0.5), target="trace")
    dset = build_distill_set(records, LAST, config)
    write_distill_set(tmp_path / "set", dset, provenance(records, LAST, config, dset,
                                                         generations="g.jsonl"))
    rows = pq.read_table(tmp_path / "set" / "train.parquet").to_pylist()
    assert rows[0]["trace"] == dset.examples[0]["trace"]
    tok = tiny_tokenizer()
    (ex,) = tokenize_examples(tok, rows)
    start, end = ex.trace
    assert tok.decode(ex.ids[start:end]) == rows[0]["trace"]
    assert tok.decode(ex.ids[end:][ex.loss_mask[end:]]) == "#### nbyi<|end|>"


def test_vote_command_target_trace(tmp_path):
    gen = tmp_path / "generations.jsonl"
    write_jsonl(gen, _records())
    out = tmp_path / "set"
    assert main(["vote", "--generations", str(gen), "--task", "last_letter", "--out", str(out),
                 "--threshold", "0.5", "--target", "trace"]) == 0
    table = pq.read_table(out / "train.parquet")
    assert table.column_names == ["id", "messages", "answer", "trace"]
    assert json.loads((out / "provenance.json").read_text())["target"] == "trace"
