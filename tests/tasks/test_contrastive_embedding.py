"""tasks.embedding: symmetric InfoNCE against a hand computation; pair batches deterministic and resumable."""

from __future__ import annotations

import math

import pytest
import torch

from transformers_zoo.tasks.embedding import PairStream, info_nce


def test_info_nce_is_symmetric_cross_entropy_of_cosines():
    torch.manual_seed(0)
    a, b = torch.randn(4, 8), torch.randn(4, 8)
    cos = torch.nn.functional.cosine_similarity(a[:, None], b[None], dim=-1) / 0.1
    by_hand = sum(-math.log(cos[i].softmax(0)[i]) - math.log(cos[:, i].softmax(0)[i]) for i in range(4)) / 8
    assert abs(info_nce(a, b, 0.1).item() - by_hand) < 1e-5
    assert info_nce(a, a * 3, 0.01).item() < 1e-3  # the same directions: the right pairs win


def test_pair_stream_pairs_distinct_members_of_one_group_and_resumes():
    groups = [[[g, m] for m in range(5)] for g in range(10, 40)]  # group g: 5 "captions" [g, m]
    stream = PairStream(groups, batch_size=8, seed=3, pad_id=0)
    first = [next(stream) for _ in range(5)]  # crosses an epoch (30 groups, 3 full batches of 8 each)
    for batch in first:
        a, b = batch["views"][0::2], batch["views"][1::2]
        assert batch["views"].shape == (16, 2) and a.shape == b.shape == (8, 2)
        assert torch.equal(a[:, 0], b[:, 0]) and bool((a[:, 1] != b[:, 1]).all())  # same group, other member
        assert len(set(a[:, 0].tolist())) == 8  # distinct groups: no false negatives in the batch
    resumed = PairStream(groups, batch_size=8, seed=3, pad_id=0)
    replay = PairStream(groups, batch_size=8, seed=3, pad_id=0)
    for _ in range(3):
        next(replay)
    resumed.load_state_dict(replay.state_dict())
    assert all(torch.equal(next(resumed)["views"], batch["views"]) for batch in first[3:])


def test_cross_lingual_metrics_equal_a_brute_force_ranking():
    import numpy as np

    from transformers_zoo import EncoderOnly, ModelConfig
    from transformers_zoo.retrieval.encode import encode_texts
    from transformers_zoo.tasks.embedding import CrossLingualTask, EmbedDataSettings
    from transformers_zoo.tokenizers import CharTokenizer

    en = ["a dog runs", "two cats sleep", "a man rides a bike", "children play in snow", "a red car"]
    de = ["ein hund rennt", "zwei katzen schlafen", "ein mann fährt rad", "kinder spielen im schnee", "ein rotes auto"]
    tok = CharTokenizer.train(" ".join(en + de))
    torch.manual_seed(0)
    model = EncoderOnly(ModelConfig(vocab_size=tok.vocab_size, pad_id=tok.pad_id, d_model=16, n_heads=2, n_layers=1,
                                    max_len=32, pooling="mean", n_classes=0, dropout=0.0))
    pairs = list(zip(en, de, strict=True))
    task = CrossLingualTask(tok, [list(p) for p in pairs], {"test_2016": pairs}, EmbedDataSettings(lang="en-de"), 32,
                            "test")
    metrics = task.evaluate(model, "test_2016")
    q, d = (encode_texts(model, task.eval_rows["test_2016"][i], tok.pad_id, normalize=True).numpy() for i in (0, 1))
    for prefix, a, b in (("", q, d), ("de_en_", d, q)):
        ranks = [int(np.where(np.argsort(-(a[i] @ b.T), kind="stable") == i)[0][0]) for i in range(len(a))]
        assert metrics[prefix + "r@1"] == pytest.approx(100 * np.mean([r == 0 for r in ranks]))
        assert metrics[prefix + "mrr"] == pytest.approx(100 * np.mean([1 / (r + 1) for r in ranks]))


