"""Tiny tokenizers: a BPE one trained on a few sentences (optionally behaving like Gemma's), and
a word-level one over ids t0..t{V-1} that decodes any id."""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from s2jax.models.tokenizer import train_bpe_tokenizer

VOCAB = 320
TEXTS = [
    "The quick brown fox jumps over the lazy dog. A coin is heads up. Alice flips the coin.",
    "Take the last letters of each word in 'Elon Musk Larry Page' and concatenate them.",
    "Q: What is 12 + 30? A: Let's think step by step. 12 + 30 = 42. The answer is 42.",
] * 4

# Gemma's chat template (roles user/model, each turn closed by <end_of_turn>), BOS from the template
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% set role = 'model' if m['role'] == 'assistant' else m['role'] %}"
    "<start_of_turn>{{ role }}\n{{ m['content'] | trim }}<end_of_turn>\n"
    "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


def tiny_tokenizer(vocab_size: int = VOCAB) -> PreTrainedTokenizerFast:
    """A BPE tokenizer of `vocab_size` tokens trained on `TEXTS`, with a chat template."""
    return train_bpe_tokenizer(TEXTS, vocab_size=vocab_size)


def gemma_tokenizer(vocab_size: int = VOCAB) -> PreTrainedTokenizerFast:
    """A tiny tokenizer that behaves like Gemma's: every encoding starts with BOS (a
    post-processor, as in Gemma's tokenizer.json), and its chat turns end with <end_of_turn>,
    which is not its EOS token."""
    tok = train_bpe_tokenizer(TEXTS, vocab_size=vocab_size - 2, chat_template=GEMMA_CHAT_TEMPLATE)
    tok.add_special_tokens({"additional_special_tokens": ["<start_of_turn>", "<end_of_turn>"]})
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tok.bos_token_id)])
    return tok


def word_tokenizer(vocab: int) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over ids t0..t{V-1}: decoding any id is defined and cheap (random
    models emit any id). t0 pads, t1 ends a sequence."""
    tok = Tokenizer(models.WordLevel({f"t{i}": i for i in range(vocab)}, unk_token="t0"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins with spaces
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="t0", eos_token="t1")
