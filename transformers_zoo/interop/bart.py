"""BART (`BartForConditionalGeneration`) <-> our `EncoderDecoder`.

What BART is in our terms: post-norm layers (`norm_first=False`) with a LayerNorm on the embeddings of
both stacks (`layernorm_embedding`, our `embedding_norm`), learned positions read two rows past the
position (`positional_offset=2`, HF's BartLearnedPositionalEmbedding), one table per stack, GELU,
embeddings optionally times sqrt(d_model) (`scale_embedding`), one embedding shared by encoder, decoder
and the tied output projection, plus `final_logits_bias` (our `output_bias`). Decoding starts from
`decoder_start_token_id` (EOS, 2, for the released checkpoints), kept with the other special ids in
`cfg.extra` (`tensors.special_ids`). Training-only knobs without an equivalent (activation_dropout, layerdrop) are
dropped: they do not change inference.

Marian (`interop.marian`) has the same layer layout and reuses `layer_pairs`.
"""

from __future__ import annotations

import torch

from ..config import ModelConfig
from .files import ConversionError
from .tensors import (
    Table,
    drop_copies,
    ffn_from_hf,
    ffn_to_hf,
    fill,
    gather,
    reads_config,
    require,
    same,
    scatter,
    special_ids,
    special_ids_to_hf,
)

MODEL_TYPES = ("bart",)
FAMILY = "encoder_decoder"
# Every tensor is used, or reported as unexpected by the loader.
IGNORED: tuple[str, ...] = ()
ARCHITECTURE = "BartForConditionalGeneration"


def shared_fields(hf: dict) -> dict:
    """ModelConfig fields read the same way from BART- and Marian-style configs."""
    for legacy in ("normalize_before", "add_final_layer_norm"):  # pre-norm (mBART-style) stacks
        if hf.get(legacy):
            raise ConversionError(f"unsupported {legacy}=True: this family's converter reads post-norm stacks only")
    return {
        "d_model": hf["d_model"],
        "n_heads": same(hf, ("encoder_attention_heads", "decoder_attention_heads")),
        "n_layers": hf["encoder_layers"],
        "n_encoder_layers": hf["encoder_layers"],
        "n_decoder_layers": hf["decoder_layers"],
        "d_ff": same(hf, ("encoder_ffn_dim", "decoder_ffn_dim")),
        "max_len": hf["max_position_embeddings"],
        "dropout": hf.get("dropout", 0.1),
        "attention_dropout": hf.get("attention_dropout", 0.0),
        "norm": "layernorm",
        "norm_first": False,
        "norm_eps": 1e-5,  # nn.LayerNorm's default, which BART and Marian use
        "ffn": ffn_from_hf(hf.get("activation_function", "gelu"), "activation_function"),
        "bias": True,
        "tie_embeddings": hf.get("tie_word_embeddings", True),
        "scale_embeddings": bool(hf.get("scale_embedding", False)),
        "output_bias": True,
        **special_ids(hf, hf["vocab_size"]),
    }


