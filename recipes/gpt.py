#!/usr/bin/env python
"""GPT recipe: train a decoder-only language model on text, evaluate it, sample from it.

    python recipes/gpt.py --preset nanogpt-cpu            # train (Tiny Shakespeare by default)
    python recipes/gpt.py --text my.txt --tokenizer bpe   # any text file
    python recipes/gpt.py sample --checkpoint RUN_DIR --prompt "ROMEO:" --max-new-tokens 500
    python recipes/gpt.py sample --init hf:gpt2 --prompt "Hello, I'm a language model,"  # pre-trained GPT-2
    python recipes/gpt.py --init hf:gpt2 --preset gpu --lr 3e-5    # fine-tune GPT-2 on Tiny Shakespeare
    python recipes/gpt.py --eval-only --checkpoint RUN_DIR

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
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout without installing
    sys.path.insert(0, str(ROOT))

from transformers_zoo import DecoderOnly, ModelConfig  # noqa: E402
from transformers_zoo.cli import add_common_args, init_model_overrides, main_guard, resolve_device, resolve_preset  # noqa: E402
from transformers_zoo.corpora import load_tinyshakespeare, read_text, resolve_data_dir  # noqa: E402
from transformers_zoo.interop import load_hf_lm, load_hf_model  # noqa: E402
from transformers_zoo.interop import resolve_checkpoint as resolve_hf  # noqa: E402
from transformers_zoo.runs import (  # noqa: E402
    fingerprint,
    open_run,
    read_run_config,
    resume_train_settings,
    run_dir_of,
    tokenizer_cache_dir,
    write_json,
)
from transformers_zoo.tasks.base import fit  # noqa: E402
from transformers_zoo.tasks.lm import LMTask, continue_text, prepare_lm_task  # noqa: E402
from transformers_zoo.tokenizers import load_tokenizer  # noqa: E402
from transformers_zoo.training import TrainConfig, latest_checkpoint, load_checkpoint, plot_curves, write_report  # noqa: E402
from transformers_zoo.training.distributed import broadcast_object, init_distributed, is_main  # noqa: E402

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

def parse_train_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="recipes/gpt.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser, PRESETS, default_preset="cpu", family="decoder_only")
    data = parser.add_argument_group("data")
    data.add_argument("--text", default=None, help="train on this text file instead of Tiny Shakespeare")
    data.add_argument("--tokenizer", choices=["char", "bpe", "unigram", "gpt2"], default=None,
                      help="char (default of the presets), a sentencepiece vocabulary, or GPT-2's byte-level BPE")
    data.add_argument("--vocab", type=int, default=None, help="sentencepiece vocabulary size (default 2000)")
    data.add_argument("--block-size", type=int, default=None, help="context length of training blocks")
    data.add_argument("--batch-size", type=int, default=None, help="blocks per batch")
    data.add_argument("--split", default=None,
                      help="train,val,test fractions of the text in order, e.g. 0.9,0.1,0 (nanoGPT) or 0.8,0.1,0.1")
    data.add_argument("--init", default=None, metavar="hf:PATH",
                      help="fine-tune a Hugging Face GPT-2 or Llama-family checkpoint (directory or Hub name): its "
                           "architecture and tokenizer; only --dropout/--attention-dropout may change the model")
    return parser.parse_args(argv)


DATA_FLAGS = ("text", "tokenizer", "vocab", "block_size", "batch_size", "split", "init")  # fixed for a run once started


def data_settings(preset: dict, args: argparse.Namespace) -> dict:
    data = dict(preset["data"])
    for key in ("tokenizer", "vocab", "block_size", "batch_size", "text"):
        if getattr(args, key) is not None:
            data[key] = getattr(args, key)
    if args.split is not None:
        try:
            data["split"] = [float(x) for x in args.split.split(",")]
        except ValueError:
            raise ValueError(f"--split {args.split!r}: expected comma-separated fractions like 0.9,0.1,0") from None
    data.setdefault("vocab", 2000)
    return data


def build_task(data: dict, data_dir: str | None, seed: int, tokenizer=None) -> LMTask:
    """The run's text as an LMTask (its samples drawn with the run's ``seed``): the tokenizer trained on the
    training split (or cached), unless a trained one is given."""
    text = read_text(data["text"]) if data.get("text") else load_tinyshakespeare(resolve_data_dir(data_dir))
    cache = tokenizer_cache_dir() if tokenizer is None else None  # None: the cache dir cannot be written
    return prepare_lm_task(text, tuple(data["split"]), tokenizer or data["tokenizer"], data["block_size"],
                           data["batch_size"], data["vocab"], data["eval_batch_size"], data.get("max_eval_tokens"),
                           seed, cache, resolve_data_dir(data_dir))


def hf_init(args: argparse.Namespace, preset: dict, data: dict) -> tuple[tuple, str, dict]:
    """``((model, tokenizer), "hf:DIR", data)`` for --init: the checkpoint's model config replaces the preset's
    (dropout may change), the tokenizer is the checkpoint's and the block size at most its positions."""
    changes = init_model_overrides(args)
    model, tok = load_hf_lm(args.init, args.data_dir)
    if args.tokenizer not in (None, tok.kind):
        raise ValueError(f"--tokenizer {args.tokenizer}: the checkpoint reads its own tokenizer ({tok.kind})")
    init = f"hf:{resolve_hf(args.init).resolve()}"
    preset["model"] = dict(model.config.to_dict(), **changes)
    max_len = model.config.max_len
    if args.block_size is not None and args.block_size > max_len:
        raise ValueError(f"--block-size {args.block_size} exceeds the checkpoint's n_positions={max_len}")
    data = dict(data, tokenizer=tok.kind, block_size=min(data["block_size"], max_len))
    return (model, tok), init, data


