"""Hugging Face interop: converters between `transformers` checkpoints and our models (one module per family)."""
