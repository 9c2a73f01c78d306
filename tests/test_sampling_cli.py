"""`s2jax generate`: the DESIGN.md contract, greedy equal to `transformers`, bad input."""

import json

import pytest
import torch

from s2jax.cli import main
from tests.hf_fixtures import load_reference


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_generate_writes_samples_in_input_order(hf_checkpoint, tmp_path):
    directory = hf_checkpoint("llama3")
    rows = [{"id": "a", "prompt": "Alice flips the coin."},
            {"id": "b", "messages": [{"role": "user", "content": "Take the last letters"}]},
            {"id": "c", "prompt": "Q: What is 12 + 30?"}]
    _write(tmp_path / "in.jsonl", rows)
    rc = main(["generate", "--model", str(directory), "--input", str(tmp_path / "in.jsonl"),
               "--output", str(tmp_path / "out.jsonl"), "--n", "3", "--temperature", "0.7",
               "--top-k", "40", "--max-new-tokens", "6", "--seed", "1"])
    assert rc == 0
    out = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [o["id"] for o in out] == ["a", "b", "c"]
    for o in out:
        assert len(o["samples"]) == 3
        for s in o["samples"]:
            assert set(s) == {"text", "num_tokens", "finish_reason"}
            assert 1 <= s["num_tokens"] <= 6 and s["finish_reason"] in ("stop", "length")


def test_greedy_no_chat_matches_transformers(hf_checkpoint, tmp_path):
    directory = hf_checkpoint("qwen2")
    prompts = ["The quick brown fox", "Take the last letters of each word"]
    _write(tmp_path / "in.jsonl", [{"id": str(i), "prompt": p} for i, p in enumerate(prompts)])
    assert main(["generate", "--model", str(directory), "--input", str(tmp_path / "in.jsonl"),
                 "--output", str(tmp_path / "out.jsonl"), "--temperature", "0",
                 "--max-new-tokens", "8", "--no-chat"]) == 0
    out = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    ref = load_reference(directory)
    from s2jax.models.tokenizer import load_tokenizer

    tok = load_tokenizer(directory)
    for p, o in zip(prompts, out, strict=True):
        ids = torch.tensor([tok(p)["input_ids"]])
        g = ref.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=8,
                         do_sample=False, pad_token_id=0)[0, ids.shape[1]:].tolist()
        body = g[:-1] if g[-1] == 7 else g
        assert o["samples"][0]["text"] == tok.decode(body, skip_special_tokens=True)
        assert o["samples"][0]["num_tokens"] == len(g)


@pytest.mark.parametrize("line,expected", [
    ("{not json", "in.jsonl:2: not valid JSON"),
    ('{"prompt": "x"}', "in.jsonl:2: expected an object with a string field 'id'"),
    ('{"id": "x", "prompt": 3}', "in.jsonl:2: expected exactly one of 'prompt'"),
    ('{"id": "x", "messages": [{"role": "user"}]}', "in.jsonl:2: expected exactly one of"),
])
def test_bad_input_is_one_line_and_no_output(hf_checkpoint, tmp_path, capsys, line, expected):
    directory = hf_checkpoint("llama2")
    capsys.readouterr()  # the fixture's own progress output
    (tmp_path / "in.jsonl").write_text('{"id": "ok", "prompt": "hi"}\n' + line + "\n")
    rc = main(["generate", "--model", str(directory), "--input",
               str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "out.jsonl")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and expected in err[0], err
    assert not (tmp_path / "out.jsonl").exists()


def test_bad_sampling_option_is_an_error(hf_checkpoint, tmp_path, capsys):
    _write(tmp_path / "in.jsonl", [{"id": "a", "prompt": "hi"}])
    rc = main(["generate", "--model", str(hf_checkpoint("llama2")), "--input",
               str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "out.jsonl"),
               "--top-p", "0"])
    assert rc == 2 and "top_p must be in (0, 1]" in capsys.readouterr().err
    assert not (tmp_path / "out.jsonl").exists()
