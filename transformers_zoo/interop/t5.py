"""T5 (`T5ForConditionalGeneration`, v1.0 and v1.1) <-> our `EncoderDecoder`.

What T5 is in our terms: pre-norm layers with RMSNorm (T5LayerNorm: no mean, no bias) and a final norm,
no biases anywhere, relative position bias (`positional="relative"`: a learned scalar per head and
bucket, stored in each stack's first layer and shared by all its layers; bidirectional buckets in the
encoder, causal in the decoder, none in cross-attention), unscaled attention scores
(`attention_scale=1.0`), a head width `d_kv` of its own (`d_head`), and `feed_forward_proj`: "relu"
(v1.0) or "gated-gelu" (v1.1: our geglu_tanh, HF's gelu_new). v1.0 ties the output projection to the
embedding and scales the final states by d_model**-0.5 first (`scale_output`); v1.1 has neither.
Decoding starts from the pad token.
"""

from __future__ import annotations

import torch

from ..config import ModelConfig
from .files import ConversionError
from .tensors import (
    FFN_TO_HF,
    Table,
    drop_copies,
    ffn_from_hf,
    fill,
    gather,
    reads_config,
    require,
    scatter,
    special_ids,
    special_ids_to_hf,
)

MODEL_TYPES = ("t5",)
FAMILY = "encoder_decoder"
# Every tensor is used, or reported as unexpected by the loader.
IGNORED: tuple[str, ...] = ()
ARCHITECTURE = "T5ForConditionalGeneration"
# gated activation -> our gated FFN (HF reads "gated-gelu" as gelu_new, the tanh approximation)
GATED = {"gelu": "geglu_tanh", "gelu_new": "geglu_tanh", "gelu_pytorch_tanh": "geglu_tanh", "silu": "swiglu",
         "swish": "swiglu"}


def ffn_from_proj(proj: str) -> str:
    """Our `ffn` for T5's `feed_forward_proj` ("relu", "gated-gelu", ...)."""
    kind, _, act = proj.rpartition("-")
    if kind == "gated":
        if act not in GATED:
            raise ConversionError(f"unsupported feed_forward_proj={proj!r}; gated activations: {', '.join(GATED)}")
        return GATED[act]
    if kind:
        raise ConversionError(f"unsupported feed_forward_proj={proj!r}; expected ACT or gated-ACT")
    return ffn_from_hf(act, "feed_forward_proj")


def ffn_to_proj(ffn: str) -> str:
    gated = {"geglu_tanh": "gated-gelu", "swiglu": "gated-silu"}
    if ffn in gated:
        return gated[ffn]
    if ffn not in FFN_TO_HF:
        raise ConversionError(f"ModelConfig.ffn={ffn!r} has no T5 feed_forward_proj; "
                              f"use one of: {', '.join([*FFN_TO_HF, *gated])}")
    return FFN_TO_HF[ffn]


@reads_config
def config_from_hf(hf: dict) -> ModelConfig:
    # v1.0 ties and scales, v1.1 does neither; transformers >= 5 writes the scaling out as its own field
    scaled = hf.get("scale_decoder_outputs", hf.get("tie_word_embeddings", True) is not False)
    return ModelConfig(
        vocab_size=hf["vocab_size"], d_model=hf["d_model"], n_heads=hf["num_heads"], d_head=hf["d_kv"],
        n_layers=hf["num_layers"], n_encoder_layers=hf["num_layers"],
        n_decoder_layers=hf.get("num_decoder_layers") or hf["num_layers"],
        d_ff=hf["d_ff"], max_len=hf.get("n_positions", 512), dropout=hf.get("dropout_rate", 0.1),
        attention_dropout=hf.get("dropout_rate", 0.1), positional="relative",
        relative_buckets=hf.get("relative_attention_num_buckets", 32),
        relative_max_distance=hf.get("relative_attention_max_distance", 128),
        norm="rmsnorm", norm_first=True, norm_eps=hf.get("layer_norm_epsilon", 1e-6),
        ffn=ffn_from_proj(hf.get("feed_forward_proj", "relu")), bias=False, tie_embeddings=bool(scaled),
        scale_output=bool(scaled), attention_scale=1.0, share_src_tgt_embeddings=True,
        **special_ids({"pad_token_id": 0, **hf}, hf["vocab_size"]))


