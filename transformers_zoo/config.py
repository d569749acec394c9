"""ModelConfig: the one description of a model, shared by every family, recipe and checkpoint.

A frozen dataclass that round-trips through JSON (`to_dict` / `from_dict`, `to_json` / `from_json`),
so a run directory's `config.json` is enough to rebuild the model. Variants are plain strings,
checked in `__post_init__` with an error that names the field and lists the valid choices.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .modules.embedding import POSITIONALS as POSITIONAL_BUILDERS
from .modules.ffn import FFNS as FFN_MODULES
from .modules.ffn import is_gated
from .modules.norm import NORMS as NORM_BUILDERS

# The variant registries (positional, norm, ffn) live with their modules, name -> builder: a variant added
# there is valid here and a command-line choice. The other choices are fixed here.
SINUSOIDAL_LAYOUTS = ("interleaved", "split")
POOLINGS = ("cls", "cls_tanh", "mean", "max")


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of a transformer; every family reads the fields it needs.

    Depth: `n_layers` is the depth of a single stack (encoder-only, decoder-only) and the default
    of both stacks of an encoder-decoder; `n_encoder_layers` / `n_decoder_layers` override it there.
    `n_kv_heads`: None means one key/value head per query head (MHA), 1 is MQA, between is GQA.
    `d_ff`: hidden width of the feed-forward network; None means 4 * d_model, or for the gated
    variants (swiglu, geglu, geglu_tanh) 8/3 * d_model rounded up to a multiple of 8, which keeps the
    parameter count of the classic 4x FFN. `ffn` names the activation too: silu (swish) and gelu_tanh
    (GELU's tanh approximation, GPT-2's "gelu_new") are two-matrix FFNs, geglu_tanh is geglu with it (T5 v1.1).
    `d_head`: width of one attention head; None means d_model / n_heads (T5 sets it apart, `d_kv`).
    """

    vocab_size: int = 1000
    d_model: int = 256
    n_heads: int = 4
    n_kv_heads: int | None = None
    d_head: int | None = None
    n_layers: int = 4
    n_encoder_layers: int | None = None
    n_decoder_layers: int | None = None
    d_ff: int | None = None
    max_len: int = 512
    dropout: float = 0.1
    attention_dropout: float = 0.0
    positional: str = "sinusoidal"
    norm: str = "layernorm"
    norm_first: bool = True
    norm_eps: float = 1e-5
    ffn: str = "gelu"
    bias: bool = True
    # biases of the attention's query/key/value projections; None follows `bias` (Qwen2: bias=False, qkv_bias=True).
    qkv_bias: bool | None = None
    tie_embeddings: bool = True
    # multiply token embeddings by sqrt(d_model), as Vaswani et al. do before adding sinusoids.
    scale_embeddings: bool = False
    # a norm on the embeddings (after positions) before the first layer; None: only in post-norm stacks
    # (BERT, BART's layernorm_embedding), False for post-norm without it (Marian).
    embedding_norm: bool | None = None
    # attention scores are q.k times this; None: 1/sqrt(d_head). T5 uses 1.0 (folded into its init).
    attention_scale: float | None = None
    # causal stacks: a query at index i attends only to keys at indices (i - sliding_window, i] (Mistral);
    # None: to every earlier key.
    sliding_window: int | None = None
    # output projection: a bias over the vocabulary (BART's final_logits_bias), and the final hidden
    # states times d_model**-0.5 before it (T5 with tied embeddings).
    output_bias: bool = False
    scale_output: bool = False
    pad_id: int = 0
    # rope: base of the rotary frequencies.
    rope_theta: float = 10000.0
    # learned: rows of the table before position 0 (BART keeps 2), so position p reads row p + offset.
    positional_offset: int = 0
    # sinusoidal: "interleaved" puts sin/cos of a frequency side by side (dims 2i, 2i+1), "split" puts all
    # sines first and all cosines second (fairseq, Marian).
    sinusoidal_layout: str = "interleaved"
    # relative (T5-style bucketed bias): number of buckets and the distance where buckets stop growing.
    relative_buckets: int = 32
    relative_max_distance: int = 128
    # encoder-only classification head (0 = none) and how a sequence is pooled into one vector
    # (cls_tanh: the first position through a dense + tanh layer, BERT's "pooler").
    n_classes: int = 0
    pooling: str = "cls"
    # encoder-decoder: one embedding matrix for source and target (needs a joint vocabulary);
    # with separate vocabularies, src_vocab_size sizes the source embedding (None = vocab_size).
    share_src_tgt_embeddings: bool = True
    src_vocab_size: int | None = None
    # Free-form notes (e.g. which tokenizer); kept in config.json, ignored by the model.
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        _choice("positional", self.positional, POSITIONAL_BUILDERS)
        _choice("norm", self.norm, NORM_BUILDERS)
        _choice("ffn", self.ffn, FFN_MODULES)
        _choice("pooling", self.pooling, POOLINGS)
        _choice("sinusoidal_layout", self.sinusoidal_layout, SINUSOIDAL_LAYOUTS)
        _positive("vocab_size", self.vocab_size)
        _positive("d_model", self.d_model)
        _positive("n_heads", self.n_heads)
        _positive("n_layers", self.n_layers)
        _positive("max_len", self.max_len)
        for name in ("n_encoder_layers", "n_decoder_layers", "d_ff", "d_head", "sliding_window"):
            if getattr(self, name) is not None:
                _positive(name, getattr(self, name))
        if self.d_head is None and self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_heads={self.n_heads} (or set d_head)")
        if self.head_dim % 2 and self.positional == "rope":
            raise ValueError(f"positional='rope' needs an even head dim, got {self.head_dim}")
        if self.positional_offset < 0:
            raise ValueError(f"ModelConfig.positional_offset={self.positional_offset} must be >= 0")
        if self.attention_scale is not None and not self.attention_scale > 0:
            raise ValueError(f"ModelConfig.attention_scale={self.attention_scale} must be > 0 (or None)")
        if self.n_kv_heads is not None:
            _positive("n_kv_heads", self.n_kv_heads)
            if self.n_heads % self.n_kv_heads:
                raise ValueError(f"n_heads={self.n_heads} must be a multiple of n_kv_heads={self.n_kv_heads}")
        for name in ("dropout", "attention_dropout"):
            p = getattr(self, name)
            if not 0.0 <= p < 1.0:
                raise ValueError(f"{name}={p} must be in [0, 1)")
        if not 0 <= self.pad_id < self.vocab_size:
            raise ValueError(f"pad_id={self.pad_id} must be a token id in [0, vocab_size={self.vocab_size})")
        if self.src_vocab_size is not None:
            _positive("src_vocab_size", self.src_vocab_size)
            if self.share_src_tgt_embeddings and self.src_vocab_size != self.vocab_size:
                raise ValueError(f"share_src_tgt_embeddings=True needs src_vocab_size={self.src_vocab_size} "
                                 f"to equal vocab_size={self.vocab_size} (a joint vocabulary)")
        if self.n_classes < 0:
            raise ValueError(f"n_classes={self.n_classes} must be >= 0")
        if self.positional == "relative" and self.relative_buckets < 2:
            raise ValueError(f"relative_buckets={self.relative_buckets} must be >= 2")

    # -- derived sizes -------------------------------------------------------------------------
    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads if self.d_head is None else self.d_head

    @property
    def kv_heads(self) -> int:
        return self.n_heads if self.n_kv_heads is None else self.n_kv_heads

    @property
    def ffn_dim(self) -> int:
        if self.d_ff is not None:
            return self.d_ff
        if is_gated(self.ffn):
            return -(-int(8 * self.d_model / 3) // 8) * 8
        return 4 * self.d_model

    @property
    def source_vocab_size(self) -> int:
        return self.vocab_size if self.src_vocab_size is None else self.src_vocab_size

    @property
    def encoder_layers(self) -> int:
        return self.n_layers if self.n_encoder_layers is None else self.n_encoder_layers

    @property
    def decoder_layers(self) -> int:
        return self.n_layers if self.n_decoder_layers is None else self.n_decoder_layers

    # -- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown ModelConfig field(s) {unknown}; valid fields: {sorted(known)}")
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, s: str) -> ModelConfig:
        return cls.from_dict(json.loads(s))

    def replace(self, **changes: Any) -> ModelConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


