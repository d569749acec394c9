"""The three model families, each a short composition of `transformers_zoo.modules`."""

from .decoder_only import DecoderOnly
from .encoder_decoder import EncoderDecoder
from .encoder_only import EncoderOnly

MODELS = {"encoder_only": EncoderOnly, "encoder_decoder": EncoderDecoder, "decoder_only": DecoderOnly}

__all__ = ["MODELS", "DecoderOnly", "EncoderDecoder", "EncoderOnly"]
