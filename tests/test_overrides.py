"""Config changes from the command line (s2jax.core.overrides): one way for every command."""

import argparse
import dataclasses

import pytest

from s2jax.core.errors import S2JaxError
from s2jax.core.overrides import (
    add_field_flags,
    field_changes,
    field_comments,
    field_flag,
    override,
    parse_assignments,
)
from s2jax.run.config import ExperimentConfig
from s2jax.train.config import LoraConfig, TrainConfig

BASE = ExperimentConfig(name="x", model="m", task="last_letter", method="rar_1step")


def test_strings_parse_by_field_type_and_typed_values_set_as_they_are():
    c = override(BASE, {"sampling.n": "3", "train.lora.targets": "q,v", "train.lora.rank": 4,
                        "distill.vote.threshold": 1, "chat": "false"})
    assert (c.sampling.n, c.train.lora, c.chat) == (3, LoraConfig(rank=4, targets=("q", "v")),
                                                    False)
    # an int for a float field is the float "1" parses to: the same config, the same hash
    assert c.distill.vote.threshold == 1.0 and isinstance(c.distill.vote.threshold, float)
    assert c == override(BASE, {"sampling.n": 3, "train.lora.targets": ("q", "v"),
                                "train.lora.rank": "4", "distill.vote.threshold": "1",
                                "chat": False})
    assert c.fingerprint() == override(BASE, {"sampling.n": 3, "train.lora.targets": ("q", "v"),
                                              "train.lora.rank": "4", "chat": False,
                                              "distill.vote.threshold": "1.0"}).fingerprint()


def test_cross_field_checks_see_every_change_together():
    # usc needs usc=True: either order works because the config is rebuilt once
    c = override(BASE, dict(parse_assignments(["distill.filter=usc", "usc=true"])))
    assert c.usc and c.distill.filter == "usc"
    with pytest.raises(S2JaxError, match="needs usc=True"):
        override(BASE, {"distill.filter": "usc"})


def test_errors_name_the_flag_the_user_typed():
    with pytest.raises(S2JaxError, match=r"^--lora-rank: train config lora.rank=-1"):
        override(TrainConfig(), {"lora.rank": -1}, name=field_flag)
    with pytest.raises(S2JaxError, match=r"^--set sampling.n=x: expected a int"):
        override(BASE, {"sampling.n": "x"})
    with pytest.raises(S2JaxError, match="expected key=value"):
        parse_assignments(["n"])


def test_train_flags_carry_the_field_comments_and_give_only_what_was_set():
    comments = field_comments(TrainConfig)
    assert comments["steps"] == ("optimizer steps; 0 derives them from `epochs` (or the "
                                 "curriculum's stages)")
    # a comment on the lines above the field (not a `# --` section header) is its help too
    assert comments["param_dtype"].startswith("params and optimizer state")
    assert all(comments[f.name] for f in dataclasses.fields(TrainConfig))
    parser = argparse.ArgumentParser()
    add_field_flags(parser, TrainConfig)
    helps = {a.option_strings[0]: a.help for a in parser._actions if a.option_strings}
    assert helps["--seq-len"].startswith("tokens per row")
    assert helps["--seq-len"].endswith("(default: 512)")
    args = parser.parse_args(["--seq-len", "64", "--no-pack", "--lora-targets", "q,v"])
    assert field_changes(args, TrainConfig) == {"seq_len": 64, "pack": False,
                                                "lora.targets": "q,v"}


@dataclasses.dataclass(frozen=True)
class _Commented:
    """Each way a field's comment is written in s2jax's configs."""

    # -- a section header, not a field's comment
    plain: int = 0  # on its line
    long: int = 0  # on its line, and continued
    # below it, since the next field has its own
    next_: int = 0  # its own
    # above it, since the field has none on its line
    above: int = 0
    # -- a header describes the field below it when the field has no comment of its own,
    # with the lines that continue the header
    section: int = 0
    last: int = 0  # the last one, continued
    # below it


def test_field_comments_read_each_way_a_comment_is_written():
    assert field_comments(_Commented) == {
        "plain": "on its line",
        "long": "on its line, and continued below it, since the next field has its own",
        "next_": "its own",
        "above": "above it, since the field has none on its line",
        "section": "a header describes the field below it when the field has no comment of "
                   "its own, with the lines that continue the header",
        "last": "the last one, continued below it",
    }

