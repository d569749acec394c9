"""Unpadding (modules.unpad): the layers run on the real tokens alone, with the padded stack's numbers."""

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
from model_helpers import build, ids, tiny_config  # noqa: E402

from transformers_zoo.modules import TransformerStack, unpad  # noqa: E402
from transformers_zoo.modules.unpad import Unpadded  # noqa: E402


@pytest.fixture(autouse=True)
def small_models_unpad_too(monkeypatch):
    """These 32-wide models are below `MIN_WORK`, where unpadding is off as not worth it: on, to test it."""
    monkeypatch.setattr(unpad, "MIN_WORK", 0)


def lengths_mask(lengths, width, left=False):
    mask = torch.arange(width)[None] < torch.tensor(lengths)[:, None]
    return mask.flip(1) if left else mask


def padded_ids(lengths, width, seed=0, left=False):
    mask = lengths_mask(lengths, width, left)
    return ids(len(lengths), width, seed=seed).masked_fill(~mask, 0), mask


def rows_seen(model):
    """The shapes of the inputs the first layer's FFN receives, one entry per forward."""
    seen = []
    layer = model.stack.layers[0] if hasattr(model, "stack") else model.encoder.layers[0]
    layer.ffn.register_forward_pre_hook(lambda _m, args: seen.append(tuple(args[0].shape)))
    return seen


def both_ways(model, run):
    """`run(model)` unpadded, then padded (`stack.unpad = False` on every stack)."""
    stacks = [m for m in model.modules() if isinstance(m, TransformerStack)]
    out = run(model)
    for s in stacks:
        s.unpad = False
    try:
        return out, run(model)
    finally:
        for s in stacks:
            s.unpad = True


def test_pack_and_unpack_are_inverse_with_zeros_at_the_padding():
    mask = lengths_mask([3, 1, 4], 4)
    x = torch.randn(3, 4, 5)
    u = Unpadded(mask)
    packed = u.pack(x)
    assert packed.shape == (8, 5) and torch.equal(packed, x[mask])
    back = u.unpack(packed)
    assert torch.equal(back[mask], x[mask]) and torch.equal(back[~mask], torch.zeros(4, 5))


@pytest.mark.parametrize("family", ["encoder_only", "decoder_only"])
@pytest.mark.parametrize("positional", ["learned", "rope", "alibi", "relative", "sinusoidal"])
def test_unpadded_forward_equals_the_padded_one(family, positional):
    model = build(family, tiny_config(positional=positional, norm_first=family == "decoder_only")).eval()
    x, mask = padded_ids([12, 7, 3, 9], 12, left=family == "decoder_only")
    seen = rows_seen(model)
    with torch.no_grad():
        fast, slow = both_ways(model, lambda m: m.stack(m.token_embedding(x) if family == "encoder_only"
                                                        else m.embed(x), key_mask=mask))
    assert seen == [(31, 32), (4, 12, 32)]  # 31 real tokens of 48 positions, then every position
    assert (fast[mask] - slow[mask]).abs().max() < 1e-5
    assert torch.equal(fast[~mask], torch.zeros_like(fast[~mask]))


def test_encoder_decoder_unpads_both_stacks_and_cross_attention_sees_the_padded_memory():
    model = build("encoder_decoder", tiny_config(positional="sinusoidal")).eval()
    src, src_mask = padded_ids([10, 4, 6], 10, seed=1)
    tgt, tgt_mask = padded_ids([7, 2, 5], 7, seed=2)
    decoder_rows = []
    model.decoder.layers[0].cross_attn.register_forward_pre_hook(
        lambda _m, args: decoder_rows.append(tuple(args[0].shape)))
    with torch.no_grad():
        fast, slow = both_ways(model, lambda m: m(src, tgt))
    assert decoder_rows == [(14, 32), (3, 7, 32)]
    assert (fast[tgt_mask] - slow[tgt_mask]).abs().max() < 1e-5


@pytest.mark.parametrize("family", ["encoder_only", "decoder_only"])
def test_training_gradients_equal_the_padded_ones(family):
    model = build(family, tiny_config(positional="rope", attention_dropout=0.0, norm_first=False,
                                      pooling="mean")).train()
    x, mask = padded_ids([12, 5, 8, 2], 12)

    def grads(m):
        m.zero_grad(set_to_none=True)
        out = m(x, mask, head="embed") if family == "encoder_only" else m(x, mask)
        loss = out.sum() if family == "encoder_only" else F.cross_entropy(out[mask], x[mask])
        loss.backward()
        return {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}

    fast, slow = both_ways(model, grads)
    assert fast.keys() == slow.keys() and len(fast) > 10
    for name in fast:
        assert (fast[name] - slow[name]).abs().max() < 1e-5, name


def test_unpadding_only_when_padding_is_a_good_share_and_never_with_a_cache(monkeypatch):
    model = build("decoder_only", tiny_config()).eval()
    seen = rows_seen(model)
    little, _ = padded_ids([20] * 9 + [19], 20)  # 1 padding position in 200
    much, _ = padded_ids([20, 10], 20)
    with torch.no_grad():
        model(little)
        model(much)
        model(ids(2, 20))  # no padding: no mask at all
    assert seen == [(10, 20, 32), (30, 32), (2, 20, 32)]
    assert unpad.MIN_PADDING * 200 > 1 and not Unpadded.worth(None, 32)
    monkeypatch.setattr(unpad, "MIN_WORK", 2 ** 21)  # the default: 10 padding positions x 32^2 are too little work
    _, mask = padded_ids([20, 10], 20)
    assert not Unpadded.worth(mask, 32) and Unpadded.worth(mask, 512)
    seen.clear()
    prompt, mask = padded_ids([8, 3], 8, left=True)
    cache = model.init_cache(2)
    with torch.no_grad():
        model.decode_step(prompt, cache, mask)
        model.decode_step(ids(2, 1), cache)
    assert seen == [(2, 8, 32), (2, 1, 32)]  # a cached prefill and its steps stay padded


def test_a_row_of_padding_alone_is_zero_and_finite():
    model = build("encoder_only", tiny_config()).eval()
    x, mask = padded_ids([6, 0, 3], 6)
    with torch.no_grad():
        out = model.encode(x, mask)
    assert torch.isfinite(out).all() and torch.equal(out[1], torch.zeros_like(out[1]))