def test_embed_by_length_gives_the_vectors_and_gradients_of_one_padded_call():
    from transformers_zoo.config import ModelConfig
    from transformers_zoo.models import EncoderOnly
    from transformers_zoo.retrieval.encode import embed_by_length

    torch.manual_seed(0)
    model = EncoderOnly(ModelConfig(vocab_size=50, d_model=16, n_heads=2, n_layers=2, max_len=32, dropout=0.0,
                                    positional="rope", pooling="mean", pad_id=0)).eval()
    lengths = torch.randint(2, 30, (20,))
    ids = torch.zeros(20, 30, dtype=torch.long)
    for row, n in enumerate(lengths):
        ids[row, :n] = torch.randint(1, 50, (int(n),))
    weights = torch.randn(20, 16)

    def run(fn):
        model.zero_grad()
        vectors = fn()
        (vectors * weights).sum().backward()
        return vectors.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]

    one, one_grads = run(lambda: model(ids, head="embed"))
    chunked, chunked_grads = run(lambda: embed_by_length(model, ids, 0, rows=6))
    torch.testing.assert_close(chunked, one, atol=1e-5, rtol=1e-5)
    assert len(chunked_grads) == len(one_grads)
    for a, b in zip(chunked_grads, one_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_supcon_is_the_mean_log_probability_of_each_vectors_group_mates():
    from transformers_zoo.tasks.embedding import supcon

    torch.manual_seed(0)
    vectors, views, temperature = torch.randn(12, 5), 3, 0.1
    z = torch.nn.functional.normalize(vectors, dim=-1)
    losses = []
    for i in range(12):
        others = [j for j in range(12) if j != i]
        log_p = torch.log_softmax(torch.stack([z[i] @ z[j] / temperature for j in others]), dim=0)
        mates = [k for k, j in enumerate(others) if j // views == i // views]
        losses.append(-log_p[mates].mean())
    torch.testing.assert_close(supcon(vectors, views, temperature), torch.stack(losses).mean())


def test_pair_stream_with_more_views_gives_distinct_members_group_major():
    groups = [[[g * 10 + m] * (m + 1) for m in range(5)] for g in range(6)]
    batch = next(PairStream(groups, 4, seed=0, pad_id=0, views=4))
    rows = batch["views"]
    assert rows.shape[0] == 16
    for i in range(4):
        firsts = [int(rows[i * 4 + v, 0]) for v in range(4)]
        assert len({f // 10 for f in firsts}) == 1 and len(set(firsts)) == 4  # one image, four distinct captions


@pytest.mark.parametrize("amp", ["off", "auto"])
def test_a_masked_lm_phase_comes_first_and_is_scored_per_masked_token(amp):
    from transformers_zoo import EncoderOnly
    from transformers_zoo.config import ModelConfig
    from transformers_zoo.tasks.embedding import EmbedDataSettings, EmbeddingTask
    from transformers_zoo.tasks.mlm import mlm_loss
    from transformers_zoo.tokenizers import CharTokenizer
    from transformers_zoo.training.device import cpu_has_native_bf16

    groups = [[f"a dog {w} on the grass", f"the dog {w} in a park", f"one brown dog {w}"] for w in
              ("runs", "sits", "jumps", "sleeps", "barks", "plays", "waits", "swims")]
    tok = CharTokenizer.train([t for g in groups for t in g])
    settings = EmbedDataSettings(batch_size=4, mlm_steps=2, mlm_blocks=3, mlm_amp=amp)
    task = EmbeddingTask(tok, groups, {"val": groups[:2], "test_2016": groups[2:4]}, settings, 64, "dogs")
    assert task.unit == "ex" and "phase 1: 2 steps of masked LM" in task.describe()
    stream = task.train_stream(seed=0)
    batches = [next(stream) for _ in range(3)]
    assert [sorted(b) for b in batches] == [["input_ids", "labels"]] * 2 + [["views"]]
    torch.manual_seed(0)
    model = EncoderOnly(ModelConfig(vocab_size=tok.vocab_size, d_model=32, n_heads=2, n_layers=1, max_len=64,
                                    pad_id=tok.pad_id, positional="rope", pooling="mean", dropout=0.0))
    seen = []
    linear = next(m for m in model.stack.modules() if isinstance(m, torch.nn.Linear))
    linear.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    loss, count = task.loss(model, batches[0])
    total, masked = mlm_loss(model, batches[0])
    assert count == 3 and loss.dtype == torch.float32
    bf16 = amp == "auto" and cpu_has_native_bf16()
    assert seen[0] == (torch.bfloat16 if bf16 else torch.float32)
    assert loss.item() / 3 == pytest.approx(total.item() / masked.item(), rel=2e-2 if bf16 else 1e-6)
