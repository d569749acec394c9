"""GPT-2 (`model_type` gpt2) <-> DecoderOnly.

GPT-2 is a pre-norm decoder with learned positions, LayerNorm, a GELU FFN (tanh approximation,
`gelu_new` = our `gelu_tanh`) and the output tied to the token embedding. Its linear layers are
`Conv1D`, which store weights as `(in, out)`: they are transposed on the way in and out. The fused
`c_attn` holds q, k, v in that order, as our `qkv` does. `scale_attn_weights: false` (scores not divided
by sqrt(head width)) is our `attention_scale=1.0`.
"""

from __future__ import annotations

import torch

from ..config import ModelConfig
from . import tensors as kit
from .files import ConversionError
from .tensors import Table, gather, reads_config, require, scatter, special_ids, special_ids_to_hf, unprefix

MODEL_TYPES = ("gpt2",)
FAMILY = "decoder_only"
#: causal-mask buffers some checkpoints carry; not weights.
IGNORED = (r"^h\.\d+\.attn\.(masked_)?bias$",)
# the activation_function values GPT2LMHeadModel reads, and our ffn variants it can express
ACTIVATIONS = ("gelu_new", "gelu_pytorch_tanh", "gelu", "relu")
FFNS = ("gelu_tanh", "gelu", "relu")


@reads_config
def config_from_hf(hf: dict) -> ModelConfig:
    ffn = kit.ffn_from_hf(hf.get("activation_function", "gelu_new"), "activation_function", ACTIVATIONS)
    for flag in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn", "add_cross_attention"):
        if hf.get(flag):
            raise ConversionError(f"gpt2 with {flag}=true is not supported")
    vocab = hf.get("vocab_size", 50257)
    return ModelConfig(
        vocab_size=vocab, d_model=hf["n_embd"], n_heads=hf["n_head"], n_layers=hf["n_layer"],
        d_ff=hf.get("n_inner"), max_len=hf.get("n_positions", 1024), dropout=hf.get("resid_pdrop", 0.1),
        attention_dropout=hf.get("attn_pdrop", 0.1), positional="learned", norm="layernorm", norm_first=True,
        norm_eps=hf.get("layer_norm_epsilon", 1e-5), ffn=ffn, bias=True,
        tie_embeddings=hf.get("tie_word_embeddings", True),
        attention_scale=None if hf.get("scale_attn_weights", True) else 1.0, **special_ids(hf, vocab))


def config_to_hf(cfg: ModelConfig) -> dict:
    require(cfg, "gpt2", positional=("learned",), norm=("layernorm",), norm_first=(True,), bias=(True,),
            qkv_bias=(None, True), n_kv_heads=(None, cfg.n_heads),
            scale_embeddings=(False,), attention_scale=(None, 1.0), sliding_window=(None,))
    return {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "vocab_size": cfg.vocab_size,
            "n_embd": cfg.d_model, "n_head": cfg.n_heads, "n_layer": cfg.n_layers, "n_inner": cfg.ffn_dim,
            "n_positions": cfg.max_len, "activation_function": kit.ffn_to_hf(cfg, FFNS),
            "layer_norm_epsilon": cfg.norm_eps, "resid_pdrop": cfg.dropout, "embd_pdrop": cfg.dropout,
            "attn_pdrop": cfg.attention_dropout, "tie_word_embeddings": cfg.tie_embeddings,
            "scale_attn_weights": cfg.attention_scale is None, **special_ids_to_hf(cfg)}


def _table(cfg: ModelConfig) -> Table:
    """Our names and GPT-2's (without the `transformer.` prefix; every Linear is one Conv1D)."""
    table = [("embed.weight", ("wte.weight",)), ("stack.positional.weight", ("wpe.weight",)),
             ("stack.final_norm.weight", ("ln_f.weight",)), ("stack.final_norm.bias", ("ln_f.bias",))]
    for i in range(cfg.n_layers):
        for ours, theirs in (("self_attn.qkv", "attn.c_attn"), ("self_attn.out", "attn.c_proj"), ("ffn.up", "mlp.c_fc"),
                             ("ffn.down", "mlp.c_proj"), ("self_attn_norm", "ln_1"), ("ffn_norm", "ln_2")):
            table += [(f"stack.layers.{i}.{ours}.{p}", (f"h.{i}.{theirs}.{p}",)) for p in ("weight", "bias")]
    return table


def _conv1d(table: Table) -> set[str]:
    """The Conv1D weights of `table`, stored `(in, out)`: transposed on the way in and out."""
    return {n for _, names in table for n in names if n.endswith(".weight") and ".c_" in n}


def state_from_hf(tensors: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    unprefix(tensors, "transformer.")
    table = _table(cfg)
    if cfg.tie_embeddings:
        tensors.pop("lm_head.weight", None)  # saved by some exporters; the tie makes it the embedding
    else:
        table.append(("lm_head.weight", ("lm_head.weight",)))
    state = gather(tensors, table, cfg, FAMILY, transposed=_conv1d(table))
    if cfg.tie_embeddings:
        state["lm_head.weight"] = state["embed.weight"]
    return state


def state_to_hf(state: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    table = [(ours, (f"transformer.{names[0]}",)) for ours, names in _table(cfg)]
    out = scatter(state, table, transposed=_conv1d(table))
    if not cfg.tie_embeddings:
        out["lm_head.weight"] = state["lm_head.weight"]
    return out
