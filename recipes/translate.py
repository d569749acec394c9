#!/usr/bin/env python
"""Translation recipe: train an encoder-decoder Transformer on Multi30k (or any aligned text files), pick the
best or checkpoint-averaged weights on validation, and report sacreBLEU and chrF for beam search and greedy.

    python recipes/translate.py --preset cpu                      # Multi30k en->de on 2 CPU cores, ~30 min
    python recipes/translate.py --preset tiny --src de --tgt en   # any pair with Multi30k files (en, de, fr)
    python recipes/translate.py --train-src tr.en --train-tgt tr.de --valid-src va.en --valid-tgt va.de \\
        --test news=te.en,te.de                                   # any aligned files, one sentence a line
    python recipes/translate.py translate --checkpoint RUN_DIR "A man rides a bike."
    cat input.en | python recipes/translate.py translate --checkpoint RUN_DIR --show-attention attn.png
    python recipes/translate.py --eval-only --checkpoint RUN_DIR --beam 10 --out RUN_DIR/eval-beam10
    python recipes/translate.py knn --checkpoint RUN_DIR          # kNN-MT: datastore, tuning, BLEU with and without
    python recipes/translate.py translate --init hf:Helsinki-NLP/opus-mt-en-de "A man rides a bike."
    python recipes/translate.py --init hf:Helsinki-NLP/opus-mt-en-de --lr 5e-5 --warmup-steps 100   # fine-tune

Data: one joint sentencepiece BPE vocabulary (--vocab) trained on the training split (cached in $TZOO_CACHE_DIR),
embeddings shared and tied to the output layer; or one per language (--separate-vocab). --init hf:PATH starts from
a Hugging Face Marian (opus-mt) or T5 checkpoint: its architecture (only --dropout and --attention-dropout may
change), weights and tokenizers (T5 wants its task prefix: "translate English to German: "). Training: token-budget
batches (--max-tokens), label smoothing, inverse-sqrt warm-up, the best checkpoint on validation loss (or greedy
BLEU: --select bleu); the better on validation of it and the average of the last --average-last checkpoints is
evaluated on every test split, beam and greedy. --eval-only may change the search, --eval-limit and --test.

Run directory: config.json, tokenizer/ (and tokenizer-src/), checkpoints/, averaged/, metrics.jsonl, hyp/ (beam
<split>.<tgt>, greedy <split>.greedy.<tgt>, references <split>.ref.<tgt>: `sacrebleu hyp/test_2016_flickr.ref.de -i
hyp/test_2016_flickr.de` gives the reported BLEU), report.json, report.md, loss.png, lr.png, attention.png.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout without installing
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from transformers_zoo import EncoderDecoder, cli  # noqa: E402
from transformers_zoo.cli import main_guard  # noqa: E402, F401  (tests run main_guard(main))
from transformers_zoo.interop import load_hf_translator, resolve_checkpoint  # noqa: E402
from transformers_zoo.models import MODELS  # noqa: E402
from transformers_zoo.pipeline import Context  # noqa: E402
from transformers_zoo.tasks import translation as mt  # noqa: E402
from transformers_zoo.tasks.knn import MTExperiment  # noqa: E402

NAME, FAMILY, DEFAULT_PRESET, SETTINGS = "translate", "encoder_decoder", "cpu", mt.TranslationSettings

# A pre-norm Transformer with one joint vocabulary: shared source/target embeddings, tied to the output layer.
BASE_MODEL = dict(d_model=256, n_heads=4, n_layers=3, n_encoder_layers=3, n_decoder_layers=3, d_ff=1024,
                  ffn="relu", dropout=0.1, attention_dropout=0.0, positional="sinusoidal", norm="layernorm",
                  norm_first=True, scale_embeddings=True, tie_embeddings=True, share_src_tgt_embeddings=True,
                  max_len=256)
# fairseq's translation settings: Adam (0.9, 0.98), inverse-sqrt warm-up, clipping (label smoothing: 0.1, the default)
BASE_TRAIN = dict(lr=1e-3, schedule="inverse_sqrt", warmup_steps=4000, betas=[0.9, 0.98], eps=1e-9,
                  weight_decay=0.0, grad_clip=1.0, log_every=50)
BASE_DATA = dict(tokenizer="bpe", vocab=8000, max_tokens=4000, eval_limit=None, eval_max_tokens=6000)
BASE_EVAL = dict(beam=5, length_penalty=1.0, max_len_a=1.2, max_len_b=10, select="loss", average_last=5)

PRESETS = {
    # seconds: every stage on the real files (40 steps, a toy model, 50 sentences per evaluation split)
    "tiny": {"model": dict(BASE_MODEL, d_model=64, n_heads=2, n_layers=1, n_encoder_layers=1, n_decoder_layers=1,
                           d_ff=128),
             "train": dict(BASE_TRAIN, lr=5e-3, warmup_steps=10, max_steps=40, eval_every=20, save_every=10,
                           log_every=5, keep_last=3),
             "data": dict(BASE_DATA, vocab=1000, max_tokens=1500, eval_limit=50),
             "eval": dict(BASE_EVAL, average_last=3)},
    # 2,100 steps (~30 min on 2 idle cores; a 54-minute cap ran 3,935 there, validation loss rising after step 1,600),
    # then the last 5 checkpoints averaged and the three test sets. Small batches: CPU tokens/s barely depend on size.
    "cpu": {"model": dict(BASE_MODEL),
            "train": dict(BASE_TRAIN, lr=2e-3, warmup_steps=400, max_steps=2100, max_minutes=90, eval_every=200,
                          save_every=75, keep_last=5, log_every=25),
            "data": dict(BASE_DATA, vocab=8000, max_tokens=3000), "eval": dict(BASE_EVAL, average_last=5)},
    # base-ish Transformer (Vaswani et al.): d512, 6+6 layers, 8 heads, 4096-token batches, warm-up 4000
    "gpu": {"model": dict(BASE_MODEL, d_model=512, n_heads=8, n_layers=6, n_encoder_layers=6, n_decoder_layers=6,
                          d_ff=2048, dropout=0.3),
            "train": dict(BASE_TRAIN, lr=7e-4, warmup_steps=4000, max_steps=15000, eval_every=500, save_every=500,
                          keep_last=5, patience=10, log_every=100),
            "data": dict(BASE_DATA, vocab=8000, max_tokens=4096), "eval": dict(BASE_EVAL, average_last=5)},
}

# flags that set a settings field (dest: its path, data__vocab -> --vocab) -> (type, metavar, help)
SEARCH_FLAGS = {
    "eval__beam": (int, "K", "beam size of the test evaluation (default 5; 1 = greedy)"),
    "eval__length_penalty": (float, "ALPHA", "beam scores are log-prob / length ** this (default 1.0; 0 = raw)"),
    "eval__max_len_a": (float, "A", "generate at most a * source length + b tokens (default a=1.2)"),
    "eval__max_len_b": (int, "B", "see --max-len-a (default b=10)")}
DATA_FLAGS = {
    "data__src": (str, "LANG", "source language of Multi30k (default en); with --train-src a label (its extension)"),
    "data__tgt": (str, "LANG", "target language of Multi30k (default de); names hyp files"),
    "data__train_src": (cli.absolute, "FILE", "training sources, one sentence a line"),
    "data__train_tgt": (cli.absolute, "FILE", "training targets, aligned with --train-src"),
    "data__valid_src": (cli.absolute, "FILE", "validation sources (checkpoint selection)"),
    "data__valid_tgt": (cli.absolute, "FILE", "validation targets"),
    "data__vocab": (int, "SIZE", "sentencepiece vocabulary size (per vocabulary)"),
    "data__max_tokens": (int, "N", "padded tokens per training batch and side"),
    "data__eval_limit": (int, "N", "evaluate only the first N pairs of validation and test splits (default: all)"),
    "data__init": (str, "hf:PATH", "fine-tune a Hugging Face Marian or T5 checkpoint (directory or Hub name)"),
    "data__tokenizer": (["bpe", "unigram"], None, "sentencepiece model type"),
    "label_smoothing": (float, "EPS", "label smoothing of the training loss (default 0.1)"),
    "family": (["encoder_decoder", "decoder_only"], None, "default encoder_decoder; decoder_only: source as prefix")}
SELECTION_FLAGS = {
    "eval__select": (["loss", "bleu"], None, "checkpoint selection on validation: loss (default) or greedy BLEU"),
    "eval__average_last": (int, "K", "average the last K checkpoints and evaluate that too (1 = off)")}


def add_flags(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data")
    cli.add_field_flags(data, DATA_FLAGS)
    data.add_argument("--test", dest="data__tests", action="append", default=None, metavar="NAME=SRC_FILE,TGT_FILE",
                      help="a test set to report (repeatable); added to Multi30k's when training on Multi30k")
    data.add_argument("--separate-vocab", dest="data__separate_vocab", action="store_true", default=None,
                      help="one vocabulary per language (then source and target embeddings are not shared)")
    cli.add_field_flags(parser.add_argument_group("evaluation"), {**SEARCH_FLAGS, **SELECTION_FLAGS})


hf_checkpoint = functools.lru_cache(maxsize=1)(load_hf_translator)  # --init's (model, tokenizers), read once


def settings(args: argparse.Namespace) -> mt.TranslationSettings:
    """The preset and the command line; with --init the checkpoint's architecture (dropout may change), tokenizers."""
    given, missing = ([f"--{n.replace('_', '-')}" for n in mt.FILES if bool(getattr(args, "data__" + n)) is b]
                      for b in (True, False))
    if given and missing:
        raise ValueError(f"{', '.join(given)} given without {', '.join(missing)}: your own files need all four")
    tree = PRESETS[args.preset]
    if args.data__init:
        changes = cli.init_model_overrides(args, init=args.data__init)
        for flag in ("--vocab", "--tokenizer", "--separate-vocab"):
            if getattr(args, "data__" + flag[2:].replace("-", "_")) is not None:
                raise ValueError(f"{flag}: the tokenizers come from --init {args.data__init}")
        init = f"hf:{resolve_checkpoint(args.data__init).resolve()}"
        model, src_tok, tgt_tok = hf_checkpoint(init)
        tree = dict(tree, model=dict(model.config.to_dict(), **changes),
                    data=dict(tree["data"], separate_vocab=src_tok is not tgt_tok, tokenizer=tgt_tok.kind,
                              vocab=tgt_tok.vocab_size))
        args = argparse.Namespace(**{**vars(args), "data__init": init})
    return cli.preset_settings(sys.modules[__name__], args, tree)


