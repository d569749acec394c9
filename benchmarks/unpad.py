"""Unpadding (modules.unpad) against the padded stack, by the share of a batch that is padding, in one process.

    python benchmarks/unpad.py [--threads N] [--rounds N] [--batch 32] [--length 48] [--out PATH]

One all-MiniLM-L6-v2-shaped encoder (BERT: d 384, 6 layers, 12 heads, FFN 1536; random weights), one batch of
`--batch` rows padded to `--length`, the rows' lengths spread evenly so that a given share of the positions is
padding. For each share: `embed` (inference, no gradients) and a training step's forward and backward (mean-pooled
vectors, a sum as the loss), unpadded and padded (`stack.unpad = False`), interleaved (benchmarks/measure.py),
median of the rounds. The unpadded vectors and gradients must equal the padded ones to float rounding.
The table goes to stdout and `benchmarks/results/unpad-<date>.md`; `modules.unpad.MIN_PADDING` is read from it.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # runnable from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from benchmarks.measure import interleave  # noqa: E402
from benchmarks.run import machine_description  # noqa: E402
from transformers_zoo.config import ModelConfig  # noqa: E402
from transformers_zoo.models import EncoderOnly  # noqa: E402
from transformers_zoo.modules import unpad  # noqa: E402

SHARES = (0.0, 0.02, 0.05, 0.1, 0.2, 0.35)


def minilm() -> EncoderOnly:
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=8000, d_model=384, n_heads=12, n_layers=6, d_ff=1536, max_len=512, dropout=0.0,
                      attention_dropout=0.0, norm="layernorm", norm_first=False, positional="learned", ffn="gelu",
                      pooling="mean", pad_id=0)
    return EncoderOnly(cfg)


def batch(share: float, rows: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Ids `(rows, length)` whose lengths fall evenly from `length` to `length * (1 - 2 share)`."""
    lengths = torch.linspace(length, length * (1 - 2 * share), rows).round().long().clamp(min=1)
    mask = torch.arange(length)[None] < lengths[:, None]
    ids = torch.randint(1, 8000, (rows, length), generator=torch.Generator().manual_seed(0))
    return ids.masked_fill(~mask, 0), mask


def embed(model: EncoderOnly, ids: torch.Tensor, mask: torch.Tensor, unpad: bool) -> torch.Tensor:
    model.stack.unpad = unpad
    with torch.no_grad():
        return model.eval().embed(ids, mask)


def train(model: EncoderOnly, ids: torch.Tensor, mask: torch.Tensor, unpad: bool) -> list[torch.Tensor]:
    """Forward and backward of a training step (no optimizer); the gradients."""
    model.stack.unpad = unpad
    model.train().zero_grad(set_to_none=True)
    model.embed(ids, mask).sum().backward()
    return [p.grad for p in model.parameters() if p.grad is not None]


def table(rounds: int, rows: int, length: int) -> str:
    thresholds = unpad.MIN_PADDING, unpad.MIN_WORK
    model = minilm()
    unpad.MIN_PADDING = unpad.MIN_WORK = 0  # the unpadded side unpads at every share, to show where it starts to pay
    lines = [f"{rows} rows padded to {length} tokens, MiniLM-L6 shape; median of {rounds} rounds, interleaved; "
             "ratio = padded time / unpadded time (> 1: unpadding is faster)", "",
             "| padding | embed, unpadded ms | padded ms | ratio | training step, unpadded ms | padded ms | ratio |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for share in SHARES:
        ids, mask = batch(share, rows, length)
        real_share = 1 - mask.float().mean().item()

        vec_diff = (embed(model, ids, mask, True) - embed(model, ids, mask, False)).abs().max().item()
        grads = [train(model, ids, mask, on) for on in (True, False)]
        grad_diff = max((a - b).abs().max().item() for a, b in zip(*grads, strict=True))
        assert vec_diff < 1e-4 and grad_diff < 1e-3, f"unpadded differs: vectors {vec_diff}, gradients {grad_diff}"
        t = interleave({"embed": partial(embed, model, ids, mask, True),
                        "embed padded": partial(embed, model, ids, mask, False),
                        "train": partial(train, model, ids, mask, True),
                        "train padded": partial(train, model, ids, mask, False)},
                       torch.device("cpu"), warmup=1, rounds=rounds)
        ms = {name: 1e3 * t.median(name) for name in t.seconds}
        lines.append(f"| {real_share:.0%} | {ms['embed']:.1f} | {ms['embed padded']:.1f} | "
                     f"{t.ratio('embed', 'embed padded'):.2f} | {ms['train']:.1f} | {ms['train padded']:.1f} | "
                     f"{t.ratio('train', 'train padded'):.2f} |")
        print(lines[-1], file=sys.stderr)
    model.stack.unpad = True
    unpad.MIN_PADDING, unpad.MIN_WORK = thresholds
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--length", type=int, default=48)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    body = table(args.rounds, args.batch, args.length)
    command = "python benchmarks/unpad.py " + " ".join(sys.argv[1:] if argv is None else argv)
    machine = machine_description(torch.device("cpu"))
    text = (f"# Unpadding, {datetime.date.today()}\n\n{machine}, {args.threads} threads\n\n`{command.strip()}`\n\n"
            f"{body}\n")
    print(text)
    out = args.out or ROOT / "benchmarks" / "results" / f"unpad-{datetime.date.today()}.md"
    out.write_text(text)


if __name__ == "__main__":
    main()
