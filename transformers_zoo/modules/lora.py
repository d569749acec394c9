"""LoRA (Hu et al. 2021): a frozen linear layer plus a trained low-rank update, merged back into it on save.

    add_lora(model, ("qkv", "out"), rank=8, alpha=16)    # the named nn.Linear layers gain adapters; all else frozen
    ...train...                                           # only lora_a / lora_b (and what the caller unfreezes) learn
    merge_lora(model)                                     # each LoRALinear becomes a plain nn.Linear, W + s * B @ A

``y = x W^T + b + (alpha / rank) * (dropout(x) A^T) B^T`` with ``A (rank, in)`` drawn as ``nn.Linear`` draws its
weights (Kaiming-uniform) and ``B (out, rank)`` zero, so an adapted model starts as exactly the model it wraps.

Ours, not ``peft``'s: peft can inject adapters into a plain ``nn.Module`` (``inject_adapter_in_model``), but its
module keeps the frozen weight under another name (``q.base_layer.weight``) and its model wrapper renames every
key (``base_model.model.``), so the run's checkpoints, its fingerprint and ``load_state_dict`` of a merged model
would all need a translation table; and a resume must rebuild exactly the same modules from ``config.json``
without a peft version in the loop. Here :class:`LoRALinear` keeps ``weight`` and ``bias`` under the names the
plain layer has: a merged state dict is the plain model's, key for key. The update is ~60 lines.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from .linear import Linear


class LoRALinear(nn.Module):
    """``nn.Linear``'s ``weight (out, in)`` and ``bias`` (frozen) plus ``lora_a (rank, in)`` and ``lora_b (out,
    rank)`` (trained): ``x (..., in) -> (..., out)``."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.0):
        super().__init__()
        if rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {rank}")
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight = base.weight
        self.bias = base.bias
        self.weight.requires_grad_(False)
        if self.bias is not None:
            self.bias.requires_grad_(False)
        self.rank, self.scaling = rank, alpha / rank
        self.lora_a = nn.Parameter(torch.empty(rank, self.in_features, device=base.weight.device))
        self.lora_b = nn.Parameter(torch.zeros(self.out_features, rank, device=base.weight.device))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))  # as nn.Linear initialises a weight
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        update = nn.functional.linear(nn.functional.linear(self.dropout(x), self.lora_a), self.lora_b)
        return nn.functional.linear(x, self.weight, self.bias) + self.scaling * update

    def delta(self) -> torch.Tensor:
        """The update of ``weight`` this adapter stands for: ``scaling * B @ A`` ``(out, in)``."""
        return self.scaling * (self.lora_b @ self.lora_a)

    def merged(self) -> nn.Linear:
        """A plain linear layer (``modules.Linear``) whose weight is ``weight + delta()`` (in float64, then cast)."""
        linear = Linear(self.in_features, self.out_features, bias=self.bias is not None,
                        device=self.weight.device, dtype=self.weight.dtype)
        with torch.no_grad():
            linear.weight.copy_((self.weight.double() + self.delta().double()).to(self.weight.dtype))
            if self.bias is not None:
                linear.bias.copy_(self.bias)
        return linear

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, rank={self.rank}, scaling={self.scaling:g}"


def add_lora(model: nn.Module, targets: Sequence[str], rank: int, alpha: float, dropout: float = 0.0) -> list[str]:
    """Freeze every parameter of ``model`` and replace each ``nn.Linear`` whose attribute name is in ``targets``
    (``qkv``, ``out``, ``gate_up``, ``down``, ...) by a :class:`LoRALinear`, in place. Returns the adapted
    modules' names; none found is a ValueError naming the linear layers there are."""
    for p in model.parameters():
        p.requires_grad_(False)
    found = []
    linears = sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear)})
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.Linear) and child_name in targets:
                setattr(module, child_name, LoRALinear(child, rank, alpha, dropout))
                found.append(f"{name}.{child_name}" if name else child_name)
    if not found:
        raise ValueError(f"LoRA targets {','.join(targets)} name no linear layer of the model; its linear layers: "
                         f"{', '.join(linears)}")
    return found


def merge_lora(model: nn.Module) -> nn.Module:
    """Replace every :class:`LoRALinear` of ``model`` by its merged ``nn.Linear``, in place; returns ``model``.
    Its state dict then has the keys of the model that was adapted."""
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, LoRALinear):
                setattr(module, child_name, child.merged())
    return model


def lora_parameter_count(model: nn.Module) -> int:
    """Parameters of the adapters (``lora_a`` and ``lora_b`` of every :class:`LoRALinear`)."""
    return sum(m.lora_a.numel() + m.lora_b.numel() for m in model.modules() if isinstance(m, LoRALinear))
