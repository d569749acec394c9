"""batching: padding, token budgets, resumable EpochBatches, collators, LM blocks and MLM masking."""

from __future__ import annotations

import random
from collections import Counter

import pytest
import torch

from transformers_zoo.batching import (
    IGNORE_INDEX,
    ClassificationCollator,
    EpochBatches,
    LMBlocks,
    LMCollator,
    MLMCollator,
    TokenMaskingCollator,
    TranslationCollator,
    collate_batches,
    mask_tokens,
    pad,
    shift_right,
    token_budget_batches,
)
from transformers_zoo.corpora import DataError
from transformers_zoo.tokenizers import CLS, MASK, N_SPECIAL, PAD, SEP


def random_lengths(n: int, seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(1, 60) for _ in range(n)]


def test_pad_and_shift_right():
    out = pad([[5, 6, 7], [8], []], pad_id=0)
    assert out.dtype == torch.long and out.tolist() == [[5, 6, 7], [8, 0, 0], [0, 0, 0]]
    fixed = pad([[5], torch.tensor([6, 7])], pad_id=-1, max_len=4)
    assert fixed.tolist() == [[5, -1, -1, -1], [6, 7, -1, -1]]
    with pytest.raises(ValueError, match="max_len"):
        pad([[1, 2, 3]], 0, max_len=2)
    assert shift_right([[7, 8], [9]], bos_id=2, eos_id=3) == ([[2, 7, 8], [2, 9]], [[7, 8, 3], [9, 3]])


@pytest.mark.parametrize("max_sentences", [None, 16])
def test_token_budget_batches(max_sentences):
    lengths = random_lengths(3000)
    batches = token_budget_batches(lengths, 512, seed=1, epoch=0, max_sentences=max_sentences)
    assert all(len(b) * max(lengths[i] for i in b) <= 512 for b in batches)
    assert sorted(i for b in batches for i in b) == list(range(3000))  # each example exactly once
    if max_sentences:
        assert max(len(b) for b in batches) <= max_sentences
    assert batches == token_budget_batches(lengths, 512, seed=1, epoch=0, max_sentences=max_sentences)
    assert batches != token_budget_batches(lengths, 512, seed=1, epoch=1, max_sentences=max_sentences)
    # padding stays small: batches group similar lengths
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    assert padded < 1.1 * sum(lengths)


def test_token_budget_eval_order_and_too_long():
    lengths = [5, 3, 5, 1, 3]
    assert token_budget_batches(lengths, 6, seed=0, epoch=0, shuffle=False) == [[3, 1], [4], [0], [2]]
    with pytest.raises(DataError, match="example 1 has length 9 > max_tokens 8"):
        token_budget_batches([3, 9], 8, seed=0, epoch=0)


def make_stream(examples, seed=3):
    lengths = [len(e) for e in examples]
    return EpochBatches(examples, lambda epoch: token_budget_batches(lengths, 64, seed=seed, epoch=epoch),
                        MLMCollator(vocab_size=50, seed=seed))


def take(stream, n):
    it = iter(stream)
    return [next(it) for _ in range(n)]


def test_epoch_batches_cover_each_epoch_once():
    examples = [[random.Random(i).randint(7, 49)] * (1 + i % 13) for i in range(200)]
    lengths = [len(e) for e in examples]
    seen = []
    stream = EpochBatches(list(range(200)), lambda e: token_budget_batches(lengths, 64, seed=0, epoch=e),
                          lambda items: {"ids": torch.tensor(items)})
    n = stream.batches_per_epoch()
    for batch in take(stream, n):
        seen += batch["ids"].tolist()
    assert sorted(seen) == list(range(200))
    assert stream.state_dict() == {"epoch": 1, "index": 0}


@pytest.mark.parametrize("stop", ["mid_epoch", "epoch_end", "next_epoch"])
def test_epoch_batches_resume_equivalence(stop):
    examples = [[7 + (i * 7919) % 40] * (1 + i % 17) for i in range(300)]
    reference = make_stream(examples)
    n = reference.batches_per_epoch()
    total = 2 * n + 5
    expected = take(reference, total)
    k = {"mid_epoch": n // 2, "epoch_end": n, "next_epoch": n + 3}[stop]

    first = make_stream(examples)
    got = take(first, k)
    state = first.state_dict()
    resumed = make_stream(examples)
    resumed.load_state_dict(state)
    got += take(resumed, total - k)
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)
    # epochs differ (order and masks), so the comparison above is not trivially true
    assert not torch.equal(expected[0]["input_ids"], expected[n]["input_ids"])


def test_translation_collator():
    batch = TranslationCollator(pad_id=0, bos_id=2, eos_id=3)([([10, 11, 12], [20]), ([13], [21, 22])])
    assert batch["src"].tolist() == [[10, 11, 12], [13, 0, 0]]
    assert batch["tgt_in"].tolist() == [[2, 20, 0], [2, 21, 22]]
    assert batch["tgt_out"].tolist() == [[20, 3, IGNORE_INDEX], [21, 22, 3]]


def test_classification_collator():
    batch = ClassificationCollator(pad_id=0, cls_id=5, sep_id=6)([([10, 11], 1), ([12], 0)])
    assert batch["input_ids"].tolist() == [[5, 10, 11, 6], [5, 12, 6, 0]]
    assert batch["labels"].tolist() == [1, 0]
    assert ClassificationCollator(sep_id=None)([([10], 1)])["input_ids"].tolist() == [[5, 10]]


