"""Speed and memory of transformers_zoo against its peers, measured in one process (project issue #9).

    python benchmarks/run.py [--device cpu|cuda] [--quick] [--only NAME[,NAME...]] [--rounds N] [--out PATH]

Prints one markdown table (benchmark, config, ours, peer, ratio) on stdout, progress on stderr, and writes
the table with the machine, versions and command to `benchmarks/results/<device>-<date>.md`. Ratios are
ours/peer for throughputs and peer/ours for memory, so > 1 always means ours is better. What is measured
and how: `benchmarks/README.md`. Suites (for `--only`): gpt-d512, gpt-small, bert-small, seq2seq-small,
gen-gpt, gen-seq2seq.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import math
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # runnable from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from benchmarks.matched import (  # noqa: E402
    BOS_ID,
    FIRST_TOKEN,
    HF_AVAILABLE,
    MASK_ID,
    PAD_ID,
    Dims,
    hf_bart,
    hf_bert,
    hf_gpt2,
    n_params,
    ours_bert,
    ours_gpt,
    ours_seq2seq,
    torch_seq2seq,
)
from benchmarks.measure import (  # noqa: E402
    Timings,
    Trainer,
    interleave,
    matmul_call,
    peak_training_bytes,
    training_flops_per_token,
)
from transformers_zoo.generation import beam_search, greedy, sample  # noqa: E402

MiB = 2**20
TOP_K, BEAMS = 50, 5


@dataclass(frozen=True)
class Plan:
    """Sizes and repetitions of a run. Generation dims: `batch` prompts of `seq` tokens (decoder-only) or
    sources of `src_seq` tokens (encoder-decoder), each extended by `new_tokens`."""

    gpt_large: Dims
    gpt_small: Dims
    bert: Dims
    seq2seq: Dims
    gen_gpt: Dims
    gen_seq2seq: Dims
    new_tokens: int
    matmul_size: int
    warmup: int
    rounds: int


PLANS = {
    # Sized so the whole run takes ~4 minutes on one thread of a 2-core machine (~35 fp32 GFLOP/s),
    # leaving room under 10 minutes for a machine shared with other work.
    "cpu": Plan(
        gpt_large=Dims(vocab=8192, d_model=512, n_heads=8, n_layers=6, seq=256, batch=4),
        gpt_small=Dims(vocab=8192, d_model=256, n_heads=4, n_layers=4, seq=64, batch=16),
        bert=Dims(vocab=8192, d_model=256, n_heads=4, n_layers=4, seq=64, batch=16),
        seq2seq=Dims(vocab=8192, d_model=256, n_heads=4, n_layers=3, seq=32, src_seq=32, batch=32),
        gen_gpt=Dims(vocab=8192, d_model=512, n_heads=8, n_layers=6, seq=32, batch=4),
        gen_seq2seq=Dims(vocab=8192, d_model=256, n_heads=4, n_layers=3, seq=1, src_seq=32, batch=8),
        new_tokens=32, matmul_size=2048, warmup=1, rounds=5),
    "cuda": Plan(
        gpt_large=Dims(vocab=8192, d_model=512, n_heads=8, n_layers=6, seq=256, batch=8),
        gpt_small=Dims(vocab=8192, d_model=256, n_heads=4, n_layers=4, seq=128, batch=16),
        bert=Dims(vocab=8192, d_model=256, n_heads=4, n_layers=4, seq=128, batch=16),
        seq2seq=Dims(vocab=8192, d_model=256, n_heads=4, n_layers=3, seq=32, src_seq=32, batch=32),
        gen_gpt=Dims(vocab=8192, d_model=512, n_heads=8, n_layers=6, seq=32, batch=4),
        gen_seq2seq=Dims(vocab=8192, d_model=256, n_heads=4, n_layers=3, seq=1, src_seq=32, batch=8),
        new_tokens=64, matmul_size=8192, warmup=3, rounds=10),
    "quick": Plan(
        gpt_large=Dims(vocab=256, d_model=64, n_heads=4, n_layers=2, seq=16, batch=2),
        gpt_small=Dims(vocab=256, d_model=32, n_heads=2, n_layers=1, seq=16, batch=2),
        bert=Dims(vocab=256, d_model=32, n_heads=2, n_layers=1, seq=16, batch=2),
        seq2seq=Dims(vocab=256, d_model=32, n_heads=2, n_layers=1, seq=8, src_seq=8, batch=2),
        gen_gpt=Dims(vocab=256, d_model=32, n_heads=2, n_layers=1, seq=4, batch=2),
        gen_seq2seq=Dims(vocab=256, d_model=32, n_heads=2, n_layers=1, seq=1, src_seq=4, batch=2),
        new_tokens=4, matmul_size=128, warmup=1, rounds=2),
}


@dataclass
class Row:
    """One line of the table. `ratio` > 1 means ours is better (faster, or smaller for memory)."""

    benchmark: str
    config: str
    ours: float
    peer: float
    ratio: float


@dataclass(frozen=True)
class Context:
    device: torch.device
    plan: Plan
    hf: bool

    def log(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    def time(self, calls: dict[str, Callable[[], object]]) -> Timings:
        return interleave(calls, self.device, self.plan.warmup, self.plan.rounds)

    def randint(self, *shape: int, vocab: int) -> torch.Tensor:
        return torch.randint(FIRST_TOKEN, vocab, shape, device=self.device)

    def build(self, factory: Callable[[], nn.Module]) -> nn.Module:
        torch.manual_seed(0)  # the same random weights on every run
        return factory().to(self.device)


def _logits(output: torch.Tensor | object) -> torch.Tensor:
    return output if isinstance(output, torch.Tensor) else output.logits


def _cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The one loss every contender uses (mean over tokens, -100 ignored), so only the models differ."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)


# -- contenders: the models of each comparison, "ours" first, ready to call ---------------------------------------
def gpt_trainers(ctx: Context, dims: Dims) -> dict[str, Trainer]:
    """DecoderOnly and GPT2LMHeadModel, each with its AdamW, on one batch of next-token prediction."""
    ids = ctx.randint(dims.batch, dims.seq + 1, vocab=dims.vocab)

    def loss(model: nn.Module, **kwargs: object) -> torch.Tensor:
        return _cross_entropy(_logits(model(ids[:, :-1], **kwargs)), ids[:, 1:])

    trainers = {"ours": Trainer(ctx.build(lambda: ours_gpt(dims, dims.seq)), loss, ctx.device)}
    if ctx.hf:
        trainers["HF GPT2LMHeadModel"] = Trainer(ctx.build(lambda: hf_gpt2(dims, dims.seq)),
                                                 lambda m: loss(m, use_cache=False), ctx.device)
    return trainers


OURS_SELECT = "ours with select="


def bert_trainers(ctx: Context, dims: Dims) -> dict[str, Trainer]:
    """EncoderOnly and BertForMaskedLM: 15% of the positions masked and scored, logits for all positions;
    and ours again (OURS_SELECT) computing the MLM head at the masked positions only, as `select=` allows."""
    ids = ctx.randint(dims.batch, dims.seq, vocab=dims.vocab)
    masked = torch.rand(ids.shape, device=ctx.device) < 0.15
    inputs, labels = ids.masked_fill(masked, MASK_ID), ids.masked_fill(~masked, -100)

    def loss(model: nn.Module) -> torch.Tensor:
        return _cross_entropy(_logits(model(inputs)), labels)

    def selected_loss(model: nn.Module) -> torch.Tensor:
        return _cross_entropy(model(inputs, select=masked), labels[masked])

    trainers = {"ours": Trainer(ctx.build(lambda: ours_bert(dims)), loss, ctx.device)}
    if ctx.hf:
        trainers["HF BertForMaskedLM"] = Trainer(ctx.build(lambda: hf_bert(dims)), loss, ctx.device)
    trainers[OURS_SELECT] = Trainer(ctx.build(lambda: ours_bert(dims)), selected_loss, ctx.device)
    return trainers


def seq2seq_trainers(ctx: Context, dims: Dims) -> dict[str, Trainer]:
    """EncoderDecoder, BartForConditionalGeneration and torch.nn.Transformer on one translation-shaped batch."""
    max_len = max(dims.src_seq, dims.seq)
    src = ctx.randint(dims.batch, dims.src_seq, vocab=dims.vocab)
    tgt = ctx.randint(dims.batch, dims.seq + 1, vocab=dims.vocab)
    tgt_in, tgt_out = tgt[:, :-1], tgt[:, 1:]

    def loss(model: nn.Module) -> torch.Tensor:
        return _cross_entropy(model(src, tgt_in), tgt_out)

    def hf_loss(model: nn.Module) -> torch.Tensor:
        return _cross_entropy(model(input_ids=src, decoder_input_ids=tgt_in, use_cache=False).logits, tgt_out)

    trainers = {"ours": Trainer(ctx.build(lambda: ours_seq2seq(dims, max_len)), loss, ctx.device)}
    if ctx.hf:
        trainers["HF BartForConditionalGeneration"] = Trainer(ctx.build(lambda: hf_bart(dims, max_len)), hf_loss,
                                                              ctx.device)
    trainers["torch.nn.Transformer"] = Trainer(ctx.build(lambda: torch_seq2seq(dims, max_len)), loss, ctx.device)
    return trainers


GENERATION_MODES = ("greedy", f"top-{TOP_K} sample", f"beam {BEAMS}")


def _hf_generation_config(mode: str, new_tokens: int, **extra: object) -> object:
    """No EOS (so every row runs the full `new_tokens`), nothing but the decoding rule asked for."""
    from transformers import GenerationConfig

    rule = {"greedy": dict(do_sample=False, num_beams=1),
            f"top-{TOP_K} sample": dict(do_sample=True, top_k=TOP_K, top_p=1.0, temperature=1.0, num_beams=1),
            f"beam {BEAMS}": dict(do_sample=False, num_beams=BEAMS, length_penalty=1.0, early_stopping=False)}[mode]
    return GenerationConfig(max_new_tokens=new_tokens, eos_token_id=None, pad_token_id=PAD_ID, use_cache=True,
                            **rule, **extra)


def _ours_generate(mode: str, model: nn.Module, make_cache: Callable[[], object], prompt: torch.Tensor,
                   new_tokens: int) -> int:
    """Run our search; return how many tokens each row got. EOS is an id outside the vocabulary (never
    produced), so every row runs the full `new_tokens`, as on the peer's side."""
    eos_never = model.config.vocab_size
    if mode == "greedy":
        return greedy(model, make_cache(), prompt, new_tokens).shape[1]
    if mode.startswith("top-"):
        generator = torch.Generator(prompt.device).manual_seed(0)
        return sample(model, make_cache(), prompt, new_tokens, top_k=TOP_K, generator=generator).shape[1]
    hypotheses = beam_search(model, make_cache(), prompt, new_tokens, eos_never, beam_size=BEAMS)
    return min(len(h[0].tokens) for h in hypotheses)


