"""`recipes/gpt.py --init hf:PATH`: fine-tune a (tiny, random) GPT-2 checkpoint on Tiny Shakespeare with the gpt2
tokenizer, blocks capped at its n_positions; resume the run; refuse architecture changes with one line."""

import json
import math
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file
from test_gpt import run

from transformers_zoo.training.checkpoint import MODEL_FILE, resolve_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "interop"))
from hf_parity import write_tiny_gpt2  # noqa: E402


@pytest.fixture
def gpt2_dir(tmp_path, shared_data_dir):
    return write_tiny_gpt2(tmp_path / "gpt2", shared_data_dir, n_positions=16)


def test_finetune_gpt2_checkpoint_and_resume(gpt2_dir, shared_data_dir, tmp_path):
    out = tmp_path / "run"
    common = ["--data-dir", shared_data_dir, "--threads", "1"]
    proc = run("--preset", "tiny", "--init", f"hf:{gpt2_dir}", "--out", out, "--max-steps", "4", "--warmup-steps", "1",
               "--eval-every", "4", "--save-every", "2", *common)
    assert f"initialised from hf:{gpt2_dir.resolve()}" in proc.stderr
    report = json.loads((out / "report.json").read_text())
    config = report["config"]
    assert config["init"] == f"hf:{gpt2_dir.resolve()}" and config["data"]["tokenizer"] == "gpt2"
    assert config["data"]["block_size"] == 16 and config["model"]["max_len"] == 16  # capped at n_positions
    assert config["model"]["vocab_size"] == 50257 and config["model"]["d_model"] == 16
    assert report["steps"] == 4 and math.isfinite(report["eval"]["val"]["loss"])
    # the checkpoint's weights were the start: the trained token embedding is near GPT-2's, not a fresh init
    hf = load_file(gpt2_dir / "model.safetensors")
    ours = load_file(resolve_checkpoint(out) / MODEL_FILE)
    assert (ours["embed.weight"] - hf["transformer.wte.weight"]).abs().max() < 0.05
    run("--resume", out, "--max-steps", "6", *common)
    assert json.loads((out / "report.json").read_text())["steps"] == 6


def test_init_refuses_architecture_changes(gpt2_dir, shared_data_dir, tmp_path):
    common = ["--preset", "tiny", "--init", f"hf:{gpt2_dir}", "--data-dir", shared_data_dir, "--out", tmp_path / "r"]
    for flags, needle in ((["--n-layers", "3"], "--n-layers 3"), (["--block-size", "64"], "n_positions=16"),
                          (["--tokenizer", "char"], "--tokenizer char")):
        proc = run(*common, *flags, check=False)
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert proc.returncode == 2 and len(errors) == 1 and needle in errors[0], proc.stderr
    assert not (tmp_path / "r").exists()
