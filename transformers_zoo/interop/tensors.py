"""Small helpers the family converters share: take a tensor by name with its shape checked, strip a
name prefix, and refuse a ModelConfig that a Hugging Face architecture cannot express.

A converter's `state_from_hf(tensors, cfg)` *removes* what it uses from `tensors` (through `take`), so
whatever is left afterwards is reported as unexpected by `interop.load_hf`. Errors raised here name
the tensor; `load_hf` adds the file.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import torch

from ..config import ModelConfig
from .files import ConversionError


def our_shapes(cfg: ModelConfig, family: str) -> dict[str, tuple[int, ...]]:
    """The shape of every entry of our model's state_dict, from a model built on the meta device (free)."""
    from ..models import MODELS

    with torch.device("meta"):
        return {k: tuple(v.shape) for k, v in MODELS[family](cfg).state_dict().items()}


def take(tensors: dict[str, torch.Tensor], name: str, *shape: int) -> torch.Tensor:
    """Remove tensor `name` from `tensors` and return it as fp32, checking that its shape is `shape`."""
    if name not in tensors:
        raise ConversionError(f"missing tensor {name!r}")
    t = tensors.pop(name)
    if tuple(t.shape) != shape:
        raise ConversionError(f"tensor {name!r} has shape {tuple(t.shape)}, expected {shape} from config.json")
    return t.float()


def take_cat(tensors: dict[str, torch.Tensor], names: Iterable[str], *shapes: tuple[int, ...]) -> torch.Tensor:
    """`take` each of `names` (with its shape) and concatenate them along dim 0 (q, k, v -> one qkv)."""
    return torch.cat([take(tensors, n, *s) for n, s in zip(names, shapes, strict=True)])


def unprefix(tensors: dict[str, torch.Tensor], prefix: str) -> None:
    """Rename `prefix + name` to `name` in place (`transformer.h.0...` -> `h.0...`; heads keep theirs)."""
    for name in [n for n in tensors if n.startswith(prefix)]:
        tensors[name[len(prefix):]] = tensors.pop(name)


def drop(tensors: dict[str, torch.Tensor], patterns: Iterable[str]) -> None:
    """Remove in place the tensors whose names match one of the regexes (buffers and unused heads)."""
    regexes = [re.compile(p) for p in patterns]
    for name in [n for n in tensors if any(r.search(n) for r in regexes)]:
        del tensors[name]


def require(cfg: ModelConfig, model_type: str, **allowed: tuple) -> None:
    """Raise unless every `cfg.<field>` is one of `allowed[field]`: what `model_type` can express."""
    for name, values in allowed.items():
        value = getattr(cfg, name)
        if value not in values:
            raise ConversionError(f"{model_type} cannot express ModelConfig.{name}={value!r} "
                                  f"(supported: {', '.join(map(repr, values))})")


def special_ids(hf: dict, vocab_size: int) -> dict:
    """pad_id and the `extra` notes (bos/eos ids, model_type) of a converted config.

    pad_id: `pad_token_id`, else `eos_token_id` (GPT-2 and Llama have no pad token; HF pads with EOS too),
    else 0. Generation never emits pad_id, so a model padded with EOS samples running text without EOS.
    """
    def first(value):
        return value[0] if isinstance(value, list) else value

    bos, eos, pad = first(hf.get("bos_token_id")), first(hf.get("eos_token_id")), first(hf.get("pad_token_id"))
    pad_id = next((i for i in (pad, eos) if i is not None and 0 <= i < vocab_size), 0)
    return {"pad_id": pad_id, "extra": {"hf_model_type": hf["model_type"], "bos_id": bos, "eos_id": eos}}


def hf_special_ids(cfg: ModelConfig) -> dict:
    """The inverse of `special_ids`: bos/eos/pad token ids for an exported config.json."""
    return {"bos_token_id": cfg.extra.get("bos_id"), "eos_token_id": cfg.extra.get("eos_id"),
            "pad_token_id": cfg.pad_id}