def gpt_generators(ctx: Context, dims: Dims, new_tokens: int) -> tuple[dict[str, Callable[[str], int]], nn.Module]:
    """`mode -> new tokens per row` for DecoderOnly + our search and GPT2LMHeadModel.generate (KV cache on both),
    and our model."""
    max_len = dims.seq + new_tokens
    ours = ctx.build(lambda: ours_gpt(dims, max_len)).eval()
    prompt = ctx.randint(dims.batch, dims.seq, vocab=dims.vocab)
    generators = {"ours": lambda mode: _ours_generate(mode, ours, lambda: ours.init_cache(dims.batch), prompt,
                                                      new_tokens)}
    if ctx.hf:
        hf = ctx.build(lambda: hf_gpt2(dims, max_len)).eval()
        attention_mask = torch.ones_like(prompt)

        def theirs(mode: str) -> int:
            out = hf.generate(input_ids=prompt, attention_mask=attention_mask,
                              generation_config=_hf_generation_config(mode, new_tokens))
            return out.shape[1] - prompt.shape[1]

        generators["HF GPT2 generate"] = theirs
    return generators, ours


def seq2seq_generators(ctx: Context, dims: Dims, new_tokens: int
                       ) -> tuple[dict[str, Callable[[str], int]], nn.Module]:
    """`mode -> new tokens per row` for EncoderDecoder + our search and BartForConditionalGeneration.generate;
    both encode the source inside the timed call."""
    max_len = max(dims.src_seq, new_tokens + 1)
    ours = ctx.build(lambda: ours_seq2seq(dims, max_len)).eval()
    src = ctx.randint(dims.batch, dims.src_seq, vocab=dims.vocab)
    bos = torch.full((dims.batch, 1), BOS_ID, device=ctx.device)
    generators = {"ours": lambda mode: _ours_generate(mode, ours, lambda: ours.init_cache(src), bos, new_tokens)}
    if ctx.hf:
        hf = ctx.build(lambda: hf_bart(dims, max_len)).eval()
        attention_mask = torch.ones_like(src)
        config = {mode: _hf_generation_config(mode, new_tokens, decoder_start_token_id=BOS_ID)
                  for mode in GENERATION_MODES}

        def theirs(mode: str) -> int:
            out = hf.generate(input_ids=src, attention_mask=attention_mask, generation_config=config[mode])
            return out.shape[1] - 1  # the decoder start token

        generators["HF Bart generate"] = theirs
    return generators, ours


