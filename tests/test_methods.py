"""Methods: rendered prompts pinned by snapshots, and the runner's batching contract."""

import os
from pathlib import Path

import pytest

from s2jax.core.errors import S2JaxError
from s2jax.core.text_generator import Sample, SamplingParams
from s2jax.methods import METHODS, Program, Stage, method, parse_choice, run_program, run_usc
from s2jax.methods.program import FanOut, split_list_items
from s2jax.methods.records import generate_records
from s2jax.tasks import TASKS, Example

SNAPSHOTS = Path(__file__).parent / "snapshots"
UPDATE = os.environ.get("S2JAX_UPDATE_SNAPSHOTS") == "1"

COIN = TASKS["coin_flip"].synthesize(1, 0)[0]
LETTERS = TASKS["last_letter"].synthesize(1, 0)[0]
MATH = Example("m", {"question": "Tom has 3 apples and buys 4 more. How many apples does he "
                                 "have?", "spec": ""}, ("7",))
OPINION = Example("t", {"question": "Which band did Keanu Reeves play bass in? I think the answer "
                                    "is Nirvana but I'm really not sure.", "spec": ""})
PAIR = Example("p", {"question": "Name a prime number.", "response_a": "9",
                     "response_b": "7 is prime.", "spec": ""})

# (method, task, example): every method on the task it is meant for.
CASES = [
    ("system1", "coin_flip", COIN), ("system1", "last_letter", LETTERS),
    ("system1", "gsm8k", MATH), ("system1", "triviaqa_biased", OPINION),
    ("system1", "mt_bench", PAIR),
    ("rar_1step", "coin_flip", COIN), ("rar_1step", "last_letter", LETTERS),
    ("rar_2step", "coin_flip", COIN), ("rar_2step", "last_letter", LETTERS),
    ("cot_zero_shot", "gsm8k", MATH), ("cot_few_shot", "gsm8k", MATH),
    ("s2a", "triviaqa_biased", OPINION), ("bsm", "mt_bench", PAIR),
]


class FakeGenerator:
    """Deterministic `TextGenerator`: canned text per stage, records every call."""

    def __init__(self, replies=None):
        self.calls: list[tuple[list, SamplingParams]] = []
        self.replies = replies or {}

    def __call__(self, prompts, params, first_sample=None):
        self.calls.append((list(prompts), params))
        out = []
        for p, prompt in enumerate(prompts):
            text = prompt if isinstance(prompt, str) else prompt[-1]["content"]
            reply = next((r for k, r in self.replies.items() if k in text), None)
            out.append([
                Sample(reply if reply is not None else f"c{len(self.calls)}-p{p}-s{s}",
                       num_tokens=3 + s, finish_reason="stop")
                for s in range(params.n)
            ])
        return out


# Canned outputs of earlier stages, so that later stages' prompts are fixed text.
REPLIES = {
    "rephrase and expand it": '"A rephrased question."',
    "propose an evaluation plan": "1. Correctness: is it prime?\n2. Clarity: is it clear?",
    "Criterion:": "Assistant B is better on this criterion.",
    "Text by User:": "Unbiased text context: none.\nQuestion/Query: Which band?",
}


def _render_transcript(method_name: str, task_name: str, example: Example) -> str:
    task = TASKS[task_name]
    program = method(method_name, task.system1)
    gen = FakeGenerator(REPLIES)
    run_program(program, [example.fields], gen, SamplingParams(n=1))
    parts = []
    for stage, (prompts, _) in zip(program.stages, gen.calls, strict=True):
        for i, prompt in enumerate(prompts):
            for message in prompt:
                parts.append(f"=== {stage.name} [{i}] {message['role']} | {stage.source}\n"
                             f"{message['content']}\n")
    return "".join(parts)


@pytest.mark.parametrize("method_name, task_name, example", CASES,
                         ids=[f"{m}-{t}" for m, t, _ in CASES])
def test_rendered_prompts_match_snapshots(method_name, task_name, example):
    text = _render_transcript(method_name, task_name, example)
    path = SNAPSHOTS / f"{method_name}-{task_name}.txt"
    if UPDATE:
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"no snapshot {path}; run with S2JAX_UPDATE_SNAPSHOTS=1 and review it"
    assert text == path.read_text(encoding="utf-8")


