"""Llama-style decoders (`model_type` llama, qwen2, mistral; SmolLM is llama) <-> DecoderOnly.

Pre-norm RMSNorm decoder with rotary positions, a SwiGLU FFN and grouped-query attention; no biases,
except Qwen2's on q, k, v (`qkv_bias=True`). RoPE: Hugging Face's Llama applies it in the "rotate half"
layout (dims i and i + hd/2 form a pair), which is the layout of our `RotaryPositional`, so q/k weights
are copied as they are, with no row permutation (Meta's original checkpoints interleave pairs and
would need one; their HF conversions have it already). The output head is tied or not as
`tie_word_embeddings` says. Mistral's `sliding_window` is ours (`ModelConfig.sliding_window`: a query
attends to the last `sliding_window` keys, itself included). Not supported (an error names them): rope
scaling (`rope_type` other than default, e.g. Llama 3.1), a `head_dim` other than hidden_size /
num_attention_heads, Qwen2's sliding window (`use_sliding_window`, applied to some layers only).
"""

from __future__ import annotations

import torch

from ..config import ModelConfig
from .files import ConversionError
from .tensors import Rows, Table, gather, reads_config, require, scatter, special_ids, special_ids_to_hf

MODEL_TYPES = ("llama", "qwen2", "mistral")
FAMILY = "decoder_only"
IGNORED = (r"rotary_emb\.inv_freq$",)
ARCHITECTURES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "mistral": "MistralForCausalLM"}


def _rope_theta(hf: dict) -> float:
    params = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    kind = params.get("rope_type", params.get("type", "default"))
    if kind != "default":
        raise ConversionError(f"{hf['model_type']} with rope_type={kind!r} (rope scaling) is not supported")
    return float(params.get("rope_theta", hf.get("rope_theta", 10000.0)))


def _biases(hf: dict) -> tuple[bool, bool | None]:
    """(bias, qkv_bias) of the ModelConfig."""
    if hf["model_type"] == "qwen2":
        return False, True
    attention, mlp = bool(hf.get("attention_bias", False)), bool(hf.get("mlp_bias", False))
    if attention != mlp:
        raise ConversionError(f"attention_bias={attention} with mlp_bias={mlp} is not supported (only both or none)")
    return attention, None


