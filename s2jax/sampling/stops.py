"""From a row's generated tokens to a `Sample`: EOS cut, stop strings cut exactly, reasons."""

from __future__ import annotations

from collections.abc import Sequence

from s2jax.core.text_generator import Sample


def _first_stop(text: str, stop: Sequence[str]) -> int:
    """Where the earliest stop string begins in `text`, or -1."""
    found = [i for i in (text.find(s) for s in stop) if i >= 0]
    return min(found, default=-1)


def finish(tokenizer, tokens: Sequence[int], *, eos_ids: Sequence[int], stop: Sequence[str],
           device_done: bool, keep_special: bool = False) -> Sample | None:
    """The row's sample if it has finished, else None (keep decoding).

    Args:
      tokenizer: decodes token ids.
      tokens: every token generated so far, an EOS included (it can only be the last).
      eos_ids: the checkpoint's EOS ids.
      stop: stop strings; the row ends with the first token that completes one, and the text is
        cut where the earliest stop string in it begins.
      device_done: the device ended the row (EOS or its token limit).
      keep_special: keep special tokens (`<pad>`, `<unk>`, template markers) in the text;
        by default they are dropped, as `transformers` and vLLM do.

    Returns:
      `num_tokens` counts every generated token up to the EOS or the stop's last token.
    """
    skip = not keep_special
    eos = bool(tokens) and tokens[-1] in eos_ids
    body = list(tokens[:-1] if eos else tokens)
    if stop:
        text = tokenizer.decode(body, skip_special_tokens=skip)
        if _first_stop(text, stop) >= 0:
            # decoding is prefix-stable, so "contains a stop" is monotone in the prefix length
            lo, hi = 1, len(body)
            while lo < hi:
                mid = (lo + hi) // 2
                if _first_stop(tokenizer.decode(body[:mid], skip_special_tokens=skip), stop) >= 0:
                    hi = mid
                else:
                    lo = mid + 1
            prefix = tokenizer.decode(body[:lo], skip_special_tokens=skip)
            return Sample(prefix[:_first_stop(prefix, stop)], lo, "stop")
    if not device_done:
        return None
    text = tokenizer.decode(body, skip_special_tokens=skip)
    return Sample(text, len(tokens), "stop" if eos else "length")
