"""BERT (`model_type` bert) <-> EncoderOnly.

Post-norm encoder with learned positions, a LayerNorm over the embeddings (our post-norm stack's
`embed_norm`), exact GELU, biases everywhere, LayerNorm eps 1e-12. Token types: we have none, so
`token_type_embeddings[0]` is added into the position table (exact for single-segment input, which
is what our batching produces; the second segment's embedding is dropped, and exported as zeros).
MLM head: `cls.predictions.transform` (dense + GELU + LayerNorm) then the tied embedding plus
`cls.predictions.bias` -> our `mlm_dense`, `mlm_norm`, `mlm_head`.

Classification: a `BertForSequenceClassification` checkpoint (by `architectures`) converts whole,
with `pooling="cls_tanh"` (its pooler: dense + tanh on [CLS]) and `n_classes` from its labels. Any
other checkpoint gives an MLM model (`n_classes=0`, `pooling="cls"`); the NSP-trained pooler and NSP
head of pre-training checkpoints are not used. Weights the file lacks (the MLM head of a bare
`BertModel` or of a classifier) keep their initialisation (`FRESH`).
"""

from __future__ import annotations

import torch

from ..config import ModelConfig
from .files import ConversionError
from .tensors import Table, gather, reads_config, require, scatter, special_ids, special_ids_to_hf, take, unprefix

MODEL_TYPES = ("bert",)
FAMILY = "encoder_only"
IGNORED = (r"^embeddings\.position_ids$", r"^pooler\.", r"^cls\.seq_relationship\.", r"^cls\.predictions\.decoder\.")
# weights a checkpoint may lack, which then keep their fresh init: the MLM head of a bare encoder; and, when
# the config is changed for a new head (`load_hf(..., n_classes=, pooling=)`), the pooler and classifier
FRESH = ("mlm_",)
FRESH_HEAD = ("pooler.", "classifier.")
CLASSIFIER = "BertForSequenceClassification"


@reads_config
def config_from_hf(hf: dict) -> ModelConfig:
    if hf.get("hidden_act", "gelu") != "gelu":
        raise ConversionError(f"bert hidden_act={hf['hidden_act']!r} is not supported (only gelu)")
    if hf.get("position_embedding_type", "absolute") != "absolute":
        raise ConversionError(f"bert position_embedding_type={hf['position_embedding_type']!r} is not supported")
    if not hf.get("tie_word_embeddings", True):
        raise ConversionError("bert with tie_word_embeddings=false is not supported")
    classifier = CLASSIFIER in (hf.get("architectures") or [])
    n_classes = len(hf.get("id2label") or {0: 0, 1: 1}) if classifier else 0
    vocab = hf["vocab_size"]
    return ModelConfig(
        vocab_size=vocab, d_model=hf["hidden_size"], n_heads=hf["num_attention_heads"],
        n_layers=hf["num_hidden_layers"], d_ff=hf["intermediate_size"], max_len=hf.get("max_position_embeddings", 512),
        dropout=hf.get("hidden_dropout_prob", 0.1), attention_dropout=hf.get("attention_probs_dropout_prob", 0.1),
        positional="learned", norm="layernorm", norm_first=False, norm_eps=hf.get("layer_norm_eps", 1e-12),
        ffn="gelu", bias=True, tie_embeddings=True, n_classes=n_classes,
        pooling="cls_tanh" if classifier else "cls", **special_ids(hf, vocab))


def config_to_hf(cfg: ModelConfig) -> dict:
    require(cfg, "bert", positional=("learned",), norm=("layernorm",), norm_first=(False,), ffn=("gelu",),
            bias=(True,), qkv_bias=(None, True), n_kv_heads=(None, cfg.n_heads), scale_embeddings=(False,),
            tie_embeddings=(True,))
    if cfg.n_classes:
        require(cfg, "BertForSequenceClassification", pooling=("cls_tanh",))
    hf = {"model_type": "bert", "architectures": [CLASSIFIER if cfg.n_classes else "BertForMaskedLM"],
          "vocab_size": cfg.vocab_size, "hidden_size": cfg.d_model, "num_attention_heads": cfg.n_heads,
          "num_hidden_layers": cfg.n_layers, "intermediate_size": cfg.ffn_dim, "max_position_embeddings": cfg.max_len,
          "hidden_act": "gelu", "hidden_dropout_prob": cfg.dropout,
          "attention_probs_dropout_prob": cfg.attention_dropout,
          "layer_norm_eps": cfg.norm_eps, "type_vocab_size": 2, "tie_word_embeddings": True, **special_ids_to_hf(cfg)}
    if cfg.n_classes:
        hf["id2label"] = {str(i): f"LABEL_{i}" for i in range(cfg.n_classes)}
        hf["label2id"] = {f"LABEL_{i}": i for i in range(cfg.n_classes)}
    return hf