def shared_fields_to_hf(cfg: ModelConfig) -> dict:
    """The inverse of `shared_fields`."""
    model_type = cfg.extra.get("hf_model_type") or "bart"
    require(cfg, model_type, norm=("layernorm",), norm_first=(False,), bias=(True,), n_kv_heads=(None, cfg.n_heads),
            d_head=(None, cfg.d_model // cfg.n_heads), attention_scale=(None,), norm_eps=(1e-5,),
            sliding_window=(None,), qkv_bias=(None, True))
    return {
        "d_model": cfg.d_model,
        "encoder_attention_heads": cfg.n_heads, "decoder_attention_heads": cfg.n_heads,
        "encoder_layers": cfg.encoder_layers, "decoder_layers": cfg.decoder_layers,
        "encoder_ffn_dim": cfg.ffn_dim, "decoder_ffn_dim": cfg.ffn_dim,
        "max_position_embeddings": cfg.max_len,
        "dropout": cfg.dropout, "attention_dropout": cfg.attention_dropout, "activation_dropout": 0.0,
        "activation_function": ffn_to_hf(cfg),
        "scale_embedding": cfg.scale_embeddings,
        "tie_word_embeddings": cfg.tie_embeddings,  # transformers >= 5: false unties every table
        "is_encoder_decoder": True,
        **special_ids_to_hf(cfg),
    }


@reads_config
def config_from_hf(hf: dict) -> ModelConfig:
    if "pad_token_id" not in hf:
        raise ConversionError("missing field 'pad_token_id'")
    return ModelConfig(
        vocab_size=hf["vocab_size"], positional="learned", positional_offset=2, embedding_norm=True,
        share_src_tgt_embeddings=hf.get("tie_word_embeddings", True), **shared_fields(hf))


def config_to_hf(cfg: ModelConfig) -> dict:
    require(cfg, "bart", positional=("learned",), positional_offset=(2,), embedding_norm=(None, True),
            output_bias=(True,), scale_output=(False,), src_vocab_size=(None, cfg.vocab_size))
    if cfg.tie_embeddings and not cfg.share_src_tgt_embeddings:
        raise ConversionError("BART ties all embeddings or none: tie_embeddings=True needs "
                              "share_src_tgt_embeddings=True")
    return {"model_type": "bart", "architectures": [ARCHITECTURE], "vocab_size": cfg.vocab_size,
            **shared_fields_to_hf(cfg)}


def layer_pairs(cfg: ModelConfig) -> Table:
    """Every encoder and decoder layer: BART's and Marian's names (`model.encoder.layers.{i}...`)."""

    def linear(ours: str, *hf: str) -> Table:
        return [(f"{ours}.{p}", tuple(f"{h}.{p}" for h in hf)) for p in ("weight", "bias")]

    pairs: Table = []
    for stack, n in (("encoder", cfg.encoder_layers), ("decoder", cfg.decoder_layers)):
        for i in range(n):
            ours, hf = f"{stack}.layers.{i}", f"model.{stack}.layers.{i}"
            attn = f"{hf}.self_attn"
            pairs += linear(f"{ours}.self_attn.qkv", f"{attn}.q_proj", f"{attn}.k_proj", f"{attn}.v_proj")
            pairs += linear(f"{ours}.self_attn.out", f"{attn}.out_proj")
            pairs += linear(f"{ours}.self_attn_norm", f"{hf}.self_attn_layer_norm")
            if stack == "decoder":
                cross = f"{hf}.encoder_attn"
                pairs += linear(f"{ours}.cross_attn.q", f"{cross}.q_proj")
                pairs += linear(f"{ours}.cross_attn.kv", f"{cross}.k_proj", f"{cross}.v_proj")
                pairs += linear(f"{ours}.cross_attn.out", f"{cross}.out_proj")
                pairs += linear(f"{ours}.cross_attn_norm", f"{hf}.encoder_attn_layer_norm")
            pairs += linear(f"{ours}.ffn.up", f"{hf}.fc1")
            pairs += linear(f"{ours}.ffn.down", f"{hf}.fc2")
            pairs += linear(f"{ours}.ffn_norm", f"{hf}.final_layer_norm")
    return pairs


def embedding_pairs(cfg: ModelConfig) -> Table:
    """Source and target embeddings and the output projection with its bias.

    transformers >= 5 ties nothing when `tie_word_embeddings` is false: encoder, decoder and output then
    have tables of their own (`share_src_tgt_embeddings=False` here); else all read `model.shared`
    (Marian: the decoder's table when `share_encoder_decoder_embeddings` is false).
    """
    if cfg.share_src_tgt_embeddings:
        src = tgt = "model.shared.weight"
    else:
        src, tgt = "model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight"
    head = tgt if cfg.tie_embeddings else "lm_head.weight"
    return [("src_embed.weight", (src,)), ("tgt_embed.weight", (tgt,)), ("lm_head.weight", (head,)),
            ("lm_head.bias", ("final_logits_bias",))]


def pairs(cfg: ModelConfig) -> Table:
    out = embedding_pairs(cfg)
    for stack in ("encoder", "decoder"):
        out += [(f"{stack}.positional.weight", (f"model.{stack}.embed_positions.weight",))]
        out += [(f"{stack}.embed_norm.{p}", (f"model.{stack}.layernorm_embedding.{p}",)) for p in ("weight", "bias")]
    return out + layer_pairs(cfg)


def prepare(tensors: dict[str, torch.Tensor], cfg: ModelConfig) -> None:
    """Give a checkpoint's tensors, in place, the names `embedding_pairs` reads: the `model.` prefix a bare
    `BartModel` checkpoint lacks, tied tables saved under one name only, `final_logits_bias` (zeros when
    absent, HF's default) flattened to our bias; the tied copies HF saves besides are dropped."""
    if not any(k.startswith("model.") for k in tensors):
        for k in [k for k in tensors if not k.startswith(("lm_head", "final_logits_bias"))]:
            tensors[f"model.{k}"] = tensors.pop(k)
    enc, dec, shared = (f"model.{n}.weight" for n in ("encoder.embed_tokens", "decoder.embed_tokens", "shared"))
    fill(tensors, shared, enc, dec)
    fill(tensors, enc, shared)
    fill(tensors, dec, shared)
    fill(tensors, "lm_head.weight", dec)
    tensors["final_logits_bias"] = tensors.get("final_logits_bias", torch.zeros(cfg.vocab_size)).reshape(-1)
    drop_copies(tensors, tied_copies(cfg))


def alias_pairs(shared: bool) -> Table:
    """The embedding names HF's state_dict holds besides those `embedding_pairs` reads (strict loading
    wants them all, tied or not); `shared`: the model has a `model.shared` table."""
    out: Table = [("src_embed.weight", ("model.encoder.embed_tokens.weight",)),
                  ("tgt_embed.weight", ("model.decoder.embed_tokens.weight",)), ("lm_head.weight", ("lm_head.weight",))]
    return (out + [("src_embed.weight", ("model.shared.weight",))]) if shared else out


def logits_bias_to_hf(out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out["final_logits_bias"] = out["final_logits_bias"].reshape(1, -1)  # HF keeps a (1, V) buffer
    return out


def tied_copies(cfg: ModelConfig) -> tuple[tuple[str, str], ...]:
    """`(name, of)`: the embedding names HF saves as copies of the table `embedding_pairs` reads."""
    if cfg.share_src_tgt_embeddings:
        copies = [(f"model.{n}.embed_tokens.weight", "model.shared.weight") for n in ("encoder", "decoder")]
    else:
        copies = []
    if cfg.tie_embeddings:
        copies.append(("lm_head.weight", embedding_pairs(cfg)[1][1][0]))
    return tuple(copies)


def convert_state(tensors: dict[str, torch.Tensor], cfg: ModelConfig, table: Table) -> dict[str, torch.Tensor]:
    """Our state dict through `table` (BART's or Marian's pairs); what it used is removed from `tensors`."""
    prepare(tensors, cfg)
    state = gather(tensors, table, cfg, FAMILY)
    if not cfg.share_src_tgt_embeddings:  # transformers >= 5 keeps `model.shared` that nothing reads then
        tensors.pop("model.shared.weight", None)
    return state


def state_from_hf(tensors: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    return convert_state(tensors, cfg, pairs(cfg))


def state_to_hf(state: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    return logits_bias_to_hf(scatter(state, pairs(cfg) + alias_pairs(shared=True)))
