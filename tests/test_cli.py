"""cli: each recipe family is offered a flag for every ModelConfig field its model reads, and only those; --amp."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import sys
from pathlib import Path

import pytest

from transformers_zoo import ModelConfig
from transformers_zoo.cli import DERIVED_FIELDS, IGNORED_FIELDS, add_common_args, model_fields, recipe_parser

PRESETS = {"tiny": {"model": {}, "train": {}, "data": {}}}


def flags_of(family: str) -> set[str]:
    parser = argparse.ArgumentParser()
    add_common_args(parser, PRESETS, default_preset="tiny", family=family)
    return {a.dest.removeprefix("model__") for a in parser._actions if a.dest.startswith("model__")}


@pytest.mark.parametrize("family", sorted(IGNORED_FIELDS))
def test_a_family_gets_every_field_it_reads(family):
    """Issue #17: `gpt.py --pooling` meant nothing; main's interop fields (d_head, qkv_bias, ...) must still be
    offered to each family that reads them."""
    every = {f.name for f in dataclasses.fields(ModelConfig)} - DERIVED_FIELDS
    assert flags_of(family) == set(model_fields(family)) == every - set(IGNORED_FIELDS[family])
    assert {"d_head", "qkv_bias", "embedding_norm", "attention_scale", "positional_offset",
            "sinusoidal_layout", "n_kv_heads", "positional", "ffn"} <= flags_of(family)


def test_fields_only_some_families_read():
    dec, encdec, enc = (flags_of(f) for f in ("decoder_only", "encoder_decoder", "encoder_only"))
    assert "pooling" in enc and "pooling" not in dec | encdec
    assert {"n_encoder_layers", "n_decoder_layers", "share_src_tgt_embeddings"} <= encdec - dec - enc
    assert {"output_bias", "scale_output"} <= dec & encdec and not {"output_bias", "scale_output"} & enc
    for family, ignored in IGNORED_FIELDS.items():  # every name listed is a real field (no stale entries)
        assert set(ignored) <= {f.name for f in dataclasses.fields(ModelConfig)}, family


def test_unknown_family_is_refused():
    with pytest.raises(ValueError, match="unknown model family"):
        model_fields("encoder_only_typo")


def mlm_recipe():
    path = Path(__file__).resolve().parents[1] / "recipes" / "mlm.py"
    spec = importlib.util.spec_from_file_location("mlm_recipe", path)
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_amp_flag_is_checked_and_reaches_every_stage():
    """--amp is validated by argparse, and the one command's pre-training (whose budgets and learning rate come
    from its own --pretrain-* flags) gets it as the fine-tuning runs do; without it the preset's value stays."""
    parser = argparse.ArgumentParser()
    add_common_args(parser, PRESETS, default_preset="tiny", family="encoder_only")
    with pytest.raises(SystemExit):
        parser.parse_args(["--amp", "fp16"])
    mlm = mlm_recipe()
    parser = recipe_parser(mlm.ONE)
    plans = mlm.new_plans(parser.parse_args(["--preset", "tiny", "--amp", "bf16", "--lr", "5e-3",
                                             "--pretrain-steps", "9"]))
    assert [s.train.amp for s in plans.values()] == ["bf16"] * 3
    pretrain, finetune = plans["pretrain"].train, plans["finetune"].train
    assert pretrain.lr == 1e-3 and pretrain.max_steps == 9 and finetune.lr == 5e-3 and finetune.max_steps == 12
    assert [s.train.amp for s in mlm.new_plans(parser.parse_args(["--preset", "cpu"])).values()] == ["bf16"] * 3
    assert [s.train.amp for s in mlm.new_plans(parser.parse_args(["--preset", "tiny"])).values()] == ["auto"] * 3
