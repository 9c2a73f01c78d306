"""Text helpers shared by the answer extractors: markdown stripping, answer phrases, normalising."""

from __future__ import annotations

import re
import string

_MARKDOWN = re.compile(r"(\*\*|__|`+|~~)")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s*", re.MULTILINE)
_EMPHASIS = re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])")


def strip_markdown(text: str) -> str:
    """Removes bold/italic/code/strike markers and heading hashes, keeping their content."""
    text = _HEADING.sub("", text)
    text = _MARKDOWN.sub("", text)
    return _EMPHASIS.sub(r"\1", text)


# "The answer is X", "Final answer: X", "verdict: X": the phrase after the last such cue.
# Real models also write "the answer to the question is X" and "the answer is indeed X".
_CUE = re.compile(
    r"\b(?:answer|verdict)(?:\s+to\s+(?:the|this|your)\s+question)?"
    r"(?:\s+(?:is|would be|should be|will be)(?:\s+(?:indeed|actually|simply))?\s*:?|\s*[:=])\s*",
    re.IGNORECASE,
)


def answer_cues(text: str) -> list[str]:
    """The text after each "answer is"/"answer:" cue, to the end of its line, in order; cues
    with nothing after them on their line are skipped."""
    out = []
    for m in _CUE.finditer(text):
        rest = text[m.end():].split("\n", 1)[0].strip()
        if rest:
            out.append(rest)
    return out


def after_answer_cue(text: str) -> str | None:
    """The text after the last "answer is"/"answer:" cue, to the end of its line, or None."""
    cues = answer_cues(text)
    return cues[-1] if cues else None


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation + "“”‘’")


def normalize_text(text: str) -> str:
    """Lower case, no punctuation, no articles, single spaces (TriviaQA/SQuAD normalisation)."""
    text = text.lower().translate(_PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def contains_phrase(haystack: str, needle: str) -> bool:
    """Whether normalised `needle` occurs in normalised `haystack` as whole words."""
    n = normalize_text(needle)
    return bool(n) and f" {n} " in f" {normalize_text(haystack)} "
