import pytest
import torch
import torch.nn.functional as F

from transformers_zoo.modules import build_ffn


def test_norm_config_reaches_every_norm_of_a_model():
    """`norm`, `norm_eps` and `bias` of the config are what each norm layer of a model is built with."""
    from transformers_zoo import DecoderOnly, ModelConfig

    small = dict(vocab_size=11, d_model=16, n_heads=2, n_layers=2, max_len=8)
    for norm, bias, kind in (("layernorm", True, torch.nn.LayerNorm), ("layernorm", False, torch.nn.LayerNorm),
                             ("rmsnorm", False, torch.nn.RMSNorm)):
        model = DecoderOnly(ModelConfig(norm=norm, norm_eps=1e-3, bias=bias, **small))
        norms = [m for m in model.modules() if isinstance(m, (torch.nn.LayerNorm, torch.nn.RMSNorm))]
        assert len(norms) == 2 * 2 + 1 and all(type(m) is kind and m.eps == 1e-3 for m in norms)  # 2 a block + final
        assert all((getattr(m, "bias", None) is not None) == bias for m in norms)


def test_a_variant_registered_in_its_module_is_valid_everywhere(monkeypatch):
    """Adding an FFN variant is one edit, the registry in modules/ffn.py: the config accepts it, a model is
    built with it, and the recipes' --ffn flag offers it."""
    import argparse

    from transformers_zoo import DecoderOnly, ModelConfig
    from transformers_zoo.cli import add_common_args
    from transformers_zoo.modules import ffn

    relu2 = lambda h: F.relu(h).square()  # "squared ReLU" (So et al. 2021)
    monkeypatch.setitem(ffn.FFNS, "relu2", (ffn.FeedForward, relu2))
    cfg = ModelConfig(vocab_size=11, d_model=16, n_heads=2, n_layers=1, max_len=8, ffn="relu2")
    assert cfg.ffn_dim == 64  # a two-matrix FFN: 4 x d_model
    ffns = [m for m in DecoderOnly(cfg).modules() if isinstance(m, ffn.FeedForward)]
    assert ffns and all(m.act is relu2 for m in ffns)
    parser = argparse.ArgumentParser()
    add_common_args(parser, {"tiny": {}}, default_preset="tiny", family="decoder_only")
    assert parser.parse_args(["--ffn", "relu2"]).model__ffn == "relu2"
    with pytest.raises(ValueError, match="relu3.*relu2"):
        ModelConfig(vocab_size=11, ffn="relu3")


def test_gated_ffn_formulas():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8)
    tanh = lambda x: F.gelu(x, approximate="tanh")
    for kind, act in (("swiglu", F.silu), ("geglu", F.gelu), ("geglu_tanh", tanh)):
        ffn = build_ffn(kind, 8, 12)
        gate, up = ffn.gate_up(x).chunk(2, -1)
        assert torch.allclose(ffn(x), ffn.down(act(gate) * up))
    tanh_gelu = lambda h: 0.5 * h * (1 + torch.tanh((2 / torch.pi) ** 0.5 * (h + 0.044715 * h**3)))  # GPT-2's
    for kind, act in (("relu", F.relu), ("gelu", F.gelu), ("silu", F.silu), ("gelu_tanh", tanh_gelu)):
        ffn = build_ffn(kind, 8, 12)
        assert torch.allclose(ffn(x), ffn.down(act(ffn.up(x))), atol=1e-6)