def train(args: argparse.Namespace) -> int:
    preset = resolve_preset(PRESETS, args)
    data = data_settings(preset, args)
    init_distributed(args.device)  # a no-op unless launched by torchrun
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    run = open_run(args, "gpt")
    if run.resumed:  # everything from config.json: the preset and flags of this command line are not used
        preset["model"], data = run.saved["model"], run.saved["data"]
        preset["train"] = resume_train_settings(run.saved["train"], args, DATA_FLAGS)
        task = build_task(data, args.data_dir, preset["train"]["seed"], load_tokenizer(run.dir / "tokenizer"))
        run_dir = run.dir
        init, hf = run.saved.get("init"), None
    else:  # a new run, from scratch or from the --init checkpoint (its model, its tokenizer)
        hf, init, data = hf_init(args, preset, data) if args.init else (None, None, data)
        # every rank must agree on the directory (its default name has a time stamp)
        run_dir = Path(broadcast_object(str(run.dir)))
        task = build_task(data, args.data_dir, preset["train"]["seed"], hf[1] if hf else None)  # bad input fails here
        if is_main():
            run_dir.mkdir(parents=True, exist_ok=True)
            task.tokenizer.save(run_dir / "tokenizer")
    tok = task.tokenizer
    cfg = ModelConfig.from_dict(dict(preset["model"], vocab_size=tok.vocab_size, pad_id=tok.pad_id))
    if cfg.positional == "learned" and data["block_size"] > cfg.max_len:
        raise ValueError(f"--block-size {data['block_size']} exceeds the model's max_len={cfg.max_len}")
    train_cfg = TrainConfig.from_dict(preset["train"])
    config = {"recipe": "gpt", "preset": run.saved["preset"] if run.resumed else args.preset, "model": cfg.to_dict(),
              "train": train_cfg.to_dict(), "data": data, "tokenizer_fingerprint": tok.fingerprint, "init": init}
    if is_main():
        write_json(run_dir / "config.json", config)
        print(f"data: {', '.join(f'{k} {len(v):,} tokens' for k, v in task.data.tokens.items())}; "
              f"vocabulary {tok.vocab_size}", file=sys.stderr)

    torch.manual_seed(train_cfg.seed)  # the initial weights
    model = DecoderOnly(cfg)
    if init is not None and latest_checkpoint(run_dir) is None:  # (a resumed run has its own weights)
        model.load_state_dict((hf[0] if hf is not None else load_hf_model(init)).state_dict())
        if is_main():
            print(f"model: initialised from {init}", file=sys.stderr)
    params = sum(p.numel() for p in model.parameters())
    if is_main():
        print(f"model: DecoderOnly, {params:,} parameters", file=sys.stderr)
    # batches by the run's seed (a resume's is the saved one); at each evaluation a sample goes into samples.md
    summary = fit(task, model, train_cfg, run_dir, fingerprint(cfg, tok),
                  on_eval=lambda m, step, metrics: task.append_sample(m, run_dir, step, metrics["val_loss"]))
    if not is_main():
        return 0

    # the report: the best checkpoint on every held-out split, a sample and its attention map, the curves
    model = DecoderOnly(cfg).to(device)
    load_checkpoint(run_dir, model)
    evals = {split: task.evaluate(model, split) for split in task.eval_splits}
    report = {"recipe": "gpt", "config": config, "params": params,
              **{k: summary.get(k) for k in ("wall_s", "train_tokens_per_s", "best_step", "steps", "stopped")},
              "eval": evals}
    write_report(run_dir, report, task.report_sections(model, run_dir), [*plot_curves(run_dir), *task.images])
    print(f"done: {run_dir}  " + "  ".join(f"{split} loss {m['loss']:.4f}" for split, m in evals.items()),
          file=sys.stderr)
    return 0


def eval_only(args: argparse.Namespace) -> int:
    if not args.checkpoint:
        raise ValueError("--eval-only needs --checkpoint RUN_DIR")
    run_dir = run_dir_of(args.checkpoint)
    saved = read_run_config(run_dir)
    task = build_task(saved["data"], args.data_dir, saved["train"]["seed"], load_tokenizer(run_dir / "tokenizer"))
    model = DecoderOnly(ModelConfig.from_dict(saved["model"])).to(resolve_device(args.device))
    load_checkpoint(args.checkpoint, model)
    results = {split: task.evaluate(model, split) for split in task.eval_splits}  # the report's numbers again
    for split, metrics in results.items():
        print(f"{split}: " + "  ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        write_json(Path(args.out) / "eval.json", {"checkpoint": str(args.checkpoint), "eval": results})
    return 0


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
        model = model.to(resolve_device(args.device))
    elif args.checkpoint:
        run_dir = run_dir_of(args.checkpoint)
        saved = read_run_config(run_dir)
        tok = load_tokenizer(run_dir / "tokenizer")
        model = DecoderOnly(ModelConfig.from_dict(saved["model"])).to(resolve_device(args.device))
        load_checkpoint(args.checkpoint, model)
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


def main() -> int:
    argv = sys.argv[1:]
    if argv and argv[0] == "sample":
        return sample_main(argv[1:])
    if argv and argv[0] == "train":
        argv = argv[1:]
    args = parse_train_args(argv)
    return eval_only(args) if args.eval_only else train(args)


if __name__ == "__main__":
    main_guard(main)
