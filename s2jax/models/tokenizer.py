"""Tokenizers: loading the checkpoint's `transformers` tokenizer, and building small BPE ones."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from s2jax.core.errors import S2JaxError
from s2jax.core.jsonl import parse_json
from s2jax.core.ownership import check_input_dir

# A minimal chat template (Llama-3-like headers) for tokenizers the repo builds itself.
SIMPLE_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>", "<|system|>", "<|user|>", "<|assistant|>",
                  "<|end|>"]


# `AutoTokenizer` loads a tokenizer_config.json that names the generic backend as that backend
# for these model types (checked against `AutoTokenizer` in tests/test_tokenizer.py); for others
# (e.g. qwen2) it substitutes a class of its own.
GENERIC_CLASSES = ("TokenizersBackend", "PreTrainedTokenizerFast")
GENERIC_MODEL_TYPES = ("llama", "mistral", "qwen3", "gemma", "gemma2", "gemma3", "gemma3_text")


def _json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def generic_backend(path: Path) -> bool:
    """Whether `AutoTokenizer` would load `path` as the generic `TokenizersBackend`.

    Then `load_tokenizer` loads that class directly: importing `AutoTokenizer` imports torch and
    every model config (2-4 s of a `s2jax generate` process), the backend alone does not.
    """
    config = _json(path / "tokenizer_config.json")
    return ((path / "tokenizer.json").is_file() and "auto_map" not in config
            and config.get("tokenizer_class") in GENERIC_CLASSES
            and _json(path / "config.json").get("model_type") in GENERIC_MODEL_TYPES)


def load_tokenizer(path: str | Path):
    """The checkpoint dir's `transformers` tokenizer (local files only, no remote code)."""
    path = check_input_dir(path, "a checkpoint directory with tokenizer files")
    if not any((path / f).is_file() for f in ("tokenizer.json", "tokenizer.model",
                                              "tokenizer_config.json")):
        raise S2JaxError(f"{path}: no tokenizer files (expected tokenizer.json or "
                         "tokenizer.model with tokenizer_config.json)")
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (path / name).is_file():
            try:
                text = (path / name).read_text(encoding="utf-8")
            except UnicodeDecodeError as e:
                raise S2JaxError(f"{path / name}: not UTF-8 text (byte {e.start}); expected "
                                 "the tokenizer's files as saved by transformers") from None
            parse_json(text, str(path / name), "the tokenizer's files as saved by transformers")
    if generic_backend(path):
        # transformers (seconds) only when a tokenizer is loaded
        from transformers import TokenizersBackend as AutoTokenizer
    else:
        from transformers import AutoTokenizer
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True,
                                                  trust_remote_code=False)
    except Exception as e:  # transformers raises many types for a broken tokenizer
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise S2JaxError(f"{path}: the tokenizer does not load ({first})") from None
    check_chat_template(tokenizer, str(path))
    return tokenizer


PROBE_CHAT = [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi"},
              {"role": "user", "content": "Bye"}]


def render_chat(tokenizer, messages: list[dict], *, add_generation_prompt: bool,
                where: str) -> str:
    """`messages` rendered by the tokenizer's chat template, as text.

    A template that fails (a Jinja syntax error, an undefined name, its own
    `raise_exception`) is one line naming `where` and the template's message.
    """
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False,
                                             add_generation_prompt=add_generation_prompt)
    except Exception as e:  # jinja2 and the template's own raise_exception: many types
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise S2JaxError(f"{where}: the tokenizer's chat template failed ({type(e).__name__}: "
                         f"{first[:200]}); fix chat_template in tokenizer_config.json, or use "
                         "raw prompts (--no-chat)") from None
    if not isinstance(text, str):
        raise S2JaxError(f"{where}: the tokenizer's chat template rendered "
                         f"{type(text).__name__}, expected text")
    return text


def check_chat_template(tokenizer, source: str) -> None:
    """Renders a short chat with the tokenizer's template (if it has one), so that a broken
    template fails when the checkpoint loads rather than in the middle of a run."""
    if getattr(tokenizer, "chat_template", None):
        render_chat(tokenizer, PROBE_CHAT, add_generation_prompt=True, where=source)


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int, chat_template: str =
                        SIMPLE_CHAT_TEMPLATE):
    """A byte-level BPE tokenizer trained on `texts`, wrapped as a `transformers` fast tokenizer.

    Its end-of-turn token `<|end|>` is also its EOS, so chat generation stops after one turn.
    """
    # only the toy recipe trains a tokenizer
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="<|end|>", pad_token="<pad>",
        unk_token="<unk>")
    fast.chat_template = chat_template
    return fast
