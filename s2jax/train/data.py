"""SFT data: chat examples -> token ids with a loss mask -> packed rows -> batches.

An example is rendered with the checkpoint's chat template. Each assistant answer is tokenized
on its own, after the prompt that precedes it, exactly as the model sees it when it generates
that answer; the loss covers the answer's tokens up to and including the first end-of-turn (EOS)
token, so the model learns to stop and never learns to predict the template's text.

Rows of `seq_len` tokens hold one example each, or several when packed; `segment_ids` number the
examples of a row from 1 (0 is padding), which is how `forward` keeps them apart and restarts
positions. Row order is a pure function of (seed, epoch), so the iterator's whole state is
{"epoch", "row"} and a resumed run sees exactly the batches the killed one would have seen.

A row may carry a `trace`: the start of its last assistant turn that a removal curriculum
(`s2jax.train.curriculum`) takes away a few tokens per stage. The trace and the rest of the turn
are tokenized separately, whether or not a curriculum runs, so the token boundary is the same in
plain trace SFT and in every stage of the curriculum.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from s2jax.core.errors import S2JaxError
from s2jax.core.jsonl import read_objects
from s2jax.core.ownership import check_input
from s2jax.models.tokenizer import render_chat

Message = dict[str, str]
Batch = dict[str, np.ndarray]  # tokens, targets, segment_ids (int32), weights (float32)


@dataclasses.dataclass(frozen=True)
class TokenizedExample:
    """Token ids and, per token, whether the model is trained to predict it; for token-level
    distillation where the teacher reads another context (e.g. the System 2 prompt), the
    teacher's ids and mask too, whose loss tokens are the same answer tokens."""

    ids: np.ndarray  # int32 [n]
    loss_mask: np.ndarray  # bool [n]; loss_mask[0] is ignored (nothing predicts token 0)
    trace: tuple[int, int] = (0, 0)  # [start, end) of the removable trace tokens; empty: none
    teacher_ids: np.ndarray | None = None  # int32 [m]; None: the teacher reads `ids`
    teacher_loss_mask: np.ndarray | None = None  # bool [m]

    def teacher(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, loss mask) of the teacher's context."""
        if self.teacher_ids is None:
            return self.ids, self.loss_mask
        return self.teacher_ids, self.teacher_loss_mask


