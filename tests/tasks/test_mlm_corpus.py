"""Packed MLM blocks (RoBERTa's FULL-SENTENCES): whole sentences, document separators, nothing lost or reordered;
the resumable masked stream; held-out documents; the tokenizer's sentence sample; n-gram contamination."""

from __future__ import annotations

import pytest
import torch

from transformers_zoo.batching import IGNORE_INDEX
from transformers_zoo.corpora import DataError
from transformers_zoo.tasks.mlm_corpus import (
    ngram_overlap,
    pack_documents,
    packed_mlm_stream,
    sample_sentences,
    split_documents,
    split_sentences,
)
from transformers_zoo.tokenizers import CLS, PAD, SEP, SentencePieceTokenizer

DOCS = [
    "The film was wonderful. I laughed a lot! Would you watch it again? Yes.",
    "Terrible acting.\nThe plot made no sense at all, and the ending was worse than the beginning.",
    "A short one.",
    "It was fine (mostly.) The music, however, was grand. " * 6,
    "Word " * 80 + "end.",  # one sentence longer than a block
]


@pytest.fixture(scope="module")
def tokenizer() -> SentencePieceTokenizer:
    texts = [s for d in DOCS for s in split_sentences(d)] * 3
    return SentencePieceTokenizer.train(texts, vocab_size=320, model_type="bpe", hard_vocab_limit=False)


def test_split_sentences():
    assert split_sentences('Great film! I said "wow." Then\nwe left. (Really.) ok ') == [
        "Great film!", 'I said "wow."', "Then", "we left.", "(Really.)", "ok"]
    assert split_sentences("  \n ") == []


def test_blocks_hold_whole_sentences_in_order(tokenizer):
    block_len = 32
    packed = pack_documents(tokenizer, DOCS, block_len)
    assert packed.blocks.shape == (len(packed), block_len) and packed.blocks.dtype == torch.int32
    assert packed.n_documents == len(DOCS)
    stream: list[int] = []
    interior_seps = 0
    for row, n in zip(packed.blocks.tolist(), packed.lengths.tolist(), strict=True):
        assert row[0] == CLS and row[n - 1] == SEP and all(t == PAD for t in row[n:]) and n <= block_len
        stream.extend(row[1 : n - 1])
        interior_seps += row[1 : n - 1].count(SEP)  # a document ending inside a block
    # nothing lost, added or reordered: the sentences' ids of every document, in order
    expected = [t for doc in DOCS for ids in tokenizer.encode_batch(split_sentences(doc)) for t in ids]
    assert [t for t in stream if t != SEP] == expected
    assert 1 <= interior_seps < len(DOCS)
    # a sentence that fits in a block is never cut: it lies inside a single block
    rows = packed.rows()
    fitting = [ids for doc in DOCS for ids in tokenizer.encode_batch(split_sentences(doc)) if len(ids) <= block_len - 3]
    assert len(fitting) > 5
    for ids in fitting:
        assert any(_contains(r, ids) for r in rows), ids
    # the sentence longer than a block is cut into full blocks
    assert (packed.lengths == block_len).sum() >= 2
    assert 0.5 < packed.fill() <= 1.0


def _contains(row: list[int], ids: list[int]) -> bool:
    return any(row[i : i + len(ids)] == ids for i in range(len(row) - len(ids) + 1))


def test_packing_errors(tokenizer):
    with pytest.raises(DataError, match="no text"):
        pack_documents(tokenizer, ["   ", "\n"], 32)
    with pytest.raises(ValueError, match="block_len must be >= 8"):
        pack_documents(tokenizer, DOCS, 4)


def test_stream_is_resumable_and_masks_only_real_tokens(tokenizer):
    packed = pack_documents(tokenizer, DOCS * 4, 16)
    make = lambda: packed_mlm_stream(packed, 3, seed=5, tokenizer=tokenizer, vocab_size=tokenizer.vocab_size,
                                     mlm_probability=0.3)
    full = [next(s) for s in [make()] for _ in range(3 * (len(packed) // 3) + 4)]  # past an epoch's end
    for stop in (1, len(packed) // 3, len(packed) // 3 + 2):
        first = make()
        for _ in range(stop):
            next(first)
        resumed = make()
        resumed.load_state_dict(first.state_dict())
        for expected in full[stop : stop + 3]:
            got = next(resumed)
            assert all(torch.equal(got[k], expected[k]) for k in ("input_ids", "labels"))
    batch = full[0]
    chosen = batch["labels"] != IGNORE_INDEX
    assert chosen.any()
    assert not torch.isin(batch["labels"][chosen], torch.tensor(sorted(tokenizer.special_ids))).any()
    # a new epoch reorders the blocks and masks afresh
    per_epoch = len(packed) // 3
    assert not torch.equal(full[0]["input_ids"], full[per_epoch]["input_ids"])


def test_split_documents_is_by_text_and_disjoint():
    docs = [f"review number {i}." for i in range(400)] + ["review number 7."]  # a duplicate
    train, held = split_documents(docs, 0.05)
    again_train, again_held = split_documents(list(reversed(docs)), 0.05)
    assert set(held) == set(again_held) and not set(train) & set(held)
    assert 5 < len(set(held)) < 40 and len(train) + len(held) == len(docs)
    assert split_documents(["a", "b"], 0.001)[1]  # at least one held out
    with pytest.raises(DataError, match="at least 2 distinct documents"):
        split_documents(["same", "same"], 0.1)


def test_sentence_sample_is_deterministic_and_spread():
    docs = [f"First {i}. Second {i}." for i in range(100)]
    sample = sample_sentences(docs, 20)
    assert len(sample) == 20 and sample == sample_sentences(list(docs), 20)
    assert max(int(s.split()[1].rstrip(".")) for s in sample) > 50  # not just the first documents
    assert len(sample_sentences(docs, 1000)) == 200


def test_ngram_overlap_finds_shared_text_across_tokenization():
    corpus = ["I thought it's a charming and often affecting journey, honestly.", "Nothing in common here."]
    texts = ["it 's a charming and often affecting journey . ", "a completely different sentence of some length",
             "too short"]
    out = ngram_overlap(corpus, texts, n=6)
    assert out["texts"] == 2 and out["contaminated"] == 1 and out["contaminated_fraction"] == 0.5
    assert out["examples"][0]["text"] == texts[0] and "charming and often" in out["examples"][0]["ngram"]
    assert 0.0 < out["ngram_fraction"] < 1.0
    assert ngram_overlap(corpus, texts[1:], n=6)["contaminated"] == 0


@pytest.mark.parametrize("corpus, lang", [("captions", "en"), ("captions-de", "de")])
def test_caption_corpus_is_the_training_captions_held_out_val_never_test(shared_data_dir, corpus, lang):
    """mlm.py --corpus captions: the text embed.py trains on (for --init), its report's test split never read."""
    from transformers_zoo.corpora import load_multi30k_captions
    from transformers_zoo.tasks.pretraining import PretrainDataSettings, pretrain_documents

    train, held, what = pretrain_documents(PretrainDataSettings(corpus=corpus), str(shared_data_dir))
    images = load_multi30k_captions(str(shared_data_dir), lang, ("train", "val", "test_2016"))
    assert len(train) == 5 * 29000 and train == [c for group in images["train"] for c in group]
    assert held == [c for group in images["val"] for c in group]
    assert f"({lang})" in what