# -- suites: contenders timed and measured -> table rows -------------------------------------------------------
def _memory_rows(ctx: Context, label: str, config: str, trainers: dict[str, Trainer]) -> list[Row]:
    peak = {name: peak_training_bytes(t, ctx.device) / MiB for name, t in trainers.items()}
    return [Row(f"{label} train peak MiB vs {peer}", config, peak["ours"], peak[peer], peak[peer] / peak["ours"])
            for peer in trainers if peer != "ours"]


def _speed_rows(label: str, what: str, config: str, timings: Timings, work: float, peers: list[str]) -> list[Row]:
    return [Row(f"{label} {what} vs {peer}", config, timings.rate("ours", work), timings.rate(peer, work),
                timings.ratio("ours", peer)) for peer in peers]


def _training_rows(ctx: Context, label: str, config: str, trainers: dict[str, Trainer], tokens: int) -> list[Row]:
    timings = ctx.time({name: t.step for name, t in trainers.items()})
    peers = [name for name in trainers if name != "ours"]
    return _speed_rows(label, "train tokens/s", config, timings, tokens, peers) + _memory_rows(ctx, label, config,
                                                                                               trainers)


def gpt_d512(ctx: Context) -> list[Row]:
    """GPT training at d512, with the model FLOP utilisation against a large matmul timed in the same rounds."""
    label, dims = "gpt-d512", ctx.plan.gpt_large
    trainers = gpt_trainers(ctx, dims)
    dtype = torch.bfloat16 if ctx.device.type == "cuda" else torch.float32
    matmul, matmul_flops = matmul_call(ctx.device, ctx.plan.matmul_size, dtype)
    timings = ctx.time({**{name: t.step for name, t in trainers.items()}, "matmul": matmul})
    config, tokens = dims.describe(), dims.batch * dims.seq
    peers = [name for name in trainers if name != "ours"]
    rows = _speed_rows(label, "train tokens/s", config, timings, tokens, peers)
    # N: every parameter but the position table (the tied embedding counts once, as the output projection).
    ours = trainers["ours"].model
    matmul_params = n_params(ours) - ours.stack.positional.weight.numel()
    step_flops = training_flops_per_token(matmul_params, dims.n_layers, dims.d_model, dims.seq) * tokens
    peak = timings.rate("matmul", matmul_flops)
    peak_name = f"{str(dtype).removeprefix('torch.')} matmul {ctx.plan.matmul_size}^3"
    rows.append(Row(f"{label} train GFLOP/s vs {peak_name} (ratio = MFU)", config,
                    timings.rate("ours", step_flops) / 1e9, peak / 1e9,
                    timings.ratio("ours", "matmul", step_flops, matmul_flops)))
    rows += [Row(f"{label} train MFU % vs {peer}", config, 100 * timings.rate("ours", step_flops) / peak,
                 100 * timings.rate(peer, step_flops) / peak, timings.ratio("ours", peer)) for peer in peers]
    return rows + _memory_rows(ctx, label, config, trainers)


