"""Where an instruction-tuning run starts (a gpt.py run, hf:PATH, or pre-training from scratch), its model with
the chat markers' rows, and the model chat and serving read from a finished run."""

from __future__ import annotations

import dataclasses
import functools
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...tokenizers import Tokenizer
from .packing import Packed, encode_all, pack
from .settings import MERGED_FILE, SFTSettings
from .task import SFTTask

# ------------------------------------------------------------------------------------------- where a run starts

@functools.lru_cache(maxsize=1)
def load_start(init: str, data_dir: str | None) -> tuple[nn.Module, Tokenizer]:
    """The model and tokenizer an ``init`` names: "hf:PATH" (a GPT-2 or Llama-family checkpoint, its tokenizer and
    chat template if it has one) or a recipes/gpt.py run directory (its best checkpoint and tokenizer); read once
    for both the settings and ``prepare``."""
    from ...interop import load_hf_lm
    from ...models.decoder_only import DecoderOnly
    from ...runs import read_run_config, run_dir_of
    from ...tokenizers import load_tokenizer
    from ...training import load_checkpoint
    from ..lm import LMSettings

    if init.startswith("hf:"):
        return load_hf_lm(init, data_dir)
    run_dir = run_dir_of(init)
    saved = read_run_config(run_dir)
    if saved.get("recipe") != "gpt":
        raise ValueError(f"--init {init}: a run of recipes/{saved.get('recipe')}.py; give a recipes/gpt.py run or "
                         "hf:PATH")
    lm = LMSettings.from_dict({k: v for k, v in saved.items() if k in ("model", "train", "data", "preset", "init")})
    model = DecoderOnly(lm.model)
    load_checkpoint(init, model)
    return model, load_tokenizer(run_dir / "tokenizer")


def chat_rows(tokenizer: Tokenizer) -> list[int]:
    """The ids our chat markers took (ChatTokenizer): the embedding rows instruction tuning must train even under
    LoRA (a new token has only the mean row it started from). None for a checkpoint with its own template."""
    from ...tokenizers.chat import ChatTokenizer

    return sorted(tokenizer.piece_ids.values()) if isinstance(tokenizer, ChatTokenizer) else []


def train_rows_only(model: nn.Module, rows: Sequence[int]) -> int:
    """Make the embedding (and an untied output) trainable in ``rows`` only: their gradient is masked to those rows
    and they get no weight decay, so AdamW leaves every other row bitwise as it was. Returns the trained count."""
    weights = {id(w): w for w in (model.embed.weight, model.lm_head.weight)}.values()
    for w in weights:
        mask = torch.zeros(w.shape[0], 1, dtype=w.dtype, device=w.device)
        mask[list(rows)] = 1.0
        w.requires_grad_(True)
        w.register_hook(lambda g, m=mask: g * m)
    model.lm_head.no_weight_decay = True  # a decoupled decay would move the frozen rows
    return sum(len(rows) * w.shape[1] for w in weights)


