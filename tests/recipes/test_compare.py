"""recipes/compare.py: built-in grids at --preset tiny produce the table and plots, and resume."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "compare.py"


def run(*args, check=True):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(RECIPE), *map(str, args), "--threads", "1"], capture_output=True,
                          text=True, env=env, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr[-3000:]}")
    return proc


def check_outputs(out: Path, n_cells: int):
    table = (out / "table.md").read_text()
    assert table.count("\n| ") >= n_cells + 1
    for name in ("loss_vs_steps.png", "loss_vs_time.png", "loss_vs_flops.png"):
        assert (out / name).stat().st_size > 1000
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert len(rows) == n_cells
    assert all(0 < r["val_loss"] < 10 and r["params"] > 0 and r["flops_per_token"] > 0 for r in rows)
    return rows


def test_variants_grid_tiny(shared_data_dir, tmp_path):
    out = tmp_path / "variants"
    run("--grid", "variants", "--preset", "tiny", "--data-dir", shared_data_dir, "--out", out)
    rows = check_outputs(out, 12)
    params = {r["cell"]: r["params"] for r in rows}
    assert params["MQA (1 kv head)"] < params["GQA (2 kv heads)"] < params["base (learned, pre-LN, gelu, MHA)"]


def test_extrapolation_grid_tiny_and_resume(shared_data_dir, tmp_path):
    out = tmp_path / "extra"
    run("--grid", "extrapolation", "--preset", "tiny", "--data-dir", shared_data_dir, "--out", out)
    rows = {r["cell"]: r for r in check_outputs(out, 5)}
    assert rows["learned"]["extrapolation"]["2"] is None  # learned positions cannot go past max_len
    assert all(rows[p]["extrapolation"]["4"] is not None
               for p in ("sinusoidal (x sqrt(d) embeddings)", "rope", "alibi", "relative"))
    # an interrupted grid continues: only the cell without a result runs again
    (out / "cells" / "rope-s0" / "result.json").unlink()
    proc = run("--grid", "extrapolation", "--preset", "tiny", "--data-dir", shared_data_dir, "--out", out)
    assert proc.stderr.count("done already") == 4
    assert (out / "cells" / "rope-s0" / "result.json").exists()


def test_grid_file_and_bad_cells(shared_data_dir, tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text('task = "lm"\n[base]\nn_layers = 1\n[cells.small]\nd_model = 32\n[cells.rms]\nd_model = 32\n'
                    'norm = "rmsnorm"\n')
    run("--grid", grid, "--preset", "tiny", "--budget", "flops", "--data-dir", shared_data_dir, "--out", tmp_path / "g")
    check_outputs(tmp_path / "g", 2)
    grid.write_text('[cells.bad]\nnorm = "batchnorm"\n')
    proc = run("--grid", grid, "--preset", "tiny", "--out", tmp_path / "h", check=False)
    assert proc.returncode == 2 and "cell 'bad'" in proc.stderr and "layernorm, rmsnorm" in proc.stderr


@pytest.mark.parametrize("budget", ["tokens", "time"])
def test_other_budgets(shared_data_dir, tmp_path, budget):
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps({"base": {"n_layers": 1}, "cells": {"only": {}}}))
    seeds = 2 if budget == "tokens" else 1  # a cell's row is the mean of its seeds (the one place seeds are run)
    run("--grid", grid, "--preset", "tiny", "--budget", budget, "--seeds", seeds, "--data-dir", shared_data_dir,
        "--out", tmp_path / budget)
    rows = check_outputs(tmp_path / budget, 1)
    assert rows[0]["seeds"] == seeds and rows[0]["val_loss_std"] >= 0


def test_families_grid_tiny(shared_data_dir, tmp_path):
    out = tmp_path / "families"
    run("--grid", "families", "--preset", "tiny", "--data-dir", shared_data_dir, "--out", out)
    rows = {r["cell"]: r for r in check_outputs(out, 2)}
    assert all(0 <= r["bleu"] <= 100 for r in rows.values())
    assert "BLEU (beam)" in (out / "table.md").read_text()
    for cell, family in (("encoder-decoder__2_2_layers-s0", "encoder_decoder"),
                         ("decoder-only__4_layers__source_prefix-s0", "decoder_only")):
        run_dir = out / "cells" / cell  # a translate.py run directory
        assert json.loads((run_dir / "config.json").read_text())["family"] == family
        report = json.loads((run_dir / "report.json").read_text())
        assert report["recipe"] == "translate"
        hyps = (run_dir / "hyp" / "test_2016_flickr.de").read_text().splitlines()
        assert len(hyps) == 30 and report["eval"]["test_2016_flickr"]["bleu"] == pytest.approx(
            json.loads((run_dir / "result.json").read_text())["bleu"])
