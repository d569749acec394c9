"""The three families: causality, padding, KV cache, every variant, learning, parameter counts."""

import pytest
import torch
import torch.nn.functional as F
from model_helpers import ALL_VARIANTS, KV_HEADS, POSITIONALS, build, ids, tiny_config

from transformers_zoo import EncoderDecoder, EncoderOnly, ModelConfig


def test_decoder_only_is_causal(positional):
    model = build("decoder_only", tiny_config(positional=positional)).eval()
    x = ids(2, 12)
    y = x.clone()
    y[:, 7:] = ids(2, 5, seed=1)
    a, b = model(x), model(y)
    assert torch.allclose(a[:, :7], b[:, :7], atol=1e-5)
    assert not torch.allclose(a[:, 7:], b[:, 7:], atol=1e-3)


def test_encoder_decoder_decoder_is_causal(positional):
    model = build("encoder_decoder", tiny_config(positional=positional)).eval()
    src, tgt = ids(2, 9), ids(2, 10, seed=1)
    tgt2 = tgt.clone()
    tgt2[:, 6:] = ids(2, 4, seed=2)
    a, b = model(src, tgt), model(src, tgt2)
    assert torch.allclose(a[:, :6], b[:, :6], atol=1e-5)
    assert not torch.allclose(a[:, 6:], b[:, 6:], atol=1e-3)


def right_pad(rows, pad_id=0):
    T = max(len(r) for r in rows)
    return torch.stack([F.pad(r, (0, T - len(r)), value=pad_id) for r in rows])


@pytest.mark.parametrize("family", ["decoder_only", "encoder_only"])
def test_padding_changes_nothing_on_real_positions(family, positional):
    model = build(family, tiny_config(positional=positional)).eval()
    rows = [ids(11, seed=0), ids(6, seed=1), ids(3, seed=2)]
    batch = model(right_pad(rows))
    for i, r in enumerate(rows):
        alone = model(r[None])[0]
        assert (batch[i, : len(r)] - alone).abs().max() < 1e-5


def test_left_padding_decoder_only(positional):
    model = build("decoder_only", tiny_config(positional=positional)).eval()
    rows = [ids(8, seed=0), ids(5, seed=1)]
    batch = torch.stack([F.pad(r, (8 - len(r), 0)) for r in rows])
    out = model(batch)
    for i, r in enumerate(rows):
        assert (out[i, 8 - len(r):] - model(r[None])[0]).abs().max() < 1e-5


def test_padding_encoder_decoder(positional):
    model = build("encoder_decoder", tiny_config(positional=positional)).eval()
    srcs = [ids(9, seed=0), ids(4, seed=1)]
    tgts = [ids(5, seed=2), ids(7, seed=3)]
    out = model(right_pad(srcs), right_pad(tgts))
    for i in range(2):
        alone = model(srcs[i][None], tgts[i][None])[0]
        assert (out[i, : len(tgts[i])] - alone).abs().max() < 1e-5


def test_fully_padded_sequence_is_finite():
    model = build("encoder_only", tiny_config()).eval()
    x = ids(2, 6)
    x[1] = 0  # a row of nothing but padding
    assert torch.isfinite(model(x)).all()
    model = build("encoder_decoder", tiny_config()).eval()
    assert torch.isfinite(model(x, ids(2, 4))).all()


@pytest.mark.parametrize("kv", list(KV_HEADS))
def test_a_bfloat16_model_decodes_as_the_float32_one(kv):
    """Held in bf16 (chat --dtype bfloat16), rope rotates in bf16 and one-token steps take the GQA kernel: the
    step logits stay within bf16 rounding of the float32 model's, and its own full forward's."""
    model = build("decoder_only", tiny_config(positional="rope", n_kv_heads=KV_HEADS[kv])).eval()
    with torch.no_grad():  # sharper attention: at init the logits hardly depend on where keys are (rope unseen)
        for layer in model.stack.layers:
            layer.self_attn.qkv.weight.mul_(6)
    x = ids(2, 14)
    expected = model(x)[:, 4:]
    model = model.to(torch.bfloat16)
    cache = model.init_cache(2)
    stepwise = [model.decode_step(x[:, :5], cache)] + [model.decode_step(x[:, t: t + 1], cache) for t in range(5, 14)]
    stepwise = torch.stack(stepwise, 1).float()
    scale = expected.abs().max()
    assert (stepwise - expected).abs().max() < 0.015 * scale
    assert (stepwise - model(x)[:, 4:].float()).abs().max() < 0.015 * scale


