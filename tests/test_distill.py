"""Generations -> vote -> the System 1 distillation set (parquet + provenance + stats)."""

import json

import pyarrow.parquet as pq
import pytest

from s2jax.cli import main
from s2jax.core.atomic import write_jsonl
from s2jax.core.text_generator import Sample, SamplingParams
from s2jax.distill.dataset import DistillConfig, build_distill_set, provenance, write_distill_set
from s2jax.distill.vote import VoteConfig
from s2jax.methods import method
from s2jax.methods.records import generate_records
from s2jax.tasks import TASKS, Example

COIN = TASKS["coin_flip"]


class ScriptedGenerator:
    """Replies from a script keyed by a substring of the prompt; sample s gets reply s."""

    def __init__(self, script):
        self.script = script

    def __call__(self, prompts, params, first_sample=None):
        out = []
        for prompt in prompts:
            text = prompt[-1]["content"]
            replies = next(r for k, r in self.script.items() if k in text)
            out.append([Sample(replies[s % len(replies)], 5, "stop") for s in range(params.n)])
        return out


def _coin(i: str, people: str) -> Example:
    q = f"A coin is heads up. {people}  Is the coin still heads up? Flip means reverse."
    return Example(i, {"question": q, "spec": "Answer the Yes or No question."})


INPUTS = [
    _coin("agree", "ann flips the coin. bob flips the coin."),
    _coin("abstain", "cy does not flip the coin. di does not flip the coin."),
    _coin("tie", "ed flips the coin. flo does not flip the coin."),
    _coin("weak", "gus flips the coin. hal flips the coin. ivy flips the coin."),
]
SCRIPT = {
    "ann flips": ["Yes.", "yes, it is", "No"],
    "cy does not": ["Hmm.", "I am not sure."],
    "ed flips": ["Yes", "No", "It depends."],
    "gus flips": ["No.", "It depends.", "Maybe."],
}


@pytest.fixture
def generations(tmp_path):
    records = generate_records(method("system1", COIN.system1), INPUTS, ScriptedGenerator(SCRIPT),
                               SamplingParams(n=3, temperature=0.7), task="coin_flip")
    path = tmp_path / "generations.jsonl"
    write_jsonl(path, records)
    return path, records


def test_majority_set_structure_and_counts(tmp_path, generations):
    _, records = generations
    dset = build_distill_set(records, COIN, DistillConfig())
    assert [d["id"] for d in dset.decisions] == ["agree", "abstain", "tie", "weak"]
    assert [d["reason"] for d in dset.decisions] == ["kept", "all_abstain", "tie", "kept"]
    assert (dset.stats.inputs, dset.stats.kept, dset.stats.samples) == (4, 2, 12)
    assert dset.stats.abstentions == 0 + 3 + 1 + 2
    out = tmp_path / "distill"
    prov = provenance(records, COIN, DistillConfig(), dset, generations="g.jsonl", model="m")
    path = write_distill_set(out, dset, prov)
    table = pq.read_table(path)
    assert table.column_names == ["id", "messages", "answer"]
    rows = table.to_pylist()
    assert [r["id"] for r in rows] == ["agree", "weak"]
    assert [r["answer"] for r in rows] == ["yes", "no"]
    # System 1 prompt -> the final answer only.
    assert rows[0]["messages"] == [
        {"role": "user", "content": f"{INPUTS[0].fields['question']}\nAnswer the Yes or No "
                                    "question."},
        {"role": "assistant", "content": "Yes"},
    ]
    saved = json.loads((out / "provenance.json").read_text())
    assert (saved["method"], saved["n"], saved["filter"], saved["model"]) == ("system1", 3,
                                                                            "majority", "m")
    assert saved["counts"] == {"inputs": 4, "kept": 2, "dropped": 2, "examples": 2}
    assert len(saved["config_hash"]) == 16
    stats = json.loads((out / "vote_stats.json").read_text())
    assert stats["reasons"]["tie"] == 1 and stats["kept"] == 2
    assert len((out / "decisions.jsonl").read_text().splitlines()) == 4


def test_threshold_and_config_hash(generations):
    _, records = generations
    strict = DistillConfig(vote=VoteConfig(threshold=0.5))
    dset = build_distill_set(records, COIN, strict)
    # "weak" has 1 of 3 votes: below half of the samples.
    assert [d["reason"] for d in dset.decisions] == ["kept", "all_abstain", "tie",
                                                     "below_threshold"]
    loose = build_distill_set(records, COIN, DistillConfig())
    h1 = provenance(records, COIN, strict, dset, generations="g")["config_hash"]
    h2 = provenance(records, COIN, DistillConfig(), loose, generations="g")["config_hash"]
    assert h1 != h2


