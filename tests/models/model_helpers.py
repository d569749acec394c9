"""Small configs and inputs shared by the model tests."""

import itertools

import torch

from transformers_zoo import DecoderOnly, EncoderDecoder, EncoderOnly, ModelConfig
from transformers_zoo.modules.embedding import POSITIONALS as POSITIONAL_REGISTRY
from transformers_zoo.modules.norm import NORMS

POSITIONALS = list(POSITIONAL_REGISTRY)  # every registered scheme is tested
KV_HEADS = {"mha": None, "gqa": 2, "mqa": 1}


def tiny_config(**overrides) -> ModelConfig:
    base = dict(vocab_size=37, d_model=32, n_heads=4, n_layers=2, d_ff=64, max_len=64, dropout=0.0,
                relative_buckets=8, relative_max_distance=16)
    base.update(overrides)
    return ModelConfig(**base)


def build(family: str, cfg: ModelConfig, seed: int = 0):
    torch.manual_seed(seed)
    return {"decoder_only": DecoderOnly, "encoder_decoder": EncoderDecoder, "encoder_only": EncoderOnly}[family](cfg)


def ids(*shape, seed=0, low=4, high=37):
    return torch.randint(low, high, shape, generator=torch.Generator().manual_seed(seed))


ALL_VARIANTS = list(itertools.product(POSITIONALS, list(NORMS), [True, False],
                                      ["relu", "gelu", "swiglu", "geglu"], list(KV_HEADS)))

