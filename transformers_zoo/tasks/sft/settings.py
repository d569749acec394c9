"""The typed settings of an instruction-tuning run (data, LoRA, the whole run) and where its merged weights go."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ...config import ModelConfig
from ...settings import Settings, SettingsError
from ...training import TrainConfig

Conversation = Sequence[dict[str, str]]
#: a LoRA run's final weights, adapters merged: the plain model's state dict
MERGED_FILE = "model.safetensors"


@dataclass(frozen=True)
class SFTDataSettings(Settings):
    """What an instruction-tuning run trains on: ``conversations`` a JSONL file (None: the zoo's instruction set,
    ``per_task`` examples of each task, ``val_per_task`` held out each; ``sst2_val`` whole SST-2 sentences held out
    for validation, 0 for a quick row slice; ``imdb_reviews`` IMDB train reviews, 0 for none); packed into blocks
    of ``block_size`` tokens, ``batch_size`` a step. ``test_size`` caps each scored test set (None: all of
    test_2016_flickr and SST-2 dev), answered ``eval_batch_size`` at a time with at most ``max_new_tokens``. From
    scratch: a ``tokenizer`` (bpe or unigram, ``vocab`` pieces) trained on the pre-training text (its first
    ``pretrain_chars`` characters), and ``pretrain_steps`` steps on that text before instruction tuning."""

    conversations: str | None = None
    per_task: int | None = 20000
    val_per_task: int = 200
    sst2_val: int = 872
    imdb_reviews: int | None = None
    block_size: int = 256
    batch_size: int = 16
    test_size: int | None = None
    eval_batch_size: int = 32
    max_new_tokens: int = 64
    tokenizer: str = "bpe"
    vocab: int = 8000
    pretrain_steps: int = 0
    pretrain_chars: int | None = 20_000_000

    EVALUABLE = ("test_size", "eval_batch_size", "max_new_tokens")

    def __post_init__(self) -> None:
        self.check_positive("per_task", "val_per_task", "block_size", "batch_size", "test_size", "eval_batch_size",
                            "max_new_tokens", "vocab", "pretrain_chars")
        self.check_choice("tokenizer", ("bpe", "unigram"))
        if self.pretrain_steps < 0:
            raise SettingsError("pretrain_steps", f"must be >= 0, got {self.pretrain_steps}")


@dataclass(frozen=True)
class LoRASettings(Settings):
    """LoRA adapters (``rank`` 0: full fine-tuning): ``alpha`` (the update is scaled by alpha / rank), ``targets``
    (names of the linear layers that get one: ``qkv``, ``out``, ``gate_up``, ``up``, ``down``, ``q``, ``kv``),
    ``dropout`` on the adapters' input."""

    rank: int = 0
    alpha: float = 16.0
    targets: tuple[str, ...] = ("qkv", "out")
    dropout: float = 0.0

    def __post_init__(self) -> None:
        targets = self.targets.split(",") if isinstance(self.targets, str) else self.targets
        object.__setattr__(self, "targets", tuple(t.strip() for t in targets if t.strip()))
        if self.rank < 0:
            raise SettingsError("rank", f"must be >= 0 (0: full fine-tuning), got {self.rank}")
        if self.rank and not self.targets:
            raise SettingsError("targets", "name at least one linear layer (e.g. qkv,out)")
        self.check_range("dropout", 0.0, 1.0, high_open=True)


@dataclass(frozen=True, kw_only=True)
class SFTSettings(Settings):
    """An instruction-tuning run: model, training, data and LoRA settings, the preset, ``init`` (a gpt.py run
    directory or "hf:DIR"; None: from scratch, pre-trained first) and ``specialists`` (run directories of
    translate.py and classify.py whose test figures the report sets beside this model's)."""

    model: ModelConfig
    train: TrainConfig
    data: SFTDataSettings = field(default_factory=SFTDataSettings)
    lora: LoRASettings = field(default_factory=LoRASettings)
    preset: str | None = None
    init: str | None = None
    specialists: tuple[str, ...] = ()

    EVALUABLE = ("specialists",)

    def __post_init__(self) -> None:
        object.__setattr__(self, "specialists", tuple(self.specialists or ()))
        if self.init is None and self.lora.rank:
            raise SettingsError("lora.rank", "LoRA adapts a trained model: give `init` (a gpt.py run or hf:PATH)")
        if self.init is not None and self.data.pretrain_steps:
            raise SettingsError("data.pretrain_steps", "pre-training is for a model trained from scratch, not `init`")
        if self.data.pretrain_steps and self.train.max_steps and self.data.pretrain_steps >= self.train.max_steps:
            raise SettingsError("data.pretrain_steps", f"must be below the step budget {self.train.max_steps}",
                                value=self.data.pretrain_steps)
        if self.model.positional == "learned" and self.data.block_size > self.model.max_len:
            raise SettingsError("data.block_size", f"{self.data.block_size} exceeds the model's max_len="
                                                   f"{self.model.max_len}")
