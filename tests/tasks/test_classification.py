"""Classification inputs: how long texts are cut (head, or head and tail for long reviews)."""

from __future__ import annotations

import pytest

from transformers_zoo.tasks.classification import encode_examples


class Words:
    """A tokenizer stand-in whose ids are the words' numbers: cuts are easy to read."""

    def encode_batch(self, texts):
        return [[int(w) for w in t.split()] for t in texts]


def test_head_and_head_tail_truncation():
    text = " ".join(str(i) for i in range(1, 21))  # 20 tokens
    examples = [(text, 1), ("1 2 3", 0)]
    head, n_cut = encode_examples(Words(), examples, 8)
    assert n_cut == 1 and head == [([1, 2, 3, 4, 5, 6, 7, 8], 1), ([1, 2, 3], 0)]
    both, n_cut = encode_examples(Words(), examples, 8, "head_tail")
    assert n_cut == 1 and both == [([1, 2, 15, 16, 17, 18, 19, 20], 1), ([1, 2, 3], 0)]  # a quarter, then the end
    with pytest.raises(ValueError, match="truncation 'tail' is not valid"):
        encode_examples(Words(), examples, 8, "tail")
