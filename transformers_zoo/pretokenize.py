"""Text put into one written form before a sentencepiece model sees it (a tokenizer setting, saved with it).

``ptb``: lower-cased, split into Penn Treebank tokens, the form SST-2's text is in (Socher et al. 2013 ran
Stanford's PTB tokenizer and lower-cased it; GLUE kept that). A model pre-trained on raw movie reviews and
fine-tuned on SST-2 otherwise meets two spellings of the same words: "didn't" in pre-training is
``▁didn ' t``, SST-2's "did n't" is ``▁did ▁n ' t``, and every capitalised word is a different piece. The
rules, applied in order:

- lower-case; curly quotes become straight ones;
- ``"`` opening a quote (after a space or bracket, or at the start) becomes `````, any other ``''``;
  a ``'`` opening a quote becomes ````` unless it starts a clitic ('s, 'em, 'til, ...) or a number ('60s);
- clitics split off their word: ``n't`` (``can't`` -> ``ca n't``, ``won't`` -> ``wo n't``), ``'s 're 've
  'll 'd 'm``;
- punctuation ``, ; : ( ) [ ] { } $ %``, runs of ``?`` / ``!`` and ``--`` / ``...`` become tokens; a word's
  final ``.`` splits off unless the word is an abbreviation (``mr.``, ``etc.``, ``u.s.``, an initial
  ``j.`` but not ``i.`` / ``a.``);
  hyphens, ``&``, ``*``, numbers (``1.8``, ``3,000``) and inner apostrophes (``o'fallon``) stay;
- runs of whitespace become one space.

Text already in this form stays as it is (SST-2's sentences pass through all but unchanged), so a model
trained on it reads raw text at prediction time (``predict "It's not good"``) the way it was trained.
"""

from __future__ import annotations

import re
from collections.abc import Callable

__all__ = ["PRETOKENIZERS", "ptb", "pretokenizer"]

_CURLY = str.maketrans({"\u201c": '"', "\u201d": '"', "\u2018": "'", "\u2019": "'", "\u2013": "--",
                        "\u2014": "--", "\u2026": "..."})
_OPEN_DOUBLE = re.compile(r'(^|[\s(\[{<])"')
_CLITICS = r"(?:s|re|ve|ll|d|m|em|til|n|t)"
_OPEN_SINGLE = re.compile(rf"(^|[\s(\[{{<])'(?!{_CLITICS}\b)(?=[^\W\d])")  # not '60s
_NOT = re.compile(r"(?<=\w)(n't)\b")
_CLITIC = re.compile(r"(?<=[a-z])('(?:s|re|ve|ll|d|m))\b")
_CLOSE_SINGLE = re.compile(r"(?<=[\w.,!?])'(?=\s|$|[.,;:!?)\]}])")
_PUNCT = re.compile(r"(\.\.\.+|--+|[?!]+|[,;:()\[\]{}$%]|``|'')")
_NUMBER_COMMA = re.compile(r"(?<=\d) , (?=\d{3}\b)")  # "3,000" stays one token
_FINAL_DOT = re.compile(r"(?<![.\s])\.(?=\s|$)")
_SPACES = re.compile(r"\s+")
#: Words whose final period is part of them (SST-2 keeps these whole).
ABBREVIATIONS = frozenset("mr mrs ms dr st jr sr vs etc inc co ltd no vol pp ed rev gen lt sgt prof mt "
                          "jan feb mar apr jun jul aug sep sept oct nov dec al bros".split())


def _split_final_dot(match: re.Match, text: str) -> str:
    start = text.rfind(" ", 0, match.start()) + 1
    word = text[start:match.start()]
    if word in ABBREVIATIONS or "." in word or (len(word) == 1 and word.isalpha() and word not in "ai"):
        return "."
    return " ."


def ptb(text: str) -> str:
    """``text`` lower-cased and split into Penn Treebank tokens, as SST-2 is written (see the module)."""
    text = text.translate(_CURLY).lower()
    text = _OPEN_DOUBLE.sub(r"\1 `` ", text).replace('"', " '' ")
    text = _OPEN_SINGLE.sub(r"\1 ` ", text)
    text = _NOT.sub(r" \1", text)
    text = _CLITIC.sub(r" \1", text)
    text = _CLOSE_SINGLE.sub(" ' ", text)
    text = _NUMBER_COMMA.sub(",", _PUNCT.sub(r" \1 ", text))
    text = _FINAL_DOT.sub(lambda m: _split_final_dot(m, text), text)
    return _SPACES.sub(" ", text).strip()


PRETOKENIZERS: dict[str, Callable[[str], str]] = {"ptb": ptb}


def pretokenizer(name: str | None) -> Callable[[str], str] | None:
    """The function named ``name`` (None or "none": no pretokenization); an unknown name is a ValueError."""
    if name in (None, "none"):
        return None
    if name not in PRETOKENIZERS:
        raise ValueError(f"pretokenize {name!r} is not valid; choose none or one of: {', '.join(PRETOKENIZERS)}")
    return PRETOKENIZERS[name]