def read_examples(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a .parquet or .jsonl file, each a dict of its columns."""
    path = check_input(path, "a .parquet or .jsonl distill set")
    if not path.is_file():
        raise S2JaxError(f"{path}: no such file (expected a .parquet or .jsonl distill set)")
    if path.suffix == ".parquet":
        # pyarrow only for parquet files
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path).to_pylist()
        except (pa.ArrowException, OSError) as e:
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise S2JaxError(f"{path}: not a readable parquet file ({first})") from None
    if path.suffix in (".jsonl", ".json"):
        return [row for _, row in read_objects(path, "a distill set: JSON objects, one a line")]
    raise S2JaxError(f"{path}: unknown format {path.suffix!r} (expected .parquet or .jsonl)")


def row_messages(row: dict[str, Any], where: str) -> list[Message] | str:
    """The chat of a row (`messages`, or `prompt` + `completion`), or its raw `text`."""
    if row.get("messages") is not None:
        msgs = row["messages"]
        if not isinstance(msgs, list) or not all(
                isinstance(m, dict) and isinstance(m.get("role"), str)
                and isinstance(m.get("content"), str) for m in msgs):
            raise S2JaxError(f"{where}: 'messages' must be a list of {{role, content}} strings")
        if not any(m["role"] == "assistant" for m in msgs):
            raise S2JaxError(f"{where}: 'messages' has no assistant message to train on")
        return [{"role": m["role"], "content": m["content"]} for m in msgs]
    if isinstance(row.get("prompt"), str) and isinstance(row.get("completion"), str):
        return [{"role": "user", "content": row["prompt"]},
                {"role": "assistant", "content": row["completion"]}]
    if isinstance(row.get("text"), str):
        return row["text"]
    raise S2JaxError(f"{where}: expected a 'messages' column, 'prompt' and 'completion' "
                     f"strings, or a 'text' string; got columns {sorted(row)}")


def _render(tokenizer, messages: list[Message], generation_prompt: bool, where: str) -> str:
    return render_chat(tokenizer, messages, add_generation_prompt=generation_prompt,
                       where=where)


def _encode_turn(encode, turn: str, trace: str | None, start: int, where: str
                 ) -> tuple[list[int], tuple[int, int] | None]:
    """An assistant turn's ids, and with `trace` (the turn's start, tokenized on its own so that
    removal cuts on token boundaries) the trace's span in the example, the turn beginning at
    `start`."""
    if not trace:
        return encode(turn), None
    if not turn.startswith(trace):
        raise S2JaxError(f"{where}: 'trace' is not the start of the last assistant "
                         "message as the chat template renders it")
    removable = encode(trace)
    return removable + encode(turn[len(trace):]), (start, start + len(removable))


def tokenize_chat(tokenizer, messages: list[Message] | str, loss_on: str = "assistant",
                  where: str = "example", stop_ids: Iterable[int] = (),
                  trace: str | None = None) -> TokenizedExample:
    """Token ids of one example with its loss mask (see the module docstring).

    Args:
      tokenizer: a `transformers` tokenizer with a chat template.
      messages: a chat ({role, content} dicts), or a plain text trained on in full.
      loss_on: "assistant" (answers and their end-of-turn token) or "all" tokens.
      where: names the example in error messages.
      stop_ids: end-of-turn token ids besides the tokenizer's EOS (e.g. the model's).
      trace: the removable start of the last assistant turn (see the module docstring).

    Returns:
      The example's ids, loss mask and trace span.
    """
    encode = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]
    if trace and (isinstance(messages, str) or loss_on != "assistant"):
        raise S2JaxError(f"{where}: a 'trace' needs a chat trained on its assistant turns "
                         f"(loss_on='assistant'), got loss_on={loss_on!r}")
    if isinstance(messages, str):
        ids = tokenizer(messages)["input_ids"]
        return TokenizedExample(np.asarray(ids, np.int32), np.ones(len(ids), bool))
    full = _render(tokenizer, messages, False, where)
    if loss_on == "all":
        ids = encode(full)
        return TokenizedExample(np.asarray(ids, np.int32), np.ones(len(ids), bool))
    eos = set(stop_ids) | ({tokenizer.eos_token_id} if tokenizer.eos_token_id is not None
                           else set())
    ids: list[int] = []
    mask: list[bool] = []
    span = (0, 0)
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=-1)
    if trace and last < 0:
        raise S2JaxError(f"{where}: a 'trace' but no assistant message to take it from")
    done = 0  # characters of `full` tokenized so far
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        prompt = _render(tokenizer, messages[:i], True, where)
        upto = _render(tokenizer, messages[: i + 1], False, where)
        if not (upto.startswith(prompt) and full.startswith(upto) and len(prompt) >= done):
            raise S2JaxError(f"{where}: the chat template does not render turn {i} as a prefix "
                             "of the whole chat; cannot locate the answer tokens")
        before = encode(full[done:len(prompt)])
        answer, turn_span = _encode_turn(encode, upto[len(prompt):], trace if i == last else None,
                                         len(ids) + len(before), where)
        span = turn_span or span
        # Train up to the first end-of-turn token: text after it (a newline) is never generated.
        cut = next((j + 1 for j, t in enumerate(answer) if t in eos), len(answer))
        ids += before + answer
        mask += [False] * len(before) + [True] * cut + [False] * (len(answer) - cut)
        done = len(upto)
    rest = encode(full[done:])
    ids += rest
    mask += [False] * len(rest)
    return TokenizedExample(np.asarray(ids, np.int32), np.asarray(mask, bool), span)


def _row_trace(row: Any, where: str) -> str | None:
    """A row's `trace` field: a string, or None when it has none (or an empty one)."""
    trace = row.get("trace") if isinstance(row, dict) else None
    if trace is not None and not isinstance(trace, str):
        raise S2JaxError(f"{where}: 'trace' must be a string (the removable start of the last "
                         f"assistant message), got {type(trace).__name__}")
    return trace or None


def with_teacher_context(example: TokenizedExample, teacher: TokenizedExample, where: str
                         ) -> TokenizedExample:
    """`example` with the teacher's context `teacher` beside it; both must train on the same
    answer tokens (token-level distillation compares the two models' distributions there)."""
    answer, teacher_answer = example.ids[example.loss_mask], teacher.ids[teacher.loss_mask]
    if not np.array_equal(answer, teacher_answer):
        raise S2JaxError(f"{where}: the teacher's context has answer tokens {len(teacher_answer)}"
                         f" that differ from the student's {len(answer)} (another tokenizer or "
                         "answer?); token-level distillation needs one tokenizer: distil "
                         "through text instead (sequence-level)")
    return dataclasses.replace(example, teacher_ids=teacher.ids,
                               teacher_loss_mask=teacher.loss_mask)


