"""bf16 autocast against float32 on this CPU: training steps of the models the recipes' `cpu` presets train.

    python benchmarks/amp_cpu.py [--quick] [--rounds N] [--threads N] [--out PATH]

`--amp bf16` (TrainConfig.amp) autocasts the forward to bfloat16 on a CPU as on CUDA; weights, AdamW state
and the loss stay float32. Whether that pays depends on the chip: with Intel AMX or AVX512-BF16 (Sapphire
Rapids and later, AMD Zen 4) bf16 matrix products run natively; without them they are emulated and slower.
This script times one training step (forward, loss, backward, AdamW) of each preset's model both ways,
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
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from benchmarks.measure import interleave  # noqa: E402
from benchmarks.run import Row, machine_description, render_table  # noqa: E402
from recipes import gpt, mlm  # noqa: E402
from transformers_zoo import DecoderOnly, EncoderOnly, ModelConfig  # noqa: E402
from transformers_zoo.training.trainer import cpu_has_native_bf16  # noqa: E402


@dataclass(frozen=True)
class Case:
    """One model and batch: `loss(model, ids)` on random ids of shape (batch, seq)."""

    name: str
    family: type[nn.Module]
    model: dict
    vocab: int
    batch: int
    seq: int
    loss: Callable[[nn.Module, torch.Tensor], torch.Tensor]


def mlm_loss(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """The pre-training loss as the recipe computes it: 30% of the positions masked, the head at those only."""
    chosen = torch.rand(ids.shape, generator=torch.Generator().manual_seed(0)) < 0.3
    return F.cross_entropy(model(ids.masked_fill(chosen, 4), select=chosen).float(), ids[chosen])


def lm_loss(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    logits = model(ids[:, :-1]).float()
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))


def cases(quick: bool) -> list[Case]:
    encoder = dict(mlm.PRESETS["cpu"]["model"])
    decoder = dict(gpt.PRESETS["cpu"]["model"], dropout=0.0)
    if quick:
        encoder.update(d_model=32, n_heads=2, n_layers=1, d_ff=64)
        decoder.update(d_model=32, n_heads=2, n_layers=1, d_ff=64)
        return [Case("mlm pretrain", EncoderOnly, encoder, 256, 2, 16, mlm_loss),
                Case("gpt", DecoderOnly, decoder, 65, 2, 16, lm_loss)]
    wide = dict(encoder, d_model=512, n_heads=8, d_ff=2048)
    return [
        Case("mlm pretrain (cpu preset)", EncoderOnly, encoder, mlm.PRESETS["cpu"]["data"]["vocab"],
             mlm.PRESETS["cpu"]["data"]["batch_blocks"], mlm.PRESETS["cpu"]["data"]["block_len"], mlm_loss),
        Case("mlm pretrain, d_model 512", EncoderOnly, wide, mlm.PRESETS["cpu"]["data"]["vocab"], 16, 128, mlm_loss),
        Case("gpt (cpu preset, char-level)", DecoderOnly, decoder, 65, gpt.PRESETS["cpu"]["data"]["batch_size"],
             gpt.PRESETS["cpu"]["data"]["block_size"], lm_loss),
    ]


class Step:
    """A training step of a fresh copy of the case's model (seed 0), in float32 or under bf16 autocast."""

    def __init__(self, case: Case, bf16: bool) -> None:
        torch.manual_seed(0)
        cfg = ModelConfig.from_dict(dict(case.model, vocab_size=case.vocab, max_len=case.seq + 1, n_classes=0))
        self.model, self.case, self.bf16 = case.family(cfg).train(), case, bf16
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
        self.ids = torch.randint(5, case.vocab, (case.batch, case.seq + 1), generator=torch.Generator().manual_seed(1))
        self.ids = self.ids[:, :-1] if case.family is EncoderOnly else self.ids
        self.losses: list[float] = []

    def __call__(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            loss = self.case.loss(self.model, self.ids)
        loss.backward()
        self.optimizer.step()
        self.losses.append(loss.item())


def measure(case: Case, warmup: int, rounds: int) -> list[Row]:
    steps = {"bf16": Step(case, True), "fp32": Step(case, False)}
    timings = interleave(steps, torch.device("cpu"), warmup, rounds)
    tokens = case.batch * case.seq
    params = sum(p.numel() for p in steps["fp32"].model.parameters()) / 1e6
    config = f"{case.model['n_layers']}x{case.model['d_model']}, {params:.1f}M params, batch {case.batch}x{case.seq}"
    first = {name: step.losses[0] for name, step in steps.items()}
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
