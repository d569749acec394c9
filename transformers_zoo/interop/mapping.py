"""Tensor-name tables shared by the converters: our state_dict <-> a Hugging Face checkpoint's tensors.

A converter describes its weights as `pairs`: `(our_name, (hf_name, ...))`, where several HF tensors
are concatenated along dim 0 into one of ours (separate q, k, v projections -> our fused `qkv`).
`gather` reads a checkpoint through the table (every name present, every shape as `EncoderDecoder(cfg)`
expects), `scatter` writes one. A name may appear on both sides more than once: tied weights.
`model_from_hf` is the one call a recipe needs: an HF config dict and tensors -> a loaded model, and
`special_ids` the token ids to generate with.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from types import ModuleType

import torch
from torch import nn

from ..config import ModelConfig

Pairs = list[tuple[str, tuple[str, ...]]]

# HF `activation_function` / `dense_act_fn` -> our two-matrix FFN of the same activation.
HF_TO_FFN = {"relu": "relu", "gelu": "gelu", "silu": "silu", "swish": "silu", "gelu_new": "gelu_tanh",
               "gelu_pytorch_tanh": "gelu_tanh"}
# ... and back: the name HF models of every family accept.
FFN_TO_HF = {"relu": "relu", "gelu": "gelu", "silu": "silu", "gelu_tanh": "gelu_new"}


def ffn_from_hf(name: str, field: str) -> str:
    """Our `ffn` for HF activation `name` (read from config field `field`, named in the error)."""
    if name not in HF_TO_FFN:
        raise ValueError(f"unsupported {field}={name!r}; supported: {', '.join(HF_TO_FFN)}")
    return HF_TO_FFN[name]


def ffn_to_hf(cfg: ModelConfig) -> str:
    if cfg.ffn not in FFN_TO_HF:
        raise ValueError(f"ModelConfig.ffn={cfg.ffn!r} has no Hugging Face equivalent in this family; "
                         f"use one of: {', '.join(FFN_TO_HF)}")
    return FFN_TO_HF[cfg.ffn]


def same(hf: dict, fields: tuple[str, ...]) -> object:
    """The value shared by HF config `fields` (e.g. encoder and decoder head counts); we have one knob."""
    values = {f: hf[f] for f in fields if hf.get(f) is not None}
    if len(set(values.values())) > 1:
        raise ValueError(f"unsupported: {' != '.join(f'{k}={v}' for k, v in values.items())} (one value for both "
                         "stacks is supported)")
    if not values:
        raise ValueError(f"config field {fields[0]} is missing")
    return next(iter(values.values()))


def reads_config(config_from_hf: Callable[[dict], ModelConfig]) -> Callable[[dict], ModelConfig]:
    """Wrap a converter's `config_from_hf` so that a field the config lacks is a one-line ValueError."""

    @functools.wraps(config_from_hf)
    def read(hf: dict) -> ModelConfig:
        try:
            return config_from_hf(hf)
        except KeyError as missing:
            raise ValueError(f"config field {missing.args[0]} is missing") from None

    return read


def special_ids(cfg: ModelConfig) -> dict[str, int | None]:
    """The token ids generation needs for a converted model: `decoder_start` (the one-token prompt of
    `generation.greedy` / `beam_search`), `eos` and `pad`, as the HF config gave them."""
    hf = cfg.extra.get("hf", {})
    start = hf.get("decoder_start_token_id")
    return {"decoder_start": cfg.pad_id if start is None else start, "eos": hf.get("eos_token_id"),
            "pad": cfg.pad_id}


def expected_shapes(model_class: type[nn.Module], cfg: ModelConfig) -> dict[str, torch.Size]:
    """Our state_dict's names and shapes for `model_class(cfg)`, without allocating its weights."""
    with torch.device("meta"):
        model = model_class(cfg)
    return {name: t.shape for name, t in model.state_dict().items()}