def tokenize_examples(tokenizer, examples: Iterable[Any], loss_on: str = "assistant",
                      source: str = "examples", stop_ids: Iterable[int] = (),
                      teacher_tokenizer=None) -> list[TokenizedExample]:
    """Tokenizes rows (dicts as `read_examples` gives), chats, texts or `TokenizedExample`s.

    With `teacher_tokenizer`, a row's `teacher_messages` (the chat the teacher reads, ending
    with the same answer) are tokenized with it beside the student's chat.
    """
    out = []
    for i, ex in enumerate(examples):
        where = f"{source} row {i}"
        if isinstance(ex, TokenizedExample):
            out.append(ex)
            continue
        chat = row_messages(ex, where) if isinstance(ex, dict) else ex
        tokenized = tokenize_chat(tokenizer, chat, loss_on, where, stop_ids,
                                  _row_trace(ex, where))
        context = ex.get("teacher_messages") if isinstance(ex, dict) else None
        if teacher_tokenizer is not None and context is not None:
            teacher = tokenize_chat(teacher_tokenizer, row_messages(
                {"messages": context}, f"{where} teacher_messages"), loss_on, where, stop_ids)
            tokenized = with_teacher_context(tokenized, teacher, where)
        out.append(tokenized)
    if not out:
        raise S2JaxError(f"{source}: no examples")
    return out


def _rows(examples: Sequence[TokenizedExample], order: Sequence[int], seq_len: int,
          packed: bool, teacher_seq_len: int | None) -> list[list[int]]:
    """Next-fit packing (or one example per row): a row takes examples while they fit, and with
    a teacher while their teacher contexts fit its rows too."""
    rows: list[list[int]] = []
    used = used_t = seq_len  # forces a new row for the first example
    for i in order:
        n = min(len(examples[i].ids), seq_len)
        m = min(len(examples[i].teacher()[0]), teacher_seq_len or 0)
        if not packed or used + n > seq_len or (teacher_seq_len and used_t + m > teacher_seq_len):
            rows.append([])
            used = used_t = 0
        rows[-1].append(i)
        used, used_t = used + n, used_t + m
    return rows


def pack(examples: Sequence[TokenizedExample], order: Sequence[int], seq_len: int,
         packed: bool = True, teacher_seq_len: int | None = None) -> Batch:
    """Rows [R, seq_len] of the examples in `order`: next-fit packing, or one per row.

    targets[t] is the token after tokens[t] within the same example; weights[t] is 1 where that
    target is a loss token. Examples longer than `seq_len` are cut to `seq_len`.

    With `teacher_seq_len`, also the teacher's rows [R, teacher_seq_len] (`teacher_tokens`,
    `teacher_segment_ids`: each example's teacher context, cut likewise) and `teacher_index`
    [R, seq_len]: at a loss position, the teacher position predicting the same answer token
    (the k-th loss target of the student is the k-th of the teacher). A loss token whose
    teacher position was cut off gets weight 0.
    """
    rows = _rows(examples, order, seq_len, packed, teacher_seq_len)
    R = len(rows)
    batch = {"tokens": np.zeros((R, seq_len), np.int32),
             "targets": np.zeros((R, seq_len), np.int32),
             "segment_ids": np.zeros((R, seq_len), np.int32),
             "weights": np.zeros((R, seq_len), np.float32)}
    if teacher_seq_len:
        batch |= {"teacher_tokens": np.zeros((R, teacher_seq_len), np.int32),
                  "teacher_segment_ids": np.zeros((R, teacher_seq_len), np.int32),
                  "teacher_index": np.zeros((R, seq_len), np.int32)}
    for r, row in enumerate(rows):
        at = at_t = 0
        for s, i in enumerate(row, 1):
            ids, mask = examples[i].ids[:seq_len], examples[i].loss_mask[:seq_len]
            n = len(ids)
            batch["tokens"][r, at:at + n] = ids
            batch["targets"][r, at:at + n - 1] = ids[1:]
            batch["weights"][r, at:at + n - 1] = mask[1:]
            batch["segment_ids"][r, at:at + n] = s
            if teacher_seq_len:
                at_t += _place_teacher(batch, r, s, at, at_t, mask, examples[i],
                                       teacher_seq_len)
            at += n
    return batch


