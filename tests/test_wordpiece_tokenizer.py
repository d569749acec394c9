"""BERT's WordPiece tokenizer, token for token against Hugging Face's (the Python BasicTokenizer +
WordpieceTokenizer, and the `tokenizers`-backed one) on tricky text, with a vocabulary written here."""

from __future__ import annotations

import json

import pytest

from transformers_zoo.corpora import DataError
from transformers_zoo.tokenizers import WordPieceTokenizer, load_tokenizer

transformers = pytest.importorskip("transformers", reason="the WordPiece parity tests compare against transformers")

SPECIALS = ["[PAD]", "[unused0]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# words, continuations that only a longest-first match finds, accented and cased forms, CJK, punctuation
VOCAB = SPECIALS + [
    "un", "##aff", "##able", "##a", "##ff", "##abl", "##e", "want", "##ed", "running", "run", "##ning", "##n",
    "the", "movie", "was", "great", "a", "b", "c", "d", "e", "##b", "##c", "##d", "cafe", "café", "naive",
    "naïve", "Cafe", "Café", "The", "Movie", "WAS", "resume", "##s", "i", "don", "t", "isn", "o", "k",
    "中", "国", "人", "日", "本", "語", "の", "한", "국", "hello", "world", "!", ",", ".", "'", "-", "?", "$",
    "^", "`", "~", "(", ")", "[", "]", "{", "}", "\"", ";", ":", "/", "@", "#", "…", "—", "«", "»", "¿",
    "x", "##x", "ﬁ", "fi", "s", "##t", "##r", "##i", "##o", "##k", "σ", "ς", "οδος", "ΟΔΟΣ",
]

TEXTS = [
    "unaffable", "unwanted running", "The movie WAS great!", "  leading and   trailing  \t\n",
    "café Café CAFÉ cafe\u0301",  # composed and decomposed accents (NFC makes them equal)
    "naïve résumé", "I don't, isn't o.k.?", "hello-world!...", "$5^2 `x` ~a (b) [c] {d}",
    "«quoted» ¿qué? — dash… end", "中国人 日本語の テキスト", "한국 한국어", "a\u200bb",  # zero-width space (Cf)
    "a\x00b\ufffdc\x07d", "tab\there\rreturn\nline", "non\u00a0breaking\u2003space", "x" * 100, "x" * 101,
    "x" * 150 + " run", "unknownword run", "ﬁ fi", "ΟΔΟΣ οδος", "", "   ", "\u0301 lone combining mark",
    "emoji 🙂 run", "runs ##s run##",
    "[ MASK ] and [ CLS ]",  # (Hugging Face reads "[MASK]" itself as the special token; ours spells it out)
]

SETTINGS = [
    {},  # BERT uncased: lower-case and strip accents
    {"do_lower_case": False},  # cased: keep both
    {"do_lower_case": True, "strip_accents": False},
    {"do_lower_case": False, "strip_accents": True},
    {"tokenize_chinese_chars": False},
]


@pytest.fixture(scope="module")
def vocab_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("bert")
    (d / "vocab.txt").write_text("".join(f"{piece}\n" for piece in VOCAB), encoding="utf-8")
    return d


def hf_tokenizers(vocab_dir, settings):
    from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

    slow = BertTokenizerLegacy(str(vocab_dir / "vocab.txt"), **settings)
    fast = transformers.BertTokenizer(vocab={p: i for i, p in enumerate(VOCAB)}, **settings)
    return slow, fast


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()) or "default")
def test_ids_equal_hugging_face_slow_and_fast(vocab_dir, settings):
    ours = WordPieceTokenizer.from_vocab_file(vocab_dir / "vocab.txt", **settings)
    slow, fast = hf_tokenizers(vocab_dir, settings)
    for text in TEXTS:
        expected = slow.encode(text, add_special_tokens=False)
        assert ours.encode(text) == expected, text
        assert [ours.id_to_piece(i) for i in ours.encode(text)] == slow.convert_ids_to_tokens(expected)
        # Where the Rust tokenizer differs from the Python one we follow Python's: it does no NFC (decomposed
        # accents differ when they are kept) and lower-cases a word-final capital sigma to the final form
        kept_accents = not (ours.strip_accents or ours.do_lower_case and ours.strip_accents is not False)
        if not ("\u0301" in text and kept_accents or "Σ" in text and ours.do_lower_case):
            assert ours.encode(text) == fast.encode(text, add_special_tokens=False), text


