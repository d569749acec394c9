"""tasks/translation/settings.py: typed, validated translation settings; config.json of older runs still loads."""

import json
from pathlib import Path

import pytest

from transformers_zoo.settings import SettingsError, resumable_paths
from transformers_zoo.tasks.translation import SearchSettings, TranslationDataSettings, TranslationSettings

MODEL = {"vocab_size": 100, "d_model": 32, "n_heads": 2, "n_layers": 1}
TRAIN = {"max_steps": 10, "warmup_steps": 2, "keep_last": 1}


def test_round_trip_and_derived_selection():
    s = TranslationSettings.from_dict({"model": MODEL, "train": TRAIN, "eval": {"select": "bleu", "average_last": 4}})
    assert (s.train.best_metric, s.train.best_mode, s.train.keep_last) == ("val_bleu", "max", 4)
    assert (s.data.src, s.data.tgt, s.label_smoothing) == ("en", "de", 0.1)
    assert TranslationSettings.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    assert "label_smoothing" not in s.to_dict()["train"]


def test_config_of_a_run_before_typed_settings_loads(tmp_path: Path):
    """config.json as translate.py wrote it before: train.label_smoothing, data.corpus / files / joint."""
    old = {"model": MODEL, "train": {**TRAIN, "label_smoothing": 0.2, "best_metric": "val_loss"},
           "data": {"corpus": "files", "joint": False, "files": {"train": ["/a/tr.en", "/a/tr.de"],
                                                                 "val": ["/a/va.en", "/a/va.de"]},
                    "src": "en", "tgt": "de", "tests": {"news": ["/a/te.en", "/a/te.de"]}, "eval_max_tokens": 6000},
           "eval": {"beam": 4, "length_penalty": 1.0, "max_len_a": 1.2, "max_len_b": 10, "select": "loss",
                    "average_last": 3}}
    s = TranslationSettings.from_dict(old)
    assert s.label_smoothing == 0.2 and s.data.separate_vocab and s.data.own_files
    assert (s.data.train_src, s.data.valid_tgt, s.data.tests) == ("/a/tr.en", "/a/va.de", {"news": ["/a/te.en",
                                                                                                     "/a/te.de"]})
    multi30k = TranslationSettings.from_dict({**old, "data": {"corpus": "multi30k", "files": {}, "joint": True}})
    assert not multi30k.data.own_files and not multi30k.data.separate_vocab


def test_data_settings_validate_and_name_the_field(tmp_path: Path):
    d = TranslationDataSettings(train_src=str(tmp_path / "tr.fr"), train_tgt=str(tmp_path / "tr.en"),
                                valid_src="v.fr", valid_tgt="v.en", tests=["news=a.fr,a.en"])
    assert (d.src, d.tgt) == ("fr", "en") and d.tests["news"][0] == str(Path("a.fr").resolve())
    for kwargs, path in (({"train_src": "x.en"}, "train_tgt"), ({"max_tokens": 0}, "max_tokens"),
                         ({"tokenizer": "char"}, "tokenizer"), ({"tests": ["news"]}, "tests"),
                         ({"tests": ["val=a,b"]}, "tests")):
        with pytest.raises(SettingsError) as err:
            TranslationDataSettings(**kwargs)
        assert err.value.path == path
    assert TranslationDataSettings(init="hf:/m", tokenizer="marian").tokenizer == "marian"
    with pytest.raises(SettingsError, match="beam"):
        SearchSettings(beam=0)
    with pytest.raises(SettingsError, match="label_smoothing"):
        TranslationSettings.from_dict({"model": MODEL, "train": TRAIN, "label_smoothing": 1.0})
    assert TranslationSettings.from_dict({"model": MODEL, "train": TRAIN}).family == "encoder_decoder"  # old runs
    with pytest.raises(SettingsError, match="one of encoder_decoder, decoder_only") as err:
        TranslationSettings.from_dict({"model": MODEL, "train": TRAIN, "family": "encoder_only"})
    assert err.value.path == "family"
    with pytest.raises(SettingsError, match="decoder_only cannot start from a Marian or T5"):
        TranslationSettings.from_dict({"model": MODEL, "train": TRAIN, "family": "decoder_only",
                                       "data": {"init": "hf:/m", "tokenizer": "marian"}})


def test_what_a_resume_and_an_evaluation_may_change():
    assert {"eval.beam", "eval.max_len_b", "train.max_steps"} <= resumable_paths(TranslationSettings)
    assert "data.vocab" not in resumable_paths(TranslationSettings)
    assert resumable_paths(TranslationSettings, declared="EVALUABLE") == {
        "eval.beam", "eval.length_penalty", "eval.max_len_a", "eval.max_len_b", "data.eval_limit", "data.tests"}