def test_token_masking_collator_hides_only_real_tokens_reproducibly():
    rng = random.Random(0)
    examples = [([rng.randrange(N_SPECIAL, 500) for _ in range(rng.randint(1, 40))], i % 2) for i in range(64)]
    plain = ClassificationCollator()(examples)
    collate = TokenMaskingCollator(seed=3, probability=0.25)
    batch = collate(examples, epoch=0, index=0)
    assert batch["labels"].equal(plain["labels"])
    changed = batch["input_ids"] != plain["input_ids"]
    real = plain["input_ids"] >= N_SPECIAL
    assert not (changed & ~real).any()  # CLS, SEP and padding untouched
    assert (batch["input_ids"][changed] == MASK).all()
    assert {CLS, SEP, PAD} <= set(batch["input_ids"].unique().tolist())
    assert abs(changed.sum().item() / real.sum().item() - 0.25) < 0.05
    # a pure function of (seed, epoch, index): reproducible on resume, fresh for every batch
    assert collate(examples, epoch=0, index=0)["input_ids"].equal(batch["input_ids"])
    assert not collate(examples, epoch=0, index=1)["input_ids"].equal(batch["input_ids"])
    assert not collate(examples, epoch=1, index=0)["input_ids"].equal(batch["input_ids"])
    assert TokenMaskingCollator(seed=3, probability=0.0)(examples)["input_ids"].equal(plain["input_ids"])
    with pytest.raises(ValueError, match="token-mask"):
        TokenMaskingCollator(seed=0, probability=1.0)


def test_lm_blocks_train_and_eval():
    n, block = 1000, 32
    blocks = LMBlocks(torch.arange(n), block)
    batches = blocks.train_batches(8, seed=0, epoch=0)
    assert batches == blocks.train_batches(8, seed=0, epoch=0) != blocks.train_batches(8, seed=0, epoch=1)
    assert all(len(b) == 8 for b in batches) and len(batches) * 8 >= (n - 1) // block
    batch = LMCollator()([blocks[s] for s in batches[0]])
    assert batch["input_ids"].shape == batch["labels"].shape == (8, block)
    assert torch.equal(batch["labels"], batch["input_ids"] + 1)  # targets are the next tokens

    scored = []
    for batch in collate_batches(blocks, blocks.eval_batches(4), LMCollator(pad_id=0)):
        labels = batch["labels"]
        scored += labels[labels != IGNORE_INDEX].tolist()
        assert torch.equal(batch["input_ids"][labels != IGNORE_INDEX] + 1, labels[labels != IGNORE_INDEX])
    assert sorted(scored) == list(range(1, n))  # every token scored exactly once, except the first


def test_lm_blocks_resume_through_epoch_batches():
    blocks = LMBlocks(torch.arange(500), 16)
    stream = lambda: EpochBatches(blocks, lambda e: blocks.train_batches(4, seed=7, epoch=e), LMCollator())
    expected = take(stream(), 20)
    first = stream()
    take(first, 11)
    resumed = stream()
    resumed.load_state_dict(first.state_dict())
    got = take(resumed, 9)
    assert all(torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(got, expected[11:], strict=True))


def test_mask_tokens_statistics():
    vocab, specials = 1000, set(range(7))
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(7, vocab, (256, 512), generator=gen)
    ids[:, 0] = 5  # CLS
    ids[:, 400:] = 0  # padding
    ids[:, 399] = 6  # SEP
    inputs, labels = mask_tokens(ids, vocab_size=vocab, mask_id=4, special_ids=specials, pad_id=0,
                                 generator=torch.Generator().manual_seed(1))
    eligible = ~torch.isin(ids, torch.tensor(sorted(specials)))
    chosen = labels != IGNORE_INDEX
    assert not (chosen & ~eligible).any()
    assert torch.equal(inputs[~eligible], ids[~eligible])  # padding and specials never change
    assert torch.equal(labels[chosen], ids[chosen])
    assert torch.equal(inputs[~chosen], ids[~chosen])
    rate = chosen.sum().item() / eligible.sum().item()
    assert abs(rate - 0.15) < 0.005
    kinds = Counter()
    kinds["mask"] = (inputs[chosen] == 4).sum().item()
    kinds["same"] = (inputs[chosen] == ids[chosen]).sum().item()
    kinds["random"] = chosen.sum().item() - kinds["mask"] - kinds["same"]
    total = chosen.sum().item()
    assert abs(kinds["mask"] / total - 0.8) < 0.01
    assert abs(kinds["random"] / total - 0.1) < 0.01
    assert abs(kinds["same"] / total - 0.1) < 0.01
    replaced = inputs[chosen & (inputs != 4) & (inputs != ids)]
    assert replaced.min() >= 7 and replaced.max() < vocab  # random tokens are never special


def test_mlm_collator_dynamic_and_deterministic():
    collate = MLMCollator(vocab_size=100, seed=0)
    seqs = [list(range(10, 60)), list(range(20, 40))]
    a = collate(seqs, epoch=0, index=3)
    assert a["input_ids"][0, 0] == 5 and a["input_ids"][1, 21] == 6 and a["input_ids"][1, 22:].eq(0).all()
    assert torch.equal(a["input_ids"], collate(seqs, epoch=0, index=3)["input_ids"])
    assert not torch.equal(a["labels"], collate(seqs, epoch=1, index=3)["labels"])