@reads_config
def config_from_hf(hf: dict) -> ModelConfig:
    d, heads = hf["hidden_size"], hf["num_attention_heads"]
    if hf.get("head_dim") not in (None, d // heads):
        raise ConversionError(f"head_dim={hf['head_dim']} other than hidden_size/num_attention_heads={d // heads} "
                              "is not supported")
    if hf.get("hidden_act", "silu") != "silu":
        raise ConversionError(f"hidden_act={hf['hidden_act']!r} is not supported (only silu: SwiGLU)")
    if hf["model_type"] == "qwen2" and hf.get("use_sliding_window"):
        raise ConversionError("qwen2 with use_sliding_window=true is not supported")
    # only Mistral reads `sliding_window` (Qwen2 and Llama configs may carry one they do not apply)
    window = hf.get("sliding_window") if hf["model_type"] == "mistral" else None
    bias, qkv_bias = _biases(hf)
    vocab = hf["vocab_size"]
    return ModelConfig(
        vocab_size=vocab, d_model=d, n_heads=heads, n_kv_heads=hf.get("num_key_value_heads") or heads,
        n_layers=hf["num_hidden_layers"], d_ff=hf["intermediate_size"],
        max_len=hf.get("max_position_embeddings", 2048), sliding_window=window, dropout=0.0,
        attention_dropout=hf.get("attention_dropout", 0.0), positional="rope", rope_theta=_rope_theta(hf),
        norm="rmsnorm", norm_first=True, norm_eps=hf.get("rms_norm_eps", 1e-6), ffn="swiglu", bias=bias,
        qkv_bias=qkv_bias, tie_embeddings=hf.get("tie_word_embeddings", False), **special_ids(hf, vocab))


def config_to_hf(cfg: ModelConfig) -> dict:
    model_type = cfg.extra.get("hf_model_type") or (
        "qwen2" if cfg.qkv_bias and not cfg.bias else "mistral" if cfg.sliding_window else "llama")
    require(cfg, model_type, positional=("rope",), norm=("rmsnorm",), norm_first=(True,), ffn=("swiglu",),
            scale_embeddings=(False,), attention_scale=(None,), d_head=(None, cfg.d_model // cfg.n_heads))
    if model_type == "mistral":  # (no biases in Mistral)
        require(cfg, model_type, bias=(False,), qkv_bias=(None, False))
    else:
        require(cfg, model_type, sliding_window=(None,))
    if model_type == "qwen2":
        require(cfg, model_type, bias=(False,), qkv_bias=(True,))
    else:
        require(cfg, model_type, qkv_bias=(None, cfg.bias))
    hf = {"model_type": model_type, "architectures": [ARCHITECTURES[model_type]], "vocab_size": cfg.vocab_size,
          "hidden_size": cfg.d_model, "num_attention_heads": cfg.n_heads, "num_key_value_heads": cfg.kv_heads,
          "num_hidden_layers": cfg.n_layers, "intermediate_size": cfg.ffn_dim, "head_dim": cfg.head_dim,
          "max_position_embeddings": cfg.max_len, "rms_norm_eps": cfg.norm_eps, "hidden_act": "silu",
          "rope_theta": cfg.rope_theta, "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
          "attention_dropout": cfg.attention_dropout, "tie_word_embeddings": cfg.tie_embeddings,
          **special_ids_to_hf(cfg)}
    if model_type == "llama":
        hf.update(attention_bias=cfg.bias, mlp_bias=cfg.bias)
    if model_type == "mistral":
        hf["sliding_window"] = cfg.sliding_window
    return hf


def _layer(cfg: ModelConfig, i: int) -> dict[str, tuple[str, ...]]:
    """Our name -> the Hugging Face names concatenated (dim 0) into it, for layer i."""
    ours, hf = f"stack.layers.{i}.", f"layers.{i}."
    attn, mlp = f"{hf}self_attn.", f"{hf}mlp."
    table = {f"{ours}self_attn.qkv.weight": tuple(f"{attn}{p}_proj.weight" for p in "qkv"),
             f"{ours}self_attn.out.weight": (f"{attn}o_proj.weight",),
             f"{ours}ffn.gate_up.weight": (f"{mlp}gate_proj.weight", f"{mlp}up_proj.weight"),
             f"{ours}ffn.down.weight": (f"{mlp}down_proj.weight",),
             f"{ours}self_attn_norm.weight": (f"{hf}input_layernorm.weight",),
             f"{ours}ffn_norm.weight": (f"{hf}post_attention_layernorm.weight",)}
    if cfg.qkv_bias or (cfg.qkv_bias is None and cfg.bias):
        table[f"{ours}self_attn.qkv.bias"] = tuple(f"{attn}{p}_proj.bias" for p in "qkv")
    if cfg.bias:
        table.update({f"{ours}self_attn.out.bias": (f"{attn}o_proj.bias",),
                      f"{ours}ffn.gate_up.bias": (f"{mlp}gate_proj.bias", f"{mlp}up_proj.bias"),
                      f"{ours}ffn.down.bias": (f"{mlp}down_proj.bias",)})
    return table


def _table(cfg: ModelConfig) -> Table:
    table = {"embed.weight": ("model.embed_tokens.weight",), "stack.final_norm.weight": ("model.norm.weight",)}
    for i in range(cfg.n_layers):
        table.update({k: tuple(f"model.{n}" for n in v) for k, v in _layer(cfg, i).items()})
    if not cfg.tie_embeddings:
        table["lm_head.weight"] = ("lm_head.weight",)
    return list(table.items())


def _rows(cfg: ModelConfig) -> Rows:
    """Rows of each part of a fused weight: q, k, v (GQA: k and v are smaller) or gate, up."""

    def rows(n_parts: int, total: int) -> list[int]:
        if n_parts == 3:
            return [cfg.n_heads * cfg.head_dim, cfg.kv_heads * cfg.head_dim, cfg.kv_heads * cfg.head_dim]
        return [total // n_parts] * n_parts

    return rows


def state_from_hf(tensors: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    if not any(n.startswith("model.") for n in tensors):  # a bare LlamaModel: no "model." prefix
        for name in [n for n in tensors if n != "lm_head.weight"]:
            tensors[f"model.{name}"] = tensors.pop(name)
    if cfg.tie_embeddings:
        tensors.pop("lm_head.weight", None)
    state = gather(tensors, _table(cfg), cfg, FAMILY, rows=_rows(cfg))
    if cfg.tie_embeddings:
        state["lm_head.weight"] = state["embed.weight"]
    return state


def state_to_hf(state: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    return scatter(state, _table(cfg), rows=_rows(cfg))
