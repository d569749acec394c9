"""sentence-transformers checkpoints <-> a `SentenceEncoder` (an EncoderOnly, its tokenizer, normalisation).

A sentence-transformers folder is a list of modules (``modules.json``), each a folder with a small JSON config:
``Transformer`` (a Hugging Face checkpoint: config.json, weights, tokenizer; ``sentence_bert_config.json``
holds ``max_seq_length``), ``Pooling`` (``1_Pooling/config.json``: cls, mean or max over the real tokens)
and optionally ``Normalize`` (L2). A BERT-based one (all-MiniLM-L6-v2, all-mpnet is not BERT) converts with
`interop.bert`; its pooling becomes ``ModelConfig.pooling``. Any other module (Dense, a CNN, ...) or pooling
mode (mean_sqrt_len, weightedmean, lasttoken) is refused with one line naming the file.

    encoder = load_sentence_transformer("hf:sentence-transformers/all-MiniLM-L6-v2")
    encoder.encode(["a sentence"])         # == SentenceTransformer(...).encode([...]) to 1e-5
    export_sentence_transformer(encoder, "out/")   # SentenceTransformer("out/") loads it

Both the format of sentence-transformers 2.x-3.x (``pooling_mode_mean_tokens: true``, ``vocab.txt``) and that
of 5.x-6.x (``pooling_mode: "mean"``, only ``tokenizer.json``) are read; the tokenizer is the checkpoint's
``tokenizer.json`` when there is one (the fast tokenizer sentence-transformers itself runs), else ``vocab.txt``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..corpora import read_json
from ..models import EncoderOnly
from ..retrieval.encode import SentenceEncoder
from . import export_hf, load_hf
from .files import ConversionError, resolve_checkpoint
from .hf_json_tokenizer import HFJsonTokenizer
from .wordpiece_tokenizer import WordPieceTokenizer

__all__ = ["export_sentence_transformer", "is_sentence_transformer", "load_sentence_encoder",
           "load_sentence_transformer"]

MODULES = "modules.json"
POOLING_MODES = {"cls": "cls", "mean": "mean", "max": "max"}  # theirs -> ours
OLD_POOLING_KEYS = {"pooling_mode_cls_token": "cls", "pooling_mode_mean_tokens": "mean",
                    "pooling_mode_max_tokens": "max", "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len",
                    "pooling_mode_weightedmean_tokens": "weightedmean", "pooling_mode_lasttoken": "lasttoken"}


def is_sentence_transformer(path: str | os.PathLike) -> bool:
    return (resolve_checkpoint(path) / MODULES).is_file()


def _kind(module_type: str) -> str:
    return module_type.rsplit(".", 1)[-1]


def _pooling(config_path: Path) -> str:
    config = read_json(config_path)
    if "pooling_mode" in config:
        modes = [config["pooling_mode"]]
    else:
        modes = [mode for key, mode in OLD_POOLING_KEYS.items() if config.get(key)]
    if len(modes) != 1 or modes[0] not in POOLING_MODES:
        raise ConversionError(f"pooling {' + '.join(map(str, modes)) or 'none'} is not supported (supported: "
                              f"{', '.join(POOLING_MODES)}, one at a time)", config_path)
    return POOLING_MODES[modes[0]]


def _tokenizer(directory: Path) -> WordPieceTokenizer | HFJsonTokenizer:
    """The fast tokenizer (tokenizer.json) when there is one, else vocab.txt, with BERT's [CLS] and [SEP]."""
    if not (directory / "tokenizer.json").is_file():
        return WordPieceTokenizer.from_hf(directory)
    tok = HFJsonTokenizer.from_hf(directory)
    config = read_json(directory / "tokenizer_config.json") if (directory / "tokenizer_config.json").is_file() else {}
    for name in ("cls", "sep", "pad"):
        token = config.get(f"{name}_token", f"[{name.upper()}]")
        token = token.get("content") if isinstance(token, dict) else token
        token_id = tok.tok.token_to_id(token) if isinstance(token, str) else None
        if token_id is None:
            raise ConversionError(f"no {name}_token in the tokenizer (BERT's [CLS] x [SEP] framing needs it)",
                                  directory / "tokenizer.json")
        setattr(tok, f"{name}_id", token_id)
    return tok


