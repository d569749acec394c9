#!/usr/bin/env python
"""Answers grounded in your documents: retrieve passages from an index, answer with a chat model citing them.

    python recipes/embed.py index docs.jsonl --index idx/docs --init hf:sentence-transformers/all-MiniLM-L6-v2 \\
        --passage-tokens 128 --passage-overlap 16                    # long documents as passages
    python recipes/rag.py ask --index idx/docs --model hf:HuggingFaceTB/SmolLM2-360M-Instruct "question" -k 4

The question is embedded by the index's encoder (or --encoder RUN_DIR|hf:PATH, which must be the one that wrote
the index), the top-k passages go into the model's chat template as numbered sources, the answer streams as it
is generated, citing them as [n], and the sources follow (a * marks those cited). Passages that do not fit the
model's context with the question are dropped, lowest-ranked first, and a line says so.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout without installing
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "recipes"))  # the recipes whose runs answer and embed

from transformers_zoo import cli  # noqa: E402
from transformers_zoo.chat import Notice, reply_room  # noqa: E402
from transformers_zoo.cli.chat import add_sampling_flags, load_chat_model, sampling_of  # noqa: E402
from transformers_zoo.retrieval.index import IndexFolderError, VectorIndex  # noqa: E402
from transformers_zoo.retrieval.rag import answer, citations, format_sources, grounded_prompt  # noqa: E402
from transformers_zoo.runs import read_run_config, run_dir_of  # noqa: E402
from transformers_zoo.tasks.finetuning import is_hf  # noqa: E402


def run_recipe(run_dir: str):
    """The recipe module that trained a run (gpt, sft, ...): it knows how to load it."""
    import importlib

    name = read_run_config(run_dir_of(run_dir)).get("recipe")
    try:
        return importlib.import_module(str(name))
    except ImportError:
        raise ValueError(f"{run_dir}: a run of recipe {name!r}, which is not in recipes/") from None


def ask_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="recipes/rag.py ask", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("question")
    parser.add_argument("--index", required=True, metavar="DIR", help="an index folder (recipes/embed.py index)")
    parser.add_argument("--encoder", metavar="RUN_DIR|hf:PATH", help="the query encoder (default: the index's)")
    parser.add_argument("--model", required=True, metavar="RUN_DIR|hf:PATH", help="a chat model (with a template)")
    parser.add_argument("-k", type=int, default=4, help="passages retrieved")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    add_sampling_flags(parser)
    parser.set_defaults(temperature=0.0)
    args = parser.parse_args(argv)
    import embed

    index = VectorIndex.load(args.index)
    if len(index) == 0:
        raise IndexFolderError("the index is empty: add documents with recipes/embed.py index --add", args.index)
    encoder_spec = args.encoder or index.meta.get("encoder")
    if not encoder_spec:
        raise ValueError("the index does not name its encoder: pass --encoder RUN_DIR|hf:PATH")
    enc_args = argparse.Namespace(checkpoint=None if is_hf(encoder_spec) else encoder_spec,
                                  init=encoder_spec if is_hf(encoder_spec) else None,
                                  device=args.device, threads=args.threads, batch_size=64)
    encoder, _ = embed.load_encoder(enc_args)
    index.check_fingerprint(encoder.fingerprint, args.index)  # another encoder's vectors: one line
    hits = index.search(encoder.encode([args.question]), args.k)[0]
    model_args = argparse.Namespace(checkpoint=None if is_hf(args.model) else args.model,
                                    init=args.model if is_hf(args.model) else None, data_dir=args.data_dir,
                                    device=args.device, threads=args.threads, dtype="float32", quantize=None)
    model, tok = load_chat_model(model_args, None if is_hf(args.model) else run_recipe(args.model))
    sampling, context = sampling_of(args), model.config.max_len
    prompt = grounded_prompt(tok, args.question, hits, context, reply_room(sampling, context))
    text = []
    for piece in answer(model, tok, prompt, sampling, context):
        if isinstance(piece, Notice):
            print(f"[{piece.text}]", file=sys.stderr, flush=True)
        else:
            text.append(piece)
            sys.stdout.write(piece)
            sys.stdout.flush()
    print("\n\n" + format_sources(prompt.sources, citations("".join(text), len(prompt.sources))))
    return 0


COMMANDS = {"ask": ask_main}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        raise ValueError(f"usage: recipes/rag.py {{{','.join(COMMANDS)}}} ... (--help after the command)")
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    cli.main_guard(main)