def prepare(s: mt.TranslationSettings, ctx: Context) -> tuple[mt.TranslationTask, EncoderDecoder]:
    """The pairs as a TranslationTask (tokenizers trained on the training pairs, cached; or the run's, or the
    --init checkpoint's) and the model sized for them: fresh weights from the seed, or the checkpoint's."""
    tokenizers = mt.load_tokenizers(ctx.run_dir) if ctx.resumed else hf_checkpoint(s.data.init)[1:] if s.data.init \
        else None
    task = mt.prepare_translation_task(mt.load_pairs(s.data, ctx.data_dir), s.data, s.eval, s.model.max_len,
                                       tokenizers, s.label_smoothing, s.family)
    torch.manual_seed(s.train.seed)  # the initial weights
    model = MODELS[s.family](s.model if s.data.init else task.model_config(s.model))
    if s.data.init and not ctx.has_checkpoint:  # a resumed run has weights of its own
        model.load_state_dict(hf_checkpoint(s.data.init)[0].state_dict())
        print(f"model: initialised from {s.data.init}", file=sys.stderr)
    return task, model


def translate_main(argv: list[str]) -> int:
    """`translate` subcommand: one translation per input line, optionally cross-attention maps."""
    parser = argparse.ArgumentParser(prog="recipes/translate.py translate", description="Translate sentences with "
                                     "a trained run (or a Hugging Face Marian or T5 checkpoint): given as arguments, "
                                     "else one per line on stdin. Prints one translation per line.")
    parser.add_argument("sentences", nargs="*", help="sentences to translate (default: read stdin)")
    weights = parser.add_mutually_exclusive_group(required=True)
    weights.add_argument("--checkpoint", metavar="RUN_DIR",
                         help="run directory (its selected weights), RUN_DIR/averaged or a checkpoints/step_* folder")
    weights.add_argument("--init", metavar="hf:PATH", help="a Hugging Face Marian or T5 checkpoint instead")
    cli.add_field_flags(parser, SEARCH_FLAGS)
    parser.add_argument("--show-attention", metavar="PATH.png", default=None, help="save the last decoder layer's "
                        "cross-attention of each sentence as a heat map: PATH.png, PATH-2.png, ...")
    parser.add_argument("--heads", choices=["mean", "all"], default="mean",
                        help="attention map: the mean over heads (default) or one map per head")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = parser.parse_args(argv)
    model, src_tok, tgt_tok, search = mt.load_translator(args.checkpoint, args.init)
    search = search.merged({p[5:]: v for p, v in cli.given_fields(args, SETTINGS).items() if p.startswith("eval.")})
    model = model.to(cli.resolve_device(args.device)).eval()
    sentences = [s.strip() for s in (args.sentences or sys.stdin.read().splitlines())]
    for line in mt.translate_lines(model, src_tok, tgt_tok, sentences, search):
        print(line)
    if args.show_attention:
        for path in mt.attention_maps(model, src_tok, tgt_tok, sentences, Path(args.show_attention), search,
                                      args.heads):
            print(f"attention map: {path}", file=sys.stderr)
    return 0


def knn_main(argv: list[str]) -> int:
    """kNN-MT on a trained run (tasks/knn.py): `python recipes/translate.py knn --checkpoint RUN_DIR`."""
    return cli.knn_main(sys.modules[__name__], argv, lambda task, args: MTExperiment(task, args.splits), lambda p:
                        p.add_argument("--splits", type=lambda v: tuple(v.split(",")), default=None, help="test splits "
                                       "to report, comma-separated (default: all; the first gets the fractions)"))


COMMANDS = {"translate": translate_main, "knn": knn_main}
main = functools.partial(cli.recipe_main, sys.modules[__name__])

if __name__ == "__main__":
    main_guard(main)
