"""Streamed text from token ids: never half a character, never the start of a stop string that may follow."""

from __future__ import annotations

import pytest

from transformers_zoo.tokenizers import CharTokenizer, GPT2Tokenizer
from transformers_zoo.tokenizers.stream import TextStream


def pieces(stream: TextStream, ids: list[int]) -> list[str]:
    out = [stream.push(i) for i in ids if not stream.stopped]
    return [*out, stream.flush()]


def test_byte_level_tokens_never_split_a_character(shared_data_dir):
    tok = GPT2Tokenizer.fetch(shared_data_dir)
    text = "naïve café — 東京 🙂 ok"
    ids = tok.encode(text)
    assert len(ids) > len(text.split())  # some characters take several byte tokens
    out = pieces(TextStream(tok), ids)
    assert "".join(out) == text and not any("\ufffd" in p for p in out)


@pytest.mark.parametrize("stop, want", [("sat", "the cat "), ("t s", "the ca"), ("mat", "the cat sat on the "),
                                        ("dog", "the cat sat on the mat")])
def test_stop_strings_end_the_text_and_are_never_shown(stop, want):
    tok = CharTokenizer.train("the cat sat on the mat")
    stream = TextStream(tok, [stop, "zz"])
    out = pieces(stream, tok.encode("the cat sat on the mat"))
    assert "".join(out) == want and stream.stopped == (stop != "dog")


def test_a_possible_start_of_a_stop_string_is_held_back_until_it_is_not_one():
    tok = CharTokenizer.train("the cat sat on the mat")
    stream = TextStream(tok, ["t s"])
    assert "".join(stream.push(i) for i in tok.encode("the cat")) == "the ca"  # "t" may start "t s"
    assert stream.push(tok.encode("o")[0]) == "to"  # it did not
