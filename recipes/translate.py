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
import functools
import json
import sys
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout without installing
    sys.path.insert(0, str(ROOT))

from safetensors.torch import save_model  # noqa: E402

from transformers_zoo import EncoderDecoder, ModelConfig  # noqa: E402
from transformers_zoo.cli import (  # noqa: E402
    add_common_args,
    main_guard,
    resolve_device,
    resolve_preset,
)
from transformers_zoo.corpora import DataError, load_multi30k, read_parallel, resolve_data_dir  # noqa: E402
from transformers_zoo.interop import load_hf_translator  # noqa: E402
from transformers_zoo.runs import (  # noqa: E402
    fingerprint,
    open_run,
    read_run_config,
    resume_train_settings,
    run_dir_of,
    tokenizer_cache_dir,
    write_json,
)
from transformers_zoo.tasks import translation_settings as settings  # noqa: E402
from transformers_zoo.tasks.translation import (  # noqa: E402
    TranslationData,
    average_checkpoints,
    evaluate_loss,
    example_width,
    examples_table,
    prepare_translation_data,
    score,
    scores_table,
    selection_table,
    target_ids,
    train_stream,
    translate,
    translation_loss,
    write_hypotheses,
)
from transformers_zoo.tokenizers import Tokenizer, load_tokenizer  # noqa: E402
from transformers_zoo.training import (  # noqa: E402
    TrainConfig,
    Trainer,
    load_checkpoint,
    plot_curves,
    write_report,
)
from transformers_zoo.training.checkpoint import MODEL_FILE, load_weights  # noqa: E402
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


# ---------------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------------


def load_pairs(data: dict[str, Any], data_dir: str | None) -> dict[str, list[tuple[str, str]]]:
    """Sentence pairs per split: train, val, then every test split. Every file is read (and checked) here."""
    if data["corpus"] == "multi30k":
        pairs = load_multi30k(resolve_data_dir(data_dir), data["src"], data["tgt"])
        for split in ("train", "val"):
            if split not in pairs:
                raise DataError(f"Multi30k has no {split} split for {data['src']}-{data['tgt']}",
                                resolve_data_dir(data_dir) / "multi30k")
    else:
        pairs = {split: read_parallel(*data["files"][split]) for split in ("train", "val")}
    for name, (src, tgt) in data.get("tests", {}).items():
        pairs[name] = read_parallel(src, tgt)
    return pairs


def test_splits(pairs: dict[str, Any]) -> list[str]:
    """Every split but train and val, in order."""
    return [split for split in pairs if split not in ("train", "val")]


def build_data(data: dict[str, Any], data_dir: str | None, max_len: int,
               tokenizers: tuple[Tokenizer, Tokenizer] | None = None) -> TranslationData:
    """Read the pairs, train (or reuse) the tokenizers on the training split and encode every split; pairs of
    evaluation splits are cut to `eval_limit`."""
    pairs = load_pairs(data, data_dir)
    limit = data.get("eval_limit")
    if limit:
        pairs = {split: p if split == "train" else p[:limit] for split, p in pairs.items()}
    cache = tokenizer_cache_dir() if tokenizers is None else None
    return prepare_translation_data(pairs, data["vocab"], data["joint"], data["tokenizer"], cache, max_len,
                                    tokenizers)



def save_tokenizers(td: TranslationData, run_dir: Path) -> None:
    """`tokenizer/` (joint or target) and, with separate vocabularies, `tokenizer-src/`."""
    td.tgt_tokenizer.save(run_dir / "tokenizer")
    if not td.joint:
        td.src_tokenizer.save(run_dir / "tokenizer-src")


def load_tokenizers(run_dir: Path) -> tuple[Tokenizer, Tokenizer]:
    """(source, target) tokenizers of a run; the same object when the vocabulary is joint."""
    tgt = load_tokenizer(run_dir / "tokenizer")
    src = load_tokenizer(run_dir / "tokenizer-src") if (run_dir / "tokenizer-src").is_dir() else tgt
    return src, tgt


def fingerprint_of(cfg: ModelConfig, src_tok: Tokenizer, tgt_tok: Tokenizer) -> dict[str, Any]:
    """What a checkpoint belongs to: the model config and both tokenizers' hashes."""
    return fingerprint(cfg, tgt_tok, src_tokenizer=src_tok.fingerprint)


# ---------------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------------