@pytest.mark.parametrize("kv", list(KV_HEADS))
def test_kv_cache_equals_full_forward_decoder_only(positional, kv):
    model = build("decoder_only", tiny_config(positional=positional, n_kv_heads=KV_HEADS[kv])).eval()
    x = ids(2, 14)
    full = model(x)
    cache = model.init_cache(2)
    stepwise = [model.decode_step(x[:, :5], cache)]  # a prompt, then one token at a time
    stepwise += [model.decode_step(x[:, t: t + 1], cache) for t in range(5, 14)]
    expected = full[:, 4:]
    assert (torch.stack(stepwise, 1) - expected).abs().max() < 1e-5


@pytest.mark.parametrize("kv", list(KV_HEADS))
def test_kv_cache_equals_full_forward_encoder_decoder(positional, kv):
    model = build("encoder_decoder", tiny_config(positional=positional, n_kv_heads=KV_HEADS[kv])).eval()
    src = right_pad([ids(9, seed=0), ids(5, seed=1)])
    tgt = ids(2, 8, seed=2)
    full = model(src, tgt)
    cache = model.init_cache(src)
    stepwise = torch.stack([model.decode_step(tgt[:, t: t + 1], cache) for t in range(8)], 1)
    assert (stepwise - full).abs().max() < 1e-5


def test_kv_cache_with_left_padded_prompts(positional):
    model = build("decoder_only", tiny_config(positional=positional)).eval()
    rows = [ids(7, seed=0), ids(3, seed=1)]
    prompt = torch.stack([F.pad(r, (7 - len(r), 0)) for r in rows])
    cont = ids(2, 4, seed=5)
    cache = model.init_cache(2)
    logits = [model.decode_step(prompt, cache, prompt != 0)]
    logits += [model.decode_step(cont[:, t: t + 1], cache) for t in range(4)]
    for i, r in enumerate(rows):
        alone = model(torch.cat((r, cont[i]))[None])[0, len(r) - 1:]
        assert (torch.stack(logits, 1)[i] - alone).abs().max() < 1e-5


def test_cache_reorder_selects_rows():
    model = build("decoder_only", tiny_config()).eval()
    x = ids(3, 6)
    cache = model.init_cache(3)
    model.decode_step(x[:, :5], cache)
    cache.reorder(torch.tensor([2, 2, 0]))
    out = model.decode_step(x[[2, 2, 0], 5:], cache)
    full = model(x)[:, 5]
    assert torch.allclose(out, full[[2, 2, 0]], atol=1e-5)


@pytest.mark.parametrize("positional,norm,norm_first,ffn,kv", ALL_VARIANTS)
def test_every_variant_runs_forward_and_backward(positional, norm, norm_first, ffn, kv):
    cfg = tiny_config(positional=positional, norm=norm, norm_first=norm_first, ffn=ffn, n_kv_heads=KV_HEADS[kv],
                      d_model=16, n_heads=4, d_ff=24, n_layers=1, dropout=0.1, n_classes=3, vocab_size=20)
    x = ids(2, 5, high=20)
    x[1, 3:] = 0
    for family in ("decoder_only", "encoder_decoder", "encoder_only"):
        model = build(family, cfg)
        if family == "encoder_decoder":
            out = model(x, x)
        elif family == "encoder_only":
            out = torch.cat((model(x).flatten(), model.classify(x).flatten()))
        else:
            out = model(x)
        out.float().pow(2).mean().backward()
        assert torch.isfinite(out).all()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)


def overfit(model, loss_fn, steps=150, lr=3e-3):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
    return loss.item()