def take(tensors: dict[str, torch.Tensor], name: str, shape: tuple[int, ...] | torch.Size | None = None
         ) -> torch.Tensor:
    """`tensors[name]`, checked against `shape`; a missing tensor or a wrong shape is a one-line error."""
    if name not in tensors:
        raise ValueError(f"missing tensor {name}")
    t = tensors[name]
    if shape is not None and tuple(t.shape) != tuple(shape):
        raise ValueError(f"tensor {name} has shape {tuple(t.shape)}, expected {tuple(shape)}")
    return t


def gather(tensors: dict[str, torch.Tensor], pairs: Pairs, shapes: dict[str, torch.Size]) -> dict[str, torch.Tensor]:
    """Our state dict from HF `tensors` through `pairs`; `shapes` are ours (see `expected_shapes`)."""
    missing = sorted(set(shapes) - {ours for ours, _ in pairs})
    if missing:  # a table that forgot a weight is a bug here, not in the checkpoint
        raise RuntimeError(f"conversion table has no entry for {missing[0]}")
    state = {}
    for ours, hf_names in pairs:
        shape = shapes[ours]
        part = (shape[0] // len(hf_names), *shape[1:])
        parts = [take(tensors, name, part) for name in hf_names]
        state[ours] = parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)
    return state


def consume(tensors: dict[str, torch.Tensor], prepared: dict[str, torch.Tensor], pairs: Pairs,
            aliases: tuple[tuple[str, str], ...] = ()) -> None:
    """Remove from `tensors` (the checkpoint's, as read) what a conversion through `pairs` used, so that the
    loader reports what is left (`interop.load_hf`). `prepared` is the converter's copy of `tensors` (a bare
    checkpoint's names gain the `model.` prefix). `aliases` are `(name, of)` pairs of tied copies that HF
    may save besides the table read (`of`): one is used only when it equals that table; an untied head
    under a config that says tied stays, and is reported."""
    used = {name for _, names in pairs for name in names}
    for alias, of in aliases:
        if alias in prepared and of in prepared and of in used and torch.equal(prepared[alias], prepared[of]):
            used.add(alias)
    for key in list(tensors):
        if key in used or f"model.{key}" in used:
            del tensors[key]


def scatter(state: dict[str, torch.Tensor], pairs: Pairs) -> dict[str, torch.Tensor]:
    """HF tensors from our `state` through `pairs` (the inverse of `gather`; `pairs` may name more HF
    tensors than `gather` reads: the tied copies HF's state_dict also holds).

    Every tensor is a copy that shares no storage with another (a split q/k/v would share our fused
    one's, which safetensors refuses), except that tied weights stay tied: all names filled from one
    weight of ours (`src_embed`, `tgt_embed` and `lm_head` when tied) are the same tensor, so a writer
    keeps one of them, as `save_pretrained` does.
    """
    out = {}
    copies: dict[tuple, list[torch.Tensor]] = {}
    for ours, hf_names in pairs:
        t = take(state, ours)
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), len(hf_names))
        if key not in copies:
            copies[key] = [part.detach().clone() for part in t.chunk(len(hf_names), dim=0)]
        out.update(zip(hf_names, copies[key], strict=True))
    return out


def fill(tensors: dict[str, torch.Tensor], name: str, *alternatives: str) -> None:
    """Set `tensors[name]` from the first of `alternatives` present when a checkpoint left it out (tied
    weights are saved once, under any of their names)."""
    if name not in tensors:
        for alt in alternatives:
            if alt in tensors:
                tensors[name] = tensors[alt]
                return


def model_from_hf(converter: ModuleType, hf: dict, tensors: dict[str, torch.Tensor]) -> nn.Module:
    """A model with converted weights, in eval mode: `converter` is one of `transformers_zoo.interop`'s
    modules (e.g. `interop.bart`), `hf` the parsed config.json, `tensors` the checkpoint's tensors."""
    cfg = converter.config_from_hf(hf)
    model = converter.MODEL_CLASS(cfg)
    model.load_state_dict(converter.state_from_hf(tensors, cfg), strict=True)
    return model.eval()
