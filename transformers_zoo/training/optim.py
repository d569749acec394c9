"""AdamW with decoupled weight decay, and the split of parameters into decay / no-decay groups.

Weight decay pulls weights toward zero; that is a sensible prior for the matrices of linear layers but
not for biases, the gains of normalisation layers (whose natural value is 1) or embedding tables (rare
tokens would be shrunk just for being rare). So those go to a group without decay.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

# Module types whose parameters are never decayed, in addition to any class whose name ends in "Norm"
# (which covers the project's own LayerNorm/RMSNorm modules without importing them).
NO_DECAY_MODULES: tuple[type[nn.Module], ...] = (
    nn.Embedding,
    nn.EmbeddingBag,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
    nn.modules.batchnorm._NormBase,
) + ((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ())


def _is_no_decay_module(module: nn.Module) -> bool:
    # `no_weight_decay = True` marks a module of ours that is an embedding table without being nn.Embedding
    # (the token embedding, learned positions).
    return (isinstance(module, NO_DECAY_MODULES) or type(module).__name__.endswith("Norm")
            or getattr(module, "no_weight_decay", False))


def split_decay(model: nn.Module) -> tuple[list[str], list[str]]:
    """Names of the trainable parameters that get weight decay, and of those that do not.

    A parameter is excluded from decay if it has fewer than 2 dimensions (biases, gains) or if any module
    holding it is an embedding or a norm. Shared parameters (an output projection tied to the input
    embedding) are listed once, under their first name, and land in the no-decay group because one of
    their owners is an embedding.
    """
    no_decay_ids: set[int] = set()
    # Every module is visited, so a weight tied between an embedding and a Linear is seen with both owners.
    for module in model.modules():
        for p in module.parameters(recurse=False):
            if p.ndim < 2 or _is_no_decay_module(module):
                no_decay_ids.add(id(p))
    decay, no_decay = [], []
    for name, p in model.named_parameters():  # deduplicated: a tied tensor appears once
        if not p.requires_grad:
            continue
        (no_decay if id(p) in no_decay_ids else decay).append(name)
    return decay, no_decay


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Optimizer parameter groups: `[{"params": decayed, "weight_decay": wd}, {"params": rest, 0.0}]`."""
    decay_names, no_decay_names = split_decay(model)
    params = dict(model.named_parameters())
    groups = [
        {"params": [params[n] for n in decay_names], "weight_decay": weight_decay},
        {"params": [params[n] for n in no_decay_names], "weight_decay": 0.0},
    ]
    # An empty group is legal for torch but pointless; keep the order stable for checkpoints.
    return [g for g in groups if g["params"]]


def build_optimizer(
    model: nn.Module,
    lr: float,
    weight_decay: float = 0.01,
    betas: Iterable[float] = (0.9, 0.98),
    eps: float = 1e-9,
) -> torch.optim.AdamW:
    """AdamW (decoupled weight decay, Loshchilov & Hutter) over `param_groups(model, weight_decay)`."""
    b1, b2 = tuple(betas)
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=(b1, b2), eps=eps)
