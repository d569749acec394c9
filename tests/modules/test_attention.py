"""Attention against a written-out reference and against torch.nn.MultiheadAttention."""

import math

import pytest
import torch

from transformers_zoo.modules import MultiHeadAttention, fused_attention, reference_attention


def naive(q, k, v, mask=None, bias=None):
    """softmax(QK^T/sqrt(d) + bias)V with loops over nothing clever; fully masked rows -> 0."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if bias is not None:
        scores = scores + bias
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.nan_to_num(torch.softmax(scores, dim=-1), nan=0.0)
    return weights @ v


@pytest.fixture
def qkv():
    g = torch.Generator().manual_seed(0)
    return [torch.randn(2, 4, 5, 8, generator=g) for _ in range(3)]


def test_fused_and_reference_equal_naive(qkv):
    q, k, v = qkv
    g = torch.Generator().manual_seed(1)
    mask = torch.rand(2, 1, 5, 5, generator=g) > 0.3
    mask[..., 0] = True
    bias = torch.randn(1, 4, 5, 5, generator=g)
    for m, b in [(None, None), (mask, None), (None, bias), (mask, bias)]:
        expected = naive(q, k, v, m, b)
        assert torch.allclose(fused_attention(q, k, v, m, b), expected, atol=1e-5)
        assert torch.allclose(reference_attention(q, k, v, m, b)[0], expected, atol=1e-5)


def test_causal_flag_equals_explicit_mask(qkv):
    q, k, v = qkv
    causal = torch.ones(5, 5, dtype=torch.bool).tril()
    expected = naive(q, k, v, causal)
    assert torch.allclose(fused_attention(q, k, v, is_causal=True), expected, atol=1e-5)
    bias = torch.randn(1, 4, 5, 5)
    assert torch.allclose(fused_attention(q, k, v, bias=bias, is_causal=True), naive(q, k, v, causal, bias),
                          atol=1e-5)
    out, w = reference_attention(q, k, v, is_causal=True)
    assert torch.allclose(out, expected, atol=1e-5)
    assert (w.triu(1) == 0).all()


def test_fully_masked_row_gives_zeros_and_finite_grads(qkv):
    q, k, v = (t.clone().requires_grad_() for t in qkv)
    mask = torch.ones(2, 1, 5, 5, dtype=torch.bool)
    mask[0, :, 2] = False  # query 2 of row 0 may attend to nothing
    bias = torch.randn(1, 4, 5, 5)
    for b in (None, bias):
        out = fused_attention(q, k, v, mask, b)
        assert torch.isfinite(out).all()
        assert (out[0, :, 2] == 0).all()
        out.sum().backward()
        assert all(torch.isfinite(t.grad).all() for t in (q, k, v))
        ref, w = reference_attention(q, k, v, mask, b)
        assert (ref[0, :, 2] == 0).all() and (w[0, :, 2] == 0).all()


def copy_to_torch_mha(ours: MultiHeadAttention, d: int, h: int) -> torch.nn.MultiheadAttention:
    theirs = torch.nn.MultiheadAttention(d, h, batch_first=True)
    with torch.no_grad():
        theirs.in_proj_weight.copy_(ours.qkv.weight)
        theirs.in_proj_bias.copy_(ours.qkv.bias)
        theirs.out_proj.weight.copy_(ours.out.weight)
        theirs.out_proj.bias.copy_(ours.out.bias)
    return theirs.eval()


def test_matches_torch_multihead_attention():
    torch.manual_seed(0)
    d, h, B, T = 32, 4, 3, 7
    ours = MultiHeadAttention(d, h).eval()
    theirs = copy_to_torch_mha(ours, d, h)
    x = torch.randn(B, T, d)
    real = torch.ones(B, T, dtype=torch.bool)
    real[1, 5:] = False
    real[2, 3:] = False
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    cases = [
        (None, {}),
        (real[:, None, None, :], {"key_padding_mask": ~real}),
        (causal, {"attn_mask": ~causal}),
        (real[:, None, None, :] & causal, {"attn_mask": ~causal, "key_padding_mask": ~real}),
    ]
    for mask, kwargs in cases:
        expected, _ = theirs(x, x, x, need_weights=False, **kwargs)
        got = ours(x, mask=mask)
        assert (got - expected).abs().max() < 1e-5


def test_cross_attention_matches_torch():
    torch.manual_seed(0)
    d, h = 32, 4
    ours = MultiHeadAttention(d, h, cross=True).eval()
    theirs = torch.nn.MultiheadAttention(d, h, batch_first=True).eval()
    with torch.no_grad():
        theirs.in_proj_weight.copy_(torch.cat((ours.q.weight, ours.kv.weight)))
        theirs.in_proj_bias.copy_(torch.cat((ours.q.bias, ours.kv.bias)))
        theirs.out_proj.weight.copy_(ours.out.weight)
        theirs.out_proj.bias.copy_(ours.out.bias)
    x, memory = torch.randn(2, 5, d), torch.randn(2, 9, d)
    real = torch.ones(2, 9, dtype=torch.bool)
    real[0, 6:] = False
    expected, _ = theirs(x, memory, memory, key_padding_mask=~real, need_weights=False)
    assert (ours(x, memory, mask=real[:, None, None, :]) - expected).abs().max() < 1e-5


@pytest.mark.parametrize("n_kv_heads", [1, 2])
def test_gqa_equals_mha_with_repeated_kv_heads(n_kv_heads):
    torch.manual_seed(0)
    d, h, hd = 32, 4, 8
    gqa = MultiHeadAttention(d, h, n_kv_heads).eval()
    mha = MultiHeadAttention(d, h).eval()
    group = h // n_kv_heads
    wq, wk, wv = gqa.qkv.weight.split((h * hd, n_kv_heads * hd, n_kv_heads * hd))
    bq, bk, bv = gqa.qkv.bias.split((h * hd, n_kv_heads * hd, n_kv_heads * hd))

    def repeat(w):  # each kv head copied to the query heads of its group
        return w.view(n_kv_heads, hd, *w.shape[1:]).repeat_interleave(group, 0).reshape(h * hd, *w.shape[1:])

    with torch.no_grad():
        mha.qkv.weight.copy_(torch.cat((wq, repeat(wk), repeat(wv))))
        mha.qkv.bias.copy_(torch.cat((bq, repeat(bk), repeat(bv))))
        mha.out.load_state_dict(gqa.out.state_dict())
    x = torch.randn(2, 6, d)
    assert (gqa(x, is_causal=True) - mha(x, is_causal=True)).abs().max() < 1e-5


def test_store_weights_matches_fused_and_rows_sum_to_one():
    torch.manual_seed(0)
    attn = MultiHeadAttention(16, 2).eval()
    x = torch.randn(2, 5, 16)
    fused = attn(x, is_causal=True)
    attn.store_weights = True
    ref = attn(x, is_causal=True)
    assert torch.allclose(fused, ref, atol=1e-5)
    assert attn.weights.shape == (2, 2, 5, 5)
    assert torch.allclose(attn.weights.sum(-1), torch.ones(2, 2, 5))


def test_scale_and_head_dim_apart_from_d_model(qkv):
    q, k, v = qkv
    expected = naive(q * math.sqrt(q.shape[-1]), k, v)  # scale 1: no 1/sqrt(d)
    assert torch.allclose(fused_attention(q, k, v, scale=1.0), expected, atol=1e-5)
    assert torch.allclose(reference_attention(q, k, v, scale=1.0)[0], expected, atol=1e-5)
    attn = MultiHeadAttention(12, 4, head_dim=5, bias=False)
    assert attn.qkv.weight.shape == (60, 12) and attn.out.weight.shape == (12, 20)
    assert attn(torch.randn(2, 3, 12)).shape == (2, 3, 12)


def test_qkv_bias_overrides_bias_for_the_input_projections_only():
    """Qwen2's layout: biases on q, k, v and none on the output projection."""
    attn = MultiHeadAttention(16, 4, 2, bias=False, qkv_bias=True)
    assert attn.qkv.bias is not None and attn.out.bias is None
    cross = MultiHeadAttention(16, 4, cross=True, bias=True, qkv_bias=False)
    assert cross.q.bias is None and cross.kv.bias is None and cross.out.bias is not None


