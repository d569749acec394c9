"""Pre-trained weights in and out: Hugging Face checkpoint directories <-> our models, without `transformers`.

    cfg, state, family = load_hf("path/to/gpt2")        # config.json + weights -> ModelConfig, state_dict
    model = load_hf_model("hf:gpt2")                    # the same, built: a DecoderOnly with the weights
    export_hf(model, "out/")                            # config.json + model.safetensors for from_pretrained
    model, notes = load_hf_classifier("hf:bert-base-uncased", n_classes=2)  # for fine-tuning, as HF builds it
    model, src_tok, tgt_tok = load_hf_translator("hf:Helsinki-NLP/opus-mt-en-de")  # with its tokenizers

Each family converter is a module with the same small interface, registered by `model_type`, and written
with the one toolkit of `interop.tensors` (a `Table` of names, `gather` / `scatter` / `take`, `special_ids`):
- `MODEL_TYPES`: the config.json `model_type` strings it reads; `FAMILY`: key of `models.MODELS` it builds;
- `IGNORED`: regexes of checkpoint tensors that are not weights we use (buffers, unused heads);
- `config_from_hf(hf: dict) -> ModelConfig` and `config_to_hf(cfg) -> dict` (raise ConversionError for
  what the other side cannot express);
- `state_from_hf(tensors, cfg) -> state_dict`: *removes* what it uses from `tensors` (`tensors.take`),
  so leftovers are reported; `state_to_hf(state, cfg) -> dict` of tensors by Hugging Face name.
Every conversion error is a one-line `ConversionError` naming the file (config.json or the weights) and
the field or tensor. Add a family by adding its module to `FAMILIES`.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

from ..config import ModelConfig
from ..models import MODELS
from . import bart, bert, gpt2, llama, marian, t5
from .files import ConversionError, read_config, read_tensors, resolve_checkpoint, weights_file, write_checkpoint
from .tensors import drop, generation_ids, our_shapes

FAMILIES: tuple[ModuleType, ...] = (gpt2, bert, llama, bart, marian, t5)
CONVERTERS: dict[str, ModuleType] = {t: m for m in FAMILIES for t in m.MODEL_TYPES}

__all__ = ["CONVERTERS", "ConversionError", "export_hf", "generation_ids", "hf_classifier_config", "load_hf",
           "load_hf_classifier", "load_hf_lm", "load_hf_model", "load_hf_translator", "model_from_hf",
           "resolve_checkpoint"]


def converter(model_type: str | None, where: Path | None = None) -> ModuleType:
    if model_type not in CONVERTERS:
        raise ConversionError(f"unsupported architecture model_type={model_type!r}; supported: "
                              f"{', '.join(sorted(CONVERTERS))}", where)
    return CONVERTERS[model_type]


def load_hf(path: str | os.PathLike, **changes) -> tuple[ModelConfig, dict[str, torch.Tensor], str]:
    """Read a Hugging Face checkpoint directory (or `hf:NAME`) -> (ModelConfig, our state_dict, family).

    `family` names the model class in `models.MODELS`. Every tensor of the checkpoint must be used or
    known to be unused, and every weight of our model must come from the checkpoint (but the converter's
    `FRESH` ones), or a one-line ConversionError names the file and the tensor. `changes` are applied to
    the checkpoint's config before its weights are read (e.g. `n_classes`, `pooling` for a new head).
    """
    directory = resolve_checkpoint(path)
    hf = read_config(directory)
    module = converter(hf.get("model_type"), directory / "config.json")
    cfg = _read_config(module, hf, directory / "config.json", **changes)
    wfile = weights_file(directory)
    tensors = read_tensors(wfile)
    for name in [n for n in tensors if n.endswith((".gamma", ".beta"))]:  # pre-2019 LayerNorm names
        tensors[name.rsplit(".", 1)[0] + (".weight" if name.endswith("gamma") else ".bias")] = tensors.pop(name)
    fresh = getattr(module, "FRESH", ()) + (getattr(module, "FRESH_HEAD", ()) if changes else ())
    return cfg, _convert_state(module, cfg, tensors, wfile, fresh), module.FAMILY


def _read_config(module: ModuleType, hf: dict, where: Path, **changes) -> ModelConfig:
    """`module.config_from_hf(hf)` with `changes`; any refusal a ConversionError naming `where`."""
    try:
        cfg = module.config_from_hf(hf)
        return cfg.replace(**changes) if changes else cfg
    except ValueError as err:  # ConversionError, or a ModelConfig that refuses the numbers
        raise ConversionError(str(err), where) from None


def _convert_state(module: ModuleType, cfg: ModelConfig, tensors: dict[str, torch.Tensor], wfile: Path,
                   fresh: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """Our state_dict of a checkpoint's `tensors` (read from `wfile`, named in every error): each tensor is
    used or `IGNORED`, each weight of our model converted (but `fresh` ones), with our shape."""
    try:
        state = module.state_from_hf(tensors, cfg)
    except ConversionError as err:
        raise ConversionError(str(err), wfile) from None
    drop(tensors, module.IGNORED)
    if tensors:
        names = sorted(tensors)
        more = f" (and {len(names) - 1} more)" if len(names) > 1 else ""
        model_type = cfg.extra.get("hf_model_type") or module.MODEL_TYPES[0]
        raise ConversionError(f"unexpected tensor {names[0]!r}{more}: not part of a {model_type} model with this "
                              "config.json", wfile)
    _check_state(state, cfg, module, wfile, fresh)
    return state


def model_from_hf(module: ModuleType, hf: dict, tensors: dict[str, torch.Tensor]) -> nn.Module:
    """A model with converted weights, in eval mode, from a parsed config.json `hf` and a checkpoint's
    `tensors` in memory (e.g. a `transformers` model's state_dict); `module` is one of the converters
    (e.g. `interop.bart`). The same checks as `load_hf`; errors name `<memory>` for the file."""
    where = Path("<memory>")
    cfg = _read_config(module, hf, where / "config.json")
    model = MODELS[module.FAMILY](cfg)
    model.load_state_dict(_convert_state(module, cfg, dict(tensors), where), strict=True)
    return model.eval()


def _check_state(state: dict, cfg: ModelConfig, module: ModuleType, wfile: Path, fresh: tuple[str, ...]) -> None:
    """The converter's output against our model's own state_dict: a net for converter bugs."""
    shapes = our_shapes(cfg, module.FAMILY)
    for name, shape in shapes.items():
        if name not in state and not any(name.startswith(p) for p in fresh):
            raise ConversionError(f"conversion gave no weight for {name!r}", wfile)
        if name in state and tuple(state[name].shape) != shape:
            raise ConversionError(f"converted {name!r} has shape {tuple(state[name].shape)}, expected {shape}", wfile)
    extra = sorted(set(state) - set(shapes))
    if extra:
        raise ConversionError(f"conversion gave {extra[0]!r}, which the model does not have", wfile)


def load_hf_model(path: str | os.PathLike, **overrides) -> nn.Module:
    """`load_hf` and build the model, in eval mode. `overrides` change ModelConfig fields that do not
    change weight shapes, e.g. `dropout=0.0`; weights the checkpoint lacks (`FRESH`) keep their init."""
    cfg, state, family = load_hf(path)
    model = MODELS[family](cfg.replace(**overrides) if overrides else cfg)
    model.load_state_dict(state, strict=False)
    return model.eval()


def export_hf(model: nn.Module, directory: str | os.PathLike, model_type: str | None = None) -> Path:
    """Write `model` as a Hugging Face checkpoint directory (config.json + model.safetensors) that
    `transformers`' `AutoModelFor...from_pretrained(directory)` loads.

    `model_type` defaults to the one the model was converted from (`config.extra["hf_model_type"]`),
    else the first registered converter of the model's family that can express its config.
    """
    cfg: ModelConfig = model.config
    family = next(name for name, cls in MODELS.items() if isinstance(model, cls))
    if model_type is None:
        model_type = cfg.extra.get("hf_model_type")
    if model_type is not None:
        module = converter(model_type)
        hf = module.config_to_hf(cfg)
    else:
        module, hf, errors = None, None, []
        for candidate in (m for m in FAMILIES if m.FAMILY == family):
            try:
                module, hf = candidate, candidate.config_to_hf(cfg)
                break
            except ValueError as err:  # ConversionError, or a converter's own refusal
                errors.append(str(err))
        if hf is None:
            raise ConversionError(f"no Hugging Face architecture expresses this {family} config: {'; '.join(errors)}")
    if module.FAMILY != family:
        raise ConversionError(f"model_type {model_type!r} is a {module.FAMILY} model, not {family}")
    state = {k: v.detach().float() for k, v in model.state_dict().items()}
    return write_checkpoint(Path(directory), hf, module.state_to_hf(state, cfg))


def load_hf_lm(path: str | os.PathLike, data_dir: str | os.PathLike | None = None):
    """A converted decoder-only checkpoint and its tokenizer: `(model, tokenizer)`, for sampling.

    GPT-2: the `gpt2` byte-level BPE from the data dir (`tokenizers.GPT2Tokenizer`); Llama-family
    checkpoints: their own `tokenizer.json` (`tokenizers.HFJsonTokenizer`).
    """
    from ..tokenizers import GPT2Tokenizer, HFJsonTokenizer

    directory = resolve_checkpoint(path)
    model = load_hf_model(directory)
    if model.config.extra.get("hf_model_type") == "gpt2":
        return model, GPT2Tokenizer.fetch(data_dir)
    tokenizer = HFJsonTokenizer.from_hf(directory)
    if tokenizer.vocab_size > model.config.vocab_size:
        raise ConversionError(f"tokenizer.json has {tokenizer.vocab_size} ids, the model {model.config.vocab_size}",
                              directory / "tokenizer.json")
    return model, tokenizer


def load_hf_translator(path: str | os.PathLike):
    """A converted encoder-decoder checkpoint and its tokenizers: `(model, source tokenizer, target tokenizer)`.

    Marian / opus-mt: `source.spm`, `target.spm`, `vocab.json` (`tokenizers.MarianTokenizer`). T5: its
    `tokenizer.json` (`tokenizers.HFJsonTokenizer`, one for both sides; decoding starts from the config's
    `decoder_start_token_id`, pad). BART's `<s> x </s>` framing is not wired yet: a clear error says so.
    """
    from ..tokenizers import HFJsonTokenizer, MarianTokenizer

    directory = resolve_checkpoint(path)
    model_type = read_config(directory).get("model_type")
    if model_type in marian.MODEL_TYPES:
        src_tok, tgt_tok = MarianTokenizer.pair_from_hf(directory)
    elif model_type in t5.MODEL_TYPES:
        src_tok = tgt_tok = HFJsonTokenizer.from_hf(directory)
    else:
        supported = ", ".join(marian.MODEL_TYPES + t5.MODEL_TYPES)
        raise ConversionError(f"no tokenizer for model_type={model_type!r} yet (translation supports: {supported})",
                              directory / "config.json")
    model = load_hf_model(directory)
    if model_type in t5.MODEL_TYPES:
        tgt_tok.bos_id, tgt_tok.pad_id = generation_ids(model.config)["decoder_start"], model.config.pad_id
    if tgt_tok.vocab_size > model.config.vocab_size or tgt_tok.pad_id != model.config.pad_id:
        raise ConversionError(f"the tokenizer ({tgt_tok.vocab_size} ids, pad {tgt_tok.pad_id}) does not fit the "
                              f"model (vocab_size={model.config.vocab_size}, pad_token_id={model.config.pad_id})",
                              directory)
    return model, src_tok, tgt_tok


def hf_classifier_config(path: str | os.PathLike, n_classes: int, **overrides) -> ModelConfig:
    """The ModelConfig `load_hf_classifier` builds (no weights read): the BERT checkpoint's, with `n_classes`,
    `pooling="cls_tanh"` and `overrides`. Any other architecture is a one-line ConversionError naming config.json."""
    directory = resolve_checkpoint(path)
    hf = read_config(directory)
    if hf.get("model_type") not in bert.MODEL_TYPES:
        raise ConversionError(f"model_type={hf.get('model_type')!r} is not a BERT checkpoint (fine-tuning a "
                              f"classifier supports: {', '.join(bert.MODEL_TYPES)})", directory / "config.json")
    return _read_config(bert, hf, directory / "config.json", **{"n_classes": n_classes, "pooling": "cls_tanh",
                                                                 **overrides})


def load_hf_classifier(path: str | os.PathLike, n_classes: int, **overrides) -> tuple[nn.Module, list[str]]:
    """A BERT checkpoint under a classification head of `n_classes`, for fine-tuning: `(model, notes)`.

    The model is what `BertForSequenceClassification.from_pretrained(path, num_labels=n_classes)` builds:
    the encoder, the pooler (dense + tanh on [CLS], `pooling="cls_tanh"`) from the checkpoint when it has
    one (pre-training checkpoints do: next-sentence prediction trained it), else freshly initialised, and
    a fresh linear classifier (unless the checkpoint is a classifier with `n_classes` labels: then its
    own). `overrides` change ModelConfig fields that keep the weights' shapes (dropout, pooling). `notes`
    say which parts are new. Its config is `hf_classifier_config`'s.
    """
    directory = resolve_checkpoint(path)
    cfg = hf_classifier_config(directory, n_classes, **overrides)
    _, state, _ = load_hf(directory, n_classes=n_classes, pooling=cfg.pooling)  # (a head of n_classes or none)
    model = MODELS[bert.FAMILY](cfg)
    missing, _ = model.load_state_dict(state, strict=False)
    new = sorted({n.split(".")[0] for n in missing if not n.startswith("mlm_")})
    notes = [f"{part} freshly initialised (not in {directory})" for part in new]
    return model, notes
