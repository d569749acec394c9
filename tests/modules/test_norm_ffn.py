import torch
import torch.nn.functional as F

from transformers_zoo.modules import build_ffn, build_norm


def test_rmsnorm_formula():
    x = torch.randn(3, 5, 16)
    norm = build_norm("rmsnorm", 16, eps=1e-6)
    with torch.no_grad():
        norm.weight.uniform_()
    expected = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * norm.weight
    assert torch.allclose(norm(x), expected, atol=1e-5)


def test_layernorm_without_bias():
    assert build_norm("layernorm", 8, bias=False).bias is None


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
