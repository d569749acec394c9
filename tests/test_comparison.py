"""transformers_zoo.comparison: grids, the FLOPs count, budgets, aggregation over seeds, the table."""

import json

import pytest

from transformers_zoo import DecoderOnly, ModelConfig
from transformers_zoo.comparison import (
    aggregate,
    budget_changes,
    cell_slug,
    flops_per_token,
    load_grid,
    non_embedding_params,
    plot,
    write_table,
)

BUILTIN = {"mine": {"task": "lm", "base": {"d_model": 32}, "cells": {"a": {}, "b": {"norm": "rmsnorm"}}}}


def test_load_grid_builtin_is_a_copy_and_files_are_checked(tmp_path):
    grid = load_grid("mine", BUILTIN)
    grid["cells"]["c"] = {}
    assert list(load_grid("mine", BUILTIN)["cells"]) == ["a", "b"]
    path = tmp_path / "g.json"
    path.write_text(json.dumps({"cells": {"x": {"n_layers": 1}}}))
    assert load_grid(str(path), BUILTIN) == {"cells": {"x": {"n_layers": 1}}, "task": "lm", "base": {}}
    with pytest.raises(FileNotFoundError, match="neither a built-in grid \\(mine\\) nor a file"):
        load_grid(str(tmp_path / "none.toml"), BUILTIN)
    for text, needle in (('task = "vision"\n[cells.a]\n', "task 'vision' is not one of lm, translation"),
                         ('task = "lm"\n', "no \\[cells.<name>\\] tables"),
                         ('[cells.bad]\nnorm = "batchnorm"\n', "cell 'bad': .*layernorm, rmsnorm"),
                         ('[cells.fam]\nfamily = "encoder_only"\n', "cell 'fam': family must be one of"),
                         ("[cells\n", "not valid TOML")):
        (tmp_path / "g.toml").write_text(text)
        with pytest.raises(ValueError, match=needle):
            load_grid(str(tmp_path / "g.toml"), BUILTIN)


def test_flops_and_non_embedding_params():
    cfg = ModelConfig(vocab_size=100, d_model=32, n_heads=4, n_layers=2, max_len=16, positional="learned")
    model = DecoderOnly(cfg)
    n = non_embedding_params(model)
    embedding = 100 * 32 + 16 * 32  # tokens (tied with the output) and learned positions
    assert n == sum(p.numel() for p in model.parameters()) - embedding
    assert flops_per_token(cfg, n, 16) == 3.0 * (2.0 * n + 2.0 * 2 * 16 * 32)
    assert cell_slug("GQA (2 kv heads)") == "GQA__2_kv_heads"


@pytest.mark.parametrize("kind, budget, expected", [
    ("steps", 7, {"train.max_steps": 7}), ("tokens", 1000, {"train.max_steps": 3}),
    ("tokens", 10, {"train.max_steps": 1}), ("flops", 3e6, {"train.max_steps": 1}),
    ("flops", 6.4e7, {"train.max_steps": 20}),
    ("time", 1.5, {"train.max_steps": None, "train.max_minutes": 1.5, "train.schedule": "inverse_sqrt"})])
def test_budget_changes(kind, budget, expected):
    assert budget_changes(kind, budget, tokens_per_step=320.0, fpt=1e4) == expected


def result(cell, seed, loss, **extra):
    return {"cell": cell, "seed": seed, "params": 10, "flops_per_token": 1e3, "tokens_per_s": 100.0 + seed,
            "steps": 4, "best_val_loss": loss, "peak_memory_mb": 50.0 + seed, "tokens_per_step": 8,
            "curve": [{"step": 2, "elapsed_s": 0.1, "val_loss": loss + 1},
                      {"step": 4, "elapsed_s": 0.2, "val_loss": loss}],
            "extrapolation": {}, **extra}


def test_aggregate_and_table(tmp_path):
    results = [result("base", 0, 2.0), result("base", 1, 2.2), result("wide", 0, 1.0), result("wide", 1, 1.1),
               result("close", 0, 2.05), result("close", 1, 2.15)]
    rows = {r["cell"]: r for r in aggregate(results, "base")}
    assert rows["base"]["delta"] is None and rows["base"]["val_loss"] == pytest.approx(2.1)
    assert rows["wide"]["delta"] == pytest.approx(-1.05) and rows["wide"]["beyond_spread"] is True
    assert rows["close"]["beyond_spread"] is False and rows["close"]["peak_memory_mb"] == 51.0
    assert rows["wide"]["bleu"] is None
    one_seed = aggregate([result("base", 0, 2.0), result("x", 0, 1.0, bleu=20.0)], "base")
    assert one_seed[1]["beyond_spread"] is None and one_seed[1]["val_loss_std"] == 0.0
    text = write_table(one_seed, tmp_path, "# head")
    assert (tmp_path / "table.md").read_text() == text and "BLEU (beam)" in text and "| 20.00 |" in text
    extra = aggregate([result("rope", 0, 2.0, extrapolation={"1": 2.0, "2": None})], "rope")
    table = write_table(extra, tmp_path, "# head")
    assert "| cell | 1× | 2× |" in table and "| rope | 2.0000 | n/a |" in table and "BLEU" not in table
    paths = plot(results, tmp_path)
    assert [p.name for p in paths] == ["loss_vs_steps.png", "loss_vs_time.png", "loss_vs_flops.png"]
