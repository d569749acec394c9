"""Where the time goes: torch.profiler's top operators by self CPU time, ours next to each peer.

    python benchmarks/profile_ops.py gpt-d512 [--quick] [--top 15] [--threads 1]
    python benchmarks/profile_ops.py gen-gpt --mode "beam 5"

Targets are the suites of `run.py` (the same models and batches): gpt-d512, gpt-small, bert-small,
seq2seq-small profile one training step; gen-gpt and gen-seq2seq one generation call (`--mode`).
Each contender is warmed up once, then one call is profiled. Prints one table per peer: the operators
that take the most self CPU time in either model, in milliseconds, with call counts.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from benchmarks.matched import HF_AVAILABLE  # noqa: E402
from benchmarks.measure import quiet_native_stderr  # noqa: E402
from benchmarks.run import (  # noqa: E402
    GENERATION_MODES,
    PLANS,
    Context,
    bert_trainers,
    gpt_generators,
    gpt_trainers,
    seq2seq_generators,
    seq2seq_trainers,
)

TARGETS = ("gpt-d512", "gpt-small", "bert-small", "seq2seq-small", "gen-gpt", "gen-seq2seq")


def contenders(ctx: Context, target: str, mode: str) -> dict[str, Callable[[], object]]:
    plan = ctx.plan
    if target.startswith("gen-"):
        if target == "gen-gpt":
            generators, _ = gpt_generators(ctx, plan.gen_gpt, plan.new_tokens)
        else:
            generators, _ = seq2seq_generators(ctx, plan.gen_seq2seq, plan.new_tokens)
        return {name: lambda g=generate: g(mode) for name, generate in generators.items()}
    build, dims = {"gpt-d512": (gpt_trainers, plan.gpt_large), "gpt-small": (gpt_trainers, plan.gpt_small),
                   "bert-small": (bert_trainers, plan.bert), "seq2seq-small": (seq2seq_trainers, plan.seq2seq)}[target]
    return {name: trainer.step for name, trainer in build(ctx, dims).items()}


def self_cpu_ms(call: Callable[[], object]) -> tuple[dict[str, tuple[float, int]], float, float]:
    """`{op: (self CPU ms, calls)}` of one profiled call, the sum over operators and the call's wall ms
    (the difference is Python and framework overhead, plus the profiler's own)."""
    call()  # warm-up
    with quiet_native_stderr(), profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        call()
        wall = time.perf_counter() - start
    ops = {e.key: (e.self_cpu_time_total / 1e3, e.count) for e in prof.key_averages()}
    return ops, sum(ms for ms, _ in ops.values()), wall * 1e3


def gemm_share(ops: dict[str, tuple[float, int]]) -> float:
    """Fraction of operator time in matrix multiplies (mm, addmm, bmm, baddbmm)."""
    gemm = sum(ms for name, (ms, _) in ops.items() if name in ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"))
    return gemm / max(sum(ms for ms, _ in ops.values()), 1e-9)


def comparison(ours: dict[str, tuple[float, int]], peer: dict[str, tuple[float, int]], peer_name: str,
               top: int) -> str:
    names = sorted(set(ours) | set(peer), key=lambda k: -max(ours.get(k, (0, 0))[0], peer.get(k, (0, 0))[0]))
    lines = [f"| op | ours ms (calls) | {peer_name} ms (calls) |", "| --- | ---: | ---: |"]
    for name in names[:top]:
        cells = [f"{d[name][0]:.1f} ({d[name][1]})" if name in d else "-" for d in (ours, peer)]
        lines.append(f"| {name} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", choices=TARGETS)
    parser.add_argument("--mode", default="greedy", choices=GENERATION_MODES, help="decoding rule (gen-* targets)")
    parser.add_argument("--quick", action="store_true", help="the tiny configs of `run.py --quick`")
    parser.add_argument("--top", type=int, default=15, help="operators to list")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (run.py's CPU default: 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if HF_AVAILABLE:
        import transformers

        transformers.logging.set_verbosity_error()
    ctx = Context(torch.device("cpu"), PLANS["quick" if args.quick else "cpu"], HF_AVAILABLE)
    results = {name: self_cpu_ms(call) for name, call in contenders(ctx, args.target, args.mode).items()}
    title = args.target + (f" {args.mode}" if args.target.startswith("gen-") else " training step")
    print(f"## {title}: self CPU time of one call\n")
    for name, (ops, total, wall) in results.items():
        print(f"- {name}: wall {wall:.0f} ms, operators {total:.0f} ms, of which matmuls {100 * gemm_share(ops):.0f}%")
    print()
    for peer in results:
        if peer != "ours":
            print(comparison(results["ours"][0], results[peer][0], peer, args.top) + "\n")


if __name__ == "__main__":
    main()
