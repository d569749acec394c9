"""bf16 autocast against float32 on this CPU: training steps of the models the recipes' `cpu` presets train.

    python benchmarks/amp_cpu.py [--quick] [--rounds N] [--threads N] [--out PATH]

`--amp bf16` (TrainConfig.amp) autocasts the forward to bfloat16 on a CPU as on CUDA; weights, AdamW state
and the loss stay float32. Whether that pays depends on the chip: with Intel AMX or AVX512-BF16 (Sapphire
Rapids and later, AMD Zen 4) bf16 matrix products run natively; without them they are emulated and slower.
This script times one training step (forward, the recipe's loss, backward, AdamW) of each preset's model both ways,
interleaved in the same process (`benchmarks/measure.py`), and prints the table (ours = bf16, peer = float32,
ratio > 1: bf16 is faster), with the loss of the first step both ways, to
`benchmarks/results/amp-cpu-<date>.md`.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # runnable from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from benchmarks.measure import Trainer, interleave  # noqa: E402
from benchmarks.run import Row, machine_description, render_table  # noqa: E402
from recipes import gpt, mlm  # noqa: E402
from transformers_zoo import DecoderOnly, EncoderOnly, ModelConfig  # noqa: E402
from transformers_zoo.batching import IGNORE_INDEX  # noqa: E402
from transformers_zoo.tasks.lm import lm_loss  # noqa: E402
from transformers_zoo.tasks.mlm import mlm_loss  # noqa: E402
from transformers_zoo.training.trainer import cpu_has_native_bf16  # noqa: E402


@dataclass(frozen=True)
class Case:
    """One model and its training batch: `loss(model, batch)` is the recipe's loss, a (sum, count) pair."""

    name: str
    family: type[nn.Module]
    model: dict
    vocab: int
    batch: int
    seq: int
    loss: Callable[[nn.Module, dict[str, torch.Tensor]], tuple[torch.Tensor, torch.Tensor]]

    def make_batch(self) -> dict[str, torch.Tensor]:
        """Random ids (seed 1): for the encoder 30% of the positions masked and scored, as in pre-training; for
        the decoder the next token at every position."""
        g = torch.Generator().manual_seed(1)
        ids = torch.randint(5, self.vocab, (self.batch, self.seq + 1), generator=g)
        if self.family is DecoderOnly:
            return {"input_ids": ids[:, :-1], "labels": ids[:, 1:]}
        ids = ids[:, :-1]
        chosen = torch.rand(ids.shape, generator=g) < 0.3
        return {"input_ids": ids.masked_fill(chosen, 4), "labels": ids.masked_fill(~chosen, IGNORE_INDEX)}


def cases(quick: bool) -> list[Case]:
    encoder = dict(mlm.PRESETS["cpu"]["model"])
    decoder = dict(gpt.PRESETS["cpu"]["model"], dropout=0.0)
    if quick:
        encoder.update(d_model=32, n_heads=2, n_layers=1, d_ff=64)
        decoder.update(d_model=32, n_heads=2, n_layers=1, d_ff=64)
        return [Case("mlm pretrain", EncoderOnly, encoder, 256, 2, 16, mlm_loss),
                Case("gpt", DecoderOnly, decoder, 65, 2, 16, lm_loss)]
    wide = dict(encoder, d_model=512, n_heads=8, d_ff=2048)
    data = mlm.PRESETS["cpu"]["data"]
    return [
        Case("mlm pretrain (cpu preset)", EncoderOnly, encoder, data["vocab"], data["batch_blocks"], data["block_len"],
             mlm_loss),
        Case("mlm pretrain, d_model 512", EncoderOnly, wide, data["vocab"], 16, data["block_len"], mlm_loss),
        Case("gpt (cpu preset, char-level)", DecoderOnly, decoder, 65, gpt.PRESETS["cpu"]["data"]["batch_size"],
             gpt.PRESETS["cpu"]["data"]["block_size"], lm_loss),
    ]


def measure(case: Case, warmup: int, rounds: int) -> list[Row]:
    """Both precisions train a copy of the same model (seed 0) on the same batch, interleaved; the first-step
    rows compare the mean loss of the untrained model on that batch."""
    batch = case.make_batch()
    cfg = ModelConfig.from_dict(dict(case.model, vocab_size=case.vocab, max_len=case.seq, n_classes=0))

    def mean_loss(model: nn.Module) -> torch.Tensor:
        total, count = case.loss(model, batch)
        return total / count

    def build() -> nn.Module:
        torch.manual_seed(0)
        return case.family(cfg)

    cpu = torch.device("cpu")
    trainers = {"bf16": Trainer(build(), mean_loss, cpu, autocast=True),
                "fp32": Trainer(build(), mean_loss, cpu, autocast=False)}
    first = {}
    for name, trainer in trainers.items():
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=trainer.autocast):
            first[name] = float(mean_loss(trainer.model))
    timings = interleave({name: t.step for name, t in trainers.items()}, cpu, warmup, rounds)
    tokens = case.batch * case.seq
    params = sum(p.numel() for p in trainers["fp32"].model.parameters()) / 1e6
    config = f"{case.model['n_layers']}x{case.model['d_model']}, {params:.1f}M params, batch {case.batch}x{case.seq}"
    return [
        Row(f"{case.name} train tokens/s, bf16 autocast vs float32", config, timings.rate("bf16", tokens),
            timings.rate("fp32", tokens), timings.ratio("bf16", "fp32")),
        Row(f"{case.name} first-step loss, bf16 autocast vs float32", config, first["bf16"], first["fp32"],
            first["bf16"] / first["fp32"]),
    ]


def main(argv: list[str] | None = None) -> list[Row]:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny models, 2 rounds: a smoke test in seconds")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds per side (default: 7; quick 2)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's, "
                                                                   "as the recipes run)")
    parser.add_argument("--out", type=Path, default=None,
                        help="report path (default: benchmarks/results/amp-cpu-<date>[-quick].md)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    start, rounds = time.perf_counter(), args.rounds or (2 if args.quick else 7)
    native = cpu_has_native_bf16()
    print(f"native bf16 (AMX or AVX512-BF16): {native}; torch threads {torch.get_num_threads()}", file=sys.stderr)
    rows = []
    for case in cases(args.quick):
        print(f"[{case.name}] 1 warm-up + {rounds} interleaved rounds ...", file=sys.stderr, flush=True)
        rows += measure(case, warmup=1, rounds=rounds)
    table = render_table(rows)
    print(table)
    date = datetime.date.today().isoformat()
    out = args.out or ROOT / "benchmarks" / "results" / f"amp-cpu-{date}{'-quick' if args.quick else ''}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"# bf16 autocast vs float32 on CPU, {date}\n\n"
                   f"- command: `python benchmarks/amp_cpu.py {' '.join(argv)}` ({time.perf_counter() - start:.0f} s)\n"
                   f"- machine: {machine_description(torch.device('cpu'))}; native bf16 (AMX or AVX512-BF16): "
                   f"{native}\n- torch {torch.__version__}\n\n{table}\n\nours = bf16 autocast, peer = float32; "
                   "a speed ratio is the median of per-round ratios (interleaved rounds). The loss rows compare "
                   "the first step's loss (same weights, same batch): bf16 rounding only.\n")
    print(f"wrote {out}", file=sys.stderr)
    return rows


if __name__ == "__main__":
    main()
