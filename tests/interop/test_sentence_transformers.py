"""sentence-transformers checkpoints: a tiny random BERT wrapped in Transformer -> Pooling [-> Normalize], saved by
sentence-transformers itself; ours embeds to 1e-5 of `SentenceTransformer.encode`, exports back, and refuses
what it cannot express in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

st = pytest.importorskip("sentence_transformers")
try:  # sentence-transformers >= 5 moved its modules; 2.x-4.x have them in `models`
    from sentence_transformers.sentence_transformer import modules as st_models  # noqa: E402
except ImportError:
    from sentence_transformers import models as st_models  # noqa: E402
transformers = pytest.importorskip("transformers")

from transformers_zoo.interop.files import ConversionError  # noqa: E402
from transformers_zoo.interop.sentence_transformers import (  # noqa: E402
    export_sentence_transformer,
    load_sentence_transformer,
)

WORDS = ["the", "a", "dog", "cat", "man", "woman", "runs", "sleeps", "park", "in", "on", "red", "bike", "rides",
         "##s", "##ing", "two", "play", "ball", ".", ","]
TEXTS = ["A dog runs in the park.", "two cats sleep", "A man rides a red bike, in the park on a bike.",
         "women playing ball", "dog", "the the the the the the the the the the the the the the the the the the"]


def build(tmp_path, pooling: str, normalize: bool, max_seq_length: int = 16):
    """A random BertModel with a WordPiece vocabulary, wrapped and saved by sentence-transformers."""
    folder = tmp_path / "bert"
    folder.mkdir()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *"abcdefghijklmnopqrstuvwxyz"]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    transformers.BertTokenizerFast(str(folder / "vocab.txt")).save_pretrained(folder)
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=64, max_position_embeddings=64)
    transformers.BertModel(cfg).save_pretrained(folder)
    modules = [st_models.Transformer(str(folder), max_seq_length=max_seq_length), st_models.Pooling(32, pooling)]
    model = st.SentenceTransformer(modules=modules + ([st_models.Normalize()] if normalize else []), device="cpu")
    model.save(str(tmp_path / "st"))
    return model, tmp_path / "st"


@pytest.mark.parametrize("pooling,normalize", [("mean", True), ("cls", False), ("max", True)])
def test_embed_equals_sentence_transformers(tmp_path, pooling, normalize):
    reference, folder = build(tmp_path, pooling, normalize)
    ours = load_sentence_transformer(folder)
    assert ours.model.config.pooling == pooling and ours.normalize == normalize and ours.max_tokens == 16
    expected = reference.encode(TEXTS, batch_size=4, convert_to_numpy=True)  # (the last text is truncated)
    np.testing.assert_allclose(ours.encode(TEXTS, batch_size=4), expected, atol=1e-5, rtol=0)

    out = export_sentence_transformer(ours, tmp_path / "exported")  # round trip, both ways
    again = load_sentence_transformer(out)
    np.testing.assert_allclose(again.encode(TEXTS), expected, atol=1e-5, rtol=0)
    np.testing.assert_allclose(st.SentenceTransformer(str(out), device="cpu").encode(TEXTS), expected,
                               atol=1e-5, rtol=0)


def test_unsupported_modules_are_one_line(tmp_path):
    _, folder = build(tmp_path, "mean", True)
    modules = json.loads((folder / "modules.json").read_text())
    dense = dict(modules[-1], path="2_Dense", type="sentence_transformers.models.Dense")
    (folder / "modules.json").write_text(json.dumps([*modules[:2], dense]))
    with pytest.raises(ConversionError, match=r"modules\.json: unsupported module 'Dense'") as err:
        load_sentence_transformer(folder)
    assert "\n" not in str(err.value)
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode": "weightedmean"}))
    with pytest.raises(ConversionError, match=r"config\.json: pooling weightedmean is not supported"):
        load_sentence_transformer(folder)
    with pytest.raises(ConversionError, match="not a sentence-transformers checkpoint"):
        load_sentence_transformer(tmp_path / "bert")
