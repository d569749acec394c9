"""TrainConfig reads the config.json of runs written before a field was retired, and refuses unknown fields."""

import pytest

from transformers_zoo.training import TrainConfig


def test_retired_label_smoothing_is_read_and_dropped():
    """Run directories written before 2026-12-06 carry train.label_smoothing (the Trainer never read it; it is
    translation's setting now): they still load, resume and evaluate."""
    cfg = TrainConfig.from_dict({"max_steps": 10, "warmup_steps": 2, "label_smoothing": 0.0})
    assert cfg.max_steps == 10 and "label_smoothing" not in cfg.to_dict()
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_unknown_field_is_an_error_naming_it():
    with pytest.raises(ValueError, match="lable_smoothing"):
        TrainConfig.from_dict({"max_steps": 10, "lable_smoothing": 0.1})