def gpt_small(ctx: Context) -> list[Row]:
    dims = ctx.plan.gpt_small
    return _training_rows(ctx, "gpt-small", dims.describe(), gpt_trainers(ctx, dims), dims.batch * dims.seq)


def bert_small(ctx: Context) -> list[Row]:
    """The matched comparison, plus a row for ours scoring only the masked positions (same loss, fewer FLOPs)."""
    if not ctx.hf:
        return []
    dims = ctx.plan.bert
    trainers = bert_trainers(ctx, dims)
    peer = "HF BertForMaskedLM"
    config, tokens = dims.describe(), dims.batch * dims.seq
    timings = ctx.time({name: t.step for name, t in trainers.items()})
    rows = _speed_rows("bert-small", "train tokens/s", config, timings, tokens, [peer])
    rows.append(Row(f"bert-small train tokens/s, ours with MLM head at masked positions only (select=) vs {peer}",
                    config, timings.rate(OURS_SELECT, tokens), timings.rate(peer, tokens),
                    timings.ratio(OURS_SELECT, peer)))
    rows += _memory_rows(ctx, "bert-small", config, {name: trainers[name] for name in ("ours", peer)})
    peak = {name: peak_training_bytes(trainers[name], ctx.device) / MiB for name in (OURS_SELECT, peer)}
    rows.append(Row(f"bert-small train peak MiB, ours with select= vs {peer}", config, peak[OURS_SELECT], peak[peer],
                    peak[peer] / peak[OURS_SELECT]))
    return rows


