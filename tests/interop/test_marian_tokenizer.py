"""Marian's tokenizer (two sentencepiece models, one vocab.json) against `transformers`' MarianTokenizer on a
checkpoint directory written here: ids on both sides, pieces missing from one side's vocabulary, language
codes, decoding, save/load; bad files name themselves."""

from __future__ import annotations

import json

import pytest
from hf_parity import MARIAN_SRC, MARIAN_TGT, write_tiny_marian

from transformers_zoo.corpora import DataError
from transformers_zoo.tokenizers import MarianTokenizer, load_tokenizer

transformers = pytest.importorskip("transformers", reason="the Marian tokenizer tests compare against transformers")
pytestmark = pytest.mark.filterwarnings("ignore:Recommended. pip install sacremoses")

TEXTS = [*MARIAN_SRC[:5], *MARIAN_TGT[:5], "  extra   spaces  ", "Größe ÄÖÜ ß", "", "unseen ~ §µ 中文 🙂",
         ">>de<< A man rides a bike.", "x" * 50]


@pytest.fixture(scope="module")
def marian_dir(tmp_path_factory):
    return write_tiny_marian(tmp_path_factory.mktemp("marian"))


@pytest.fixture(scope="module")
def hf_tok(marian_dir):
    return transformers.MarianTokenizer.from_pretrained(marian_dir)


def test_source_ids_match_transformers(marian_dir, hf_tok):
    ours, _ = MarianTokenizer.pair_from_hf(marian_dir)
    for text in TEXTS:
        assert [*ours.encode(text), ours.eos_id] == hf_tok(text)["input_ids"], text


def test_target_ids_match_transformers(marian_dir, hf_tok):
    _, ours = MarianTokenizer.pair_from_hf(marian_dir)
    for text in TEXTS:
        assert [*ours.encode(text), ours.eos_id] == hf_tok(text_target=text)["input_ids"], text


def test_sides_differ_and_unknown_pieces_are_unk(marian_dir):
    src, tgt = MarianTokenizer.pair_from_hf(marian_dir)
    german = MARIAN_TGT[0]
    assert src.encode(german) != tgt.encode(german)  # each side splits with its own model
    assert src.unk_id in src.encode("unseen §µ")
    assert (src.eos_id, src.unk_id, src.pad_id) == (0, 1, src.vocab_size - 1)
    assert tgt.bos_id == tgt.pad_id  # Marian decodes from <pad>


def test_decode_matches_transformers(marian_dir, hf_tok):
    _, tgt = MarianTokenizer.pair_from_hf(marian_dir)
    for text in TEXTS:
        ids = hf_tok(text_target=text)["input_ids"]
        ids = [tgt.pad_id, *ids, tgt.pad_id]  # decoder start and padding: dropped as specials
        assert tgt.decode(ids) == hf_tok.decode(ids, skip_special_tokens=True, use_source_tokenizer=False), text
    assert tgt.decode(tgt.encode(MARIAN_TGT[1])) == MARIAN_TGT[1]


def test_save_load_keeps_side_and_fingerprint(marian_dir, tmp_path):
    src, tgt = MarianTokenizer.pair_from_hf(marian_dir)
    assert src.fingerprint != tgt.fingerprint
    for tok in (src, tgt):
        back = load_tokenizer(tok.save(tmp_path / tok.side))
        assert (back.side, back.fingerprint, back.encode(TEXTS[2])) == (tok.side, tok.fingerprint, tok.encode(TEXTS[2]))
        assert back.special_ids == tok.special_ids and back.bos_id == tok.pad_id


def test_bad_files_name_themselves(marian_dir, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("source.spm", "target.spm"):
        (broken / name).write_bytes((marian_dir / name).read_bytes())
    with pytest.raises(DataError, match=r"vocab\.json.*file not found"):
        MarianTokenizer.from_hf(broken)
    (broken / "vocab.json").write_text('{"</s>": 0, "<unk>": 1,')
    with pytest.raises(DataError, match=r"vocab\.json.*not valid JSON"):
        MarianTokenizer.from_hf(broken)
    (broken / "vocab.json").write_text(json.dumps({"</s>": 0, "<unk>": 1}))
    with pytest.raises(DataError, match=r"vocab\.json.*lacks the special token\(s\) <pad>"):
        MarianTokenizer.from_hf(broken)
    (broken / "target.spm").unlink()
    (broken / "vocab.json").write_text(json.dumps({"</s>": 0, "<unk>": 1, "<pad>": 2}))
    with pytest.raises(DataError, match=r"target\.spm.*file not found"):
        MarianTokenizer.from_hf(broken)
    (broken / "tokenizer_config.json").write_text('{"separate_vocabs": true}')
    with pytest.raises(DataError, match=r"tokenizer_config\.json.*separate_vocabs"):
        MarianTokenizer.from_hf(broken)
