"""What the server serves: a model with its tokenizer(s), what it can do, and how to load one from a spec.

    served = load_served("gpt", "runs/gpt-cpu")          # a run directory of any recipe
    served = load_served("smol", "hf:HuggingFaceTB/SmolLM2-135M")   # a Hugging Face checkpoint
    served = load_served("docs", "runs/index")           # an index folder of recipes/embed.py: search

A run directory says which recipe made it (config.json's "recipe"); a Hugging Face directory says its
model_type (config.json), which names its family. What a model can do (`capabilities`) follows from its
family and what came with it: a decoder-only model generates (completions, chat when its tokenizer has a
chat template), an encoder-decoder translates, an encoder embeds / fills masks / classifies, an index
searches; every model shows its attention weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from torch import nn

from ..tokenizers import Tokenizer

GENERATE, CHAT, EMBED, TRANSLATE, FILL_MASK, CLASSIFY, SEARCH, ATTENTION = (
    "completions", "chat", "embeddings", "translate", "fill-mask", "classify", "search", "attention")


@dataclass
class ServedModel:
    """A model as the server uses it. `tokenizer` encodes the input (and decodes the output of a decoder-only
    model); an encoder-decoder decodes with `target_tokenizer`. `encoder` makes sentence vectors, `index`
    answers searches, `labels` name a classifier's classes, `search` holds a translator's beam settings."""

    name: str
    family: str
    model: nn.Module
    tokenizer: Tokenizer
    source: str = ""
    target_tokenizer: Tokenizer | None = None
    encoder: Any = None  # retrieval.SentenceEncoder
    index: Any = None  # retrieval.VectorIndex
    labels: list[str] | None = None
    search: Any = None  # tasks.translation.SearchSettings
    fills_masks: bool = False
    capabilities: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.capabilities:
            self.capabilities = self._capabilities()

    def _capabilities(self) -> list[str]:
        found = []
        if self.family == "decoder_only":
            found.append(GENERATE)
            if getattr(self.tokenizer, "chat_template", None) is not None:
                found.append(CHAT)
        if self.family == "encoder_decoder":
            found.append(TRANSLATE)
        if self.encoder is not None:
            found.append(EMBED)
        if self.fills_masks:
            found.append(FILL_MASK)
        if self.labels:
            found.append(CLASSIFY)
        if self.index is not None:
            found.append(SEARCH)
        return [*found, ATTENTION]

    @property
    def context(self) -> int:
        """The most tokens a sequence may hold (the model's max_len)."""
        return self.model.config.max_len


def parse_spec(text: str) -> tuple[str, str]:
    """`NAME=PATH` (or a bare PATH, named after its last folder) -> (name, path)."""
    name, sep, path = text.partition("=")
    if not sep:
        path = text
        name = Path(text[3:] if text.startswith("hf:") else text).name or text
    if not name or not path:
        raise ValueError(f"{text!r}: expected NAME=RUN_DIR (or NAME=hf:PATH, NAME=INDEX_DIR)")
    return name, path


def load_served(name: str, spec: str, device: str = "auto", data_dir: str | None = None,
                dtype: str = "float32", quantize: str | None = None) -> ServedModel:
    """Load what `spec` points at (see the module's docstring) onto `device`; a decoder's weights (and so its KV
    cache) in `dtype` ("bfloat16": half the bytes a decoding step reads), or its linear layers quantized
    (`quantize="int8-dynamic"`: int8 weights and activations, modules.quantize); encoders and translators stay
    float32."""
    import torch

    from ..training.trainer import resolve_device

    if spec.startswith("hf:"):
        served = _load_hf(name, spec, data_dir)
    else:
        path = Path(spec)
        if (path / "index.json").is_file():
            served = _load_index(name, path, device, data_dir)
        elif (path / "config.json").is_file() or (path.parent.parent / "config.json").is_file():
            served = _load_run(name, path, device)
        else:
            raise ValueError(f"{spec}: neither a run directory (config.json), an index folder (index.json) nor hf:PATH")
    served.model.to(resolve_device(device)).eval()
    if served.family == "decoder_only":
        served.model.to(getattr(torch, dtype))
        if quantize:
            from ..modules.quantize import QUANTIZERS

            QUANTIZERS[quantize](served.model)
    return served


def _load_run(name: str, path: Path, device: str) -> ServedModel:
    from ..pipeline import load_model
    from ..runs import read_run_config, run_dir_of

    saved = read_run_config(run_dir_of(path))
    recipe = saved.get("recipe")
    if recipe == "gpt":
        from ..tasks.lm import LMSettings

        _, model, tok = load_model(SimpleNamespace(FAMILY="decoder_only", SETTINGS=LMSettings), path, device)
        return ServedModel(name, "decoder_only", model, tok, str(path))
    if recipe == "sft":  # an instruction-tuned decoder (a LoRA run's merged weights) with its chat template
        from ..tasks.sft import load_chat_model

        model, tok = load_chat_model(path, device)
        return ServedModel(name, "decoder_only", model, tok, str(path))
    if recipe == "translate":
        from ..tasks.translation.weights import load_translator

        model, src_tok, tgt_tok, search = load_translator(path)
        return ServedModel(name, "encoder_decoder", model, src_tok, str(path), target_tokenizer=tgt_tok, search=search)
    if recipe == "embed":
        from ..retrieval import SentenceEncoder
        from ..tasks.embedding import EmbedSettings

        s, model, tok = load_model(SimpleNamespace(FAMILY="encoder_only", SETTINGS=EmbedSettings), path, device)
        encoder = SentenceEncoder(model, tok, normalize=True, max_tokens=s.data.max_tokens)
        return ServedModel(name, "encoder_only", model, tok, str(path), encoder=encoder)
    if recipe in ("mlm", "classify"):
        from ..retrieval import SentenceEncoder
        from ..tasks.finetuning import load_encoder_run

        pretrain = saved.get("stage") == "pretrain"
        _, config, tok, model = load_encoder_run(str(path), "pretrain" if pretrain else "finetune", recipe)
        encoder = SentenceEncoder(model, tok, normalize=True)
        return ServedModel(name, "encoder_only", model, tok, str(path), encoder=encoder, fills_masks=pretrain,
                           labels=None if pretrain else list(config["labels"]))
    raise ValueError(f"{path}: a run of recipe {recipe!r}, which the server does not know how to serve")


def _load_hf(name: str, spec: str, data_dir: str | None) -> ServedModel:
    from ..interop import converter, load_hf_lm, load_hf_translator
    from ..interop.files import read_config, resolve_checkpoint
    from ..interop.sentence_transformers import is_sentence_transformer, load_sentence_encoder

    directory = resolve_checkpoint(spec)
    if is_sentence_transformer(directory):
        encoder = load_sentence_encoder(spec)
        return ServedModel(name, "encoder_only", encoder.model, encoder.tokenizer, spec, encoder=encoder)
    family = converter(read_config(directory).get("model_type"), directory).FAMILY
    if family == "decoder_only":
        model, tok = load_hf_lm(spec, data_dir)
        return ServedModel(name, family, model, tok, spec)
    if family == "encoder_decoder":
        from ..tasks.translation.settings import SearchSettings

        model, src_tok, tgt_tok = load_hf_translator(spec)
        return ServedModel(name, family, model, src_tok, spec, target_tokenizer=tgt_tok, search=SearchSettings())
    encoder = load_sentence_encoder(spec)
    return ServedModel(name, family, encoder.model, encoder.tokenizer, spec, encoder=encoder)


def _load_index(name: str, path: Path, device: str, data_dir: str | None) -> ServedModel:
    from ..retrieval.index import VectorIndex

    index = VectorIndex.load(path)
    source = index.meta.get("encoder")
    if not source:
        raise ValueError(f"{path}: the index does not say which encoder wrote it")
    served = load_served(name, source, device, data_dir)
    if served.encoder is None:
        raise ValueError(f"{path}: its encoder {source} makes no sentence vectors")
    index.check_fingerprint(served.encoder.fingerprint, path)
    served.index, served.source = index, str(path)
    served.capabilities = served._capabilities()
    return served