# Sentences of the published prompts, typed from the sources independently of s2jax's data, so
# that a snapshot regenerated from edited data cannot silently drift from the publication.
PUBLISHED = {
    ("rar_1step", "coin_flip"): [
        f'"{COIN.fields["question"]}"\nRephrase and expand the question, and respond. '
        "Answer the Yes or No question."],
    ("rar_2step", "coin_flip"): [
        f'"{COIN.fields["question"]}"\nGiven the above question, rephrase and expand it to help '
        "you do better answering. Maintain all information in the original question.",
        f"(original) {COIN.fields['question']}\n(rephrased) A rephrased question.\nAnswer the Yes "
        "or No question.Use your answer for the rephrased question to answer the original "
        "question."],
    ("system1", "coin_flip"): [f"{COIN.fields['question']}\nAnswer the Yes or No question."],
    ("cot_zero_shot", "gsm8k"): [f"Q: {MATH.fields['question']}\nA: Let's think step by step."],
    ("cot_few_shot", "gsm8k"): [
        "Q: Olivia has $23. She bought five bagels for $3 each. How much money does she have "
        "left?\nA: Olivia had 23 dollars. 5 bagels for 3 dollars each will be 5 x 3 = 15 dollars. "
        "So she has 23 - 15 dollars left. 23 - 15 is 8. The answer is 8.\n\n"
        f"Q: {MATH.fields['question']}\nA:"],
    ("s2a", "triviaqa_biased"): [
        "Given the following text by a user, extract the part that is unbiased and not their "
        "opinion, so that using that text alone would be good context for providing an unbiased "
        "answer to the question portion of the text.",
        "Please include the actual question or query that the user is asking. Separate this into "
        "two categories labeled with “Unbiased text context (includes all content except user’s "
        "bias):” and “Question/Query (does not include user bias/preference):”.",
        f"Text by User: {OPINION.fields['question']}"],
    ("system1", "mt_bench"): [
        "Do not favor certain names of the assistants. Be as objective as possible. After "
        "providing your explanation, output your final verdict by strictly following this "
        'format: "[[A]]" if assistant A is better, "[[B]]" if assistant B is better, and '
        '"[[C]]" for a tie.',
        "[User Question]\nName a prime number.\n\n[The Start of Assistant A's Answer]\n9\n"
        "[The End of Assistant A's Answer]\n\n[The Start of Assistant B's Answer]\n7 is prime.\n"
        "[The End of Assistant B's Answer]"],
}


@pytest.mark.parametrize("key", sorted(PUBLISHED), ids=lambda k: "-".join(k))
def test_prompts_contain_the_published_text(key):
    text = _render_transcript(key[0], key[1], dict(
        (t, ex) for _, t, ex in CASES)[key[1]])
    for sentence in PUBLISHED[key]:
        assert sentence in text


def test_every_method_has_a_snapshot_case():
    assert {m for m, _, _ in CASES} == {"system1", *METHODS}


# --- the runner ----------------------------------------------------------------------------------
def test_one_call_per_stage_n_first_then_one_per_path():
    gen = FakeGenerator()
    inputs = [{"question": f"q{i}", "spec": ""} for i in range(3)]
    traces = run_program(METHODS["rar_2step"], inputs, gen, SamplingParams(n=4, seed=5))
    assert len(gen.calls) == 2
    (p1, params1), (p2, params2) = gen.calls
    assert len(p1) == 3 and params1.n == 4 and params1.seed == 5
    assert len(p2) == 12 and params2.n == 1 and params2.seed == 6
    assert [len(t) for t in traces] == [4, 4, 4]
    # Sample path s of input i continues stage 1's sample s of input i.
    assert traces[1][2]["rephrase"].text == "c1-p1-s2"
    assert '(rephrased) c1-p1-s2\n' in p2[1 * 4 + 2][-1]["content"]
    assert traces[1][2]["respond"].text == "c2-p6-s0"
    assert traces[0][3]["rephrase"].num_tokens == 6