def train(args: argparse.Namespace) -> int:
    """Validate the inputs, build the data and model, train (or resume), then write the final report."""
    preset = resolve_preset(PRESETS, args)
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    run = open_run(args, "translate")
    run_dir = run.dir
    if run.resumed:  # everything from config.json but the budgets (and search flags) of this command line
        saved = run.saved
        data, ev, preset_name = saved["data"], settings.eval_settings(preset, args, saved["eval"]), saved["preset"]
        train_cfg = resume_train_settings(saved["train"], args, settings.DATA_FLAGS)
        td = build_data(data, args.data_dir, saved["model"]["max_len"], load_tokenizers(run_dir))
        cfg = ModelConfig.from_dict(saved["model"])
        train_cfg = TrainConfig.from_dict(train_cfg)
        init = None  # a resumed run has its own weights
    else:
        data, ev, preset_name = settings.data_settings(preset, args), settings.eval_settings(preset, args), args.preset
        # Everything that can be wrong with the input is found before the run directory exists.
        if args.init:
            init, cfg, tokenizers = settings.hf_init(args, data)
            td = build_data(data, args.data_dir, cfg.max_len, tokenizers)
        else:
            init = None
            td = build_data(data, args.data_dir, preset["model"].get("max_len", ModelConfig.max_len))
            cfg = settings.model_config(preset["model"], td)
        longest = max(example_width(e) for e in td.examples["train"])
        if longest > data["max_tokens"]:
            raise ValueError(f"--max-tokens {data['max_tokens']} cannot hold the longest training pair ({longest} "
                             "tokens); raise --max-tokens or lower --max-len")
        train_cfg = TrainConfig.from_dict(settings.train_settings(preset["train"], ev))
        if is_main():
            run_dir.mkdir(parents=True, exist_ok=True)
            save_tokenizers(td, run_dir)
    src_tok, tgt_tok = td.src_tokenizer, td.tgt_tokenizer
    config = {"recipe": "translate", "preset": preset_name, "model": cfg.to_dict(), "train": train_cfg.to_dict(),
              "data": data, "eval": ev, "tokenizer_fingerprint": tgt_tok.fingerprint,
              "src_tokenizer_fingerprint": src_tok.fingerprint}
    if is_main():
        write_json(run_dir / "config.json", config)
    vocab = f"joint vocabulary {tgt_tok.vocab_size}" if td.joint else \
        f"vocabularies {src_tok.vocab_size} ({data['src']}) + {tgt_tok.vocab_size} ({data['tgt']})"
    skipped = f" ({td.skipped['train']} longer than max_len skipped)" if td.skipped["train"] else ""
    print(f"data: {data['src']}->{data['tgt']}, " + ", ".join(f"{s} {len(p):,}" for s, p in td.pairs.items())
          + f" pairs{skipped}; {vocab}", file=sys.stderr)

    torch.manual_seed(train_cfg.seed)  # the initial weights
    model = EncoderDecoder(cfg)
    if init is not None:
        model.load_state_dict(init.state_dict())
    params = sum(p.numel() for p in model.parameters())
    start = f", initialised from {data['init']}" if init is not None else ""
    print(f"model: EncoderDecoder, {params:,} parameters{start}", file=sys.stderr)
    stream = train_stream(td.examples["train"], data["max_tokens"], train_cfg.seed, **target_ids(tgt_tok))
    loss_fn = functools.partial(translation_loss, label_smoothing=train_cfg.label_smoothing)
    val_src = [s for s, _ in td.pairs["val"]]
    val_ref = [t for _, t in td.pairs["val"]]

    def evaluate(m: EncoderDecoder) -> dict[str, float]:
        res = evaluate_loss(m, td.examples["val"], data["eval_max_tokens"], device, **target_ids(tgt_tok))
        out = {"val_loss": res["loss"], "val_ppl": res["ppl"]}
        if ev["select"] == "bleu":
            hyps = translate(m, tgt_tok, val_src, src_tokenizer=src_tok, beam_size=1, max_len_a=ev["max_len_a"],
                             max_len_b=ev["max_len_b"], max_tokens=data["eval_max_tokens"])
            out["val_bleu"] = score(hyps, val_ref)["bleu"]
        return out

    trainer = Trainer(model, stream, loss_fn, train_cfg, run_dir, evaluate=evaluate,
                      fingerprint=fingerprint_of(cfg, src_tok, tgt_tok))
    summary = trainer.fit()
    if not is_main():
        return 0
    final = final_report(run_dir, config, cfg, td, device, params, summary)
    lines = [f"{split} BLEU {m['bleu']:.2f} (greedy {m['bleu_greedy']:.2f})"
             for split, m in final["eval"].items() if "bleu" in m]
    print(f"done: {run_dir}  [{final['selected']['checkpoint']}]  " + "  ".join(lines), file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------------------


def search_kwargs(ev: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """`translate()` keyword arguments from the run's eval and data settings (beam size apart)."""
    return {"length_penalty": ev["length_penalty"], "max_len_a": ev["max_len_a"], "max_len_b": ev["max_len_b"],
            "max_tokens": data.get("eval_max_tokens", 6000)}


def validation_scores(model: EncoderDecoder, td: TranslationData, ev: dict, data: dict, device) -> dict[str, float]:
    """Validation loss and greedy BLEU/chrF: what best and averaged weights are compared on."""
    res = evaluate_loss(model, td.examples["val"], data.get("eval_max_tokens", 6000), device,
                        **target_ids(td.tgt_tokenizer))
    hyps = translate(model, td.tgt_tokenizer, [s for s, _ in td.pairs["val"]], src_tokenizer=td.src_tokenizer,
                     beam_size=1, **search_kwargs(ev, data))
    scores = score(hyps, [t for _, t in td.pairs["val"]])
    return {"loss": res["loss"], "ppl": res["ppl"], "bleu_greedy": scores["bleu"], "chrf_greedy": scores["chrf"]}


def evaluate_split(model: EncoderDecoder, td: TranslationData, split: str, ev: dict, data: dict, device
                   ) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Loss, beam-search and greedy translations of one split: `(scores, texts)` where texts holds the
    detokenized `hypotheses` (beam), `hypotheses_greedy` and `references`, one per pair."""
    sources = [s for s, _ in td.pairs[split]]
    refs = [t for _, t in td.pairs[split]]
    res = evaluate_loss(model, td.examples[split], data.get("eval_max_tokens", 6000), device,
                        **target_ids(td.tgt_tokenizer))
    kwargs = dict(src_tokenizer=td.src_tokenizer, **search_kwargs(ev, data))
    beam = translate(model, td.tgt_tokenizer, sources, beam_size=ev["beam"], **kwargs)
    greedy = beam if ev["beam"] == 1 else translate(model, td.tgt_tokenizer, sources, beam_size=1, **kwargs)
    beam_scores, greedy_scores = score(beam, refs), score(greedy, refs)
    entry = {"loss": res["loss"], "ppl": res["ppl"], **beam_scores, "bleu_greedy": greedy_scores["bleu"],
             "chrf_greedy": greedy_scores["chrf"], "sentences": len(sources)}
    return entry, {"hypotheses": beam, "hypotheses_greedy": greedy, "references": refs}


def final_report(run_dir: Path, config: dict, cfg: ModelConfig, td: TranslationData, device: torch.device,
                 params: int, summary: dict) -> dict[str, Any]:
    """Compare best and averaged weights on validation, evaluate the better on every test split (beam and
    greedy), write hypotheses, report.json/.md, curves and a cross-attention map."""
    data, ev = config["data"], config["eval"]
    model = EncoderDecoder(cfg).to(device)
    manifest = load_checkpoint(run_dir, model)
    candidates = {"best": {"steps": [manifest["step"]], **validation_scores(model, td, ev, data, device)}}
    chosen, selected_path = model, None
    if ev["average_last"] > 1:
        averaged = EncoderDecoder(cfg).to(device)
        dirs = average_checkpoints(run_dir, ev["average_last"], averaged)
        if len(dirs) > 1:
            steps = [int(d.name.split("_")[1]) for d in dirs]
            avg_dir = run_dir / "averaged"
            avg_dir.mkdir(exist_ok=True)
            save_model(averaged, str(avg_dir / MODEL_FILE), force_contiguous=True)
            write_json(avg_dir / "averaged.json", {"steps": steps, "fingerprint": fingerprint_of(
                cfg, td.src_tokenizer, td.tgt_tokenizer)})
            candidates["averaged"] = {"steps": steps, **validation_scores(averaged, td, ev, data, device)}
            better = (candidates["averaged"]["loss"] < candidates["best"]["loss"] if ev["select"] == "loss"
                      else candidates["averaged"]["bleu_greedy"] > candidates["best"]["bleu_greedy"])
            if better:
                chosen, selected_path = averaged, avg_dir
    name = "averaged" if selected_path is not None else "best"
    selected = {"checkpoint": name, "steps": candidates[name]["steps"], "select": ev["select"],
                "path": str((selected_path or Path(manifest["path"])).relative_to(run_dir))}
    evals: dict[str, dict[str, Any]] = {"val": {k: v for k, v in candidates[name].items() if k != "steps"}}
    hypotheses: dict[str, list[str]] = {}
    for split in test_splits(td.pairs):
        entry, texts = evaluate_split(chosen, td, split, ev, data, device)
        evals[split] = {**entry, **write_hypotheses(run_dir, split, data["tgt"], texts)}
        hypotheses[split] = texts["hypotheses"]
    images = [p.name for p in plot_curves(run_dir)]
    show = test_splits(td.pairs)[0] if test_splits(td.pairs) else "val"
    src_text = td.pairs[show][0][0]
    attention_png = plot_cross_attention(chosen, td.src_tokenizer, td.tgt_tokenizer, src_text,
                                         run_dir / "attention.png", ev, heads="all")
    report = {
        "recipe": "translate", "config": config, "params": params, "wall_s": summary.get("wall_s"),
        "train_tokens_per_s": summary.get("train_tokens_per_s"), "best_step": summary.get("best_step"),
        "steps": summary.get("steps"), "stopped": summary.get("stopped"), "selected": selected,
        "candidates": candidates, "search": {k: ev[k] for k in ("beam", "length_penalty", "max_len_a", "max_len_b")},
        "eval": evals,
    }
    sections = [("Test scores", scores_table(evals, ev)),
                ("Checkpoint selection on validation", selection_table(candidates, name, ev["select"])),
                (f"Example translations ({show}, beam {ev['beam']})",
                 examples_table(td.pairs[show], hypotheses.get(show)))]
    write_report(run_dir, report, sections=sections, images=[*images, attention_png.name])
    return report


# ---------------------------------------------------------------------------------------------------------
# Loading a trained run (eval-only, translate)
# ---------------------------------------------------------------------------------------------------------


def load_trained(checkpoint: str, device: torch.device) -> tuple[EncoderDecoder, Tokenizer, Tokenizer, dict, str]:
    """Model, (source, target) tokenizers, config and a description of the weights of `--checkpoint`.

    A run directory gives the weights its report selected (averaged or best; the best checkpoint while no
    report exists yet); `RUN_DIR/averaged` or `RUN_DIR/checkpoints/step_*` give those weights.
    """
    path = Path(checkpoint)
    if not path.exists():
        raise FileNotFoundError(f"--checkpoint {checkpoint}: no such run directory")
    run_dir = run_dir_of(path)
    config = read_run_config(run_dir)
    if config.get("recipe") != "translate":
        raise ValueError(f"--checkpoint {checkpoint}: a {config.get('recipe')!r} run, not a translate run")
    src_tok, tgt_tok = load_tokenizers(run_dir)
    cfg = ModelConfig.from_dict(config["model"])
    model = EncoderDecoder(cfg).to(device)
    if path.resolve() == run_dir.resolve() and _selected(run_dir) == "averaged":
        path = run_dir / "averaged"
    if path.name == "averaged" and (path / MODEL_FILE).is_file():
        load_weights(path, model)
        steps = json.loads((path / "averaged.json").read_text()).get("steps", [])
        what = f"average of steps {', '.join(map(str, steps))}"
    else:
        manifest = load_checkpoint(path, model, fingerprint=fingerprint_of(cfg, src_tok, tgt_tok))
        what = f"step {manifest['step']} ({Path(manifest['path']).name})"
    model.eval()
    return model, src_tok, tgt_tok, config, what


def _selected(run_dir: Path) -> str | None:
    try:
        return json.loads((run_dir / "report.json").read_text()).get("selected", {}).get("checkpoint")
    except (OSError, ValueError):
        return None


def eval_only(args: argparse.Namespace) -> int:
    """Re-evaluate a trained run on its validation and test splits; print the scores, write them to --out."""
    if not args.checkpoint:
        raise ValueError("--eval-only needs --checkpoint RUN_DIR")
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    model, src_tok, tgt_tok, config, what = load_trained(args.checkpoint, device)
    data, ev = settings.saved_settings(config, args)
    td = build_data(data, args.data_dir, model.config.max_len, (src_tok, tgt_tok))
    print(f"evaluating {args.checkpoint}: {what}", file=sys.stderr)
    results: dict[str, dict[str, Any]] = {"val": validation_scores(model, td, ev, data, device)}
    texts: dict[str, dict[str, list[str]]] = {}
    print("val: " + "  ".join(f"{k} {v:.4f}" for k, v in results["val"].items()))
    for split in test_splits(td.pairs):
        results[split], texts[split] = evaluate_split(model, td, split, ev, data, device)
        m = results[split]
        print(f"{split}: BLEU {m['bleu']:.2f} chrF {m['chrf']:.2f} (beam {ev['beam']}, length penalty "
              f"{ev['length_penalty']:g})  greedy: BLEU {m['bleu_greedy']:.2f} chrF {m['chrf_greedy']:.2f}  "
              f"loss {m['loss']:.4f}")
    signature = next((m["signature"] for m in results.values() if "signature" in m), None)
    if signature:
        print(f"BLEU signature: {signature}")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for split, split_texts in texts.items():
            results[split].update(write_hypotheses(out, split, data["tgt"], split_texts))
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
        model, src_tok, tgt_tok, config, _ = load_trained(args.checkpoint, device)
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
