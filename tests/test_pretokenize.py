"""pretokenize.ptb: raw text into SST-2's written form; SST-2's own text unchanged; the tokenizer setting."""

from __future__ import annotations

import json

import pytest

from transformers_zoo.corpora import read_labelled_tsv
from transformers_zoo.pretokenize import pretokenizer, ptb
from transformers_zoo.tokenizers import SentencePieceTokenizer, load_tokenizer, train_tokenizer

CASES = [
    ("I didn't like it, but it's the director's best film.",
     "i did n't like it , but it 's the director 's best film ."),
    ("You can't and won't; they're sure we'll see, I'd say I'm right.",
     "you ca n't and wo n't ; they 're sure we 'll see , i 'd say i 'm right ."),
    ('Of the "major" silents, one I loved (The Crowd)!', "of the `` major '' silents , one i loved ( the crowd ) !"),
    ("He said 'hello there' to me.", "he said ` hello there ' to me ."),
    ("Mr. Smith, a U.S. POW, paid $3,000 in 1933.", "mr. smith , a u.s. pow , paid $ 3,000 in 1933 ."),
    ("Wait... what?!? It was 1.8 hours -- too long", "wait ... what ?!? it was 1.8 hours -- too long"),
    ("The '60s: rock 'n' roll, R&B, ol' Haynes' work", "the '60s : rock 'n ' roll , r&b , ol ' haynes ' work"),
    ("Curly \u201cquotes\u201d and don\u2019t\u2026 World War I.", "curly `` quotes '' and do n't ... world war i ."),
    ("  spaced \n\n  out  ", "spaced out"),
]


@pytest.mark.parametrize(("raw", "expected"), CASES)
def test_ptb_writes_raw_text_as_sst2_does(raw, expected):
    assert ptb(raw) == expected
    assert ptb(expected) == expected  # idempotent: text in the form stays as it is


def test_sst2_text_passes_through_all_but_unchanged(shared_data_dir):
    rows, _ = read_labelled_tsv(shared_data_dir / "sst2" / "train.tsv")
    dev, _ = read_labelled_tsv(shared_data_dir / "sst2" / "dev.tsv")
    texts = [t for t, _ in rows + dev]
    changed = [t for t in texts if ptb(t) != " ".join(t.split())]
    assert len(texts) > 68_000 and len(changed) <= 20, changed[:5]  # "ol'", "wash.", "rock 'n' roll"


def test_pretokenizer_names():
    assert pretokenizer(None) is None and pretokenizer("none") is None and pretokenizer("ptb") is ptb
    with pytest.raises(ValueError, match="pretokenize 'nfc' is not valid; choose none or one of: ptb"):
        pretokenizer("nfc")
    with pytest.raises(ValueError, match="pretokenize 'ptb' needs a sentencepiece tokenizer"):
        train_tokenizer("char", "abc", pretokenize="ptb")


REVIEWS = ["I didn't like it. It's the director's worst film, and I can't say why.",
           'The "story" was fine; the acting wasn\'t. Mr. Smith (the lead) is great!',
           "Don't see it. Won't see it again. They're right: it isn't good.",
           ] * 40


def test_tokenizer_applies_it_in_training_encode_and_saving(tmp_path):
    tok = SentencePieceTokenizer.train(REVIEWS, 300, model_type="bpe", pretokenize="ptb")
    assert tok.encode("DIDN'T it's") == tok.encode("did n't it 's")
    assert tok.encode_batch(["Won't!", "x"]) == [tok.encode("wo n't !"), tok.encode("x")]
    assert tok.normalize("I didn't.") == "i did n't ." == tok.decode(tok.encode("I didn't."))
    assert not any(c.isupper() for i in tok.encode_batch(REVIEWS[:3])[0] for c in tok.id_to_piece(i))
    tok.save(tmp_path / "tok")
    assert json.loads((tmp_path / "tok" / "tokenizer.json").read_text())["settings"]["pretokenize"] == "ptb"
    loaded = load_tokenizer(tmp_path / "tok")
    assert loaded.fingerprint == tok.fingerprint and loaded.encode("Didn't") == tok.encode("did n't")
    # the same model file without the setting reads text differently, so it is another tokenizer
    bare = SentencePieceTokenizer(tok._model_bytes(), settings={k: v for k, v in tok.settings.items()
                                                                if k != "pretokenize"})
    assert bare.encode("Didn't") != tok.encode("Didn't") and bare.fingerprint != tok.fingerprint
    plain = SentencePieceTokenizer.train(REVIEWS, 300, model_type="bpe")
    assert "pretokenize" not in plain.settings and plain.encode("Didn't") != tok.encode("Didn't")


def test_cache_tells_the_settings_apart(tmp_path):
    with_ptb = SentencePieceTokenizer.train(REVIEWS, 300, model_type="bpe", cache_dir=tmp_path, pretokenize="ptb")
    without = SentencePieceTokenizer.train(REVIEWS, 300, model_type="bpe", cache_dir=tmp_path)
    again = SentencePieceTokenizer.train(REVIEWS, 300, model_type="bpe", cache_dir=tmp_path, pretokenize="ptb")
    assert not without.from_cache and again.from_cache
    assert again.fingerprint == with_ptb.fingerprint != without.fingerprint
    assert again.encode("Didn't") == with_ptb.encode("Didn't")
