"""kNN-LM / kNN-MT: the wrapper against the model (lambda = 0) and against brute force, generation through it, the
datastore on disk and its refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from transformers_zoo import DecoderOnly, EncoderDecoder, ModelConfig
from transformers_zoo.batching import TranslationCollator
from transformers_zoo.generation import beam_search, greedy, sample
from transformers_zoo.retrieval.datastore import Datastore, lm_states, translation_states, weights_fingerprint
from transformers_zoo.retrieval.index import IndexFolderError, VectorIndex
from transformers_zoo.retrieval.knn import KNNModel, NeighbourScores

CFG = ModelConfig(vocab_size=23, d_model=16, n_heads=2, n_layers=2, max_len=32, dropout=0.0, pad_id=0)


def tiny_lm(seed: int = 0) -> tuple[DecoderOnly, Datastore, torch.Tensor]:
    torch.manual_seed(seed)
    model = DecoderOnly(CFG).eval()
    tokens = torch.randint(4, CFG.vocab_size, (90,), generator=torch.Generator().manual_seed(1))
    keys, values = lm_states(model, tokens, block_size=16, batch_size=2)
    return model, Datastore.build(keys, values, weights_fingerprint(model)), tokens


def test_states_are_the_hidden_states_before_the_output_projection():
    model, store, tokens = tiny_lm()
    assert len(store) == len(tokens) - 1  # every position but the last predicts a token
    keys, values, logprobs = lm_states(model, tokens, block_size=16, batch_size=4, with_logprobs=True)
    block = tokens[:17]
    h = model.hidden(block[None, :16])[0]
    np.testing.assert_allclose(keys[:16], h.detach().numpy(), atol=1e-5)
    assert values[:16].tolist() == block[1:17].tolist()
    full = torch.log_softmax(model(block[None, :16])[0], -1).gather(1, block[1:17, None])[:, 0]
    np.testing.assert_allclose(logprobs[:16], full.detach().numpy(), atol=1e-5)


def test_lambda_zero_is_the_model_exactly():
    model, store, tokens = tiny_lm()
    knn = KNNModel(model, store, lam=0.0, temperature=3.0, k=8)
    ids = tokens[None, :20]
    with torch.no_grad():
        assert torch.equal(knn(ids), torch.log_softmax(model(ids), -1))
        cache_a, cache_b = knn.init_cache(1), model.init_cache(1)
        step_a, step_b = knn.decode_step(ids, cache_a), model.decode_step(ids, cache_b)
        assert torch.equal(step_a, torch.log_softmax(step_b, -1))


def test_knn_distribution_matches_brute_force_when_k_covers_the_datastore():
    model, store, tokens = tiny_lm()
    keys, values = lm_states(model, tokens, block_size=16)
    T = 2.0
    knn = KNNModel(model, store, lam=1.0, temperature=T, k=len(store))
    ids = tokens[None, 30:40]
    with torch.no_grad():
        h = model.step_hidden(ids, model.init_cache(1))[0].numpy().astype(np.float64)
        out = knn.decode_step(ids, knn.init_cache(1))[0].exp().numpy()
    d = ((keys.astype(np.float64) - h) ** 2).sum(axis=1)
    w = np.exp(-(d - d.min()) / T)
    w /= w.sum()
    expected = np.zeros(CFG.vocab_size)
    np.add.at(expected, values, w)
    np.testing.assert_allclose(out, expected, atol=1e-5)
    np.testing.assert_allclose(out.sum(), 1.0, atol=1e-5)
    # the tuning path (observed tokens only, neighbours searched once) gives the wrapper's loss
    knn.lam, knn.k = 0.3, 8
    v_keys, v_values, v_lp = lm_states(model, tokens[:40], block_size=16, with_logprobs=True)
    scores = NeighbourScores.search(store, v_keys, v_values, v_lp, k_max=16)
    with torch.no_grad():
        mixed = knn.mixed(torch.from_numpy(v_keys)).gather(1, torch.from_numpy(v_values)[:, None])
    assert scores.loss(0.3, T, 8) == pytest.approx(float(-mixed.mean()), abs=1e-5)
    best = scores.tune([0.0, 0.3], [T], [8])
    assert best["loss"] <= scores.loss(0.0, T, 8) == pytest.approx(best["base_loss"], abs=1e-6)


def test_generation_runs_unchanged_over_the_wrapper():
    model, store, tokens = tiny_lm()
    knn = KNNModel(model, store, lam=0.5, temperature=5.0, k=4)
    prompt = tokens[None, :5].repeat(2, 1)
    out = greedy(knn, knn.init_cache(2), prompt, max_new_tokens=6)
    assert out.shape == (2, 6) and torch.equal(out[0], out[1])
    drawn = sample(knn, knn.init_cache(2), prompt, 6, generator=torch.Generator().manual_seed(0))
    assert drawn.shape == (2, 6) and bool((drawn != CFG.pad_id).all())
    hyps = beam_search(knn, knn.init_cache(2), prompt, max_new_tokens=6, eos_id=3, beam_size=3, n_best=2)
    assert [len(h) for h in hyps] == [2, 2] and hyps[0][0].score >= hyps[0][1].score
    # with lambda 1, greedy copies what followed the nearest training state: a datastore value
    copy = greedy(KNNModel(model, store, lam=1.0, temperature=1.0, k=1), model.init_cache(1), prompt[:1], 4)
    assert set(copy[0].tolist()) <= set(store.index.values.tolist())


def test_knn_mt_datastore_and_beam_search_over_the_wrapper():
    cfg = CFG.replace(n_encoder_layers=1, n_decoder_layers=1)
    torch.manual_seed(0)
    model = EncoderDecoder(cfg).eval()
    gen = torch.Generator().manual_seed(2)
    pairs = [(torch.randint(4, 23, (n,), generator=gen).tolist() + [3], torch.randint(4, 23, (n + 1,),
                                                                                          generator=gen).tolist())
             for n in (3, 5, 4, 6)]
    collate = TranslationCollator(pad_id=0, bos_id=2, eos_id=3)
    keys, values = translation_states(model, pairs, collate, max_tokens=12)
    assert len(keys) == sum(len(t) + 1 for _, t in pairs)  # every target token and EOS
    assert values[: len(pairs[0][1]) + 1].tolist() == [*pairs[0][1], 3]
    knn = KNNModel(model, Datastore.build(keys, values, weights_fingerprint(model)), lam=0.5, temperature=4.0, k=3)
    src = torch.tensor([pairs[1][0]])
    hyps = beam_search(knn, knn.init_cache(src), torch.full((1, 1), 2), max_new_tokens=8, eos_id=3, beam_size=3)
    assert len(hyps[0]) == 1 and len(hyps[0][0].tokens) <= 8
    batch = collate(pairs[:2])
    with torch.no_grad():
        assert torch.equal(KNNModel(model, knn.datastore, lam=0.0)(batch["src"], batch["tgt_in"]),
                           torch.log_softmax(model(batch["src"], batch["tgt_in"]), -1))


def test_datastore_on_disk_and_bad_inputs(tmp_path):
    model, store, _ = tiny_lm()
    store.save(tmp_path / "ds")
    again = Datastore.load(tmp_path / "ds", model)
    assert len(again) == len(store) and np.array_equal(again.index.values, store.index.values)
    assert sorted(p.name for p in (tmp_path / "ds").iterdir()) == ["index.json", "values.npy", "vectors.faiss"]
    other, _, _ = tiny_lm(seed=1)  # same shapes, other weights: another run
    with pytest.raises(IndexFolderError, match="built from other weights"):
        Datastore.load(tmp_path / "ds", other)
    wider = DecoderOnly(CFG.replace(d_model=32))
    with pytest.raises(IndexFolderError, match="dimension mismatch: the datastore holds states of dimension 16"):
        KNNModel(wider, again)
    with pytest.raises(IndexFolderError, match="no states to store"):
        Datastore.build(np.zeros((0, 16), np.float32), np.zeros(0, np.int64), weights_fingerprint(model))
    VectorIndex.create(16, weights_fingerprint(model), metric="l2", values=True).save(tmp_path / "empty")
    with pytest.raises(IndexFolderError, match="empty: the datastore is empty"):
        Datastore.load(tmp_path / "empty", model)
    with pytest.raises(IndexFolderError, match="not a kNN datastore"):
        Datastore(VectorIndex.create(16, "x"))


def test_ivf_datastore_probing_every_cell_is_exact_and_round_trips(tmp_path):
    gen = np.random.default_rng(0)
    keys = gen.normal(size=(2000, 8)).astype(np.float32)
    values = gen.integers(4, 23, size=2000)
    queries = torch.from_numpy(gen.normal(size=(70, 8)).astype(np.float32))
    flat = Datastore.build(keys, values, "f" * 64)
    ivf = Datastore.build(keys, values, "f" * 64, kind="ivf", nprobe=2)
    nlist = ivf.index.meta["nlist"]
    assert ivf.index.meta["kind"] == "ivf" and 1 < nlist <= 2000 // 39
    ivf.save(tmp_path / "ivf")
    again = Datastore.load(tmp_path / "ivf")
    assert again.index.faiss_index.nprobe == 2 and len(again.prefix(500)) == 500
    again.index.faiss_index.nprobe = nlist  # every cell: the exact neighbours
    d_flat, t_flat = flat.search(queries, 5)
    d_ivf, t_ivf = again.search(queries, 5)
    assert torch.equal(t_flat, t_ivf) and torch.allclose(d_flat, d_ivf, atol=1e-4)
    np.testing.assert_allclose(d_flat[:, 0].numpy(), ((keys[None] - queries.numpy()[:, None]) ** 2).sum(-1).min(1),
                               rtol=1e-4)