def seq2seq_small(ctx: Context) -> list[Row]:
    """Tokens = source + target tokens."""
    dims = ctx.plan.seq2seq
    return _training_rows(ctx, "seq2seq-small", dims.describe(seq2seq=True), seq2seq_trainers(ctx, dims),
                          dims.batch * (dims.src_seq + dims.seq))


def step_weights(model: nn.Module) -> list[torch.Tensor]:
    """The weight matrices a cached decoding step multiplies by: every `nn.Linear` (the tied output projection
    included) but the cross-attention key/value projections, which run once per source."""
    return [m.weight for name, m in model.named_modules() if isinstance(m, nn.Linear) and not name.endswith(".kv")]


def decode_matmuls(weights: list[torch.Tensor], rows: int, new_tokens: int) -> Callable[[], None]:
    """The floor of cached decoding: per new token, each of `weights` multiplied by `rows` input vectors,
    and nothing else - no attention, norms, search or Python around it. At small batches this streams every
    weight from memory once per token, which bounds any implementation of the same model on this machine."""
    inputs = {n: torch.randn(rows, n, device=weights[0].device) for n in {w.shape[1] for w in weights}}

    @torch.no_grad()
    def run() -> None:
        for _ in range(new_tokens):
            for w in weights:
                F.linear(inputs[w.shape[1]], w)

    return run