def test_tiny_models_overfit_a_tiny_batch():
    torch.manual_seed(0)
    cfg = tiny_config(n_classes=2)
    x, y = ids(4, 12), ids(4, 10, seed=1)
    gpt = build("decoder_only", cfg)
    assert overfit(gpt, lambda: F.cross_entropy(gpt(x[:, :-1]).flatten(0, 1), x[:, 1:].flatten())) < 0.1
    seq2seq = build("encoder_decoder", cfg)
    assert overfit(seq2seq, lambda: F.cross_entropy(seq2seq(x, y[:, :-1]).flatten(0, 1), y[:, 1:].flatten())) < 0.1
    bert = build("encoder_only", cfg)
    masked = x.clone()
    masked[:, ::3] = 4  # a [MASK]-like id at every third position; predict the originals
    labels = torch.tensor([0, 1, 1, 0])
    mlm = lambda: F.cross_entropy(bert(masked).flatten(0, 1), x.flatten())  # noqa: E731
    assert overfit(bert, mlm) < 0.1
    assert overfit(bert, lambda: F.cross_entropy(bert.classify(x), labels), steps=50) < 0.1


def closed_form_counts(cfg: ModelConfig):
    """Parameters written out from the architecture (pre-LN, layernorm with bias, learned positions)."""
    d, f, V, h_kv, hd = cfg.d_model, cfg.ffn_dim, cfg.vocab_size, cfg.kv_heads, cfg.head_dim
    attn = d * (d + 2 * h_kv * hd) + (d + 2 * h_kv * hd) + d * d + d  # qkv + out, with biases
    cross = (d * d + d) + (d * 2 * h_kv * hd + 2 * h_kv * hd) + (d * d + d)  # q + kv + out
    ffn = d * f + f + f * d + d
    norm = 2 * d
    pos = cfg.max_len * d
    emb = V * d
    dec_layer = attn + ffn + 2 * norm
    gpt = emb + pos + cfg.n_layers * dec_layer + norm  # output tied
    seq2seq = emb + 2 * pos + cfg.n_layers * dec_layer + norm + cfg.n_layers * (dec_layer + cross + norm) + norm
    bert = emb + pos + cfg.n_layers * dec_layer + norm + (d * d + d) + norm + V + (d * cfg.n_classes + cfg.n_classes)
    return {"decoder_only": gpt, "encoder_decoder": seq2seq, "encoder_only": bert}


@pytest.mark.parametrize("family", ["decoder_only", "encoder_decoder", "encoder_only"])
def test_parameter_count_matches_closed_form(family):
    cfg = ModelConfig(vocab_size=1000, d_model=64, n_heads=4, n_kv_heads=2, n_layers=3, max_len=128,
                      positional="learned", n_classes=5)
    model = build(family, cfg)
    assert sum(p.numel() for p in model.parameters()) == closed_form_counts(cfg)[family]


def test_untied_and_separate_vocabularies():
    cfg = tiny_config(share_src_tgt_embeddings=False, src_vocab_size=50, tie_embeddings=False)
    model = EncoderDecoder(cfg)
    assert model.src_embed.weight.shape[0] == 50 and model.lm_head.weight is not model.tgt_embed.weight
    out = model(ids(2, 5, high=50), ids(2, 4))
    assert out.shape == (2, 4, 37)
    with pytest.raises(ValueError, match="joint vocabulary"):
        tiny_config(src_vocab_size=50)


def test_encoder_only_select_and_mean_pooling():
    model = build("encoder_only", tiny_config(n_classes=3, pooling="mean")).eval()
    x = ids(2, 7)
    select = torch.zeros(2, 7, dtype=torch.bool)
    select[0, 2] = select[1, 5] = True
    assert torch.allclose(model(x, select=select), model(x)[select], atol=1e-6)
    padded = torch.cat((x, torch.zeros(2, 3, dtype=torch.long)), 1)
    assert torch.allclose(model.classify(padded), model.classify(x), atol=1e-5)
    with pytest.raises(ValueError, match="no classification head"):
        EncoderOnly(tiny_config())(x, head="classify")


