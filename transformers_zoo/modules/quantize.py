"""Weight-only int8 quantization for generation: every ``nn.Linear`` of a model stores its weight as int8 with one
scale per output row, and multiplies by it without rebuilding the float weight.

    quantize_int8(model)          # in place; the model then generates as before, from a quarter of float32's bytes

Why: decoding one token at batch 1 reads every weight once and does 2 flops per weight, so its speed is the
rate at which the weights stream from memory. int8 rows are a quarter of float32's bytes and half of bfloat16's.

The scheme is per-channel symmetric (torchao's ``int8_weight_only``, gpt-fast's ``int8``): ``scale_n =
max_k |W_nk| / 127``, ``Q_nk = round(W_nk / scale_n)``, so ``y = (x Q^T) * scale``. The error of each weight is at
most half a step (``scale_n / 2``), about 0.4% of the row's largest weight: it changes outputs at the rounding
level, so greedy replies can part from the float model's after some tokens (measured in
benchmarks/chat_generate.py). On CPU the product is ATen's ``_weight_int8pack_mm`` with bfloat16 activations (a
float32 input is cast to bfloat16 for it and back) for up to ``KERNEL_ROWS`` rows: a decoding step. Its shape
rules are narrower than ``nn.Linear``'s (it returned wrong numbers for 24 input features here), so more rows (a
prompt's prefill), other shapes, other devices and other dtypes take the plain route: the int8 weight cast to
the input's dtype, then ``F.linear``.

Embeddings stay as they are (a lookup reads a few rows). A tied output layer gets its own int8 copy, so the
input embedding keeps full precision.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .lora import LoRALinear

__all__ = ["QUANTIZERS", "Int8Linear", "quantize_dynamic_int8", "quantize_int8"]


#: the most rows (tokens) a call sends through ``_weight_int8pack_mm``: it streams the weight once per row, so its
#: time grows with the rows; above this the weight is cast once and multiplied by a bfloat16 matmul (prefill,
#: batches). Measured on one core (AMX): a 1536 x 576 layer takes 42 us a row by the kernel, 113 us by a
#: bfloat16 matmul, 284 us cast and multiplied at 1 row and 337 us at 32 rows.
KERNEL_ROWS = 8


def fast_shape(out_features: int, in_features: int) -> bool:
    """Shapes ``_weight_int8pack_mm`` was checked on (tests/modules/test_quantize.py)."""
    return out_features % 16 == 0 and in_features % 32 == 0


class Int8Linear(nn.Module):
    """``nn.Linear`` with ``weight_int8 (out, in)`` and ``scales (out,)`` buffers: ``x (..., in) -> (..., out)``."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        weight = linear.weight.detach().float()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        scales = weight.abs().amax(dim=1).clamp(min=torch.finfo(torch.float32).tiny) / 127
        self.register_buffer("weight_int8", (weight / scales[:, None]).round().clamp(-127, 127).to(torch.int8))
        self.register_buffer("scales", scales.to(linear.weight.dtype))
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone(), requires_grad=False)
        self.fast = hasattr(torch, "_weight_int8pack_mm") and fast_shape(self.out_features, self.in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, self.in_features)
        if (self.fast and flat.shape[0] <= KERNEL_ROWS and x.device.type == "cpu"
                and x.dtype in (torch.bfloat16, torch.float32)):
            y = torch._weight_int8pack_mm(flat.to(torch.bfloat16), self.weight_int8,
                                          self.scales.to(torch.bfloat16)).to(x.dtype)
        else:
            y = F.linear(flat, self.weight_int8.to(x.dtype)) * self.scales.to(x.dtype)
        if self.bias is not None:
            y = y + self.bias.to(x.dtype)
        return y.reshape(*shape[:-1], self.out_features)

    def dequantized(self) -> torch.Tensor:
        """The weight this layer multiplies by, in float32: ``Q * scale``."""
        return self.weight_int8.float() * self.scales.float()[:, None]

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def _swap_linears(model: nn.Module, make: Callable[[str, nn.Linear], nn.Module]) -> nn.Module:
    """Replaces every ``nn.Linear`` below ``model`` (in place, also returned) by ``make(name, layer)``; an unmerged
    LoRA layer is refused."""
    for name, child in list(model.named_children()):
        if isinstance(child, nn.Linear):
            setattr(model, name, make(name, child))
        elif isinstance(child, LoRALinear):
            raise ValueError(f"{name}: merge the LoRA adapters (merge_lora) before quantizing")
        else:
            _swap_linears(child, make)
    return model


def quantize_int8(model: nn.Module) -> nn.Module:
    """Replaces every ``nn.Linear`` of ``model`` (in place, also returned) by an :class:`Int8Linear`; weights of a
    LoRA layer must be merged first (``merge_lora``). For inference: the int8 weights take no gradient."""
    return _swap_linears(model, lambda name, linear: Int8Linear(linear))


def quantize_dynamic_int8(model: nn.Module) -> nn.Module:
    """Replaces every ``nn.Linear`` of a float32 ``model`` (in place, also returned) by PyTorch's dynamically
    quantized linear layer: int8 weights (one scale per output row) and int8 activations, each input row set
    quantized on the fly, multiplied by fbgemm's int8 kernels (AVX512-VNNI / AVX2) on the CPU. Rounding the
    activations too changes outputs more than :func:`quantize_int8` does; it decoded SmolLM2-135M's shape in 23 ms
    a token here against 34 ms (weight-only int8) and 52 ms (float32), one core. CPU only; torch.ao's dynamic
    quantization (deprecated upstream for torchao, still shipped) is what runs it."""
    import warnings

    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear
    from torch.ao.quantization import default_dynamic_qconfig

    def dynamic(name: str, linear: nn.Linear) -> nn.Module:
        if linear.weight.dtype != torch.float32 or linear.weight.device.type != "cpu":
            raise ValueError(f"{name}: dynamic int8 needs float32 weights on the CPU (--dtype float32)")
        plain = nn.Linear(linear.in_features, linear.out_features, bias=linear.bias is not None)
        plain.weight, plain.bias = linear.weight, linear.bias  # from_float accepts only these exact classes
        plain.qconfig = default_dynamic_qconfig
        with warnings.catch_warnings():  # torch.ao's notice that it moves to torchao
            warnings.simplefilter("ignore")
            return DynamicLinear.from_float(plain)

    return _swap_linears(model, dynamic)


#: ``chat --quantize`` / ``serve --quantize`` names -> the function that quantizes a model in place
QUANTIZERS: dict[str, Callable[[nn.Module], nn.Module]] = {"int8": quantize_int8, "int8-dynamic": quantize_dynamic_int8}