FLOOR = "decode-step matmuls alone"


def _generation_rows(ctx: Context, label: str, config: str, generators: dict[str, Callable[[str], int]],
                     modes: tuple[str, ...], batch: int, new_tokens: int, model: nn.Module) -> list[Row]:
    """Per mode: ours against each peer, and ours against `decode_matmuls` at the mode's batch rows (ratio =
    the fraction of the floor's speed reached; peer / floor = ratio of the two rows)."""
    rows = []
    peers = [name for name in generators if name != "ours"]
    for mode in modes:
        got = {name: generate(mode) for name, generate in generators.items()}  # also a warm-up call
        if set(got.values()) != {new_tokens}:
            raise RuntimeError(f"{label} {mode}: expected {new_tokens} new tokens per row on every side, got {got}")
        torch.manual_seed(0)
        calls: dict[str, Callable[[], object]] = {name: lambda g=generate, m=mode: g(m)
                                                  for name, generate in generators.items()}
        beams = BEAMS if mode.startswith("beam") else 1
        calls[FLOOR] = decode_matmuls(step_weights(model), batch * beams, new_tokens)
        timings = ctx.time(calls)
        rows += _speed_rows(label, f"{mode} new tokens/s", config, timings, batch * new_tokens, peers)
        rows.append(Row(f"{label} {mode} new tokens/s vs {FLOOR} (ratio = fraction of the floor)", config,
                        timings.rate("ours", batch * new_tokens), timings.rate(FLOOR, batch * new_tokens),
                        timings.ratio("ours", FLOOR)))
    return rows


def gen_gpt(ctx: Context) -> list[Row]:
    dims, n = ctx.plan.gen_gpt, ctx.plan.new_tokens
    config = (f"d{dims.d_model} L{dims.n_layers} H{dims.n_heads} V{dims.vocab}, prompts B{dims.batch}x{dims.seq} "
              f"+{n} new")
    generators, model = gpt_generators(ctx, dims, n)
    return _generation_rows(ctx, "gen-gpt", config, generators, GENERATION_MODES, dims.batch, n, model)


def gen_seq2seq(ctx: Context) -> list[Row]:
    dims, n = ctx.plan.gen_seq2seq, ctx.plan.new_tokens
    config = (f"d{dims.d_model} L{dims.n_layers}+{dims.n_layers} H{dims.n_heads} V{dims.vocab}, sources "
              f"B{dims.batch}x{dims.src_seq} +{n} new")
    generators, model = seq2seq_generators(ctx, dims, n)
    return _generation_rows(ctx, "gen-seq2seq", config, generators, ("greedy", f"beam {BEAMS}"), dims.batch, n, model)


SUITES: dict[str, Callable[[Context], list[Row]]] = {
    "gpt-d512": gpt_d512, "gpt-small": gpt_small, "bert-small": bert_small, "seq2seq-small": seq2seq_small,
    "gen-gpt": gen_gpt, "gen-seq2seq": gen_seq2seq,
}


# -- report --------------------------------------------------------------------------------------------------
def _number(x: float) -> str:
    if not math.isfinite(x):
        return str(x)
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.1f}" if abs(x) >= 10 else f"{x:.3g}"


def render_table(rows: list[Row]) -> str:
    lines = ["| benchmark | config | ours | peer | ratio |", "| --- | --- | ---: | ---: | ---: |"]
    lines += [f"| {r.benchmark} | {r.config} | {_number(r.ours)} | {_number(r.peer)} | {r.ratio:.2f} |" for r in rows]
    return "\n".join(lines)


def machine_description(device: torch.device) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    text = f"CPU: {cpu}, {os.cpu_count()} logical cores, torch threads {torch.get_num_threads()}"
    if device.type == "cuda":
        text += f"; GPU: {torch.cuda.get_device_name(device)}"
    return text