def prepare_sft(s: SFTSettings, ctx) -> tuple[SFTTask, nn.Module]:
    """The instruction set (or ``data.conversations``), the tokenizer with chat tokens (the run's, ``init``'s, or
    trained here on the pre-training text), the packed data and the model: ``init``'s weights with rows for the
    chat markers (mean-initialised), or fresh ones from the seed; LoRA adapters when ``lora.rank``."""
    from ...corpora import resolve_data_dir
    from ...corpora.instructions import load_instructions, load_sources, pretraining_text, read_conversations
    from ...models.decoder_only import DecoderOnly, grow_vocab
    from ...modules.lora import add_lora, lora_parameter_count
    from ...runs import cache_dir, tokenizer_cache_dir
    from ...tokenizers import load_tokenizer, train_tokenizer
    from ...tokenizers.chat import with_chat_tokens
    from ..lm import train_stream

    d, seed = s.data, s.train.seed
    convs = read_conversations(d.conversations) if d.conversations else None  # a bad file fails first, in one line
    data_dir = resolve_data_dir(ctx.data_dir)
    sets = load_instructions(data_dir, cache_dir(), d.sst2_val, d.imdb_reviews, seed, per_task=d.per_task,
                             val_per_task=d.val_per_task, test_size=d.test_size)
    sources = functools.cache(lambda: load_sources(data_dir, d.sst2_val, d.imdb_reviews, seed))  # read when needed
    start = load_start(s.init, str(data_dir)) if s.init and not ctx.has_checkpoint else None
    if ctx.resumed:
        tok = load_tokenizer(ctx.run_dir / "tokenizer")
    elif start is not None:
        tok = with_chat_tokens(start[1])
    else:
        text = pretraining_text(sources(), min(d.pretrain_chars or 5_000_000, 5_000_000), seed)
        tok = with_chat_tokens(train_tokenizer(d.tokenizer, text, d.vocab, cache_dir=tokenizer_cache_dir()))
    if convs is not None:
        order = torch.randperm(len(convs), generator=torch.Generator().manual_seed(seed)).tolist()
        n_val = max(1, len(convs) // 20)  # 5% held out for validation, at least one
        val_convs = [convs[i] for i in order[:n_val]]
        train_convs = [convs[i] for i in order[n_val:]] or val_convs
    else:
        train_convs, val_convs = [i.messages for i in sets["train"]], [i.messages for i in sets["val"]]
    blocks = d.block_size
    train = pack(encode_all(tok, train_convs), blocks, seed) if not ctx.for_eval else Packed([], 0, 0)
    if train.dropped:
        print(f"data: {train.dropped} of {len(train_convs)} training conversations are longer than a block of "
              f"{blocks} tokens: dropped", file=sys.stderr)
    val = pack(encode_all(tok, val_convs), blocks, seed)
    test = pack(encode_all(tok, [i.messages for i in sets["test"]]), blocks, seed)
    pretrain = None
    if d.pretrain_steps and not ctx.for_eval:
        lines = pretraining_text(sources(), d.pretrain_chars, seed).split("\n")
        base = getattr(tok, "base", tok)
        ids = [t for row in base.encode_batch(lines) for t in (*row, tok.eos_id)]
        pretrain = train_stream(torch.tensor(ids), blocks, d.batch_size, seed, tok.pad_id)

    torch.manual_seed(seed)  # the initial weights
    vocab = max(tok.vocab_size, s.model.vocab_size if s.init else 0)
    model = DecoderOnly(s.model.replace(vocab_size=vocab, **({} if s.init else {"pad_id": tok.pad_id})))
    if start is not None:  # a new run (or one stopped before its first checkpoint) starts from init's weights
        model.load_state_dict(grow_vocab(start[0], vocab).state_dict())
        print(f"model: initialised from {s.init}", file=sys.stderr)
    trainable = sum(p.numel() for p in model.parameters())
    lora: dict[str, Any] = {}
    if s.lora.rank:
        total = sum(p.numel() for p in model.parameters())
        names = add_lora(model, s.lora.targets, s.lora.rank, s.lora.alpha, s.lora.dropout)
        adapters = lora_parameter_count(model)
        trainable = adapters + (train_rows_only(model, chat_rows(tok)) if chat_rows(tok) else 0)
        lora = {"rank": s.lora.rank, "alpha": s.lora.alpha, "targets": list(s.lora.targets), "modules": len(names),
                "adapter_params": adapters, "total_params": total + adapters}
    task = SFTTask(tok, train, val, test, sets["test"], d.batch_size, d.eval_batch_size, d.max_new_tokens, pretrain,
                   d.pretrain_steps if pretrain is not None else 0, trainable, lora, s.specialists,
                   s.lora if s.lora.rank else None)
    return task, model


def load_chat_model(checkpoint: str | Path, device: str = "auto") -> tuple[nn.Module, Tokenizer]:
    """An sft run's model for chat and serving, and its tokenizer (with the chat template): a LoRA run's merged
    ``model.safetensors`` (plain weights), else the run's best checkpoint (or the checkpoint folder given)."""
    from safetensors.torch import load_model

    from ...models.decoder_only import DecoderOnly
    from ...runs import read_run_config, run_dir_of
    from ...tokenizers import load_tokenizer
    from ...training import load_checkpoint
    from ...training.trainer import resolve_device

    run_dir = run_dir_of(checkpoint)
    settings = SFTSettings.from_dict({k: v for k, v in read_run_config(run_dir).items()
                                      if k in {f.name for f in dataclasses.fields(SFTSettings)}})
    model = DecoderOnly(settings.model)
    merged = run_dir / MERGED_FILE
    if settings.lora.rank and Path(checkpoint).resolve() == run_dir.resolve() and merged.is_file():
        load_model(model, str(merged))
    elif settings.lora.rank:
        from ...modules.lora import add_lora, merge_lora

        add_lora(model, settings.lora.targets, settings.lora.rank, settings.lora.alpha, settings.lora.dropout)
        load_checkpoint(checkpoint, model)
        merge_lora(model)
    else:
        load_checkpoint(checkpoint, model)
    return model.to(resolve_device(device)).eval(), load_tokenizer(run_dir / "tokenizer")
