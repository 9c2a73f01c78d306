"""The `s2jax generate` input: JSONL lines {"id", "prompt": str} or {"id", "messages": [...]}."""

from __future__ import annotations

from pathlib import Path

from s2jax.core.errors import S2JaxError
from s2jax.core.jsonl import read_objects


def read_prompts(path: Path) -> tuple[list[str], list]:
    """Ids and prompts (a string or a message list) of every line of IN.jsonl."""
    ids, prompts = [], []
    for where, row in read_objects(path, "the input JSONL of {id, prompt | messages}"):
        if not isinstance(row.get("id"), str):
            raise S2JaxError(f"{where}: expected an object with a string field 'id'")
        prompt = row.get("prompt", row.get("messages"))
        ok_messages = isinstance(prompt, list) and prompt and all(
            isinstance(m, dict) and isinstance(m.get("role"), str)
            and isinstance(m.get("content"), str) for m in prompt)
        if ("prompt" in row) == ("messages" in row) or not (
                isinstance(prompt, str) if "prompt" in row else ok_messages):
            raise S2JaxError(f"{where}: expected exactly one of 'prompt' (a string) or "
                             "'messages' (a list of {'role': str, 'content': str})")
        ids.append(row["id"])
        prompts.append(prompt)
    if not prompts:
        raise S2JaxError(f"{path}: no prompts (expected one JSON object per line)")
    return ids, prompts