def config_to_hf(cfg: ModelConfig) -> dict:
    require(cfg, "t5", positional=("relative",), norm=("rmsnorm",), norm_first=(True,), bias=(False,),
            qkv_bias=(None, False), attention_scale=(1.0,), output_bias=(False,), embedding_norm=(None, False),
            share_src_tgt_embeddings=(True,), n_kv_heads=(None, cfg.n_heads), sliding_window=(None,))
    return {
        "model_type": "t5", "architectures": [ARCHITECTURE], "vocab_size": cfg.vocab_size,
        "d_model": cfg.d_model, "num_heads": cfg.n_heads, "d_kv": cfg.head_dim, "d_ff": cfg.ffn_dim,
        "num_layers": cfg.encoder_layers, "num_decoder_layers": cfg.decoder_layers,
        "relative_attention_num_buckets": cfg.relative_buckets,
        "relative_attention_max_distance": cfg.relative_max_distance,
        "dropout_rate": cfg.dropout, "layer_norm_epsilon": cfg.norm_eps, "feed_forward_proj": ffn_to_proj(cfg.ffn),
        # read by transformers as "scale the decoder outputs" (and, before v5, "tie the head")
        "tie_word_embeddings": cfg.scale_output, "is_encoder_decoder": True,
        "decoder_start_token_id": cfg.pad_id, "eos_token_id": 1,
        **{k: v for k, v in special_ids_to_hf(cfg).items() if v is not None},
    }


def pairs(cfg: ModelConfig) -> Table:
    gated = cfg.ffn in ("geglu_tanh", "swiglu")
    out: Table = [("src_embed.weight", ("shared.weight",)), ("tgt_embed.weight", ("shared.weight",)),
                  ("lm_head.weight", ("shared.weight" if cfg.tie_embeddings else "lm_head.weight",))]
    for stack, n in (("encoder", cfg.encoder_layers), ("decoder", cfg.decoder_layers)):
        bias = f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"
        out += [(f"{stack}.positional.embedding.weight", (bias,)),
                (f"{stack}.final_norm.weight", (f"{stack}.final_layer_norm.weight",))]
        for i in range(n):
            ours, hf = f"{stack}.layers.{i}", f"{stack}.block.{i}.layer"
            attn = f"{hf}.0.SelfAttention"
            out += [(f"{ours}.self_attn.qkv.weight", (f"{attn}.q.weight", f"{attn}.k.weight", f"{attn}.v.weight")),
                    (f"{ours}.self_attn.out.weight", (f"{attn}.o.weight",)),
                    (f"{ours}.self_attn_norm.weight", (f"{hf}.0.layer_norm.weight",))]
            ff = 1
            if stack == "decoder":
                cross, ff = f"{hf}.1.EncDecAttention", 2
                out += [(f"{ours}.cross_attn.q.weight", (f"{cross}.q.weight",)),
                        (f"{ours}.cross_attn.kv.weight", (f"{cross}.k.weight", f"{cross}.v.weight")),
                        (f"{ours}.cross_attn.out.weight", (f"{cross}.o.weight",)),
                        (f"{ours}.cross_attn_norm.weight", (f"{hf}.1.layer_norm.weight",))]
            dense = f"{hf}.{ff}.DenseReluDense"
            # our gated FFN: act(gate) * up from one matrix, gate first
            up = (f"{ours}.ffn.gate_up.weight", (f"{dense}.wi_0.weight", f"{dense}.wi_1.weight")) if gated else \
                (f"{ours}.ffn.up.weight", (f"{dense}.wi.weight",))
            out += [up, (f"{ours}.ffn.down.weight", (f"{dense}.wo.weight",)),
                    (f"{ours}.ffn_norm.weight", (f"{hf}.{ff}.layer_norm.weight",))]
    return out


def state_from_hf(tensors: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    fill(tensors, "shared.weight", "encoder.embed_tokens.weight", "decoder.embed_tokens.weight")
    fill(tensors, "lm_head.weight", "shared.weight")  # an untied head saved as tied
    copies = [(f"{n}.embed_tokens.weight", "shared.weight") for n in ("encoder", "decoder")]
    if cfg.tie_embeddings:
        copies.append(("lm_head.weight", "shared.weight"))
    drop_copies(tensors, copies)
    return gather(tensors, pairs(cfg), cfg, FAMILY)


def state_to_hf(state: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    aliases = [("src_embed.weight", ("encoder.embed_tokens.weight",)),  # HF's tied copies (see `scatter`)
               ("tgt_embed.weight", ("decoder.embed_tokens.weight",)), ("lm_head.weight", ("lm_head.weight",))]
    return scatter(state, pairs(cfg) + aliases)
