"""`python -m transformers_zoo.serve NAME=RUN_DIR [NAME=hf:PATH NAME=INDEX_DIR ...]`: serve models over HTTP.

Binds 127.0.0.1 by default (reachable from this machine only); pass --host 0.0.0.0 to serve a network, and then
an --api-key. The playground page is at http://HOST:PORT/.

The server's command line (`transformers_zoo/serve/__main__.py` runs it): part of `cli`, the only place that knows
flags; the server itself (`serve/`) never sees them.
"""

from __future__ import annotations

import argparse
import os
import sys


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m transformers_zoo.serve", description=__doc__.split("\n\n")[0],
                                     epilog="Each MODEL is NAME=RUN_DIR (a run of any recipe), NAME=hf:PATH (a Hugging "
                                            "Face checkpoint directory or Hub name) or NAME=INDEX_DIR (an index of "
                                            "recipes/embed.py: search); a bare path is named after its folder.")
    parser.add_argument("models", nargs="+", metavar="MODEL", help="NAME=RUN_DIR, NAME=hf:PATH or NAME=INDEX_DIR")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--api-key", default=os.environ.get("TZOO_API_KEY"),
                        help="require 'Authorization: Bearer KEY' on the API (default: env TZOO_API_KEY, else none)")
    parser.add_argument("--max-queue", type=int, default=64, help="requests waiting per model before 429 (default 64)")
    parser.add_argument("--max-batch", type=int, default=32, help="sequences decoded together per model (default 32)")
    parser.add_argument("--max-body-bytes", type=int, default=1_000_000, help="largest request body (default 1 MB)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                        help="decoder models' weights and KV cache (encoders and translators stay float32): bfloat16 "
                             "reads half the bytes a decoding step (chat --dtype; benchmarks/chat_generate.py)")
    parser.add_argument("--quantize", default=None, choices=["int8-dynamic"],
                        help="decoder models' linear layers with int8 weights and activations (chat --quantize "
                             "int8-dynamic: the fastest on a CPU, answers further from the float model's; float32)")
    parser.add_argument("--data-dir", default=os.environ.get("TZOO_DATA_DIR"), help="data folder (GPT-2's BPE ranks)")
    args = parser.parse_args(argv)
    if args.quantize and args.dtype != "float32":
        parser.error("--quantize int8-dynamic quantizes a float32 model: leave --dtype at float32")
    for name in ("max_queue", "max_batch", "max_body_bytes"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch
    import uvicorn

    from ..serve.app import create_app
    from ..serve.models import load_served, parse_spec

    if args.threads:
        torch.set_num_threads(args.threads)
    specs = [parse_spec(s) for s in args.models]
    names = [n for n, _ in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"model names must differ: {', '.join(names)}")
    models = []
    for name, spec in specs:
        models.append(load_served(name, spec, args.device, args.data_dir, args.dtype, args.quantize))
        dtype = str(next(models[-1].model.parameters()).dtype).removeprefix("torch.")
        if args.quantize and models[-1].family == "decoder_only":
            dtype += f", {args.quantize}"
        print(f"{name}: {models[-1].family} from {spec} ({', '.join(models[-1].capabilities)}; {dtype})",
              file=sys.stderr)
    app = create_app(models, api_key=args.api_key, max_queue=args.max_queue, max_batch=args.max_batch,
                     max_body_bytes=args.max_body_bytes)
    if args.host not in ("127.0.0.1", "localhost", "::1") and not args.api_key:
        print(f"warning: serving {args.host} without --api-key: anyone who reaches this port can use the models",
              file=sys.stderr)
    print(f"playground: http://{args.host}:{args.port}/", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0