@pytest.mark.parametrize("pooling", ["cls", "cls_tanh", "mean", "max"])
def test_encoder_only_pooling_matches_a_by_hand_reduction(pooling):
    """Each pooling reduces the encoder's real positions as its name says; padding changes nothing."""
    torch.manual_seed(0)
    model = build("encoder_only", tiny_config(n_classes=3, pooling=pooling)).eval()
    x = ids(2, 7)
    x[1, 5:] = 0  # row 1: two padding positions
    mask = x != 0
    hidden = model.encode(x)
    by_hand = {"cls": lambda h, m: h[0],
               "cls_tanh": lambda h, m: torch.tanh(model.pooler(h[0])),
               "mean": lambda h, m: h[m].mean(0),
               "max": lambda h, m: h[m].amax(0)}[pooling]
    pooled = torch.stack([by_hand(hidden[b], mask[b]) for b in range(2)])
    assert torch.allclose(model.pool(hidden, mask), pooled, atol=1e-6)
    assert torch.allclose(model.classify(x), model.classifier(pooled), atol=1e-5)
    assert torch.allclose(model.classify(x[1:, :5]), model.classify(x)[1:], atol=1e-5)


def test_learned_positions_beyond_max_len_error():
    model = build("decoder_only", tiny_config(positional="learned", max_len=8))
    with pytest.raises(ValueError, match="max_len=8"):
        model(ids(1, 9))


@pytest.mark.parametrize("positional", [p for p in POSITIONALS if p != "learned"])
def test_runs_past_max_len_when_positions_allow(positional):
    model = build("decoder_only", tiny_config(positional=positional, max_len=8)).eval()
    assert torch.isfinite(model(ids(1, 20))).all()


CHECKPOINT_KNOBS = {  # the ModelConfig fields converted checkpoints need, as BART / Marian / T5 set them
    "bart": dict(positional="learned", positional_offset=2, norm_first=False, embedding_norm=True, output_bias=True),
    "marian": dict(positional="sinusoidal", sinusoidal_layout="split", norm_first=False, embedding_norm=False,
                   ffn="silu", scale_embeddings=True, output_bias=True),
    "t5": dict(positional="relative", norm="rmsnorm", bias=False, attention_scale=1.0, d_head=12,
               ffn="geglu_tanh", scale_output=True),
    "prenorm-embedding-norm": dict(embedding_norm=True, ffn="gelu_tanh"),
}


@pytest.mark.parametrize("knobs", list(CHECKPOINT_KNOBS))
def test_checkpoint_knobs_cache_equals_full_forward_and_train(knobs):
    cfg = tiny_config(**CHECKPOINT_KNOBS[knobs])
    model = build("encoder_decoder", cfg).eval()
    src = right_pad([ids(9, seed=0), ids(5, seed=1)])
    tgt = ids(2, 8, seed=2)
    tgt[:, 0] = cfg.pad_id  # Marian and T5 start decoding from pad: still a real token
    full = model(src, tgt)
    cache = model.init_cache(src)
    stepwise = torch.stack([model.decode_step(tgt[:, t: t + 1], cache) for t in range(8)], 1)
    assert (stepwise - full).abs().max() < 1e-5
    gpt = build("decoder_only", cfg).eval()
    x = ids(2, 10)
    cache = gpt.init_cache(2)
    steps = [gpt.decode_step(x[:, :4], cache)] + [gpt.decode_step(x[:, t: t + 1], cache) for t in range(4, 10)]
    assert (torch.stack(steps, 1) - gpt(x)[:, 3:]).abs().max() < 1e-5
    model.train()
    model(src, tgt).pow(2).mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_checkpoint_knobs_shape_the_model():
    bart = EncoderDecoder(tiny_config(**CHECKPOINT_KNOBS["bart"]))
    assert bart.encoder.positional.weight.shape == (66, 32) and bart.lm_head.bias.shape == (37,)
    assert bart.encoder.embed_norm is not None and bart.encoder.final_norm is None
    marian = EncoderDecoder(tiny_config(**CHECKPOINT_KNOBS["marian"]))
    assert marian.encoder.embed_norm is None and marian.encoder.final_norm is None
    t5 = EncoderDecoder(tiny_config(**CHECKPOINT_KNOBS["t5"]))
    assert t5.decoder.layers[0].self_attn.qkv.weight.shape == (3 * 4 * 12, 32) and t5.output_scale == 32 ** -0.5
    default = EncoderDecoder(tiny_config())
    assert default.lm_head.bias is None and default.output_scale == 1.0 and default.encoder.embed_norm is None
