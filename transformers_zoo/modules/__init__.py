"""Shared building blocks: one concept per file."""

from .attention import MultiHeadAttention, fused_attention, record_attention, reference_attention
from .block import TransformerBlock, TransformerStack, build_block
from .embedding import (
    ALiBiPositional,
    LearnedPositional,
    Positional,
    RelativePositional,
    RotaryPositional,
    SinusoidalPositional,
    TokenEmbedding,
    apply_rotary,
    build_positional,
)
from .ffn import FeedForward, GatedFeedForward, build_ffn
from .kv_cache import KVCache, LayerCache
from .linear import Linear
from .norm import build_norm

__all__ = [
    "ALiBiPositional", "FeedForward", "GatedFeedForward", "KVCache", "LayerCache", "LearnedPositional", "Linear",
    "MultiHeadAttention", "Positional", "RelativePositional", "RotaryPositional", "SinusoidalPositional",
    "TokenEmbedding", "TransformerBlock", "TransformerStack", "apply_rotary", "build_block", "build_ffn",
    "build_norm", "build_positional", "fused_attention", "record_attention", "reference_attention",
]