def _choice(name: str, value: Any, choices: Iterable[str]) -> None:
    if value not in choices:
        raise ValueError(f"ModelConfig.{name}={value!r} is not valid; choose one of: {', '.join(choices)}")


def _positive(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"ModelConfig.{name}={value!r} must be a positive integer")


# -- which fields a model family reads (cli offers a flag for each) ------------------------------------------
# Fields the recipe derives from its data (vocabulary, classes) rather than from flags.
DERIVED_FIELDS = {"vocab_size", "src_vocab_size", "pad_id", "n_classes", "extra"}
# ModelConfig fields a family's model never reads (no flag for them there); every other field not derived is
# offered. A new field is offered to every family until it is listed here.
_TWO_STACKS = ("n_encoder_layers", "n_decoder_layers", "share_src_tgt_embeddings")
_LM_OUTPUT = ("output_bias", "scale_output")  # the generating heads (decoder, encoder-decoder)
IGNORED_FIELDS = {
    "decoder_only": (*_TWO_STACKS, "pooling"),
    "encoder_decoder": ("pooling",),
    "encoder_only": (*_TWO_STACKS, *_LM_OUTPUT, "sliding_window"),
}


def model_fields(family: str) -> list[str]:
    """The ModelConfig fields a recipe of `family` ("decoder_only", "encoder_decoder", "encoder_only") offers as
    flags: those its model reads, without the ones derived from the data."""
    if family not in IGNORED_FIELDS:
        raise ValueError(f"unknown model family {family!r}; known: {', '.join(IGNORED_FIELDS)}")
    return [f.name for f in dataclasses.fields(ModelConfig)
            if f.name not in DERIVED_FIELDS and f.name not in IGNORED_FIELDS[family]]
