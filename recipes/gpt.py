#!/usr/bin/env python
"""GPT recipe: train a decoder-only language model on text, evaluate it, sample from it.

    python recipes/gpt.py --preset nanogpt-cpu            # train (Tiny Shakespeare by default)
    python recipes/gpt.py --text my.txt --tokenizer bpe   # any text file
    python recipes/gpt.py sample --checkpoint RUN_DIR --prompt "ROMEO:" --max-new-tokens 500
    python recipes/gpt.py sample --init hf:gpt2 --prompt "Hello, I'm a language model,"  # pre-trained GPT-2
    python recipes/gpt.py --init hf:gpt2 --preset gpu --lr 3e-5    # fine-tune GPT-2 on Tiny Shakespeare
    python recipes/gpt.py --eval-only --checkpoint RUN_DIR
    python recipes/gpt.py knn --checkpoint RUN_DIR        # kNN-LM: datastore, tuning, test with and without
    python recipes/gpt.py chat --init hf:HuggingFaceTB/SmolLM2-135M-Instruct   # a checkpoint with a chat template

Evaluation covers the whole validation and test splits (every token scored once, in non-overlapping
blocks), reporting loss, perplexity and bits per character. The run directory gets config.json, the
tokenizer, checkpoints/, metrics.jsonl, samples.md, report.json, report.md and PNG plots.

--init hf:PATH fine-tunes a Hugging Face GPT-2 or Llama-family checkpoint: the model (and its dropout) comes
from the checkpoint, the tokenizer is its own (GPT-2's byte-level BPE, --tokenizer gpt2; a Llama's
tokenizer.json), and training blocks are at most its positions long; the preset gives the training settings
and the data.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout without installing
    sys.path.insert(0, str(ROOT))

from transformers_zoo import DecoderOnly, cli  # noqa: E402
from transformers_zoo.cli.chat import chat_main  # noqa: E402
from transformers_zoo.corpora import load_tinyshakespeare, read_text, resolve_data_dir  # noqa: E402
from transformers_zoo.interop import load_hf_lm  # noqa: E402
from transformers_zoo.interop import resolve_checkpoint as resolve_hf  # noqa: E402
from transformers_zoo.pipeline import Context, load_model  # noqa: E402
from transformers_zoo.runs import tokenizer_cache_dir  # noqa: E402
from transformers_zoo.tasks.knn import LMExperiment  # noqa: E402
from transformers_zoo.tasks.lm import LMSettings, LMTask, continue_text, prepare_lm_task  # noqa: E402
from transformers_zoo.tokenizers import load_tokenizer  # noqa: E402

NAME, FAMILY, DEFAULT_PRESET, SETTINGS = "gpt", "decoder_only", "cpu", LMSettings

# nanoGPT's train_shakespeare_char on a laptop CPU: 4 layers, 4 heads, 128 dims, block 64, batch 12,
# 2000 iterations, no dropout, lr 1e-3 cosine-decayed to 1e-4 after 100 warm-up steps, AdamW
# betas (0.9, 0.99), weight decay 0.1, gradient clipping 1.0, learned positions, GELU, pre-LN, no biases.
NANOGPT_MODEL = dict(d_model=128, n_heads=4, n_layers=4, max_len=64, dropout=0.0, positional="learned",
                     norm="layernorm", norm_first=True, ffn="gelu", bias=False, tie_embeddings=True)
NANOGPT_TRAIN = dict(lr=1e-3, schedule="cosine", warmup_steps=100, min_lr_ratio=0.1, max_steps=2000,
                     betas=[0.9, 0.99], eps=1e-8, weight_decay=0.1, grad_clip=1.0, eval_every=500, log_every=100,
                     save_every=500)
NANOGPT_DATA = dict(tokenizer="char", block_size=64, batch_size=12, split=[0.9, 0.1, 0.0], eval_batch_size=64)

PRESETS = {
    # seconds: a smoke test of every stage
    "tiny": {"model": dict(NANOGPT_MODEL, d_model=32, n_heads=2, n_layers=2, max_len=32),
             "train": dict(NANOGPT_TRAIN, max_steps=40, warmup_steps=5, eval_every=20, log_every=10, save_every=20),
             "data": dict(NANOGPT_DATA, block_size=32, batch_size=8, split=[0.8, 0.1, 0.1], eval_batch_size=256,
                          max_eval_tokens=20000)},
    # the nanoGPT CPU configuration, evaluated on the same held-out characters (the last 10%)
    "nanogpt-cpu": {"model": NANOGPT_MODEL, "train": NANOGPT_TRAIN, "data": NANOGPT_DATA},
    # the same shape, size and steps with today's choices: rotary positions, RMSNorm, SwiGLU
    "modern-cpu": {"model": dict(NANOGPT_MODEL, positional="rope", norm="rmsnorm", ffn="swiglu"),
                   "train": NANOGPT_TRAIN, "data": NANOGPT_DATA},
    # a larger char model for about 20 minutes on 2 cores, 80/10/10 split
    "cpu": {"model": dict(NANOGPT_MODEL, d_model=192, n_heads=6, n_layers=6, max_len=128, dropout=0.1,
                          positional="rope", norm="rmsnorm", ffn="swiglu"),
            "train": dict(NANOGPT_TRAIN, max_steps=4000, lr=2e-3, warmup_steps=200, eval_every=500, save_every=500),
            "data": dict(NANOGPT_DATA, block_size=128, batch_size=32, split=[0.8, 0.1, 0.1])},
    # nanoGPT's GPU configuration (6 layers, 6 heads, 384 dims, block 256, batch 64, dropout 0.2, 5000 iters)
    "gpu": {"model": dict(NANOGPT_MODEL, d_model=384, n_heads=6, n_layers=6, max_len=256, dropout=0.2),
            "train": dict(NANOGPT_TRAIN, max_steps=5000, eval_every=250, save_every=500),
            "data": dict(NANOGPT_DATA, block_size=256, batch_size=64)},
}


def add_flags(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data")
    data.add_argument("--text", dest="data__text", type=cli.absolute, default=None,
                      help="train on this text file instead of Tiny Shakespeare")
    data.add_argument("--tokenizer", dest="data__tokenizer", choices=["char", "bpe", "unigram", "gpt2"], default=None,
                      help="char (default of the presets), a sentencepiece vocabulary, or GPT-2's byte-level BPE")
    data.add_argument("--vocab", dest="data__vocab", type=int, default=None,
                      help="sentencepiece vocabulary size (default 2000)")
    data.add_argument("--block-size", dest="data__block_size", type=int, default=None,
                      help="context length of training blocks")
    data.add_argument("--batch-size", dest="data__batch_size", type=int, default=None, help="blocks per batch")
    data.add_argument("--split", dest="data__split", type=cli.fractions, default=None,
                      help="train,val,test fractions of the text in order, e.g. 0.9,0.1,0 (nanoGPT) or 0.8,0.1,0.1")
    data.add_argument("--init", default=None, metavar="hf:PATH",
                      help="fine-tune a Hugging Face GPT-2 or Llama-family checkpoint (directory or Hub name): its "
                           "architecture and tokenizer; only --dropout/--attention-dropout may change the model")


@functools.lru_cache(maxsize=1)
def hf_checkpoint(init: str, data_dir: str | None) -> tuple[DecoderOnly, object]:
    """The --init checkpoint's model and tokenizer, read once for both settings and prepare."""
    return load_hf_lm(init, data_dir)


