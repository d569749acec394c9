#!/usr/bin/env python
"""Instruction tuning (SFT): teach a decoder to answer through a chat template; full fine-tuning or LoRA.

    python recipes/sft.py                                     # cpu preset: pre-train a decoder on the corpora, tune it
    python recipes/sft.py --init RUN_DIR                      # from a recipes/gpt.py run
    python recipes/sft.py --init hf:HuggingFaceTB/SmolLM2-135M-Instruct --lora-rank 8   # an HF Llama-family model
    python recipes/sft.py --conversations mine.jsonl --init RUN_DIR   # your conversations, {"messages": [...]} a line
    python recipes/sft.py --specialists runs/mt-cpu,runs/cls-cpu      # the report's table against specialist runs
    python recipes/sft.py --eval-only --checkpoint RUN_DIR
    python recipes/sft.py table --checkpoint RUN_DIR --specialists runs/mt-cpu,runs/bert/finetune

The training set is built offline from the zoo's corpora (corpora/instructions.py): translation (Multi30k en->de,
de->en, en->fr), sentiment (SST-2 phrases, IMDB reviews -> positive/negative), paraphrase (Multi30k task 2),
continuation (Tiny Shakespeare), each asked in several phrasings. Conversations are rendered by the tokenizer's
chat template (an instruct checkpoint's own; else ours, ChatML, whose two markers become new embedding rows,
initialised to the mean row), packed into blocks, and trained on the assistant's tokens only. The test split
answers held-out instructions greedily and scores them: BLEU on test_2016_flickr en->de, SST-2 dev accuracy, the
share of answers in the asked format. With --lora-rank only the adapters (and the chat markers' rows) train; the
adapters are merged into model.safetensors when the run ends. With no --init, the run first trains
--pretrain-steps steps of next-token prediction on the corpora's running text, then instruction-tunes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout without installing
    sys.path.insert(0, str(ROOT))

from transformers_zoo import cli  # noqa: E402
from transformers_zoo.cli.chat import chat_main  # noqa: E402
from transformers_zoo.corpora import resolve_data_dir  # noqa: E402
from transformers_zoo.interop import resolve_checkpoint as resolve_hf  # noqa: E402
from transformers_zoo.tasks.sft import (  # noqa: E402
    SFTSettings,
    load_chat_model,  # noqa: F401  (chat: a LoRA run's merged weights)
    load_start,
    prepare_sft,
    read_report,
    specialists_table,
)

NAME, FAMILY, DEFAULT_PRESET, SETTINGS = "sft", "decoder_only", "cpu", SFTSettings
prepare = prepare_sft

MODEL = dict(d_model=256, n_heads=4, n_layers=4, max_len=256, dropout=0.0, positional="rope", norm="rmsnorm",
             norm_first=True, ffn="swiglu", bias=False, tie_embeddings=True)
TRAIN = dict(lr=1e-3, schedule="cosine", warmup_steps=200, min_lr_ratio=0.1, betas=[0.9, 0.95], eps=1e-8,
             weight_decay=0.1, grad_clip=1.0, eval_every=500, save_every=500, log_every=50, keep_last=2)
DATA = dict(per_task=12000, val_per_task=100, block_size=256, batch_size=16, eval_batch_size=32, max_new_tokens=64,
            tokenizer="bpe", vocab=8000)

PRESETS = {
    # seconds: every stage (pre-training text, instruction tuning, answers scored) on a few examples
    "tiny": {"model": dict(MODEL, d_model=32, n_heads=2, n_layers=2, max_len=160),
             "train": dict(TRAIN, max_steps=24, warmup_steps=2, eval_every=12, save_every=12, log_every=4),
             "data": dict(DATA, per_task=24, val_per_task=6, sst2_val=0, imdb_reviews=0, block_size=160, batch_size=4,
                          test_size=6, max_new_tokens=12, vocab=700, pretrain_steps=8, pretrain_chars=300_000)},
    # ~54 minutes on 2 idle cores (2026-12-07: 52.6 of training): a 5.2M-parameter decoder, 1,600 steps of running
    # text (6.6M tokens, 0.55 s a step), then 2,600 of instructions (72k conversations, 12k a task; 0.85-0.95 s a
    # step); bf16 autocast (1.5x float32's tokens/s on a CPU with AMX); data 20 s, answers 30 s. A step budget:
    # the 50-minute cap it had stopped it at step 4,029 on an idle machine; 75 minutes is only a safety cap
    "cpu": {"model": MODEL,
            "train": dict(TRAIN, max_steps=4200, max_minutes=75.0, amp="bf16"),
            "data": dict(DATA, imdb_reviews=6000, pretrain_steps=1600, pretrain_chars=24_000_000)},
    # a GPU: a wider, deeper decoder and longer budgets
    "gpu": {"model": dict(MODEL, d_model=512, n_heads=8, n_layers=8, max_len=512, dropout=0.1),
            "train": dict(TRAIN, max_steps=20000, lr=6e-4, warmup_steps=1000, eval_every=1000, save_every=1000),
            "data": dict(DATA, per_task=None, block_size=512, batch_size=32, pretrain_steps=8000,
                         pretrain_chars=None)},
}
#: what a fine-tuning run of a trained model (--init) changes in the preset: a smaller learning rate, no pre-training
INIT_TRAIN = dict(lr=2e-4, warmup_steps=50)


def specialists(value: str) -> list[str]:
    return [cli.absolute(v) for v in value.split(",") if v.strip()]


def add_flags(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data")
    data.add_argument("--init", default=None, metavar="RUN_DIR|hf:PATH",
                      help="start from a recipes/gpt.py run or a Hugging Face GPT-2/Llama-family checkpoint (its "
                           "architecture and tokenizer; only --dropout/--attention-dropout may change); without it a "
                           "decoder is pre-trained here first (--pretrain-steps)")
    data.add_argument("--conversations", dest="data__conversations", type=cli.absolute, default=None, metavar="JSONL",
                      help='train on these conversations ({"messages": [{"role": ..., "content": ...}]} a line; 5%% '
                           "held out for validation) instead of the zoo's instruction set")
    data.add_argument("--per-task", dest="data__per_task", type=int, default=None,
                      help="training examples of each task of the instruction set")
    data.add_argument("--block-size", dest="data__block_size", type=int, default=None,
                      help="tokens a packed block holds (a longer conversation is dropped, and counted)")
    data.add_argument("--batch-size", dest="data__batch_size", type=int, default=None, help="blocks a step")
    data.add_argument("--test-size", dest="data__test_size", type=int, default=None,
                      help="score at most N of each test set (default: all of test_2016_flickr and SST-2 dev)")
    data.add_argument("--max-new-tokens", dest="data__max_new_tokens", type=int, default=None,
                      help="longest answer generated in evaluation")
    data.add_argument("--vocab", dest="data__vocab", type=int, default=None,
                      help="from scratch: sentencepiece vocabulary size (preset 8000)")
    data.add_argument("--pretrain-steps", dest="data__pretrain_steps", type=int, default=None,
                      help="from scratch: steps of next-token prediction on running text before instruction tuning")
    lora = parser.add_argument_group("LoRA (instead of full fine-tuning)")
    lora.add_argument("--lora-rank", dest="lora__rank", type=int, default=None, help="adapter rank (0: full)")
    lora.add_argument("--lora-alpha", dest="lora__alpha", type=float, default=None,
                      help="scale of the update: alpha / rank (default 16)")
    lora.add_argument("--lora-targets", dest="lora__targets", default=None, metavar="NAMES",
                      help="linear layers that get adapters, comma-separated (default qkv,out; also gate_up, up, down)")
    lora.add_argument("--lora-dropout", dest="lora__dropout", type=float, default=None, help="dropout on adapter input")
    report = parser.add_argument_group("report")
    report.add_argument("--specialists", type=specialists, default=None, metavar="RUN_DIR,...",
                        help="translate.py and classify.py runs whose test figures the report sets beside this model's")


def settings(args: argparse.Namespace) -> SFTSettings:
    """The preset and the command line; with --init the checkpoint's architecture (dropout may change), a
    fine-tuning learning rate, no pre-training, and blocks at most its positions long."""
    tree = {k: dict(v) for k, v in PRESETS[args.preset].items()}
    if args.init:
        init = args.init
        init = f"hf:{resolve_hf(init).resolve()}" if init.startswith("hf:") else str(Path(init).resolve())
        changes = cli.init_model_overrides(args, init=init)
        model = load_start(init, str(resolve_data_dir(args.data_dir)))[0]
        tree["model"] = dict(model.config.to_dict(), **changes)
        tree["train"] = dict(tree["train"], **INIT_TRAIN)
        tree["data"] = dict(tree["data"], pretrain_steps=0,
                            block_size=min(tree["data"]["block_size"], model.config.max_len))
        tree["init"] = init
    return cli.preset_settings(sys.modules[__name__], args, tree)


def table_main(argv: list[str]) -> int:
    """Print the report's table again, with specialist runs that finished after this one."""
    parser = argparse.ArgumentParser(prog="recipes/sft.py table",
                                     description="This run's test figures beside specialist runs' (markdown).")
    parser.add_argument("--checkpoint", required=True, metavar="RUN_DIR", help="a finished sft run")
    parser.add_argument("--specialists", type=specialists, required=True, metavar="RUN_DIR,...",
                        help="translate.py and classify.py (or mlm.py fine-tuning) runs")
    args = parser.parse_args(argv)
    report = read_report(args.checkpoint)
    if report is None:
        raise FileNotFoundError(f"{args.checkpoint}: no report.json (has the run finished?)")
    print(specialists_table(report["eval"].get("test", {}), report.get("wall_s"), args.specialists))
    return 0


COMMANDS = {"table": table_main, "chat": lambda argv: chat_main(argv, sys.modules[__name__])}

if __name__ == "__main__":
    cli.main_guard(lambda: cli.recipe_main(sys.modules[__name__]))