def test_the_checks_bite(vocab_dir):
    """Inputs on which a plausible wrong implementation differs: longest match first, the 100-character
    limit, NFC, accents, CJK, control characters, ASCII symbols as punctuation."""
    tok = WordPieceTokenizer.from_vocab_file(vocab_dir / "vocab.txt")
    pieces = lambda text: [tok.id_to_piece(i) for i in tok.encode(text)]
    assert pieces("unaffable") == ["un", "##aff", "##able"]  # not un ##a ##ff ...
    assert pieces("x" * 100) == ["x"] + ["##x"] * 99 and pieces("x" * 101) == ["[UNK]"]
    assert pieces("unknownword run") == ["[UNK]", "run"]  # the whole word, not its first pieces
    assert pieces("CAFÉ naïve") == ["cafe", "naive"]
    assert pieces("中国人") == ["中", "国", "人"] and pieces("한국") == ["[UNK]"]  # Hangul is not split
    assert pieces("a\x00b\u200bc") == ["a", "##b", "##c"]  # NUL and zero-width space removed: one word
    assert pieces("$5^`~") == ["$", "[UNK]", "^", "`", "~"]
    cased = WordPieceTokenizer.from_vocab_file(vocab_dir / "vocab.txt", do_lower_case=False)
    assert [cased.id_to_piece(i) for i in cased.encode("Cafe\u0301 café")] == ["Café", "café"]  # NFC


def test_specials_come_from_the_vocabulary(vocab_dir):
    tok = WordPieceTokenizer.from_vocab_file(vocab_dir / "vocab.txt")
    assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id) == (0, 2, 3, 4, 5)
    assert tok.bos_id is None and tok.eos_id is None and tok.vocab_size == len(VOCAB)
    assert tok.special_ids == {0, 2, 3, 4, 5}
    ids = tok.encode("The movie was great!")
    assert tok.decode([tok.cls_id, *ids, tok.sep_id, tok.pad_id]) == "the movie was great !"
    assert tok.decode(tok.encode("unaffable, running")) == tok.normalize("unaffable, running") == "unaffable , running"
    bad = vocab_dir.parent / "bad"
    bad.mkdir()
    (bad / "vocab.txt").write_text("[PAD]\n[UNK]\nhello\n")
    with pytest.raises(DataError, match=r"bad/vocab.txt: .*\[CLS\], \[SEP\]"):
        WordPieceTokenizer.from_vocab_file(bad / "vocab.txt")
    with pytest.raises(DataError, match="vocab.txt: file not found"):
        WordPieceTokenizer.from_hf(vocab_dir.parent)


def test_reads_tokenizer_config_and_saves_and_loads(vocab_dir, tmp_path):
    hf_dir = tmp_path / "hf"
    hf_dir.mkdir()
    (hf_dir / "vocab.txt").write_bytes((vocab_dir / "vocab.txt").read_bytes())
    (hf_dir / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False}))
    cased = WordPieceTokenizer.from_hf(hf_dir)
    assert cased.do_lower_case is False and cased.encode("Café") == [VOCAB.index("Café")]
    uncased = WordPieceTokenizer.from_vocab_file(hf_dir / "vocab.txt")
    assert uncased.fingerprint != cased.fingerprint  # same vocabulary, other settings: another tokenizer
    again = load_tokenizer(cased.save(tmp_path / "saved"))
    assert isinstance(again, WordPieceTokenizer) and again.fingerprint == cased.fingerprint
    assert again.encode("Café naïve ΟΔΟΣ") == cased.encode("Café naïve ΟΔΟΣ")
    # the saved folder is a Hugging Face vocabulary too
    from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

    hf = BertTokenizerLegacy(str(tmp_path / "saved" / "vocab.txt"), do_lower_case=False)
    assert hf.encode("Café naïve", add_special_tokens=False) == cased.encode("Café naïve")
    (hf_dir / "tokenizer_config.json").write_text(json.dumps({"unk_token": "<unk>"}))
    with pytest.raises(DataError, match="tokenizer_config.json: unk_token='<unk>'"):
        WordPieceTokenizer.from_hf(hf_dir)