def _place_teacher(batch: Batch, r: int, s: int, at: int, at_t: int, mask: np.ndarray,
                   example: TokenizedExample, teacher_seq_len: int) -> int:
    """Writes one example's teacher context into row r at `at_t` and aligns its loss positions
    with the student's (at `at`); returns its length."""
    ids_t, mask_t = (a[:teacher_seq_len] for a in example.teacher())
    m = len(ids_t)
    batch["teacher_tokens"][r, at_t:at_t + m] = ids_t
    batch["teacher_segment_ids"][r, at_t:at_t + m] = s
    student = np.flatnonzero(mask[1:])  # positions whose target is a loss token
    teacher = np.flatnonzero(mask_t[1:])
    k = min(len(student), len(teacher))
    batch["teacher_index"][r, at + student[:k]] = at_t + teacher[:k]
    batch["weights"][r, at + student[k:]] = 0.0  # no teacher distribution there
    return m


class Batches:
    """An endless, resumable stream of training batches [grad_accum, batch_size, seq_len].

    Epoch e visits the examples in a permutation drawn from (seed, e), packs them into rows,
    and the stream runs through the rows of epoch 0, then epoch 1, and so on.
    """

    def __init__(self, examples: Sequence[TokenizedExample], *, seq_len: int, batch_size: int,
                 grad_accum: int = 1, packed: bool = True, seed: int = 0,
                 teacher_seq_len: int | None = None):
        self.examples = examples
        self.seq_len, self.batch_size, self.grad_accum = seq_len, batch_size, grad_accum
        self.packed, self.seed, self.teacher_seq_len = packed, seed, teacher_seq_len
        self.epoch, self.row = 0, 0
        self._rows: Batch | None = None

    def _order(self) -> np.ndarray:
        """The current epoch's permutation of the examples."""
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.examples))

    def _epoch_examples(self) -> Sequence[TokenizedExample]:
        """The examples as the current epoch trains on them."""
        return self.examples

    def _epoch_rows(self) -> Batch:
        if self._rows is None:
            self._rows = pack(self._epoch_examples(), self._order(), self.seq_len, self.packed,
                              self.teacher_seq_len)
        return self._rows

    def rows_per_epoch(self) -> int:
        """Rows of the current epoch (epochs differ by a few rows when packed)."""
        return len(self._epoch_rows()["tokens"])

    def state(self) -> dict[str, int]:
        """Everything needed to resume: saved with each checkpoint."""
        return {"epoch": self.epoch, "row": self.row, "seed": self.seed}

    def restore(self, state: dict[str, int]) -> None:
        if state.get("seed", self.seed) != self.seed:
            raise S2JaxError(f"data iterator state has seed {state['seed']}, the run {self.seed}")
        self.epoch, self.row, self._rows = int(state["epoch"]), int(state["row"]), None

    def __iter__(self):
        return self

    def __next__(self) -> Batch:
        need = self.batch_size * self.grad_accum
        parts = []
        while need:
            rows = self._epoch_rows()
            take = min(need, len(rows["tokens"]) - self.row)
            parts.append({k: v[self.row:self.row + take] for k, v in rows.items()})
            self.row += take
            need -= take
            if self.row == len(rows["tokens"]):
                self.epoch, self.row, self._rows = self.epoch + 1, 0, None
        shape = (self.grad_accum, self.batch_size, -1)
        return {k: np.concatenate([p[k] for p in parts]).reshape(shape) for k in parts[0]}


def eval_batches(examples: Sequence[TokenizedExample], *, seq_len: int, batch_size: int,
                 packed: bool = True, teacher_seq_len: int | None = None) -> list[Batch]:
    """Held-out rows in a fixed order, as micro-batches [batch_size, seq_len] (padded rows)."""
    rows = pack(examples, range(len(examples)), seq_len, packed, teacher_seq_len)
    R = len(rows["tokens"])
    pad = -R % batch_size
    rows = {k: np.concatenate([v, np.zeros((pad, v.shape[1]), v.dtype)])
            for k, v in rows.items()}
    return [{k: v[i:i + batch_size] for k, v in rows.items()}
            for i in range(0, R + pad, batch_size)]