def _table(cfg: ModelConfig, has_mlm: bool, has_pooler: bool = True, has_classifier: bool = True) -> Table:
    """Our names and the BERT names concatenated (dim 0) into each (the position table is special-cased)."""
    table = {"embed.weight": ("embeddings.word_embeddings.weight",)}
    for p in ("weight", "bias"):
        table[f"stack.embed_norm.{p}"] = (f"embeddings.LayerNorm.{p}",)
        for i in range(cfg.n_layers):
            ours, hf = f"stack.layers.{i}.", f"encoder.layer.{i}."
            table.update({f"{ours}self_attn.qkv.{p}": tuple(f"{hf}attention.self.{n}.{p}" for n in
                                                            ("query", "key", "value")),
                          f"{ours}self_attn.out.{p}": (f"{hf}attention.output.dense.{p}",),
                          f"{ours}self_attn_norm.{p}": (f"{hf}attention.output.LayerNorm.{p}",),
                          f"{ours}ffn.up.{p}": (f"{hf}intermediate.dense.{p}",),
                          f"{ours}ffn.down.{p}": (f"{hf}output.dense.{p}",),
                          f"{ours}ffn_norm.{p}": (f"{hf}output.LayerNorm.{p}",)})
        if has_mlm:
            table[f"mlm_dense.{p}"] = (f"cls.predictions.transform.dense.{p}",)
            table[f"mlm_norm.{p}"] = (f"cls.predictions.transform.LayerNorm.{p}",)
        if cfg.pooling == "cls_tanh" and has_pooler:
            table[f"pooler.{p}"] = (f"pooler.dense.{p}",)
        if cfg.n_classes and has_classifier:
            table[f"classifier.{p}"] = (f"classifier.{p}",)
    if has_mlm:
        table["mlm_head.bias"] = ("cls.predictions.bias",)
    return list(table.items())


def state_from_hf(tensors: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    unprefix(tensors, "bert.")
    if "cls.predictions.bias" not in tensors and "cls.predictions.decoder.bias" in tensors:
        tensors["cls.predictions.bias"] = tensors.pop("cls.predictions.decoder.bias")
    has_mlm = "cls.predictions.transform.dense.weight" in tensors or not cfg.n_classes and any(
        n.startswith("cls.predictions.") for n in tensors)
    # A classifier of another number of labels is another task's head: dropped, a fresh one is made.
    head = tensors.get("classifier.weight")
    if head is not None and cfg.n_classes and head.shape[0] != cfg.n_classes:
        tensors.pop("classifier.weight"), tensors.pop("classifier.bias", None)
    table = _table(cfg, has_mlm, "pooler.dense.weight" in tensors, "classifier.weight" in tensors)
    state = gather(tensors, table, cfg, FAMILY)
    position = take(tensors, "embeddings.position_embeddings.weight", cfg.max_len, cfg.d_model)
    token_types = tensors.pop("embeddings.token_type_embeddings.weight", None)
    state["stack.positional.weight"] = position if token_types is None else position + token_types[0].float()
    if has_mlm:
        state["mlm_head.weight"] = state["embed.weight"]
    return state


def state_to_hf(state: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    out = scatter(state, _table(cfg, has_mlm=not cfg.n_classes))
    out = {n if n.startswith(("cls.", "classifier.")) else f"bert.{n}": t for n, t in out.items()}
    out["bert.embeddings.position_embeddings.weight"] = state["stack.positional.weight"]
    out["bert.embeddings.token_type_embeddings.weight"] = torch.zeros(2, cfg.d_model)
    return out
