"""tokenizers: fixed special ids, round trips on the real test sets, the training cache, save/load."""

from __future__ import annotations

import json

import pytest
import torch

from transformers_zoo.corpora import DataError, read_labelled_tsv, read_parallel, read_text
from transformers_zoo.tokenizers import (
    SPECIAL_PIECES,
    CharTokenizer,
    SentencePieceTokenizer,
    load_tokenizer,
    train_tokenizer,
)

TEST_SPLITS = ("test_2016_flickr", "test_2017_flickr", "test_2017_mscoco")


@pytest.fixture(scope="module")
def texts(shared_data_dir):
    """Training slice (Multi30k en+de, SST-2 train) and held-out texts (Multi30k tests, SST-2 dev)."""
    m30k = shared_data_dir / "multi30k"
    train = read_parallel(m30k / "train.en.gz", m30k / "train.de.gz")[:3000]
    sst_train, _ = read_labelled_tsv(shared_data_dir / "sst2" / "train.tsv")
    held_out = [s for split in TEST_SPLITS
                for pair in read_parallel(m30k / f"{split}.en.gz", m30k / f"{split}.de.gz") for s in pair]
    held_out += [s for s, _ in read_labelled_tsv(shared_data_dir / "sst2" / "dev.tsv")[0]]
    return {"train": [s for pair in train for s in pair] + [s for s, _ in sst_train[:3000]], "test": held_out}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("spm-cache")


@pytest.fixture(scope="module")
def bpe(texts, cache_dir):
    return SentencePieceTokenizer.train(texts["train"], 3000, model_type="bpe", cache_dir=cache_dir)


def test_special_ids_fixed(bpe):
    chars = CharTokenizer.train("hello")
    for tok in (bpe, chars):
        assert (tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id, tok.mask_id, tok.cls_id, tok.sep_id) == tuple(
            range(7))
        assert tok.special_ids == set(range(7))
        assert [tok.id_to_piece(i) for i in range(7)] == list(SPECIAL_PIECES)
    assert bpe.vocab_size == 3000
    assert bpe.sp.pad_id() == 0 and bpe.sp.unk_id() == 1 and bpe.sp.bos_id() == 2 and bpe.sp.eos_id() == 3
    # control symbols: literal "[MASK]" in text is spelled out, never the mask id
    assert not set(bpe.encode("a [MASK] b [CLS] [SEP] <s>")) & bpe.special_ids


def test_round_trip_on_test_sets(bpe, texts):
    held_out = texts["test"]
    assert len(held_out) == 2 * (1000 + 1000 + 461) + 872
    decoded = [bpe.decode(ids) for ids in bpe.encode_batch(held_out)]
    assert decoded == [bpe.normalize(x) for x in held_out]  # exact up to sentencepiece's normalisation
    changed = [x for x in held_out if bpe.normalize(x) != x]
    assert len(changed) <= 25  # all of them lines with a double space, which normalisation collapses
    assert all("  " in x for x in changed)
    unseen = "Ünïcödé ★ 日本語"  # characters missing from the vocabulary: byte fallback
    assert bpe.decode(bpe.encode(unseen)) == unseen


def test_decode_drops_specials_and_takes_tensors(bpe):
    ids = bpe.encode("A dog runs.")
    with_specials = [bpe.cls_id, bpe.bos_id, *ids, bpe.eos_id, bpe.pad_id, bpe.pad_id]
    assert bpe.decode(with_specials) == "A dog runs."
    assert bpe.decode(torch.tensor(with_specials)) == "A dog runs."
    assert bpe.encode_batch(["A dog runs.", "x"]) == [ids, bpe.encode("x")]


