"""Weight-only int8: every weight within half a quantization step, the layer equal to a float layer holding the
dequantized weight (on the fast CPU kernel's shapes and on the plain route), and a quantized decoder that
generates the float model's tokens while its input embedding keeps full precision."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from transformers_zoo import DecoderOnly
from transformers_zoo.config import ModelConfig
from transformers_zoo.generation import greedy
from transformers_zoo.modules.lora import add_lora
from transformers_zoo.modules.quantize import KERNEL_ROWS, Int8Linear, fast_shape, quantize_int8

CONFIG = ModelConfig(vocab_size=64, d_model=64, n_heads=4, n_kv_heads=2, n_layers=2, max_len=64, positional="rope",
                     norm="rmsnorm", ffn="swiglu", bias=False, tie_embeddings=True, dropout=0.0)


def linear(out_features: int, in_features: int, bias: bool = True) -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(in_features, out_features, bias=bias)


def test_each_weight_within_half_a_step_of_its_row_scale():
    layer = linear(48, 64)
    q = Int8Linear(layer)
    step = q.scales.float()[:, None]
    assert q.weight_int8.dtype == torch.int8 and q.weight_int8.abs().max() == 127
    assert ((q.dequantized() - layer.weight).abs() <= step / 2 + 1e-7).all()


@pytest.mark.parametrize("shape", [(48, 64), (64, 96), (16, 24), (33, 40)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("rows", [1, 3, KERNEL_ROWS + 1])  # decoding steps by the kernel; a prefill cast and multiplied
def test_layer_equals_a_float_layer_with_the_dequantized_weight(shape, dtype, rows):
    layer = linear(*shape).to(dtype)
    q = Int8Linear(layer)
    x = torch.randn(rows, 1, shape[1]).to(dtype)
    expected = F.linear(x.float(), q.dequantized(), layer.bias.float())
    got = q(x)
    assert got.dtype == dtype and got.shape == (rows, 1, shape[0])
    # the fast kernel multiplies in bfloat16 (inputs and scales rounded to 8 bits of mantissa)
    kernel = fast_shape(*shape) and rows <= KERNEL_ROWS
    tolerance = 2e-2 if kernel or dtype == torch.bfloat16 else 1e-5
    assert torch.allclose(got.float(), expected, rtol=tolerance, atol=tolerance * expected.abs().max().item())


def test_fast_shapes_are_the_kernels_and_match_the_plain_route():
    assert fast_shape(1536, 576) and fast_shape(49152, 576) and not fast_shape(16, 24) and not fast_shape(33, 64)
    q = Int8Linear(linear(64, 64)).to(torch.bfloat16)
    x = torch.randn(KERNEL_ROWS, 64, dtype=torch.bfloat16)
    fast = q(x)
    q.fast = False
    assert torch.allclose(fast.float(), q(x).float(), rtol=2e-2, atol=2e-2)


def float_then_quantized(quantize) -> tuple[nn.Module, torch.Tensor, dict[str, torch.Tensor]]:
    """A tiny decoder's logits and 8 greedy tokens of one prompt before and after ``quantize`` (in place); also
    the model and its input embedding before."""
    torch.manual_seed(0)
    model = DecoderOnly(CONFIG).eval()
    embed = model.embed.weight.detach().clone()
    prompt = torch.randint(4, 64, (1, 9))
    out = {}
    with torch.no_grad():
        for name in ("float", "int8"):
            if name == "int8":
                quantize(model)
            out[f"{name}_logits"] = model(prompt)
            out[f"{name}_tokens"] = greedy(model, model.init_cache(1), prompt, 8)
    return model, embed, out


def test_quantized_decoder_generates_the_float_models_tokens():
    model, embed, out = float_then_quantized(quantize_int8)
    layers = [m for m in model.modules() if isinstance(m, Int8Linear)]
    assert len(layers) == 2 * 4 + 1  # qkv, out, ffn x2; head
    assert not any(isinstance(m, nn.Linear) for m in model.modules())
    assert torch.equal(model.embed.weight, embed)  # the tied input embedding keeps full precision
    assert (out["int8_logits"] - out["float_logits"]).abs().max() < 0.05 * out["float_logits"].abs().max()
    assert torch.equal(out["int8_tokens"], out["float_tokens"])


def test_unmerged_lora_is_refused():
    model = DecoderOnly(CONFIG)
    add_lora(model, ("qkv",), rank=2, alpha=4)
    with pytest.raises(ValueError, match="merge the LoRA adapters"):
        quantize_int8(model)


def test_dynamic_int8_decoder_is_close_to_the_float_model_and_needs_float32():
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    from transformers_zoo.modules.quantize import quantize_dynamic_int8

    model, embed, out = float_then_quantized(quantize_dynamic_int8)
    assert sum(isinstance(m, DynamicLinear) for m in model.modules()) == 2 * 4 + 1
    assert not any(isinstance(m, nn.Linear) for m in model.modules())
    assert torch.equal(model.embed.weight, embed)
    error = (out["int8_logits"] - out["float_logits"]).abs().max()
    assert 0 < error < 0.1 * out["float_logits"].abs().max()  # the activations are rounded too
    assert torch.equal(out["int8_tokens"], out["float_tokens"])
    with pytest.raises(ValueError, match="float32 weights on the CPU"):
        quantize_dynamic_int8(DecoderOnly(CONFIG).to(torch.bfloat16))