def test_causal_mask_with_a_sliding_window():
    """Query i sees keys (i - window, i]; queries after `offset` cached keys keep their absolute indices."""
    from transformers_zoo.modules.attention import causal_mask

    assert torch.equal(causal_mask(4), torch.ones(4, 4, dtype=torch.bool).tril())
    windowed = causal_mask(5, window=2).long().tolist()
    assert windowed == [[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [0, 1, 1, 0, 0], [0, 0, 1, 1, 0], [0, 0, 0, 1, 1]]
    assert torch.equal(causal_mask(2, offset=3, window=2), causal_mask(5, window=2)[3:])


@pytest.mark.parametrize("padded", [False, True])
def test_sliding_window_cached_decoding_equals_full_forward(padded):
    """A DecoderOnly with `sliding_window=3` over 10 tokens: the full forward, a prompt then one token at a
    time through the cache, and the model run on the last 5 tokens only (2 layers) agree; a window covering the
    input changes nothing."""
    from transformers_zoo import ModelConfig
    from transformers_zoo.models import DecoderOnly

    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=50, d_model=32, n_heads=4, n_kv_heads=2, n_layers=2, positional="rope",
                      norm="rmsnorm", ffn="swiglu", dropout=0.0, sliding_window=3)
    model = DecoderOnly(cfg).eval()
    ids = torch.randint(1, 50, (2, 10))
    mask = torch.ones_like(ids, dtype=torch.bool)
    if padded:
        mask[1, :2] = False  # left padding: windows count cached slots, as transformers' do
    with torch.no_grad():
        full = model(ids, mask)
        cache = model.init_cache(2)
        steps = [model.decode_step(ids[:, :4], cache, mask[:, :4])]
        steps += [model.decode_step(ids[:, t:t + 1], cache, mask[:, t:t + 1]) for t in range(4, 10)]
        torch.testing.assert_close(torch.stack(steps, 1), full[:, 3:], atol=1e-5, rtol=1e-5)
        if not padded:  # 2 layers of window 3: the last logits depend on the last 5 tokens only (rope: relative)
            torch.testing.assert_close(model(ids[:, -5:])[:, -1], full[:, -1], atol=1e-5, rtol=1e-5)
        wide = DecoderOnly(cfg.replace(sliding_window=10)).eval()
        wide.load_state_dict(model.state_dict())
        unwindowed = DecoderOnly(cfg.replace(sliding_window=None)).eval()
        unwindowed.load_state_dict(model.state_dict())
        torch.testing.assert_close(wide(ids, mask), unwindowed(ids, mask))
        assert not torch.allclose(full, unwindowed(ids, mask), atol=1e-3)