def settings(args: argparse.Namespace) -> LMSettings:
    """The preset and the command line; with --init the checkpoint's model (dropout may change), its tokenizer,
    and training blocks at most its positions long."""
    tree = dict(PRESETS[args.preset])
    if args.init:
        changes = cli.init_model_overrides(args)
        model, tok = hf_checkpoint(args.init, args.data_dir)
        if args.data__tokenizer not in (None, tok.kind):
            raise ValueError(f"--tokenizer {args.data__tokenizer}: the checkpoint reads its own tokenizer ({tok.kind})")
        max_len = model.config.max_len
        if args.data__block_size is not None and args.data__block_size > max_len:
            raise ValueError(f"--block-size {args.data__block_size} exceeds the checkpoint's n_positions={max_len}")
        tree["model"] = dict(model.config.to_dict(), **changes)
        tree["data"] = dict(tree["data"], tokenizer=tok.kind, block_size=min(tree["data"]["block_size"], max_len))
        tree["init"] = f"hf:{resolve_hf(args.init).resolve()}"
    return cli.preset_settings(sys.modules[__name__], args, tree)


def prepare(s: LMSettings, ctx: Context) -> tuple[LMTask, DecoderOnly]:
    """The text as an LMTask (the tokenizer trained on its training split, cached; or the run's, or the --init
    checkpoint's) and the model: fresh weights from the seed, or the checkpoint's."""
    hf_model, tok = hf_checkpoint(s.init, ctx.data_dir) if s.init and not ctx.resumed else (None, None)
    if ctx.resumed:
        tok = load_tokenizer(ctx.run_dir / "tokenizer")
    d, data_dir = s.data, resolve_data_dir(ctx.data_dir)
    text = read_text(d.text) if d.text else load_tinyshakespeare(data_dir)
    task = prepare_lm_task(text, d.split, tok or d.tokenizer, d.block_size, d.batch_size, d.vocab, d.eval_batch_size,
                           d.max_eval_tokens, s.train.seed, tokenizer_cache_dir() if tok is None else None, data_dir)
    torch.manual_seed(s.train.seed)  # the initial weights
    model = DecoderOnly(s.model.replace(vocab_size=task.tokenizer.vocab_size, pad_id=task.tokenizer.pad_id))
    if s.init and not ctx.has_checkpoint:  # a resumed run has weights of its own
        model.load_state_dict((hf_model or load_hf_lm(s.init, ctx.data_dir)[0]).state_dict())
        print(f"model: initialised from {s.init}", file=sys.stderr)
    return task, model


