"""The generations file's meta contract: generate-method records its settings beside the file,
refuses to resume under other ones, and vote reads them back (s2jax.methods.records)."""

import json

import pytest

from s2jax.core.errors import S2JaxError
from s2jax.core.shards import index_path
from s2jax.core.text_generator import SamplingParams
from s2jax.methods.records import (
    check_meta,
    generations_meta,
    meta_path,
    read_finished_generations,
    read_meta,
    write_meta,
)

RECORD = {"id": "0", "task": "coin_flip", "method": "cot_zero_shot", "final_stage": "answer",
          "fields": {"question": "q"}, "gold": [], "samples": [
              {"stages": {"answer": {"text": "yes", "num_tokens": 1, "finish_reason": "stop"}},
               "num_tokens": 1}]}


def _meta(**change):
    settings = dict(task="coin_flip", method="cot_zero_shot", model="m", inputs=1,
                    sampling=SamplingParams(n=2), usc=False, perturb=False, chat=True,
                    shard_size=128)
    return generations_meta(**{**settings, **change})


def test_meta_round_trips_and_other_settings_are_refused(tmp_path):
    gen = tmp_path / "g.jsonl"
    assert read_meta(gen) == {}  # no meta file: vote records no model or sampling
    check_meta(gen, _meta())  # nothing to resume: anything goes
    write_meta(gen, _meta())
    assert json.loads(meta_path(gen).read_text())["s2jax"] == "generations-meta"  # its mark
    check_meta(gen, _meta())  # the same settings resume
    assert read_meta(gen) == _meta()  # the settings, the mark aside
    assert read_meta(gen)["sampling"]["n"] == 2 and read_meta(gen)["model"] == "m"
    with pytest.raises(S2JaxError, match="records other settings"):
        check_meta(gen, _meta(sampling=SamplingParams(n=3)))
    with pytest.raises(S2JaxError, match="records other settings"):  # a damaged one of ours
        check_meta(gen, {**_meta(), "inputs": 2})
    meta_path(gen).write_text("[1, 2")
    with pytest.raises(S2JaxError, match="not an s2jax generations meta file"):
        check_meta(gen, _meta())  # not s2jax's (any more): never replaced
    with pytest.raises(S2JaxError, match="not valid JSON"):
        read_meta(gen)
    meta_path(gen).write_text(json.dumps(_meta()))  # the same settings, but a user's file
    with pytest.raises(S2JaxError, match="not an s2jax generations meta file"):
        check_meta(gen, _meta())


def test_an_unfinished_sharded_file_is_refused(tmp_path):
    gen = tmp_path / "g.jsonl"
    gen.write_text(json.dumps(RECORD) + "\n")
    assert read_finished_generations(gen)[0]["id"] == "0"  # unsharded: read as it is
    index_path(gen).write_text(json.dumps({"shard": 0, "ids": ["0"]}) + "\n")
    with pytest.raises(S2JaxError, match="did not finish"):
        read_finished_generations(gen)
    with index_path(gen).open("a") as f:
        f.write(json.dumps({"complete": True, "shards": 1, "rows": 1, "key": "k"}) + "\n")
    assert len(read_finished_generations(gen)) == 1
