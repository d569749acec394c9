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
from .files import ConversionError
from .tensors import hf_special_ids, our_shapes, require, special_ids, take, unprefix

MODEL_TYPES = ("gpt2",)
FAMILY = "decoder_only"
#: causal-mask buffers some checkpoints carry; not weights.
IGNORED = (r"^h\.\d+\.attn\.(masked_)?bias$",)

ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu", "relu": "relu"}
TO_HF_ACTIVATIONS = {"gelu_tanh": "gelu_new", "gelu": "gelu", "relu": "relu"}


def config_from_hf(hf: dict) -> ModelConfig:
    act = hf.get("activation_function", "gelu_new")
    if act not in ACTIVATIONS:
        raise ConversionError(f"gpt2 activation_function {act!r} is not supported; supported: {', '.join(ACTIVATIONS)}")
    for flag in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn", "add_cross_attention"):
        if hf.get(flag):
            raise ConversionError(f"gpt2 with {flag}=true is not supported")
    vocab = hf.get("vocab_size", 50257)
    return ModelConfig(
        vocab_size=vocab, d_model=hf["n_embd"], n_heads=hf["n_head"], n_layers=hf["n_layer"],
        d_ff=hf.get("n_inner"), max_len=hf.get("n_positions", 1024), dropout=hf.get("resid_pdrop", 0.1),
        attention_dropout=hf.get("attn_pdrop", 0.1), positional="learned", norm="layernorm", norm_first=True,
        norm_eps=hf.get("layer_norm_epsilon", 1e-5), ffn=ACTIVATIONS[act], bias=True,
        tie_embeddings=hf.get("tie_word_embeddings", True),
        attention_scale=None if hf.get("scale_attn_weights", True) else 1.0, **special_ids(hf, vocab))


def config_to_hf(cfg: ModelConfig) -> dict:
    require(cfg, "gpt2", positional=("learned",), norm=("layernorm",), norm_first=(True,), bias=(True,),
            qkv_bias=(None, True), ffn=tuple(TO_HF_ACTIVATIONS), n_kv_heads=(None, cfg.n_heads),
            scale_embeddings=(False,), attention_scale=(None, 1.0), sliding_window=(None,))
    return {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "vocab_size": cfg.vocab_size,
            "n_embd": cfg.d_model, "n_head": cfg.n_heads, "n_layer": cfg.n_layers, "n_inner": cfg.ffn_dim,
            "n_positions": cfg.max_len, "activation_function": TO_HF_ACTIVATIONS[cfg.ffn],
            "layer_norm_epsilon": cfg.norm_eps, "resid_pdrop": cfg.dropout, "embd_pdrop": cfg.dropout,
            "attn_pdrop": cfg.attention_dropout, "tie_word_embeddings": cfg.tie_embeddings,
            "scale_attn_weights": cfg.attention_scale is None, **hf_special_ids(cfg)}


def _layer_names(i: int) -> dict[str, tuple[str, bool]]:
    """Our name -> (GPT-2 name, transposed) for layer i."""
    ours, hf = f"stack.layers.{i}.", f"h.{i}."
    names = {}
    for our, their, transposed in (("self_attn.qkv", "attn.c_attn", True), ("self_attn.out", "attn.c_proj", True),
                                   ("ffn.up", "mlp.c_fc", True), ("ffn.down", "mlp.c_proj", True),
                                   ("self_attn_norm", "ln_1", False), ("ffn_norm", "ln_2", False)):
        for p in ("weight", "bias"):
            names[f"{ours}{our}.{p}"] = (f"{hf}{their}.{p}", transposed and p == "weight")
    return names


def _table(cfg: ModelConfig) -> dict[str, tuple[str, bool]]:
    table = {"embed.weight": ("wte.weight", False), "stack.positional.weight": ("wpe.weight", False),
             "stack.final_norm.weight": ("ln_f.weight", False), "stack.final_norm.bias": ("ln_f.bias", False)}
    for i in range(cfg.n_layers):
        table.update(_layer_names(i))
    return table


def state_from_hf(tensors: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    unprefix(tensors, "transformer.")
    shapes = our_shapes(cfg, FAMILY)
    state = {}
    for ours, (hf, transposed) in _table(cfg).items():
        shape = shapes[ours][::-1] if transposed else shapes[ours]
        t = take(tensors, hf, *shape)
        state[ours] = t.t() if transposed else t
    if cfg.tie_embeddings:
        tensors.pop("lm_head.weight", None)  # saved by some exporters; the tie makes it the embedding
        state["lm_head.weight"] = state["embed.weight"]
    else:
        state["lm_head.weight"] = take(tensors, "lm_head.weight", cfg.vocab_size, cfg.d_model)
    return state


def state_to_hf(state: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    out = {f"transformer.{hf}": state[ours].t() if transposed else state[ours]
           for ours, (hf, transposed) in _table(cfg).items()}
    if not cfg.tie_embeddings:
        out["lm_head.weight"] = state["lm_head.weight"]
    return out
