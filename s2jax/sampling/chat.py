"""Prompts to token ids: chats through the checkpoint tokenizer's template, or raw text."""

from __future__ import annotations

from collections.abc import Sequence

from s2jax.core.errors import S2JaxError
from s2jax.core.text_generator import Prompt
from s2jax.models.tokenizer import render_chat


def encode_prompts(tokenizer, prompts: Sequence[Prompt], *, chat: bool) -> list[list[int]]:
    """Token ids of each prompt.

    With `chat`, a string is one user message and a message list is rendered by the tokenizer's
    chat template with the generation prompt (the template adds BOS where it wants one).
    Without it, a string is tokenized as is, with the tokenizer's special tokens (e.g. BOS), as
    `transformers` does for `generate`.
    """
    if chat and not getattr(tokenizer, "chat_template", None):
        raise S2JaxError("the tokenizer has no chat template: pass chat=False (--no-chat) for "
                         "raw prompts, or add a chat_template to tokenizer_config.json")
    out = []
    for i, prompt in enumerate(prompts):
        if isinstance(prompt, str) and not chat:
            ids = tokenizer(prompt)["input_ids"]
        elif chat:
            messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) \
                else list(prompt)
            _check_messages(i, messages)
            text = render_chat(tokenizer, messages, add_generation_prompt=True,
                               where=f"prompt {i}")
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        else:
            raise S2JaxError(f"prompt {i}: a message list needs chat=True (--chat); "
                             "raw mode takes strings")
        if not ids:
            raise S2JaxError(f"prompt {i}: encodes to no tokens (expected non-empty text)")
        out.append(list(ids))
    return out


def _check_messages(i: int, messages: list) -> None:
    for m in messages:
        if not (isinstance(m, dict) and isinstance(m.get("role"), str)
                and isinstance(m.get("content"), str)):
            raise S2JaxError(f"prompt {i}: each message must be {{'role': str, 'content': str}}, "
                             f"got {m!r}")
