"""Reading a short answer (a year, a name, a number with its unit, a place) in a free-text reply.

Small chat models rarely answer in one word: they restate the question ("World War II ended in
1945."), open with a courtesy ("Yes, you're right!"), bold the answer, or run one long sentence
on past it ("The Titanic sank on April 15, 1912, after hitting an iceberg during ..."). `read`
returns the phrase that carries the answer: after an "answer is" cue, a bolded phrase, or the
first sentence that states something, cut at the first clause that only adds detail. Compare
answers with `matches`/`normalize`, which ignore case, punctuation, articles, accents, thousands
separators and spelled-out numbers ("eight" == "8").
"""

from __future__ import annotations

import re
import unicodedata

from s2jax.tasks.answers import answer_cues, strip_markdown

MAX_WORDS = 12  # a longer phrase is an explanation, not an answer ...
MAX_NAMING_WORDS = 16  # ... unless it names something (a number, a name)

_BOLD = re.compile(r"\*\*([^*\n]{1,80}?)\*\*|__([^_\n]{1,80}?)__")
# Openings that carry no answer: agreement, thanks, hedges, the question's echo.
_COURTESY = re.compile(
    r"^(?:(?:yes|no|yeah|correct|indeed|actually|absolutely|certainly|sure|great question|"
    r"good question|well|ah|oh|hmm|hello|hi|okay|ok|that's (?:right|correct)|"
    r"you(?:'re| are) (?:right|correct|absolutely right|not wrong|close)|"
    r"i(?:'m| am) (?:sorry|not sure|happy to help)|i understand(?: your [a-z]+)?|"
    r"i see|thank you|thanks|not quite|close|almost|so|however|in fact|in short|therefore|"
    r"thus)\b[^.!?\n,]{0,40}?[,.!:;]\s+)+",
    re.IGNORECASE)
_NOT_AN_ANSWER = re.compile(r"(?:based|that|simple|straightforward|clear|complex|quite|very|"
                            r"as follows|below|above|not (?:a|an|the)|a bit)\b", re.IGNORECASE)
_CONCLUSION = re.compile(r"(?:therefore|thus|so|hence|in conclusion|in summary),\s", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<!\b[A-Z])(?<!\b(?:Mr|Dr|St|Mt|vs|No))[.!?](?:\s+|$)|\n+")
# Where a sentence stops giving the answer and starts explaining it.
_DETAIL = re.compile(
    r",?\s+(?:which|who|because|since|after|before|during|while|when|where|although|though|"
    r"as it|as the|and it|and is|and was|making|marking|but|however|"
    r"according to|due to|thanks to)\b"
    # a comma and a lowercase word, but not one that narrows the answer down ("specifically")
    r"|,\s+(?-i:(?=[a-z]))(?!specifically|namely|precisely|more precisely|that is)"
    r"|\s+[-–—]\s+|\s*[;:(]",
    re.IGNORECASE)
# a digit, or a capital after the first word ("I" aside)
_NAMED = re.compile(r"\d|(?<=\S\s)(?!I\b|I['’])[A-Z]")
_NEGATED_CUE = re.compile(r"\banswer\b[^.!?\n]*?\bis not\b", re.IGNORECASE)
_IS_THE = re.compile(r"\b(?:is|are|was|were)\s+(?:the|an?)\s+[\w'-]+$", re.IGNORECASE)
# 'The answer to the question "How many continents are there?" is 6.': the echo goes
_QUOTED_QUESTION = re.compile(r"\s*[\"“][^\"“”\n]*\?\s*[\"”]")
# "I'm sorry, but I can't assist with that.", "As an AI language model, I don't have ..."
_REFUSAL = re.compile(r"\b(?:can't|cannot|can not|unable to|not able to|don't have the ability "
                      r"to)\s+(?:assist|help|provide|answer|address|determine|predict)\b"
                      r"|^as an ai\b"
                      # the model talking about itself or the user: "I'm here to help", "You can
                      # check the official website", "Please provide ..."
                      r"|^(?:i(?:'m| am) (?:here|designed|glad|happy)|"
                      r"i can (?:help|assist|certainly|provide)|i'd|i will|please|"
                      r"you can|feel free)\b", re.IGNORECASE)
_LOOK_AHEAD = 3  # sentences read for a stated answer; later ones are explanation
_EDGE = "\"'“”‘’*`_ "