def test_training_cache(bpe, texts, cache_dir):
    again = SentencePieceTokenizer.train(texts["train"], 3000, model_type="bpe", cache_dir=cache_dir)
    assert again.from_cache and again.fingerprint == bpe.fingerprint
    fresh = SentencePieceTokenizer.train(texts["train"], 3000, model_type="bpe")  # no cache: trains again
    assert not fresh.from_cache and fresh.fingerprint == bpe.fingerprint  # training is deterministic
    smaller = SentencePieceTokenizer.train(texts["train"], vocab_size=2000, cache_dir=cache_dir)
    assert not smaller.from_cache and smaller.fingerprint != bpe.fingerprint
    other_texts = SentencePieceTokenizer.train(texts["train"][:-1], vocab_size=2000, cache_dir=cache_dir)
    assert not other_texts.from_cache and other_texts.fingerprint != smaller.fingerprint
    assert len(list(cache_dir.iterdir())) == 3  # no temp folders left


def test_unigram_trains_deterministically(texts):
    first = SentencePieceTokenizer.train(texts["train"][:2000], vocab_size=1500, model_type="unigram")
    second = SentencePieceTokenizer.train(texts["train"][:2000], vocab_size=1500, model_type="unigram")
    assert first.fingerprint == second.fingerprint
    assert [first.id_to_piece(i) for i in range(7)] == list(SPECIAL_PIECES)


def test_save_load_identical(bpe, texts, tmp_path):
    bpe.save(tmp_path / "tok")
    config = json.loads((tmp_path / "tok" / "tokenizer.json").read_text())
    assert config["kind"] == "sentencepiece" and config["fingerprint"] == bpe.fingerprint
    loaded = load_tokenizer(tmp_path / "tok")
    assert isinstance(loaded, SentencePieceTokenizer) and loaded.fingerprint == bpe.fingerprint
    sample = texts["test"][:500]
    assert loaded.encode_batch(sample) == bpe.encode_batch(sample)


def test_load_refuses_changed_or_missing_model(bpe, tmp_path):
    with pytest.raises(DataError, match=r"tokenizer\.json: file not found"):
        load_tokenizer(tmp_path / "nothing")
    CharTokenizer.train("abc").save(tmp_path / "tok")
    bpe.save(tmp_path / "other")
    (tmp_path / "tok" / "chars.json").write_text('["a", "b", "c", "d"]')
    with pytest.raises(DataError, match=r"chars\.json: model file does not match the fingerprint"):
        load_tokenizer(tmp_path / "tok")


def test_char_tokenizer(shared_data_dir, tmp_path):
    text = read_text(shared_data_dir / "tinyshakespeare" / "input.txt")
    tok = CharTokenizer.train(text)
    assert tok.vocab_size == 7 + len(set(text)) == 72
    assert tok.chars == sorted(set(text))
    ids = tok.encode(text[:5000])
    assert min(ids) >= 7 and tok.decode(ids) == text[:5000]
    assert tok.encode("a\u00e9") == [tok.encode("a")[0], tok.unk_id]
    tok.save(tmp_path / "chars")
    loaded = load_tokenizer(tmp_path / "chars")
    assert isinstance(loaded, CharTokenizer) and loaded.fingerprint == tok.fingerprint
    assert loaded.encode(text[:1000]) == tok.encode(text[:1000])
    assert CharTokenizer.train(["ab", "c"]).fingerprint == CharTokenizer.train("cba").fingerprint
    assert CharTokenizer.train("abd").fingerprint != CharTokenizer.train("abc").fingerprint


def test_train_tokenizer_errors_name_the_setting_not_a_flag():
    # the library knows settings, not flags (only cli.py does)
    with pytest.raises(ValueError, match=r"^tokenizer 'wordpiece' is not valid; choose one of: char, bpe"):
        train_tokenizer("wordpiece", ["a b c"], 1000)
    with pytest.raises(ValueError, match=r"^vocab 100 is too small: the 7 specials and 256 byte pieces"):
        train_tokenizer("bpe", ["a b c"], 100)
    with pytest.raises(ValueError, match=r"^vocab 5000: sentencepiece could not train the source vocabulary: "):
        train_tokenizer("bpe", ["a b c"], 5000, what="source")
