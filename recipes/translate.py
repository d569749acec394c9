#!/usr/bin/env python
"""Translation recipe: train an encoder-decoder Transformer on Multi30k (or any aligned text files), pick the
best or checkpoint-averaged weights on validation, and report sacreBLEU and chrF for beam search and greedy.

    python recipes/translate.py --preset cpu                      # Multi30k en->de on 2 CPU cores, ~1 hour
    python recipes/translate.py --preset tiny --src de --tgt en   # any pair with Multi30k files (en, de, fr)
    python recipes/translate.py --train-src tr.en --train-tgt tr.de --valid-src va.en --valid-tgt va.de \\
        --test news=te.en,te.de                                   # any aligned files, one sentence a line
    python recipes/translate.py translate --checkpoint RUN_DIR "A man rides a bike."
    cat input.en | python recipes/translate.py translate --checkpoint RUN_DIR --show-attention attn.png
    python recipes/translate.py --eval-only --checkpoint RUN_DIR --beam 10 --out RUN_DIR/eval-beam10
    python recipes/translate.py translate --init hf:Helsinki-NLP/opus-mt-en-de "A man rides a bike."
    python recipes/translate.py --init hf:Helsinki-NLP/opus-mt-en-de --lr 5e-5 --warmup-steps 100   # fine-tune

Data: one joint sentencepiece BPE vocabulary (--vocab) trained on the training split only (cached under
$TZOO_CACHE_DIR/tokenizers, default ~/.cache/transformers_zoo; never in the data dir), shared source/target
embeddings tied to the output layer; or one vocabulary per language with --separate-vocab. --init hf:PATH
starts from a Hugging Face Marian (opus-mt) or T5 checkpoint instead: its architecture (only --dropout and
--attention-dropout may change), its weights and its own tokenizers (Marian: source.spm, target.spm,
vocab.json; T5: tokenizer.json), decoding from its decoder_start_token_id (pad) as transformers does; T5
wants its task prefix in the source text ("translate English to German: ..."). Training:
token-budget batches (--max-tokens), label smoothing, inverse-sqrt warm-up, selection of the best checkpoint on
validation loss (or greedy BLEU with --select bleu). At the end the last --average-last checkpoints are
averaged; the better of best and averaged on validation is evaluated on every test split with beam search and
with greedy search.

Run directory: config.json, tokenizer/ (and tokenizer-src/ with --separate-vocab), checkpoints/,
averaged/ (the averaged weights), metrics.jsonl, hyp/<split>.<tgt> (beam), hyp/<split>.greedy.<tgt> and the
references hyp/<split>.ref.<tgt>, so `sacrebleu hyp/test_2016_flickr.ref.de -i hyp/test_2016_flickr.de`
reproduces the reported BLEU; report.json, report.md, loss.png, lr.png, attention.png.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout without installing
    sys.path.insert(0, str(ROOT))

from transformers_zoo import EncoderDecoder, ModelConfig  # noqa: E402
from transformers_zoo.cli import add_common_args, main_guard, resolve_device, resolve_preset  # noqa: E402
from transformers_zoo.interop import load_hf_translator  # noqa: E402
from transformers_zoo.runs import open_run, resume_train_settings, write_json  # noqa: E402
from transformers_zoo.tasks import translation_run as mt  # noqa: E402
from transformers_zoo.tasks import translation_settings as settings  # noqa: E402
from transformers_zoo.tasks.base import fit  # noqa: E402
from transformers_zoo.tasks.translation import translate  # noqa: E402
from transformers_zoo.training import TrainConfig, plot_curves, write_report  # noqa: E402
from transformers_zoo.training.distributed import is_main  # noqa: E402
from transformers_zoo.viz import plot_cross_attention  # noqa: E402

# A pre-norm Transformer with one joint vocabulary: shared source/target embeddings, tied to the output layer.
BASE_MODEL = dict(d_model=256, n_heads=4, n_layers=3, n_encoder_layers=3, n_decoder_layers=3, d_ff=1024,
                  ffn="relu", dropout=0.1, attention_dropout=0.0, positional="sinusoidal", norm="layernorm",
                  norm_first=True, scale_embeddings=True, tie_embeddings=True, share_src_tgt_embeddings=True,
                  max_len=256)
# fairseq's translation settings: Adam (0.9, 0.98), inverse-sqrt warm-up, label smoothing 0.1, clipping.
BASE_TRAIN = dict(lr=1e-3, schedule="inverse_sqrt", warmup_steps=4000, betas=[0.9, 0.98], eps=1e-9,
                  weight_decay=0.0, grad_clip=1.0, label_smoothing=0.1, log_every=50)
BASE_DATA = dict(tokenizer="bpe", vocab=8000, joint=True, max_tokens=4000, eval_limit=None, eval_max_tokens=6000)
BASE_EVAL = dict(beam=5, length_penalty=1.0, max_len_a=1.2, max_len_b=10, select="loss", average_last=5)

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    # seconds: every stage on the real files (40 steps, a toy model, 50 sentences per evaluation split)
    "tiny": {"model": dict(BASE_MODEL, d_model=64, n_heads=2, n_layers=1, n_encoder_layers=1, n_decoder_layers=1,
                           d_ff=128),
             "train": dict(BASE_TRAIN, lr=5e-3, warmup_steps=10, max_steps=40, eval_every=20, save_every=10,
                           log_every=5, keep_last=3),
             "data": dict(BASE_DATA, vocab=1000, max_tokens=1500, eval_limit=50),
             "eval": dict(BASE_EVAL, average_last=3)},
    # under an hour on 2 CPU cores: 54 min of training (~1,300 steps), then averaging and the three test sets.
    # CPU throughput per token barely depends on the batch size, so smaller batches buy more updates.
    "cpu": {"model": dict(BASE_MODEL),
            "train": dict(BASE_TRAIN, lr=2e-3, warmup_steps=400, max_minutes=54, eval_every=200, save_every=75,
                          keep_last=5, log_every=25),
            "data": dict(BASE_DATA, vocab=8000, max_tokens=3000),
            "eval": dict(BASE_EVAL, average_last=5)},
    # base-ish Transformer (Vaswani et al.): d512, 6+6 layers, 8 heads, 4096-token batches, warm-up 4000
    "gpu": {"model": dict(BASE_MODEL, d_model=512, n_heads=8, n_layers=6, n_encoder_layers=6, n_decoder_layers=6,
                          d_ff=2048, dropout=0.3),
            "train": dict(BASE_TRAIN, lr=7e-4, warmup_steps=4000, max_steps=15000, eval_every=500, save_every=500,
                          keep_last=5, patience=10, log_every=100),
            "data": dict(BASE_DATA, vocab=8000, max_tokens=4096),
            "eval": dict(BASE_EVAL, average_last=5)},
}


# ---------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------


def parse_train_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="recipes/translate.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser, PRESETS, default_preset="cpu", family="encoder_decoder")
    data = parser.add_argument_group("data")
    data.add_argument("--src", default=None, help="source language of Multi30k (default en); with --train-src: "
                                                  "only a label (default: the file's extension)")
    data.add_argument("--tgt", default=None, help="target language of Multi30k (default de); names hyp files")
    for flag, what in (("--train-src", "training sources, one sentence a line"),
                       ("--train-tgt", "training targets, aligned with --train-src"),
                       ("--valid-src", "validation sources (checkpoint selection)"),
                       ("--valid-tgt", "validation targets")):
        data.add_argument(flag, dest="file_" + flag[2:].replace("-", "_"), default=None, metavar="FILE", help=what)
    data.add_argument("--test", action="append", default=[], metavar="NAME=SRC_FILE,TGT_FILE",
                      help="a test set to report (repeatable); added to Multi30k's when training on Multi30k")
    data.add_argument("--tokenizer", choices=["bpe", "unigram"], default=None, help="sentencepiece model type")
    data.add_argument("--vocab", type=int, default=None, help="sentencepiece vocabulary size (per vocabulary)")
    data.add_argument("--separate-vocab", action="store_true",
                      help="one vocabulary per language (then source and target embeddings are not shared)")
    data.add_argument("--max-tokens", type=int, default=None, help="padded tokens per training batch and side")
    data.add_argument("--eval-limit", type=int, default=None,
                      help="evaluate only the first N pairs of validation and test splits (default: all)")
    data.add_argument("--init", default=None, metavar="hf:PATH",
                      help="fine-tune a Hugging Face Marian or T5 checkpoint (directory or Hub name, e.g. "
                           "Helsinki-NLP/opus-mt-en-de) with its own tokenizers")
    add_eval_args(parser.add_argument_group("evaluation"), training=True)
    return parser.parse_args(argv)


def add_eval_args(group: argparse.ArgumentParser | argparse._ArgumentGroup, training: bool) -> None:
    """Search flags (defaults: the preset's, or the run's config); with `training`, selection flags too."""
    group.add_argument("--beam", type=int, default=None,
                       help="beam size of the test evaluation (default 5; 1 = greedy)")
    group.add_argument("--length-penalty", type=float, default=None,
                       help="beam scores are log-prob / length ** this (default 1.0; 0 = raw log-prob)")
    group.add_argument("--max-len-a", type=float, default=None,
                       help="generate at most a * source length + b tokens (default a=1.2)")
    group.add_argument("--max-len-b", type=int, default=None, help="see --max-len-a (default b=10)")
    if training:
        group.add_argument("--select", choices=["loss", "bleu"], default=None,
                           help="checkpoint selection on validation: loss (default) or greedy BLEU at every eval")
        group.add_argument("--average-last", type=int, default=None, metavar="K",
                           help="average the last K checkpoints and evaluate that too (1 = off; default: preset)")


def train(args: argparse.Namespace) -> int:
    """Validate the inputs, build the data and model, train (or resume), then write the final report."""
    preset = resolve_preset(PRESETS, args)
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    run = open_run(args, "translate")
    run_dir, init = run.dir, None
    # Data: a resumed run is rebuilt from its config.json alone (the budgets and search flags apart); a new
    # one finds everything that can be wrong with its input before the run directory exists.
    if run.resumed:
        data, ev = run.saved["data"], settings.eval_settings(preset, args, run.saved["eval"])
        train_settings = resume_train_settings(run.saved["train"], args, settings.DATA_FLAGS)
        cfg, tokenizers = ModelConfig.from_dict(run.saved["model"]), mt.load_tokenizers(run_dir)
    else:
        data, ev = settings.data_settings(preset, args), settings.eval_settings(preset, args)
        init, cfg, tokenizers = settings.hf_init(args, data) if args.init else (None, None, None)
        train_settings = settings.train_settings(preset["train"], ev)
    max_len = cfg.max_len if cfg is not None else preset["model"].get("max_len", ModelConfig.max_len)
    task = mt.prepare_translation_task(mt.load_pairs(data, args.data_dir), data, ev, max_len, tokenizers,
                                       label_smoothing=train_settings.get("label_smoothing", 0.0))
    td, src_tok, tgt_tok = task.data, task.src_tokenizer, task.tokenizer
    cfg = cfg or settings.model_config(preset["model"], td)
    train_cfg = TrainConfig.from_dict(train_settings)
    if not run.resumed and is_main():
        run_dir.mkdir(parents=True, exist_ok=True)
        mt.save_tokenizers(td, run_dir)
    config = {"recipe": "translate", "preset": run.saved["preset"] if run.resumed else args.preset,
              "model": cfg.to_dict(), "train": train_cfg.to_dict(), "data": data, "eval": ev,
              "tokenizer_fingerprint": tgt_tok.fingerprint, "src_tokenizer_fingerprint": src_tok.fingerprint}
    if is_main():
        write_json(run_dir / "config.json", config)
    print(task.describe(), file=sys.stderr)

    # Model: fresh weights from the seed, or the --init checkpoint's.
    torch.manual_seed(train_cfg.seed)
    model = EncoderDecoder(cfg)
    if init is not None:
        model.load_state_dict(init.state_dict())
    params = sum(p.numel() for p in model.parameters())
    start = f", initialised from {data['init']}" if init is not None else ""
    print(f"model: EncoderDecoder, {params:,} parameters{start}", file=sys.stderr)

    # Train, keeping the best checkpoint on validation loss (or greedy BLEU with --select bleu).
    fingerprint = mt.fingerprint_of(cfg, src_tok, tgt_tok)
    summary = fit(task, model, train_cfg, run_dir, fingerprint, evaluate=task.validation_metrics)
    if not is_main():
        return 0

    # Evaluate the better of best and averaged weights on validation, then every test split (beam and greedy).
    best, selected, candidates = mt.select_weights(task, run_dir, lambda: EncoderDecoder(cfg).to(device), fingerprint)
    evals = {"val": {k: v for k, v in candidates[selected["checkpoint"]].items() if k != "steps"}}
    evals.update({split: task.evaluate(best, split, out_dir=run_dir) for split in task.eval_splits[1:]})

    # Report: report.json, report.md with the tables, curves and a cross-attention map.
    search = {k: ev[k] for k in ("beam", "length_penalty", "max_len_a", "max_len_b")}
    report = {"recipe": "translate", "config": config, "params": params, "wall_s": summary.get("wall_s"),
              "train_tokens_per_s": summary.get("train_tokens_per_s"), "best_step": summary.get("best_step"),
              "steps": summary.get("steps"), "stopped": summary.get("stopped"), "selected": selected,
              "candidates": candidates, "search": search, "eval": evals}
    sections = task.report_sections(best, run_dir, evals, candidates, selected["checkpoint"])
    images = [*(p.name for p in plot_curves(run_dir)), *task.plots]
    write_report(run_dir, report, sections=sections, images=images)
    bleu = "  ".join(f"{split} BLEU {m['bleu']:.2f} (greedy {m['bleu_greedy']:.2f})"
                     for split, m in evals.items() if "bleu" in m)
    print(f"done: {run_dir}  [{selected['checkpoint']}]  {bleu}", file=sys.stderr)
    return 0


def eval_only(args: argparse.Namespace) -> int:
    """Re-evaluate a trained run on its validation and test splits; print the scores, write them to --out."""
    if not args.checkpoint:
        raise ValueError("--eval-only needs --checkpoint RUN_DIR")
    model, src_tok, tgt_tok, config, what = mt.load_trained(args.checkpoint, resolve_device(args.device))
    if args.threads:
        torch.set_num_threads(args.threads)
    data, ev = settings.saved_settings(config, args)
    task = mt.prepare_translation_task(mt.load_pairs(data, args.data_dir), data, ev, model.config.max_len,
                                       (src_tok, tgt_tok))
    print(f"evaluating {args.checkpoint}: {what}", file=sys.stderr)
    out = Path(args.out) if args.out else None
    results = mt.print_evaluation(task, model, out)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "eval.json", {"checkpoint": str(args.checkpoint), "weights": what, "eval_settings": ev,
                                       "eval": results})
        print(f"wrote {out / 'eval.json'} and {out / 'hyp'}/", file=sys.stderr)
    return 0


def translate_main(argv: list[str]) -> int:
    """`translate` subcommand: one translation per input line, optionally cross-attention maps."""
    parser = argparse.ArgumentParser(
        prog="recipes/translate.py translate",
        description="Translate sentences with a trained run (or a Hugging Face Marian checkpoint): given as "
                    "arguments, else one per line on stdin. Prints one translation per line.")
    parser.add_argument("sentences", nargs="*", help="sentences to translate (default: read stdin)")
    weights = parser.add_mutually_exclusive_group(required=True)
    weights.add_argument("--checkpoint", metavar="RUN_DIR",
                         help="run directory (its selected weights), RUN_DIR/averaged or a checkpoints/step_* folder")
    weights.add_argument("--init", metavar="hf:PATH",
                         help="a Hugging Face Marian or T5 checkpoint instead (directory or Hub name), with its "
                              "tokenizers")
    add_eval_args(parser, training=False)
    parser.add_argument("--show-attention", metavar="PATH.png", default=None,
                        help="save the last decoder layer's cross-attention of the (first) sentence as a heat map; "
                             "with several sentences, PATH-2.png, ... for the others")
    parser.add_argument("--heads", choices=["mean", "all"], default="mean",
                        help="attention map: the mean over heads (default) or one map per head")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    if args.init:
        model, src_tok, tgt_tok = load_hf_translator(args.init)
        model, ev = model.to(device), settings.eval_settings(PRESETS["cpu"], args)
    else:
        model, src_tok, tgt_tok, config, _ = mt.load_trained(args.checkpoint, device)
        ev = settings.eval_settings({}, args, saved=config["eval"])
    sentences = [s.strip() for s in (args.sentences or sys.stdin.read().splitlines())]
    todo = [s for s in sentences if s]
    hyps = iter(translate(model, tgt_tok, todo, src_tokenizer=src_tok, beam_size=ev["beam"],
                          length_penalty=ev["length_penalty"], max_len_a=ev["max_len_a"], max_len_b=ev["max_len_b"]))
    for sentence in sentences:  # an empty line stays an empty line, so output lines match input lines
        print(next(hyps) if sentence else "")
    if args.show_attention:
        base = Path(args.show_attention)
        for i, sentence in enumerate(sentences):
            if not sentence:
                continue
            path = base if i == 0 else base.with_name(f"{base.stem}-{i + 1}{base.suffix}")
            plot_cross_attention(model, src_tok, tgt_tok, sentence, path, ev, heads=args.heads)
            print(f"attention map: {path}", file=sys.stderr)
    return 0


def main() -> int:
    argv = sys.argv[1:]
    if argv and argv[0] == "translate":
        return translate_main(argv[1:])
    if argv and argv[0] == "train":
        argv = argv[1:]
    args = parse_train_args(argv)
    return eval_only(args) if args.eval_only else train(args)


if __name__ == "__main__":
    main_guard(main)