def load_sentence_transformer(path: str | os.PathLike) -> SentenceEncoder:
    """A BERT-based sentence-transformers folder (or ``hf:NAME``) as a SentenceEncoder, in eval mode."""
    directory = resolve_checkpoint(path)
    modules_path = directory / MODULES
    if not modules_path.is_file():
        raise ConversionError("file not found (not a sentence-transformers checkpoint)", modules_path)
    modules = read_json(modules_path)
    kinds = [_kind(m.get("type", "?")) for m in modules]
    unsupported = [k for k in kinds if k not in ("Transformer", "Pooling", "Normalize")]
    if unsupported or kinds[:2] != ["Transformer", "Pooling"] or kinds[2:] not in ([], ["Normalize"]):
        bad = unsupported[0] if unsupported else " -> ".join(kinds)
        raise ConversionError(f"unsupported module {bad!r}: only Transformer -> Pooling [-> Normalize] converts",
                              modules_path)
    transformer = directory / modules[0].get("path", "")
    pooling = _pooling(directory / modules[1]["path"] / "config.json")
    st_config_path = transformer / "sentence_bert_config.json"
    st_config = read_json(st_config_path) if st_config_path.is_file() else {}
    if st_config.get("do_lower_case"):
        raise ConversionError("do_lower_case=true (lower-casing before the tokenizer) is not supported", st_config_path)
    model_type = read_json(transformer / "config.json").get("model_type")
    if model_type != "bert":
        raise ConversionError(f"model_type={model_type!r}: only BERT-based sentence-transformers convert",
                              transformer / "config.json")
    cfg, state, _ = load_hf(transformer, pooling=pooling)
    model = EncoderOnly(cfg)
    model.load_state_dict(state, strict=False)  # the MLM head keeps its init: not used for sentence vectors
    tok = _tokenizer(transformer)
    if tok.vocab_size > cfg.vocab_size or tok.pad_id != cfg.pad_id:
        raise ConversionError(f"the tokenizer ({tok.vocab_size} ids, pad {tok.pad_id}) does not fit the model "
                              f"(vocab_size {cfg.vocab_size}, pad_token_id {cfg.pad_id})", transformer)
    max_tokens = st_config.get("max_seq_length") or _model_max_length(transformer) or cfg.max_len
    return SentenceEncoder(model.eval(), tok, normalize=len(modules) == 3, max_tokens=max_tokens)


def _model_max_length(directory: Path) -> int | None:
    path = directory / "tokenizer_config.json"
    value = read_json(path).get("model_max_length") if path.is_file() else None
    return value if isinstance(value, int) and value < 1_000_000 else None


def export_sentence_transformer(encoder: SentenceEncoder, directory: str | os.PathLike) -> Path:
    """Write ``encoder`` as a sentence-transformers folder (2.x-3.x layout, which 6.x reads too): the BERT
    checkpoint and its tokenizer, ``1_Pooling``, ``2_Normalize`` when the encoder normalises."""
    directory = Path(directory)
    cfg = encoder.model.config
    if cfg.pooling not in POOLING_MODES:
        raise ConversionError(f"pooling {cfg.pooling!r} has no sentence-transformers Pooling mode")
    tok = encoder.tokenizer
    if not isinstance(tok, (WordPieceTokenizer, HFJsonTokenizer)):
        raise ConversionError(f"a {tok.kind} tokenizer cannot be saved as a Hugging Face one (sentence-transformers "
                              "needs vocab.txt or tokenizer.json)")
    export_hf(encoder.model, directory, "bert")
    if isinstance(tok, WordPieceTokenizer):
        (directory / "vocab.txt").write_text("\n".join(tok.pieces) + "\n", encoding="utf-8")
        specials = {k.replace("_id", "_token"): v for k, v in tok.SPECIALS.items()}
        settings = {k: v for k, v in tok._settings().items() if k in ("do_lower_case", "strip_accents",
                                                                          "tokenize_chinese_chars")}
        tok_config = {"tokenizer_class": "BertTokenizer", **specials, **settings}
    else:
        (directory / "tokenizer.json").write_bytes(tok._model_bytes())
        tok_config = {"tokenizer_class": "PreTrainedTokenizerFast", "cls_token": tok.id_to_piece(tok.cls_id),
                      "sep_token": tok.id_to_piece(tok.sep_id), "pad_token": tok.id_to_piece(tok.pad_id)}
    tok_config["model_max_length"] = encoder.max_tokens
    (directory / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2) + "\n")
    (directory / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": encoder.max_tokens,
                                                                     "do_lower_case": False}) + "\n")
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    if encoder.normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
        (directory / "2_Normalize").mkdir(exist_ok=True)
    (directory / MODULES).write_text(json.dumps(modules, indent=2) + "\n")
    (directory / "1_Pooling").mkdir(exist_ok=True)
    pooling = {"word_embedding_dimension": cfg.d_model,
               **{key: mode == cfg.pooling for key, mode in OLD_POOLING_KEYS.items()}}
    (directory / "1_Pooling" / "config.json").write_text(json.dumps(pooling, indent=2) + "\n")
    return directory


def load_sentence_encoder(path: str | os.PathLike, pooling: str = "mean") -> SentenceEncoder:
    """A sentence-transformers folder as it is (`load_sentence_transformer`), or a plain BERT checkpoint with
    ``pooling`` over its last layer and normalised vectors (a start for contrastive training)."""
    directory = resolve_checkpoint(path)
    if (directory / MODULES).is_file():
        return load_sentence_transformer(directory)
    model_type = read_json(directory / "config.json").get("model_type") if (directory / "config.json").is_file() \
        else None
    if model_type != "bert":
        raise ConversionError(f"model_type={model_type!r}: sentence encoders start from BERT checkpoints or "
                              "BERT-based sentence-transformers", directory / "config.json")
    cfg, state, _ = load_hf(directory, pooling=pooling)
    model = EncoderOnly(cfg)
    model.load_state_dict(state, strict=False)
    return SentenceEncoder(model.eval(), _tokenizer(directory), normalize=True)