def test_fan_out_runs_once_per_item_and_joins():
    gen = FakeGenerator({"plan": "1. first\n2. second\n- third"})
    program = Program("p", (
        Stage("plan", "plan for {question}"),
        Stage("judge", "judge {question} on {item}", fan_out=FanOut("plan")),
        Stage("merge", "merge {judge}", max_new_tokens=8),
    ))
    traces = run_program(program, [{"question": "x"}, {"question": "y"}], gen,
                         SamplingParams(n=2))
    assert [len(p) for p, _ in gen.calls] == [2, 2 * 2 * 3, 4]
    assert gen.calls[2][1].max_new_tokens == 8
    judge = traces[0][1]["judge"]
    assert judge.text.split("\n\n")[0].startswith("first\n")
    assert judge.num_tokens == 3 * 3
    assert "merge first\n" in gen.calls[2][0][1][-1]["content"]


def test_split_list_items():
    assert split_list_items("1. a\n2) b\n* c\nprose") == ["a", "b", "c"]
    assert split_list_items("no list here") == ["no list here"]
    assert len(split_list_items("\n".join(f"{i}. x" for i in range(9)))) == 5


def test_missing_fields_and_plain_text_prompts():
    with pytest.raises(S2JaxError, match="missing field"):
        run_program(METHODS["bsm"], [{"question": "q"}], FakeGenerator(), SamplingParams())
    gen = FakeGenerator()
    run_program(method("system1", TASKS["mt_bench"].system1), [PAIR.fields], gen,
                SamplingParams(), chat=False)
    prompt = gen.calls[0][0][0]
    assert isinstance(prompt, str) and prompt.startswith("Please act as an impartial judge")
    assert "\n\n[User Question]\nName a prime number." in prompt


def test_program_validation():
    with pytest.raises(ValueError, match="reused"):
        Program("p", (Stage("a", "{x}"), Stage("a", "{x}")))
    with pytest.raises(ValueError, match="not an earlier stage"):
        Program("p", (Stage("a", "{x}", fan_out=FanOut("b")),))
    with pytest.raises(S2JaxError, match="unknown method"):
        method("tot", TASKS["gsm8k"].system1)


# --- USC --------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("The most consistent response is Response 2", 2),
    ("The most consistent response is Response 2.", 2),
    ("**The most consistent response is Response 0**, because...", 0),
    ("I pick response 1 since it agrees with most.", 1),
    ("The most consistent response is Response 7", None),
    ("They all differ.", None),
])
def test_parse_usc_choice(text, expected):
    assert parse_choice(text, 4) == expected


def test_usc_stage_is_one_call_listing_the_samples():
    gen = FakeGenerator({"Evaluate these responses": "The most consistent response is Response 1"})
    out = run_usc(["Who?", "What?"], [["a", "b", "c"], ["d"]], gen, SamplingParams(n=5))
    assert len(gen.calls) == 1 and gen.calls[0][1].n == 1
    prompt = gen.calls[0][0][0][-1]["content"]
    assert prompt.startswith("I have generated the following responses to the question: Who?\n\n"
                             "Response 0: a\nResponse 1: b\nResponse 2: c\n\nEvaluate these")
    assert prompt.endswith('Start your answer with "The most consistent response is Response X" '
                           "(without quotes).")
    assert [o.choice for o in out] == [1, None]  # input 2 had one response: index 1 is invalid


def test_generate_records_schema_with_usc_and_perturbation():
    gen = FakeGenerator({"Evaluate these": "The most consistent response is Response 0"})
    task = TASKS["mt_bench"]
    records = generate_records(method("system1", task.system1), [PAIR], gen, SamplingParams(n=2),
                               task=task.name, perturbation=task.perturbation, usc=True)
    assert len(gen.calls) == 2  # original + swapped in one call, then USC
    assert len(gen.calls[0][0]) == 2
    (r,) = records
    assert (r["id"], r["task"], r["method"], r["final_stage"]) == ("p", "mt_bench", "system1",
                                                                 "answer")
    assert len(r["samples"]) == 2 and r["samples"][1]["num_tokens"] == 4
    assert set(r["samples"][0]["stages"]["answer"]) == {"text", "num_tokens", "finish_reason"}
    assert r["usc"]["choice"] == 0
    assert r["perturbation"] == "swap_ab"
    assert r["perturbed"]["fields"]["response_a"] == PAIR.fields["response_b"]
    assert len(r["perturbed"]["samples"]) == 2
