"""Hugging Face checkpoint directories on disk: config.json plus weights, read and written without `transformers`.

Reading takes `model.safetensors`, a sharded `model.safetensors.index.json`, or `pytorch_model.bin`
(loaded with `torch.load(weights_only=True)`, which runs no pickled code). Writing produces
`config.json` + `model.safetensors`, what `AutoModel*.from_pretrained(directory)` loads.
`resolve_checkpoint("hf:NAME")` finds a local directory, or downloads a Hub repository when
`huggingface_hub` is installed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..corpora import DataError

CONFIG = "config.json"
SAFETENSORS = "model.safetensors"
SHARD_INDEX = "model.safetensors.index.json"
TORCH_BIN = "pytorch_model.bin"


class ConversionError(DataError):
    """A checkpoint that cannot be converted; one line, `file: what is wrong (tensor ...)`."""


def resolve_checkpoint(spec: str | os.PathLike) -> Path:
    """`PATH` or `hf:PATH` (a local directory), or `hf:NAME` (a Hub repository id like `gpt2` or
    `HuggingFaceTB/SmolLM2-135M`, downloaded through `huggingface_hub.snapshot_download` when that
    package is installed) -> a local directory. Only `hf:` with a name that is no path downloads."""
    text = str(spec)
    name = text[3:] if text.startswith("hf:") else text
    if Path(name).is_dir():
        return Path(name)
    looks_like_path = name.startswith((".", "/", "~")) or name.count("/") > 1 or os.sep != "/" and os.sep in name
    if not text.startswith("hf:") or looks_like_path:
        raise ConversionError("no such checkpoint directory", name)
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise ConversionError("not a local directory, and huggingface_hub is not installed to download it from "
                              "the Hub (pip install huggingface_hub, or pass a local directory)", name) from None
    patterns = ["config.json", "*.safetensors", "*.safetensors.index.json", "tokenizer.json", "vocab.txt",
                "tokenizer_config.json"]
    try:
        return Path(snapshot_download(name, allow_patterns=patterns))
    except Exception as err:  # network, authentication, unknown repository: one line either way
        raise ConversionError(f"download from the Hugging Face Hub failed ({type(err).__name__}: "
                              f"{str(err).splitlines()[0] if str(err) else ''})", name) from None


def weights_file(directory: Path) -> Path:
    """The file that holds (or indexes) the weights of a checkpoint directory."""
    for name in (SAFETENSORS, SHARD_INDEX, TORCH_BIN):
        if (directory / name).is_file():
            return directory / name
    raise ConversionError(f"no weights found: expected {SAFETENSORS}, {SHARD_INDEX} or {TORCH_BIN}", directory)


def read_config(directory: Path) -> dict:
    path = directory / CONFIG
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ConversionError("file not found (not a Hugging Face checkpoint directory)", path) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConversionError(f"not valid JSON ({err})", path) from None


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a weights file (all shards of an index), by its Hugging Face name."""
    try:
        if path.name.endswith(".index.json"):
            shards = sorted(set(json.loads(path.read_text())["weight_map"].values()))
            tensors: dict[str, torch.Tensor] = {}
            for shard in shards:
                tensors.update(load_file(path.parent / shard))
            return tensors
        if path.suffix == ".safetensors":
            return load_file(path)
        return torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise ConversionError(f"cannot read weights ({type(err).__name__}: {err})", path) from None


def write_checkpoint(directory: Path, config: dict, tensors: dict[str, torch.Tensor]) -> Path:
    """Write `config.json` and `model.safetensors` (fp32 as given, contiguous, no shared storage)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    save_file({k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}, directory / SAFETENSORS,
              metadata={"format": "pt"})
    return directory
