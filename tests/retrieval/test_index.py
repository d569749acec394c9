"""retrieval: sentence vectors in input order, the on-disk index against brute-force numpy, and its errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from transformers_zoo import EncoderOnly, ModelConfig
from transformers_zoo.corpora import DataError
from transformers_zoo.retrieval import SentenceEncoder
from transformers_zoo.retrieval.documents import read_corpus
from transformers_zoo.retrieval.index import IndexFolderError, VectorIndex
from transformers_zoo.tokenizers.char import CharTokenizer

TEXTS = ["a dog runs in the park", "two cats sleep", "a man rides a red bike", "children play football",
         "the dog sleeps", "a woman reads a book on a bench", "cats", "a bike"]


def tiny_encoder(pooling: str = "mean", seed: int = 0, normalize: bool = True) -> SentenceEncoder:
    tok = CharTokenizer.train(" ".join(TEXTS))
    torch.manual_seed(seed)
    cfg = ModelConfig(vocab_size=tok.vocab_size, d_model=16, n_heads=2, n_layers=1, max_len=64, dropout=0.0,
                      pooling=pooling)
    return SentenceEncoder(EncoderOnly(cfg).eval(), tok, normalize=normalize, batch_size=3)


@pytest.mark.parametrize("pooling", ["cls", "mean", "max"])
def test_embed_is_each_text_alone_in_input_order(pooling):
    enc = tiny_encoder(pooling)
    batched = enc.encode(TEXTS)  # sorted by length, batches of 3, padded
    alone = np.concatenate([enc.encode([t]) for t in TEXTS])
    assert batched.shape == (len(TEXTS), 16)
    np.testing.assert_allclose(batched, alone, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    raw = tiny_encoder(pooling, normalize=False).encode(TEXTS)
    np.testing.assert_allclose(raw / np.linalg.norm(raw, axis=1, keepdims=True), batched, atol=1e-5)


def test_fingerprint_tells_encoders_apart():
    assert tiny_encoder(seed=0).fingerprint == tiny_encoder(seed=0).fingerprint
    assert tiny_encoder(seed=0).fingerprint != tiny_encoder(seed=1).fingerprint
    assert tiny_encoder(normalize=True).fingerprint != tiny_encoder(normalize=False).fingerprint


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_save_load_add_search_equals_brute_force(tmp_path, kind):
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((200, 8)).astype(np.float32)
    queries = rng.standard_normal((5, 8)).astype(np.float32)
    ids, texts = [f"d{i}" for i in range(200)], [f"text {i}" for i in range(200)]
    index = VectorIndex.create(8, "fp", kind)
    index.add(ids[:120], texts[:120], vectors[:120])
    index.save(tmp_path / "idx")
    again = VectorIndex.load(tmp_path / "idx", fingerprint="fp")
    again.add(ids[120:], texts[120:], vectors[120:])  # incremental
    again.save(tmp_path / "idx")  # replaces the folder whole
    loaded = VectorIndex.load(tmp_path / "idx")
    assert len(loaded) == 200 and sorted(p.name for p in tmp_path.iterdir()) == ["idx"]
    hits = loaded.search(queries, k=5)
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :5]
    for q in range(5):
        assert [h.id for h in hits[q]] == [ids[i] for i in exact[q]]
        assert hits[q][0].text == texts[exact[q][0]]
        np.testing.assert_allclose([h.score for h in hits[q]], (queries @ vectors.T)[q, exact[q]], rtol=1e-5)


def test_encoder_to_index_round_trip(tmp_path):
    enc = tiny_encoder()
    index = VectorIndex.create(enc.dim, enc.fingerprint)
    index.add([str(i) for i in range(len(TEXTS))], TEXTS, enc.encode(TEXTS))
    index.save(tmp_path / "idx")
    hits = VectorIndex.load(tmp_path / "idx", enc.fingerprint).search(enc.encode(TEXTS[2]), k=3)[0]
    assert hits[0].text == TEXTS[2] and abs(hits[0].score - 1.0) < 1e-5


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def test_index_errors_are_one_line(tmp_path):
    index = VectorIndex.create(8, "fp-a")
    with pytest.raises(IndexFolderError, match="empty") as err:
        index.add([], [], np.zeros((0, 8), np.float32))
    one_line(err)
    with pytest.raises(IndexFolderError, match=r"dimension mismatch.*\(2, 4\).*dimension 8") as err:
        index.add(["a", "b"], ["x", "y"], np.zeros((2, 4), np.float32))
    index.add(["a"], ["x"], np.ones((1, 8), np.float32))
    with pytest.raises(IndexFolderError, match="duplicate id 'a'"):
        index.add(["a"], ["x"], np.ones((1, 8), np.float32))
    with pytest.raises(IndexFolderError, match="dimension mismatch"):
        index.search(np.ones((1, 3), np.float32))
    index.save(tmp_path / "idx")
    with pytest.raises(IndexFolderError, match="another encoder") as err:
        VectorIndex.load(tmp_path / "idx", fingerprint="fp-b")
    one_line(err)
    with pytest.raises(IndexFolderError, match="no index here") as err:
        VectorIndex.load(tmp_path / "missing")
    one_line(err)
    bad = tmp_path / "bad"
    shutil.copytree(tmp_path / "idx", bad)
    (bad / "vectors.faiss").write_bytes(b"garbage")
    with pytest.raises(IndexFolderError, match="corrupted vectors.faiss") as err:
        VectorIndex.load(bad)
    one_line(err)
    shutil.rmtree(bad)
    shutil.copytree(tmp_path / "idx", bad)
    meta = json.loads((bad / "index.json").read_text())
    (bad / "index.json").write_text(json.dumps({**meta, "count": 5}))
    with pytest.raises(IndexFolderError, match="corrupted index: 1 vectors") as err:
        VectorIndex.load(bad)
    one_line(err)


def test_read_corpus_formats_and_errors(tmp_path):
    (tmp_path / "a.txt").write_text("first\nsecond\n")
    assert read_corpus(tmp_path / "a.txt") == (["1", "2"], ["first", "second"])
    (tmp_path / "a.tsv").write_text("id\tbody\nx7\thello\ny8\tworld\n")
    assert read_corpus(tmp_path / "a.tsv", column="body", id_column="id") == (["x7", "y8"], ["hello", "world"])
    (tmp_path / "a.jsonl").write_text('{"id": "q", "text": "one"}\n{"text": "two"}\n')
    assert read_corpus(tmp_path / "a.jsonl") == (["q", "2"], ["one", "two"])
    (tmp_path / "bad.jsonl").write_text('{"id": 1, "text": "ok"}\n{"id": 2, "text": \n')
    with pytest.raises(DataError, match=r"bad\.jsonl:2: not valid JSON"):
        read_corpus(tmp_path / "bad.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DataError, match="empty|no "):
        read_corpus(tmp_path / "empty.jsonl")
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(DataError, match="empty.txt"):
        read_corpus(tmp_path / "empty.txt")
    with pytest.raises(DataError, match="no column 'nope'"):
        read_corpus(tmp_path / "a.tsv", column="nope")
