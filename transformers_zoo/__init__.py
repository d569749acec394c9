"""transformers_zoo: shared transformer building blocks, three model families, and recipes."""

from .config import ModelConfig
from .models import DecoderOnly, EncoderDecoder, EncoderOnly

__version__ = "0.1.0"
__all__ = ["DecoderOnly", "EncoderDecoder", "EncoderOnly", "ModelConfig", "__version__"]