def test_perturbation_and_usc_filters():
    task = TASKS["mt_bench"]
    pairs = [Example("biased", {"question": "q1", "response_a": "x", "response_b": "y",
                                "spec": ""}),
             Example("fair", {"question": "q2", "response_a": "good", "response_b": "bad",
                              "spec": ""})]
    # Position-biased judge on q1 (always [[A]]); on q2 it follows the good response.
    script = {
        "[User Question]\nq1": ["[[A]]"],
        "Assistant A's Answer]\ngood": ["Verdict: [[A]]"],
        "Assistant A's Answer]\nbad": ["[[B]]"],
        "Evaluate these responses": ["The most consistent response is Response 0"],
    }
    records = generate_records(method("system1", task.system1), pairs, ScriptedGenerator(script),
                               SamplingParams(n=2), task=task.name,
                               perturbation=task.perturbation, usc=True)
    dset = build_distill_set(records, task, DistillConfig("perturbation"))
    assert [(d["id"], d["reason"]) for d in dset.decisions] == [("biased", "inconsistent"),
                                                               ("fair", "kept")]
    assert dset.examples[0]["messages"][-1] == {"role": "assistant", "content": "[[A]]"}
    assert dset.examples[0]["messages"][0]["role"] == "system"
    usc = build_distill_set(records, task, DistillConfig("usc"))
    assert [d["answer"] for d in usc.decisions] == ["A", "A"]


def test_vote_cli_writes_the_set_and_rejects_bad_input(tmp_path, generations, capsys):
    path, _ = generations
    out = tmp_path / "out"
    assert main(["vote", "--generations", str(path), "--task", "coin_flip", "--out", str(out),
                 "--threshold", "0.5"]) == 0
    assert "kept 1/4" in capsys.readouterr().out
    assert pq.read_table(out / "train.parquet").num_rows == 1
    # Wrong task, USC without a USC stage, a malformed line: exit 2, one line, no partial output.
    bad_out = tmp_path / "bad"
    assert main(["vote", "--generations", str(path), "--task", "gsm8k", "--out",
                 str(bad_out)]) == 2
    assert main(["vote", "--generations", str(path), "--task", "coin_flip", "--out",
                 str(bad_out), "--filter", "usc"]) == 2
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"id": "x", "task": "coin_flip"}\n')
    assert main(["vote", "--generations", str(broken), "--task", "coin_flip", "--out",
                 str(bad_out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("s2jax vote: error:") for line in err)
    assert "broken.jsonl:1" in err[-1]
    assert not bad_out.exists()


@pytest.mark.slow
def test_end_to_end_on_a_tiny_random_checkpoint(tmp_path, hf_checkpoint):
    pytest.importorskip("s2jax.sampling", reason="the sampler (s2jax.sampling) is not built yet")
    ckpt = hf_checkpoint("llama2")
    gens = tmp_path / "generations.jsonl"
    assert main(["generate-method", "--model", str(ckpt), "--method", "rar_2step", "--task",
                 "coin_flip", "--synthetic", "3", "--n", "2", "--temperature", "1.0",
                 "--max-new-tokens", "6", "--seed", "1", "--output", str(gens)]) == 0
    records = [json.loads(line) for line in gens.read_text().splitlines()]
    assert len(records) == 3
    for r in records:
        assert r["method"] == "rar_2step" and r["final_stage"] == "respond"
        assert len(r["samples"]) == 2
        for s in r["samples"]:
            assert list(s["stages"]) == ["rephrase", "respond"]
            assert all(1 <= st["num_tokens"] <= 6 for st in s["stages"].values())
            assert s["num_tokens"] == sum(st["num_tokens"] for st in s["stages"].values())
    out = tmp_path / "distill"
    vote = ["vote", "--generations", str(gens), "--task", "coin_flip", "--out", str(out)]
    # a random model answers nothing: nothing to fine-tune on is a non-result (exit 4), and
    # nothing is written
    assert main(vote) == 4 and not out.exists()
    for r in records:  # as if the model had answered
        for s in r["samples"]:
            s["stages"]["respond"]["text"] = "So the answer is yes."
    gens.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert main(vote) == 0
    stats = json.loads((out / "vote_stats.json").read_text())
    prov = json.loads((out / "provenance.json").read_text())
    table = pq.read_table(out / "train.parquet")
    assert table.column_names == ["id", "messages", "answer"]
    assert stats["inputs"] == 3 and stats["samples"] == 6
    assert table.num_rows == stats["kept"] == prov["counts"]["kept"]
    assert prov["model"] == str(ckpt) and prov["n"] == 2


def test_reply_target_is_the_winning_samples_own_text():
    """Votes are keyed by the city, so "Paris" and a sentence naming Paris agree; the target
    under "reply" is the first agreeing sample's text, not the normalised key."""
    task = TASKS["capitals"]
    ex = Example("fr", {"question": "What is the capital of France? I think the answer is "
                        "Marseille but I'm really not sure.", "spec": ""}, ("Paris",))
    gen = ScriptedGenerator({"France": ["The capital of France is Marseille.",
                                        "The capital of France is Paris.", "Paris.",
                                        "It is Paris, not Marseille."]})
    records = generate_records(method("system1", task.system1), [ex], gen,
                               SamplingParams(n=4, temperature=0.7), task="capitals")
    for target, content in (("reply", "The capital of France is Paris."), ("answer", "Paris")):
        dset = build_distill_set(records, task, DistillConfig(vote=VoteConfig(0.5),
                                                              target=target))
        assert dset.decisions[0]["votes"] == 3
        assert dset.examples[0]["messages"][-1] == {"role": "assistant", "content": content}
    with pytest.raises(ValueError, match="target must be one of"):
        DistillConfig(target="sentence")
