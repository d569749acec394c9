"""The one toolkit every family converter is written with: a conversion table, reading and writing a
checkpoint through it, the special token ids, and the refusals of what a side cannot express.

A converter describes its weights as a `Table`: `[(our_name, (hf_name, ...)), ...]`, where several HF
tensors are concatenated along dim 0 into one of ours (separate q, k, v projections -> our fused `qkv`;
`rows` says how many rows each part has when they differ, GQA). An HF name may appear more than once
(tied weights: one tensor read into several of ours), and so may ours (`scatter`: the tied copies HF
writes besides). `transposed` names the HF tensors stored `(in, out)` (GPT-2's Conv1D).

`state_from_hf(tensors, cfg)` *removes* what it uses from `tensors` (`take`, `gather`), so whatever is
left is reported as unexpected by `interop.load_hf`. Every error here is a one-line `ConversionError`
naming the tensor (or the config field); `load_hf` adds the file.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable

import torch

from ..config import ModelConfig
from .files import ConversionError

Table = list[tuple[str, tuple[str, ...]]]
# rows of each of `n_parts` HF tensors concatenated into one of ours of `total` rows (default: equal parts)
Rows = Callable[[int, int], list[int]]


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


def _parts(table_row: tuple[str, ...], total: int, rows: Rows | None) -> list[int]:
    n = len(table_row)
    return rows(n, total) if rows is not None else [total // n] * n


def gather(tensors: dict[str, torch.Tensor], table: Table, cfg: ModelConfig, family: str, rows: Rows | None = None,
           transposed: Iterable[str] = ()) -> dict[str, torch.Tensor]:
    """Our state dict from HF `tensors` through `table`, every part's shape checked against our `family`
    model of `cfg` (`our_shapes`); what it reads is removed from `tensors` (a name read twice is one tied
    tensor)."""
    shapes = our_shapes(cfg, family)
    transposed = set(transposed)
    read: dict[str, torch.Tensor] = {}
    state = {}
    for ours, names in table:
        shape = tuple(shapes[ours])
        parts = []
        for name, n in zip(names, _parts(names, shape[0], rows), strict=True):
            if name not in read:
                part = (n, *shape[1:])
                read[name] = take(tensors, name, *part[::-1]).t() if name in transposed else take(tensors, name, *part)
            parts.append(read[name])
        state[ours] = parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)
    return state


def scatter(state: dict[str, torch.Tensor], table: Table, rows: Rows | None = None,
            transposed: Iterable[str] = ()) -> dict[str, torch.Tensor]:
    """HF tensors from our `state` through `table` (the inverse of `gather`; `table` may name more HF
    tensors than `gather` reads: the tied copies HF's state_dict also holds).

    Every tensor is a copy that shares no storage with another (a split q/k/v would share our fused
    one's, which safetensors refuses), except that tied weights stay tied: all names filled from one
    weight of ours (`src_embed`, `tgt_embed` and `lm_head` when tied) are the same tensor, so a writer
    keeps one of them, as `save_pretrained` does.
    """
    transposed = set(transposed)
    out = {}
    copies: dict[tuple, list[torch.Tensor]] = {}
    for ours, names in table:
        t = state[ours]
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), len(names))
        if key not in copies:
            copies[key] = [part.detach().clone() for part in t.split(_parts(names, t.shape[0], rows), dim=0)]
        out.update((n, p.t().contiguous() if n in transposed else p) for n, p in zip(names, copies[key], strict=True))
    return out


def unprefix(tensors: dict[str, torch.Tensor], prefix: str) -> None:
    """Rename `prefix + name` to `name` in place (`transformer.h.0...` -> `h.0...`; heads keep theirs)."""
    for name in [n for n in tensors if n.startswith(prefix)]:
        tensors[name[len(prefix):]] = tensors.pop(name)


def drop(tensors: dict[str, torch.Tensor], patterns: Iterable[str]) -> None:
    """Remove in place the tensors whose names match one of the regexes (buffers and unused heads)."""
    regexes = [re.compile(p) for p in patterns]
    for name in [n for n in tensors if any(r.search(n) for r in regexes)]:
        del tensors[name]


def fill(tensors: dict[str, torch.Tensor], name: str, *alternatives: str) -> None:
    """Set `tensors[name]` from the first of `alternatives` present when a checkpoint left it out (tied
    weights are saved once, under any of their names)."""
    if name not in tensors:
        for alt in alternatives:
            if alt in tensors:
                tensors[name] = tensors[alt]
                return


def drop_copies(tensors: dict[str, torch.Tensor], copies: Iterable[tuple[str, str]]) -> None:
    """Remove each `name` of `copies = [(name, of), ...]` that equals the tensor `of` the table reads: the
    tied copies HF saves. A copy that differs (an untied head under a config that says tied) stays, and is
    reported as unexpected."""
    for name, of in copies:
        if name in tensors and of in tensors and name != of and torch.equal(tensors[name], tensors[of]):
            del tensors[name]


def require(cfg: ModelConfig, model_type: str, **allowed: tuple) -> None:
    """Raise unless every `cfg.<field>` is one of `allowed[field]`: what `model_type` can express."""
    for name, values in allowed.items():
        value = getattr(cfg, name)
        if value not in values:
            raise ConversionError(f"{model_type} cannot express ModelConfig.{name}={value!r} "
                                  f"(supported: {', '.join(map(repr, values))})")


def reads_config(config_from_hf: Callable[[dict], ModelConfig]) -> Callable[[dict], ModelConfig]:
    """Wrap a converter's `config_from_hf` so that a field the config lacks, or a value ModelConfig refuses,
    is a one-line ConversionError (`load_hf` adds the file)."""

    @functools.wraps(config_from_hf)
    def read(hf: dict) -> ModelConfig:
        try:
            return config_from_hf(hf)
        except KeyError as missing:
            raise ConversionError(f"missing field {missing} for model_type={hf.get('model_type')!r}") from None
        except ConversionError:
            raise
        except ValueError as err:
            raise ConversionError(str(err)) from None

    return read


# HF `activation_function` / `hidden_act` -> our two-matrix FFN of the same activation, and back.
HF_TO_FFN = {"relu": "relu", "gelu": "gelu", "silu": "silu", "swish": "silu", "gelu_new": "gelu_tanh",
             "gelu_pytorch_tanh": "gelu_tanh"}
FFN_TO_HF = {"relu": "relu", "gelu": "gelu", "silu": "silu", "gelu_tanh": "gelu_new"}


def ffn_from_hf(name: str, field: str, supported: Iterable[str] = tuple(HF_TO_FFN)) -> str:
    """Our `ffn` for HF activation `name` (read from config field `field`, named in the error)."""
    supported = tuple(supported)
    if name not in supported:
        raise ConversionError(f"unsupported {field}={name!r}; supported: {', '.join(supported)}")
    return HF_TO_FFN[name]


def ffn_to_hf(cfg: ModelConfig, supported: Iterable[str] = tuple(FFN_TO_HF)) -> str:
    """The HF activation name of our `cfg.ffn`, if it is one of `supported`."""
    supported = tuple(supported)
    if cfg.ffn not in supported:
        raise ConversionError(f"ModelConfig.ffn={cfg.ffn!r} has no Hugging Face equivalent in this family; "
                              f"use one of: {', '.join(supported)}")
    return FFN_TO_HF[cfg.ffn]


def same(hf: dict, fields: tuple[str, ...]) -> object:
    """The value shared by HF config `fields` (e.g. encoder and decoder head counts); we have one knob."""
    values = {f: hf[f] for f in fields if hf.get(f) is not None}
    if len(set(values.values())) > 1:
        raise ConversionError(f"unsupported: {' != '.join(f'{k}={v}' for k, v in values.items())} (one value "
                              "for both stacks is supported)")
    if not values:
        raise ConversionError(f"missing field {fields[0]!r}")
    return next(iter(values.values()))


# config.json's special token fields -> the `ModelConfig.extra` keys that keep them
TOKEN_FIELDS = {"bos_token_id": "bos_id", "eos_token_id": "eos_id", "decoder_start_token_id": "decoder_start_id",
                "forced_bos_token_id": "forced_bos_id", "forced_eos_token_id": "forced_eos_id"}


def special_ids(hf: dict, vocab_size: int) -> dict:
    """The ModelConfig fields of a config.json's special tokens: `pad_id`, and `extra` with the model_type
    and every token id of `TOKEN_FIELDS` the config gives (bos/eos always, None when absent).

    pad_id: `pad_token_id`, else `eos_token_id` (GPT-2 and Llama have no pad token; HF pads with EOS too),
    else 0. Generation never emits pad_id, so a model padded with EOS samples running text without EOS.
    """
    def first(value):
        return value[0] if isinstance(value, list) else value

    ids = {ours: first(hf.get(field)) for field, ours in TOKEN_FIELDS.items()}
    pad = first(hf.get("pad_token_id"))
    pad_id = next((i for i in (pad, ids["eos_id"]) if i is not None and 0 <= i < vocab_size), 0)
    kept = {k: v for k, v in ids.items() if v is not None or k in ("bos_id", "eos_id")}
    return {"pad_id": pad_id, "extra": {"hf_model_type": hf.get("model_type"), **kept}}


def special_ids_to_hf(cfg: ModelConfig) -> dict:
    """The inverse of `special_ids`: config.json's token fields (`pad_token_id`, and those `extra` holds)."""
    legacy = cfg.extra.get("hf", {})  # configs saved before one layout kept HF's names under extra["hf"]
    ids = {field: cfg.extra.get(ours, legacy.get(field)) for field, ours in TOKEN_FIELDS.items()}
    return {**{k: v for k, v in ids.items() if v is not None or k in ("bos_token_id", "eos_token_id")},
            "pad_token_id": cfg.pad_id}


def generation_ids(cfg: ModelConfig) -> dict[str, int | None]:
    """The token ids generation needs for a converted model: `decoder_start` (the one-token prompt of
    `generation.greedy` / `beam_search`; the pad token when the config names none), `eos` and `pad`."""
    ids = special_ids_to_hf(cfg)
    start = ids.get("decoder_start_token_id")
    return {"decoder_start": cfg.pad_id if start is None else start, "eos": ids.get("eos_token_id"),
            "pad": cfg.pad_id}