def versions() -> str:
    parts = [f"python {platform.python_version()}", f"torch {torch.__version__}"]
    if HF_AVAILABLE:
        import transformers

        parts.append(f"transformers {transformers.__version__}")
    else:
        parts.append("transformers not installed (HF rows skipped)")
    return ", ".join(parts)


NOTES = """\
Ratios: ours/peer for throughput and MFU, peer/ours for memory, so > 1 means ours is better; a speed ratio
is the median of per-round ratios over interleaved rounds (see `benchmarks/README.md`). Training: forward, loss,
backward, AdamW step; tokens/s counts source + target tokens for seq2seq. Generation: new tokens/s =
batch x new tokens per second, no EOS on either side, KV cache on both. Memory: peak tensor bytes of a
training step (weights, optimizer state, gradients, activations). MFU: training FLOPs per token
6 N + 12 L d T (N = parameters without the position table) over a square matmul timed in the same rounds."""


def write_report(path: Path, table: str, device: torch.device, argv: list[str], wall_s: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python", "benchmarks/run.py", *argv])
    path.write_text(
        f"# Benchmarks: {device.type}, {datetime.date.today().isoformat()}\n\n"
        f"- command: `{command}` ({wall_s:.0f} s)\n- machine: {machine_description(device)}\n"
        f"- versions: {versions()}\n\n" + table + "\n\n" + NOTES + "\n")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--quick", action="store_true", help="tiny configs, 2 rounds: a smoke test in seconds")
    parser.add_argument("--only", default=None,
                        help=f"comma-separated suites to run, from: {', '.join(SUITES)} (default: all)")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds per contender (default: the plan's)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads, the same for every contender (default: 1 on CPU, where a "
                             "second thread on a shared machine made steps slower and noisier; torch's on CUDA)")
    parser.add_argument("--out", type=Path, default=None,
                        help="report path (default: benchmarks/results/<device>-<date>[-quick].md)")
    args = parser.parse_args(argv)
    if args.only:
        unknown = sorted(set(args.only.split(",")) - set(SUITES))
        if unknown:
            parser.error(f"unknown suite(s) {unknown}; choose from: {', '.join(SUITES)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    return args


def main(argv: list[str] | None = None) -> list[Row]:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    start = time.perf_counter()
    device = torch.device(args.device)
    plan = PLANS["quick" if args.quick else args.device]
    if args.rounds is not None:
        plan = dataclasses.replace(plan, rounds=args.rounds)
    torch.set_num_threads(args.threads or (1 if device.type == "cpu" else torch.get_num_threads()))
    ctx = Context(device, plan, HF_AVAILABLE)
    if HF_AVAILABLE:
        import transformers

        transformers.logging.set_verbosity_error()
        warnings.filterwarnings("ignore", module=r"transformers(\.|$)")
    else:
        ctx.log("transformers is not installed: the Hugging Face rows are skipped "
                "(install them with `pip install -e .[hf]`).")
    names = args.only.split(",") if args.only else list(SUITES)
    rows: list[Row] = []
    for name in names:
        suite_start = time.perf_counter()
        ctx.log(f"[{name}] running ({plan.warmup} warm-up + {plan.rounds} interleaved rounds) ...")
        torch.manual_seed(0)  # the same inputs on every run (models are seeded where they are built)
        rows += SUITES[name](ctx)
        ctx.log(f"[{name}] done in {time.perf_counter() - suite_start:.0f} s")
    table = render_table(rows)
    print(table)
    date = datetime.date.today().isoformat()
    out = args.out or ROOT / "benchmarks" / "results" / f"{device.type}-{date}{'-quick' if args.quick else ''}.md"
    write_report(out, table, device, argv, time.perf_counter() - start)
    ctx.log(f"wrote {out} (total {time.perf_counter() - start:.0f} s)")
    return rows


if __name__ == "__main__":
    main()
