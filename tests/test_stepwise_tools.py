"""The stepwise scripts' library: validation inputs kept apart from test, unlabeled and corpus
inputs; the answer-only rows of a trace set; the report tables built from results files."""

import pytest

from s2jax.tasks.toy.world import MAX_TEST, MAX_UNLABELED, TASKS, held_out, input_key
from s2jax.toy.corpus import CorpusConfig, task_corpus
from s2jax.toy.stepwise_report import PAPER, best_short, multiply_table, toy_table
from s2jax.toy.validation import student_examples, validation_inputs


@pytest.mark.parametrize("name", ["last_letter", "judge"])
def test_validation_inputs_are_new_distinct_and_outside_the_corpus(name):
    t = TASKS[name]
    got = validation_inputs(name, 30)
    keys = [input_key(t, ex) for ex in got]
    assert len(got) == 30 and len(set(keys)) == 30
    test, unlabeled = held_out(t, MAX_TEST, MAX_UNLABELED)
    assert not set(keys) & {input_key(t, ex) for ex in test + unlabeled}
    corpus = "\n".join(m["content"] for chat in task_corpus(t, CorpusConfig()) for m in chat)
    for ex in got:  # judge: the pair of answers as the corpus writes it
        f = ex.fields
        shown = (f"{f['response_a']}\n[Answer B]\n{f['response_b']}" if name == "judge"
                 else f["question"])
        assert shown not in corpus
    assert [input_key(t, ex) for ex in validation_inputs(name, 30)] == keys  # seeded


def test_answer_only_rows_keep_the_prompt_and_drop_the_trace(tmp_path):
    import pandas as pd

    (tmp_path / "distill").mkdir()
    prompt = [{"role": "user", "content": "Q?"}]
    pd.DataFrame([{"id": "a", "answer": "xy", "trace": "think.\n",
                   "messages": [*prompt, {"role": "assistant", "content": "think.\n#### xy"}]}]
                 ).to_parquet(tmp_path / "distill" / "train.parquet")
    traced = student_examples(tmp_path, "last_letter", answer_only=False)
    assert traced[0]["trace"] == "think.\n"
    plain = student_examples(tmp_path, "last_letter", answer_only=True)
    target = TASKS["last_letter"].task.target("xy")
    assert plain == [{"messages": [*prompt, {"role": "assistant", "content": target}]}]


def _row(acc, tokens, **kw):
    return {"accuracy": acc, "tokens_per_answer": tokens, **kw}


def _stages(points):
    return [_row(a, t, stage=i, removed=4 * i) for i, (a, t) in enumerate(points)]


def test_toy_table_rows_best_short_stage_and_means():
    def demo(seed, stages):
        return {"config": {"seed": seed}, "tasks": {"judge": {
            "system1": _row(50.0, 4.0), "system2": _row(90.0, 60.0), "curriculum": stages}}}

    def answer(acc):
        return {"tasks": {"judge": {"distilled": _row(acc, 4.0)}}}

    runs = [demo(0, _stages([(60, 80), (85, 40), (70, 9), (55, 8)])),
            demo(1, _stages([(50, 80), (80, 40), (40, 12), (45, 9)]))]
    text, curves = toy_table("judge", runs, [answer(62.0), answer(64.0)], max_tokens=10)
    lines = text.splitlines()
    assert lines[2] == ("| 0 | 50.0 | 90.0 (60.0) | 62.0 (4.0) | 60.0 (80.0) | 55.0 (8.0) | "
                        "70.0 (9.0) (2) |")
    assert lines[3].endswith("| 45.0 (9.0) | 45.0 (9.0) (3) |")  # stage 2 is above 10 tokens
    assert lines[-1] == "mean over 2 seeds: stepwise last stage 50.0%, answer-only 63.0%"
    assert curves["seed 1"]["points"]["answer-only"] == (4.0, 64.0)
    no_answer, _ = toy_table("judge", runs[:1])
    assert "| - |" in no_answer and no_answer.endswith("answer-only nan%")


def test_multiply_table_rows_and_paper_column():
    def result(k, arm, stages, final):
        return {"config": {"k": k, "batch_size": 16, "seq_len": 128}, "arm": arm,
                "params": 924288, "steps": 1750, "curriculum": stages, "final": final,
                "seconds": 3901.7, "cpu_seconds": 612.0}

    stages = _stages([(95.0, 15.0), (14.5, 11.0), (11.0, 7.0), (10.0, 6.0)])
    text, curves = multiply_table([result(4, "stepwise", stages, _row(10.0, 6.0)),
                                   result(4, "answer-only", [], _row(10.5, 6.0))], paper=True)
    lines = text.splitlines()
    assert lines[2] == ("| 4 | stepwise | 924,288 | 1750 (16 x 128) | 95.0 (15.0) | 10.0 (6.0) | "
                        "14.5 (11.0) | 3902 | 612 | 100.0 |")  # 11 <= 2k + 4 tokens
    assert lines[3].startswith("| 4 | answer-only | 924,288 | 1750 (16 x 128) | - | 10.5 (6.0) | "
                               "10.5 (6.0) |")
    assert PAPER[4] == 100.0 and set(curves) == {"4x4 stepwise", "4x4 answer-only"}
    assert best_short(stages, 5.0) is None