def _sentences(text: str) -> list[str]:
    """The non-empty sentences of a plain-text reply, in order."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip(_EDGE + ".!?")]


def _states_something(phrase: str) -> bool:
    """Whether a phrase names something: a number, a name, or "is the X" at its end."""
    return bool(_NAMED.search(phrase) or _NUMBER_WORD.search(phrase.lower()).group(0)
                or _IS_THE.search(phrase))


def _trim(phrase: str) -> str:
    return phrase.strip().rstrip(".!?,;:").strip(_EDGE)


def _clip(sentence: str, min_head: int = 4) -> str | None:
    """A sentence cut before its first detail clause; when that head names nothing, the head
    through the next clauses until one does; a long sentence that names something early, its
    first words. None for an explanation that never names anything."""
    ends = [m.start() for m in _DETAIL.finditer(sentence, 1)] if len(sentence.split()) > 4 else []
    heads = [h for h in (_trim(sentence[:e]) for e in [*ends, len(sentence)]) if h]
    for k, head in enumerate(heads):
        if len(head.split()) > MAX_NAMING_WORDS:
            break
        # "Independence Day, celebrated on July 4": a head of a few words is only the subject
        # (but after "the answer is", a name alone is the answer: `min_head`)
        last = k == len(heads) - 1
        if _states_something(head) and (len(head.split()) >= min_head or last) and \
                (last or not re.search(r"\bnot\b", head)):  # "is not X, but rather Y"
            return head
    if heads and len(sentence.split()) <= MAX_WORDS:
        return heads[0]  # a short plain statement ("Resistance is measured in ohms (Ω)")
    first = " ".join(sentence.split()[:MAX_NAMING_WORDS])
    return _trim(first) if heads and _states_something(first) else None


def _cue(text: str) -> str | None:
    """The first sentence after the last "the answer is" cue, unless it is negated."""
    for rest in reversed(answer_cues(text)):
        if re.match(r"(?:not|no|n't)\b", rest, re.IGNORECASE):
            # "the answer is not X, it is Y": Y, if the reply goes on to give one
            m = re.search(r"\b(?:it is|it's|it was|but|rather)\s+", rest.split("\n")[0])
            if not m:
                continue
            rest = rest[m.end():]
        if _NOT_AN_ANSWER.match(rest):  # "the answer to this question is based on ..."
            continue
        sentences = _sentences(rest)
        if sentences and (phrase := _clip(sentences[0], min_head=1)):
            return phrase
    return None


def _bold(text: str) -> str | None:
    """The first bolded phrase that is not a label ("**Answer:**") or a whole sentence."""
    for m in _BOLD.finditer(text):
        phrase = (m.group(1) or m.group(2)).strip()
        if phrase.endswith(":") or len(phrase.split()) > 6:
            continue
        phrase = phrase.rstrip(".!?,;").strip(_EDGE)
        if phrase and phrase.lower() not in {"answer", "final answer", "note", "explanation"}:
            return phrase
    return None


def read(text: str) -> str | None:
    """The short answer a reply gives, or None when it gives none.

    Args:
      text: a model's reply.

    Returns:
      The phrase after the last "the answer is" (not negated), else a bolded phrase, else of
      the first `_LOOK_AHEAD` sentences (a concluding "Therefore, ..." first, courtesies
      dropped) the first that names something, cut before its detail clauses; None when no
      sentence states anything in at most `MAX_NAMING_WORDS` words.
    """
    plain = _QUOTED_QUESTION.sub("", strip_markdown(text)).strip()
    if phrase := _cue(plain):
        return phrase
    if phrase := _bold(text):
        return phrase
    sentences = _sentences(plain)
    # "Therefore, the number of days in a leap year is 366.": a conclusion is the answer
    finished = sentences if plain.endswith((".", "!", "?")) else sentences[:-1]
    conclusion = [s for s in finished if _CONCLUSION.match(s)]
    stated = [t for t in (_COURTESY.sub("", s + ". ").strip().rstrip(".")
                          for s in conclusion[:1] + sentences)
              if t and not _REFUSAL.search(t) and not _NEGATED_CUE.search(t)]
    phrases = [p for p in map(_clip, stated[:_LOOK_AHEAD]) if p]
    return next((p for p in phrases if _states_something(p)), phrases[0] if phrases else None)


_UNITS = {w: i for i, w in enumerate((
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen"))}
_TENS = {w: 10 * i for i, w in enumerate((
    "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"), start=2)}
_NUMBER_WORD = re.compile(
    r"\b(?:(?:a|one|two|three|four|five|six|seven|eight|nine)\s+(?:hundred|thousand)"
    r"(?:\s+and)?\s*)?(?:(?:twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety)"
    r"(?:[\s-](?:one|two|three|four|five|six|seven|eight|nine))?|zero|one|two|three|four|five|"
    r"six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|seventeen|"
    r"eighteen|nineteen)?\b")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")
_ARTICLES = re.compile(r"\b(?:a|an|the)\b")


def _number(words: str) -> str:
    """Digits for spelled-out numbers below a million ("two hundred and six" -> "206")."""
    total, current = 0, 0
    for w in re.split(r"[\s-]+", words.lower()):
        if w in _UNITS:
            current += _UNITS[w]
        elif w in _TENS:
            current += _TENS[w]
        elif w in {"hundred", "thousand"}:
            current = max(current, 1) * (100 if w == "hundred" else 1000)
            if w == "thousand":
                total, current = total + current, 0
        elif w == "a":
            current = 1
    return str(total + current)


def normalize(text: str) -> str:
    """Lower case, no accents, punctuation, articles or thousands separators, numbers in digits."""
    text = "".join(c for c in unicodedata.normalize("NFKD", text)
                   if not unicodedata.combining(c)).lower()
    text = re.sub(r"(?<=\w)['’]s\b|(?<=\d)(?:st|nd|rd|th)\b", "", text)  # "Newton's", "25th"
    text = _THOUSANDS.sub("", text)
    text = _NUMBER_WORD.sub(lambda m: _number(m.group(0)) if m.group(0).strip() else "", text)
    text = re.sub(r"[^\w\s.]|(?<!\d)\.|\.(?!\d)", " ", text)  # keep decimal points ("1.6")
    return " ".join(_ARTICLES.sub(" ", text).split())


def matches(answer: str, gold: str) -> bool:
    """Whether normalised `gold` occurs in normalised `answer` as whole words."""
    g = normalize(gold)
    return bool(g) and f" {g} " in f" {normalize(answer)} "
