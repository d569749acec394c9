"""`python -m transformers_zoo.serve` end to end: a real run directory of recipes/gpt.py (--preset tiny) served by
the command, answered through the `openai` client as the library answers it; a bad model spec is one line. And what
else a spec may name: a sentence-transformers checkpoint (hf:PATH) and an index folder (searched with its encoder)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import openai
import pytest
import torch

from transformers_zoo.generation import greedy
from transformers_zoo.serve.models import load_served

REPO = Path(__file__).resolve().parents[2]


def command(*args: object, **kwargs) -> subprocess.Popen | subprocess.CompletedProcess:
    argv = [sys.executable, *map(str, args)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if kwargs.pop("background", False):
        return subprocess.Popen(argv, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True, timeout=300, **kwargs)


@pytest.fixture(scope="module")
def gpt_run(shared_data_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gpt") / "run"
    done = command("recipes/gpt.py", "--preset", "tiny", "--data-dir", shared_data_dir, "--out", out, "--threads", 1)
    assert done.returncode == 0, done.stderr[-2000:]
    return out


@pytest.mark.parametrize("dtype, quantize", [("float32", None), ("bfloat16", None), ("float32", "int8-dynamic")])
def test_the_command_serves_a_run_directory(gpt_run, dtype, quantize):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = command("-m", "transformers_zoo.serve", f"tiny={gpt_run}", "--port", port, "--api-key", "k",
                     "--threads", 1, "--device", "cpu", "--dtype", dtype,
                     *(["--quantize", quantize] if quantize else []), background=True)
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k", max_retries=0, timeout=60)
        for _ in range(600):
            try:
                models = client.models.list().data
                break
            except openai.APIConnectionError:
                assert server.poll() is None, server.stdout.read()
                time.sleep(0.1)
        assert [(m.id, m.family) for m in models] == [("tiny", "decoder_only")]
        out = client.completions.create(model="tiny", prompt="ROMEO:", max_tokens=20, temperature=0)
        served = load_served("tiny", str(gpt_run), "cpu", dtype=dtype, quantize=quantize)  # the library's answer
        assert next(served.model.parameters()).dtype == getattr(torch, dtype)
        quantized = any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in served.model.modules())
        assert quantized == bool(quantize)
        ids = served.tokenizer.encode_prompt("ROMEO:")
        want = greedy(served.model, served.model.init_cache(1), torch.tensor([ids]), 20)[0].tolist()
        assert out.choices[0].text == served.tokenizer.decode(want) and out.usage.completion_tokens == 20
    finally:
        server.terminate()
        server.wait(timeout=30)
    label = dtype + (f", {quantize}" if quantize else "")
    assert f"tiny: decoder_only from {gpt_run} (" in (log := server.stdout.read()) and f"; {label})" in log


def test_a_bad_model_spec_is_one_line(tmp_path):
    done = command("-m", "transformers_zoo.serve", f"x={tmp_path / 'missing'}")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "neither a run directory" in done.stderr
    from transformers_zoo.cli.serve import parse_args

    with pytest.raises(SystemExit):  # argparse's one line: dynamic int8 quantizes a float32 model
        parse_args(["x=runs/x", "--dtype", "bfloat16", "--quantize", "int8-dynamic"])
    assert parse_args(["x=runs/x", "--quantize", "int8-dynamic"]).quantize == "int8-dynamic"


def test_a_sentence_transformers_checkpoint_and_an_index_folder_load(tmp_path):
    from transformers_zoo import EncoderOnly, ModelConfig
    from transformers_zoo.interop.sentence_transformers import export_sentence_transformer, load_sentence_encoder
    from transformers_zoo.retrieval import SentenceEncoder
    from transformers_zoo.retrieval.search import index_corpus
    from transformers_zoo.tokenizers import WordPieceTokenizer

    words = ["the", "a", "dog", "cat", "runs", "sleeps", "park", "in", *"abcdefghijklmnopqrstuvwxyz"]
    tok = WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words])
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=tok.vocab_size, d_model=32, n_heads=4, n_layers=2, d_ff=64, max_len=64, dropout=0.0,
                      positional="learned", norm_first=False, ffn="gelu", pooling="mean")
    encoder = SentenceEncoder(EncoderOnly(cfg).eval(), tok, normalize=True)
    checkpoint = export_sentence_transformer(encoder, tmp_path / "st")
    encoder = load_sentence_encoder(f"hf:{checkpoint}")  # as recipes/embed.py index --init hf:PATH reads it
    texts = ["a dog runs in the park", "the cat sleeps", "a cat runs"]
    index_corpus(encoder, ["d0", "d1", "d2"], texts, tmp_path / "idx", source=f"hf:{checkpoint}")

    st = load_served("st", f"hf:{checkpoint}", "cpu")
    assert st.family == "encoder_only" and "embeddings" in st.capabilities and "search" not in st.capabilities
    assert abs(st.encoder.encode(texts) - encoder.encode(texts)).max() < 1e-5
    docs = load_served("docs", str(tmp_path / "idx"), "cpu")
    assert {"search", "embeddings", "attention"} <= set(docs.capabilities)
    assert docs.index.search(docs.encoder.encode(["the cat sleeps"]), 1)[0][0].id == "d1"