def sample_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="recipes/gpt.py sample",
                                     description="Stream a sample from a trained GPT run (KV-cached).")
    parser.add_argument("--checkpoint", metavar="RUN_DIR", help="run directory or checkpoint")
    parser.add_argument("--init", metavar="hf:PATH", help="a Hugging Face checkpoint instead (directory or Hub name)")
    parser.add_argument("--data-dir", default=None, help="where the gpt2 tokenizer's rank file is (or goes)")
    parser.add_argument("--prompt", default="\n", help="text to continue (default: a newline)")
    parser.add_argument("--max-new-tokens", type=int, default=500)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--top-k", type=int, default=None)
    parser.add_argument("--top-p", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--no-cache", action="store_true",
                        help="recompute the whole sequence every step instead of using the KV cache (to compare)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.init:
        model, tok = load_hf_lm(args.init, args.data_dir)
        model = model.to(cli.resolve_device(args.device))
    elif args.checkpoint:
        _, model, tok = load_model(sys.modules[__name__], args.checkpoint, args.device)
    else:
        raise ValueError("sample needs --checkpoint RUN_DIR or --init hf:PATH")
    sys.stdout.write(args.prompt)
    start = time.perf_counter()
    continue_text(model, tok, args.prompt, args.max_new_tokens, args.temperature, args.top_k, args.top_p,
                         args.seed, stream=lambda piece: (sys.stdout.write(piece), sys.stdout.flush()),
                         use_cache=not args.no_cache)
    elapsed = time.perf_counter() - start
    n = args.max_new_tokens  # sampling never stops early (running text has no end token)
    mode = "no cache" if args.no_cache else "KV cache"
    print(f"\n[{n} tokens in {elapsed:.2f}s, {n / max(elapsed, 1e-9):.0f} tokens/s, {mode}]", file=sys.stderr)
    return 0


def knn_main(argv: list[str]) -> int:
    """kNN-LM on a trained run (tasks/knn.py): `python recipes/gpt.py knn --checkpoint RUN_DIR`."""
    def flags(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--max-eval-tokens", type=int, default=None,
                            help="score only the first N tokens of validation and test (default: all)")

    return cli.knn_main(sys.modules[__name__], argv, lambda task, args: LMExperiment(task, args.max_eval_tokens),
                        flags)


COMMANDS = {"sample": sample_main, "knn": knn_main, "chat": lambda argv: chat_main(argv, sys.modules[__name__])}

if __name__ == "__main__":
    cli.main_guard(lambda: cli.recipe_main(sys.modules[__name__]))
