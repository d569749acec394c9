"""The ``chat`` command's flags, shared by the recipes whose runs can chat (``gpt.py chat``, ``sft.py chat``):
a terminal conversation with a run or an imported checkpoint (``transformers_zoo.chat``), or one answer to
``--prompt``. Part of ``cli``: this module knows flags; the library below it never sees them."""

from __future__ import annotations

import argparse
from types import ModuleType

from ..chat import ChatSession, Sampling, interact, say
from ..modules.quantize import QUANTIZERS


def add_model_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", metavar="RUN_DIR", help="a run directory (or one checkpoint folder)")
    parser.add_argument("--init", metavar="hf:PATH", help="a Hugging Face checkpoint instead (directory or Hub name)")
    parser.add_argument("--data-dir", default=None, help="where the gpt2 tokenizer's rank file is (or goes)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                        help="weights, activations and KV cache: bfloat16 on a CPU with AMX reached the first token "
                             "2.5x sooner and gave 1.44x the tokens/s of transformers in float32, 1.25x of it in "
                             "bfloat16, at SmolLM2-135M's shape (benchmarks/chat_generate.py); replies may differ "
                             "from float32's by rounding")
    parser.add_argument("--quantize", default=None, choices=list(QUANTIZERS),
                        help="weight-only int8 linear layers (one scale per output row; modules/quantize.py): a "
                             "quarter of float32's weight bytes read per token; with --dtype bfloat16 at SmolLM2-135M's"
                             " shape 1.66x the tokens/s of transformers in float32, 1.46x in bf16 (benchmarks/"
                             "chat_generate.py); replies may differ from the float model's by rounding. "
                             "int8-dynamic (--dtype float32, CPU): int8 activations too, through fbgemm: faster, and "
                             "further from the float model (benchmarks/int8_quality.py --mode int8-dynamic)")


def add_sampling_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--system", default=None, help="the system prompt")
    parser.add_argument("--temperature", type=float, default=0.7, help="0: greedy")
    parser.add_argument("--top-k", type=int, default=None)
    parser.add_argument("--top-p", type=float, default=None)
    parser.add_argument("--max-new-tokens", type=int, default=256, help="the longest reply")
    parser.add_argument("--seed", type=int, default=0)


def sampling_of(args: argparse.Namespace) -> Sampling:
    return Sampling(args.temperature, args.top_k, args.top_p, args.max_new_tokens, args.seed)


def load_chat_model(args: argparse.Namespace, recipe: ModuleType | None):
    """``(model, tokenizer)`` of ``--checkpoint RUN_DIR`` (read by the recipe's pipeline) or ``--init hf:PATH``."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    model, tok = _load(args, recipe)
    model = model.to(getattr(torch, args.dtype))
    if args.quantize:
        QUANTIZERS[args.quantize](model)
    return model, tok


def _load(args: argparse.Namespace, recipe: ModuleType | None):
    from ..training.trainer import resolve_device

    if args.init:
        from ..interop import load_hf_lm

        model, tok = load_hf_lm(args.init, args.data_dir)
        return model.to(resolve_device(args.device)).eval(), tok
    if args.checkpoint:
        if recipe is None:
            raise ValueError("--checkpoint needs the recipe that trained the run: run the recipe's chat command")
        if hasattr(recipe, "load_chat_model"):  # a recipe whose runs chat from other weights (sft: LoRA merged)
            return recipe.load_chat_model(args.checkpoint, args.device)
        from ..pipeline import load_model

        _, model, tok = load_model(recipe, args.checkpoint, args.device)
        return model, tok
    raise ValueError("chat needs --checkpoint RUN_DIR or --init hf:PATH")


def chat_main(argv: list[str], recipe: ModuleType | None = None) -> int:
    prog = f"recipes/{recipe.NAME}.py chat" if recipe is not None else "chat"
    parser = argparse.ArgumentParser(prog=prog, description="Chat with a decoder that has a chat template: the "
                                     "reply streams as it is generated; the history is kept within the context.")
    add_model_flags(parser)
    add_sampling_flags(parser)
    parser.add_argument("--prompt", default=None, help="one question: print the answer and exit (no terminal)")
    args = parser.parse_args(argv)
    model, tok = load_chat_model(args, recipe)
    session = ChatSession(model, tok, system=args.system, sampling=sampling_of(args))
    if args.prompt is not None:
        say(session, args.prompt, raise_errors=True)
        return 0
    return interact(session)
