#!/usr/bin/env python
"""Classification recipe: fine-tune a pre-trained encoder under a new head, or train it from scratch; test once.

    python recipes/classify.py --init RUN_DIR                # SST-2, from a run of recipes/mlm.py pretrain
    python recipes/classify.py                               # the same model and budget, from scratch
    python recipes/classify.py --init RUN_DIR --task imdb    # IMDB's reviews (test: its 25k test reviews)
    python recipes/classify.py --train-tsv t.tsv --test-tsv e.tsv --label-column topic   # your own data
    python recipes/classify.py --init hf:bert-base-uncased   # a Hugging Face BERT with its own WordPiece
    python recipes/classify.py predict --checkpoint RUN_DIR "a gorgeous, witty film"
    python recipes/classify.py --eval-only --checkpoint RUN_DIR

`recipes/mlm.py` pre-trains an encoder; its one command makes these runs from both starts and compares them
(`mlm.py finetune` and `mlm.py predict` were these commands). The encoder is mean-pooled (MLM never trains the
[CLS] vector) under a linear head; the checkpoint with the best validation accuracy is kept. SST-2's test set is
dev.tsv, its validation 872 whole training sentences whose phrases all leave training. --task imdb trains at 256
tokens, keeping the head and tail of a long review (Sun et al. 2019). From scratch, a sentencepiece vocabulary is
trained on the train texts. --init hf:PATH builds BertForSequenceClassification's model: its pooler, ids.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout without installing
    sys.path.insert(0, str(ROOT))

from transformers_zoo import cli  # noqa: E402
from transformers_zoo.tasks import finetuning  # noqa: E402
from transformers_zoo.tasks.classification_settings import PRESETS, TASKS, ClassifySettings, classifier_tree  # noqa: E402,F401

NAME, FAMILY, DEFAULT_PRESET, SETTINGS = "classify", "encoder_only", "cpu", ClassifySettings
prepare = finetuning.prepare_classifier


def run_kind(saved: dict | None) -> finetuning.RunKind:
    """A classifier run (a new one, or one of recipes/mlm.py's fine-tuning stages); a pre-training run of
    recipes/mlm.py when --eval-only is given one."""
    return finetuning.encoder_run(saved)


def add_flags(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data")
    cli.add_vocab_args(data)
    cli.add_labelled_data_args(data, sorted(TASKS))
    data.add_argument("--init", type=lambda v: v if v.startswith("hf:") else cli.absolute(v), default=None,
                      metavar="RUN_DIR|hf:PATH", help="pre-training run to start from, or hf:PATH, a Hugging Face BERT "
                      "checkpoint directory (or Hub name) with its vocab.txt (without it: from scratch)")
    data.add_argument("--tokenizer-from", type=cli.absolute, default=None, metavar="DIR",
                      help="a run (or tokenizer folder) whose tokenizer to use; with --init it must be the "
                           "pre-training run's")


def settings(args: argparse.Namespace) -> ClassifySettings:
    """The preset with the task's and the stage's changes (from scratch: its own learning rate), the command
    line; with --init the encoder's architecture (only pooling, dropout and max_len may change) and tokenizer."""
    this = sys.modules[__name__]
    tree = classifier_tree(args.preset, args.data__task, "finetune" if args.init else "scratch")
    return finetuning.start_settings(cli.preset_settings(this, args, tree), cli.given_fields(args, SETTINGS))


def predict_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="recipes/classify.py predict",
                                     description="Classify texts with a fine-tuned run: label, probability.")
    parser.add_argument("--checkpoint", required=True, metavar="RUN_DIR", help="fine-tuning run (or all-in-one run)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("texts", nargs="+", help="texts to classify")
    args = parser.parse_args(argv)
    labels = finetuning.predict(args.checkpoint, args.texts, cli.resolve_device(args.device))
    for text, (label, prob) in zip(args.texts, labels, strict=True):
        print(f"{label}\t{prob:.4f}\t{text}")
    return 0


COMMANDS = {"predict": predict_main}

if __name__ == "__main__":
    cli.main_guard(lambda: cli.recipe_main(sys.modules[__name__]))
