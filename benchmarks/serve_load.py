"""A bounded load test of the server on loopback: concurrent streaming clients, batched against one at a time.

    python benchmarks/serve_load.py                       # 32 clients x 4 requests, a small random-weight GPT
    python benchmarks/serve_load.py --model runs/gpt-cpu  # a run directory (or hf:PATH) instead
    python benchmarks/serve_load.py --clients 8 --requests 2 --max-tokens 16 --quick

The same process serves the same model twice on 127.0.0.1 through uvicorn: first one request at a time
(`--max-batch 1`: every request decoded alone), then with continuous batching (`--max-batch` = clients). In
each phase every client (the official `openai` async client, `stream=True`, greedy; all clients in one child
process, so that parsing their chunks does not hold the server's interpreter lock) sends its requests one after
another and reads the streamed answer; the figures are requests/s, generated tokens/s (the server's usage
counts), and p50/p95 time to first token and latency. Every batched answer is checked against the same request
answered alone (phase one): an error, a lost stream or a mixed-up one fails the run, and so does any difference in
float32; in bfloat16 (`--dtype`) or with `--quantize` a row's rounding depends on the rows decoded with it, so
answers may part from the lone one (counted, with where they part). Writes the table to
benchmarks/results/serve-load-<device>-<date>.md (or --out).

The default model has random weights, with every special id (EOS included) ruled out of its output, so that each
answer is exactly --max-tokens long (the same work in both phases) and decodes to visible text.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import multiprocessing
import platform
import string
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from transformers_zoo import DecoderOnly, ModelConfig  # noqa: E402
from transformers_zoo.modules.quantize import QUANTIZERS  # noqa: E402
from transformers_zoo.serve.app import create_app  # noqa: E402
from transformers_zoo.serve.models import ServedModel, load_served  # noqa: E402
from transformers_zoo.tokenizers import N_SPECIAL, CharTokenizer  # noqa: E402


def small_model(d_model: int, layers: int) -> ServedModel:
    tok = CharTokenizer(sorted(set(string.ascii_letters + string.digits + string.punctuation + " ")))
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=tok.vocab_size, d_model=d_model, n_heads=max(d_model // 64, 1), n_layers=layers,
                      max_len=512, dropout=0.0, positional="rope", norm="rmsnorm", ffn="swiglu")
    model = DecoderOnly(cfg).eval()
    with torch.no_grad():  # no special ids out (not even EOS): every answer is max_tokens visible characters
        model.lm_head.weight[:N_SPECIAL] = 0.0
        model.lm_head.weight[:N_SPECIAL, 0] = -100.0
    return ServedModel("bench", "decoder_only", model, tok, f"random d{d_model} x{layers}")


def prompts_for(clients: int, requests: int) -> list[list[str]]:
    words = "the a cat dog sat ran on in park mat hello world quick brown fox jumps over lazy".split()
    return [[" ".join(words[(c * 7 + r * 3 + i) % len(words)] for i in range(3 + (c + r) % 6)) + f" {c}.{r}"
             for r in range(requests)] for c in range(clients)]


class Served:
    """uvicorn serving `app` on a free loopback port, in a thread of this process."""

    def __init__(self, app):
        import socket

        import uvicorn

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


async def client(api, model: str, prompts: list[str], max_tokens: int, answers: dict, timings: list,
                 errors: list) -> None:
    for prompt in prompts:
        start = time.perf_counter()
        first, text, tokens = None, "", 0
        try:
            stream = await api.completions.create(model=model, prompt=prompt, max_tokens=max_tokens, temperature=0,
                                                  stream=True, stream_options={"include_usage": True})
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].text:
                    first = first or time.perf_counter()
                    text += chunk.choices[0].text
                if chunk.usage:
                    tokens = chunk.usage.completion_tokens
        except Exception as err:  # counted, not raised: the run reports every error
            errors.append(f"{prompt!r}: {type(err).__name__}: {err}")
            continue
        end = time.perf_counter()
        answers[prompt] = text
        timings.append(((first or end) - start, end - start, tokens))


async def phase(url: str, model: str, prompts: list[list[str]], max_tokens: int) -> dict:
    import openai

    api = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0, timeout=600)
    answers, timings, errors = {}, [], []
    start = time.perf_counter()
    await asyncio.gather(*(client(api, model, p, max_tokens, answers, timings, errors) for p in prompts))
    wall = time.perf_counter() - start
    await api.close()
    ttft = sorted(t[0] for t in timings)
    latency = sorted(t[1] for t in timings)
    return {"answers": answers, "errors": errors, "wall_s": wall, "requests": len(timings),
            "tokens": sum(t[2] for t in timings), "ttft": ttft, "latency": latency}


def clients_apart(url: str, model: str, prompts: list[list[str]], max_tokens: int) -> dict:
    """`phase` in a process of its own: the clients' JSON parsing does not share the server's interpreter lock."""
    return asyncio.run(phase(url, model, prompts, max_tokens))


def shared_prefix(a: str, b: str) -> int:
    """How many leading characters ``a`` and ``b`` have in common."""
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def pct(values: list[float], q: float) -> float:
    return values[min(int(q * len(values)), len(values) - 1)] if values else float("nan")


def run(args: argparse.Namespace) -> str:
    torch.set_num_threads(args.threads)
    if args.model:
        served = load_served("bench", args.model, args.device, dtype=args.dtype)
    else:
        served = small_model(args.d_model, args.layers)
        served.model.to(getattr(torch, args.dtype))
    n_params = sum(p.numel() for p in served.model.parameters())  # (quantized weights are not parameters)
    if args.quantize:
        QUANTIZERS[args.quantize](served.model)
    prompts = prompts_for(args.clients, args.requests)
    results = {}
    for label, max_batch in (("one at a time", 1), ("continuous batching", args.max_batch or args.clients)):
        app = create_app([served], max_queue=args.clients * args.requests + 1, max_batch=max_batch)
        server = Served(app)
        try:
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                results[label] = pool.submit(clients_apart, f"http://127.0.0.1:{server.port}", served.name, prompts,
                                             args.max_tokens).result()
            results[label]["rows"] = app.state.engines[served.name].max_rows_seen
        finally:
            server.stop()
        print(f"{label}: {results[label]['requests']} requests in {results[label]['wall_s']:.1f} s", file=sys.stderr)
    alone, batched = results["one at a time"], results["continuous batching"]
    expected = args.clients * args.requests
    differ = {p: a for p, a in batched["answers"].items() if a != alone["answers"].get(p)}
    parted = sorted(shared_prefix(a, alone["answers"].get(p, "")) for p, a in differ.items())
    mixed = [p for p, a in differ.items()  # closer to another request's answer than to its own: a mixed-up stream
             if max(shared_prefix(a, b) for q, b in alone["answers"].items() if q != p) > shared_prefix(
                 a, alone["answers"].get(p, ""))]
    lost = expected - len(batched["answers"])
    exact = args.dtype == "float32" and not args.quantize  # reduced precision: a row's rounding depends on the batch
    rows = ["| mode | requests | errors | most rows in a step | wall s | req/s | gen tokens/s | TTFT p50 / p95 s | "
            "latency p50 / p95 s |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for label, r in results.items():
        rows.append(f"| {label} | {r['requests']} | {len(r['errors'])} | {r['rows']} | {r['wall_s']:.1f} | "
                    f"{r['requests'] / r['wall_s']:.2f} | {r['tokens'] / r['wall_s']:.0f} | "
                    f"{pct(r['ttft'], 0.5):.2f} / {pct(r['ttft'], 0.95):.2f} | "
                    f"{pct(r['latency'], 0.5):.2f} / {pct(r['latency'], 0.95):.2f} |")
    speedup = (batched["tokens"] / batched["wall_s"]) / (alone["tokens"] / alone["wall_s"])
    lines = [f"# Serving load test ({args.device}, {datetime.date.today()})", "",
             f"`python {' '.join(sys.argv)}`", "",
             f"Model: {served.source} ({n_params:,} parameters, "
             f"{args.dtype}{', ' + args.quantize if args.quantize else ''}); "
             f"{args.clients} concurrent streaming clients x {args.requests} requests, {args.max_tokens} new tokens "
             f"each, greedy; torch threads {args.threads}; {platform.processor() or platform.machine()}, "
             f"{torch.get_num_threads()} thread(s), Python {platform.python_version()}, torch {torch.__version__}.",
             "", *rows, "",
             f"Batched aggregate tokens/s: {speedup:.2f}x one at a time. Streams checked against the same request "
             f"answered alone: {len(batched['answers']) - len(differ)} of {expected} identical"
             + (f" (the {len(differ)} others part from it after a median of {parted[len(parted) // 2]} "
                "characters: rounding, which in reduced precision depends on the rows decoded together)"
                if differ else "") + f", {len(mixed)} mixed up, {lost} lost, "
             f"{len(alone['errors']) + len(batched['errors'])} errors."]
    for err in (alone["errors"] + batched["errors"])[:5]:
        lines.append(f"- error: {err}")
    report = "\n".join(lines) + "\n"
    if (differ and exact) or mixed or lost or alone["errors"] or batched["errors"] or len(alone["answers"]) != expected:
        print(report)
        raise SystemExit("FAILED: errors, lost or mixed-up streams (see above)")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="RUN_DIR or hf:PATH of a decoder-only model (default: a small "
                                                       "random-weight GPT)")
    parser.add_argument("--d-model", type=int, default=256, help="default model's width")
    parser.add_argument("--layers", type=int, default=4, help="default model's layers")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=4, help="requests per client, one after another")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--max-batch", type=int, default=None, help="rows per step when batching (default: clients)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: best on a busy 2-core machine)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                        help="the model's weights and KV cache (serve --dtype)")
    parser.add_argument("--quantize", default=None, choices=["int8-dynamic"],
                        help="int8 weights and activations in the linear layers (serve --quantize; float32 only)")
    parser.add_argument("--out", type=Path, default=None, help="where to write the table (default benchmarks/results/)")
    args = parser.parse_args()
    if args.quantize and args.dtype != "float32":
        parser.error("--quantize int8-dynamic quantizes a float32 model: leave --dtype at float32")
    report = run(args)
    print(report)
    out = args.out or Path(__file__).parent / "results" / f"serve-load-{args.device}-{datetime.date.today()}.md"
    out.write_text(report)
    print(f"written: {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
