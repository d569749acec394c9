"""Checkpoint layout, integrity checks, safe loading and fallback to the previous complete checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from training_toy import FINGERPRINT, Recorder, TinyLM, base_config, make_trainer

from transformers_zoo.training import (
    CheckpointError,
    TrainingError,
    best_checkpoint,
    latest_checkpoint,
    load_checkpoint,
    verify_checkpoint,
)
from transformers_zoo.training.atomic import file_sha256
from transformers_zoo.training.checkpoint import load_state

# A resume that falls back also moves the broken newer checkpoint aside, with its own warning.
pytestmark = pytest.mark.filterwarnings("ignore:moved .* aside:RuntimeWarning")


def train(run_dir: Path, max_steps: int = 3, **kw):
    trainer = make_trainer(run_dir, base_config(max_steps=max_steps, eval_every=None, **kw))
    return trainer, trainer.fit()


def reseal(ckpt: Path) -> None:
    """Recompute the manifest's hashes, as an attacker who can write the directory would."""
    manifest = json.loads((ckpt / "manifest.json").read_text())
    for name in manifest["files"]:
        manifest["files"][name] = {"sha256": file_sha256(ckpt / name), "size": (ckpt / name).stat().st_size}
    (ckpt / "manifest.json").write_text(json.dumps(manifest))


def test_layout_manifest_pruning_and_loading(tmp_path):
    trainer, summary = train(tmp_path, max_steps=4, keep_last=2)
    root = tmp_path / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["best.json", "step_00000003", "step_00000004"]
    ckpt = root / "step_00000004"
    assert sorted(p.name for p in ckpt.iterdir()) == ["manifest.json", "model.safetensors", "state.pt"]
    manifest = verify_checkpoint(ckpt)
    assert manifest["step"] == 4 and manifest["fingerprint"] == FINGERPRINT
    assert manifest["files"]["state.pt"]["sha256"] == file_sha256(ckpt / "state.pt")
    assert manifest["train_config"]["max_steps"] == 4
    assert latest_checkpoint(tmp_path) == ckpt
    assert best_checkpoint(tmp_path) == ckpt == Path(summary["best_checkpoint"])  # final eval is the best
    state = load_state(ckpt)
    assert state["step"] == 4 and state["data"] == {"epoch": 0, "index": 8} and state["world_size"] == 1
    assert set(state["rng"][0]) >= {"python", "torch", "cuda", "numpy"}

    fresh = TinyLM()
    info = load_checkpoint(tmp_path, fresh, fingerprint=FINGERPRINT)
    assert info["path"] == str(ckpt) and info["step"] == 4
    assert fresh.head.weight is fresh.embed.weight  # still tied after loading
    for (name, a), b in zip(trainer.model.state_dict().items(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    with pytest.raises(TrainingError, match="'model.d' is 16 in the checkpoint but 32"):
        load_checkpoint(ckpt, TinyLM(), fingerprint={**FINGERPRINT, "model": {"vocab": 50, "d": 32}})


def test_incomplete_checkpoint_is_skipped(tmp_path):
    train(tmp_path, max_steps=3)
    (tmp_path / "checkpoints" / "step_00000003" / "manifest.json").unlink()
    with pytest.warns(RuntimeWarning, match="incomplete checkpoint"):
        assert latest_checkpoint(tmp_path).name == "step_00000002"


class Payload:
    """Unpickling this runs `open(marker, "w")`: a stand-in for arbitrary code in a malicious file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_payload_is_refused_without_running_it(tmp_path):
    run = tmp_path / "run"
    train(run, max_steps=3)
    ckpt = run / "checkpoints" / "step_00000003"
    state = torch.load(ckpt / "state.pt", weights_only=True)
    live, marker = tmp_path / "live", tmp_path / "marker"
    torch.save({**state, "evil": Payload(live)}, tmp_path / "probe.pt")
    torch.load(tmp_path / "probe.pt", weights_only=False)  # the payload is real: plain unpickling runs it
    assert live.exists()
    torch.save({**state, "evil": Payload(marker)}, ckpt / "state.pt")
    reseal(ckpt)  # hashes match: only the loading rules stand between the payload and execution
    with pytest.raises(CheckpointError, match="refused"):
        load_state(ckpt)

    recorder = Recorder()
    trainer = make_trainer(run, base_config(max_steps=4, eval_every=None, resume=True), loss_fn=recorder)
    with pytest.warns(RuntimeWarning, match="state.pt: refused"):
        trainer.fit()
    assert not marker.exists()
    assert len(recorder.seen) == 2 * 2  # resumed from step 2, the previous complete checkpoint
    assert (run / "checkpoints" / "step_00000003.rejected").is_dir()


@pytest.mark.parametrize("damage", ["truncate", "bitflip"])
def test_damaged_weights_fall_back_to_previous_checkpoint(tmp_path, damage):
    train(tmp_path, max_steps=3)
    weights = tmp_path / "checkpoints" / "step_00000003" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data[-5] ^= 0x10
    weights.write_bytes(bytes(data))
    with pytest.warns(RuntimeWarning, match=r"step_00000003/model.safetensors: (size|sha256)"):
        assert latest_checkpoint(tmp_path).name == "step_00000002"
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_checkpoint(weights.parent, TinyLM())

    recorder = Recorder()
    trainer = make_trainer(tmp_path, base_config(max_steps=3, eval_every=None, resume=True), loss_fn=recorder)
    with pytest.warns(RuntimeWarning, match="model.safetensors"):
        summary = trainer.fit()
    assert len(recorder.seen) == 2 and summary["steps"] == 3  # redid step 3 from step 2
    verify_checkpoint(tmp_path / "checkpoints" / "step_00000003")


def test_resume_refuses_other_fingerprint_and_fresh_run_refuses_used_dir(tmp_path):
    train(tmp_path, max_steps=2)
    other = {**FINGERPRINT, "tokenizer_sha256": "f" * 8}
    trainer = make_trainer(tmp_path, base_config(max_steps=4, resume=True), fingerprint=other)
    with pytest.raises(TrainingError) as err:
        trainer.fit()
    msg = str(err.value)
    assert "tokenizer_sha256" in msg and "ffffffff" in msg and "\n" not in msg
    with pytest.raises(TrainingError, match="already holds checkpoints"):
        make_trainer(tmp_path, base_config(max_steps=4)).fit()


def test_resume_from_empty_dir_starts_fresh(tmp_path):
    with pytest.warns(UserWarning, match="starting from scratch"):
        _, summary = train(tmp_path, max_steps=2, resume=True)
    assert summary["steps"] == 2


def test_fingerprint_of_a_model_field_added_later_at_its_default_matches():
    from transformers_zoo.config import ModelConfig
    from transformers_zoo.training.checkpoint import check_fingerprint

    current = {"model": ModelConfig(vocab_size=50).to_dict(), "tokenizer": "abc"}
    old = {"model": dict(current["model"]), "tokenizer": "abc"}
    del old["model"]["attention_scale"]  # written before the field existed
    check_fingerprint(old, current, "ckpt")
    changed = {"model": ModelConfig(vocab_size=50, attention_scale=1.0).to_dict(), "tokenizer": "abc"}
    with pytest.raises(TrainingError, match="'model.attention_scale' is '<missing>' in the checkpoint but 1.0"):
        check_fingerprint(old, changed, "ckpt")
    del old["model"]["vocab_size"]  # missing and not at its default: a real difference
    with pytest.raises(TrainingError, match="model.vocab_size"):
        check_fingerprint(old, current, "ckpt")


def test_average_checkpoints(tmp_path):
    """The mean of the newest `last` checkpoints' weights, oldest first in the answer; tied weights stay tied."""
    from transformers_zoo import EncoderDecoder, ModelConfig
    from transformers_zoo.training.checkpoint import average_checkpoints, save_checkpoint

    cfg = ModelConfig(vocab_size=20, d_model=8, n_heads=2, n_layers=1, d_ff=16)
    weights = []
    for step in (1, 2, 3):
        torch.manual_seed(step)
        model = EncoderDecoder(cfg)
        save_checkpoint(tmp_path, step, model, {"step": step})
        weights.append({k: v.clone() for k, v in model.state_dict().items()})
    target = EncoderDecoder(cfg)
    used = average_checkpoints(tmp_path, 2, target)
    assert [d.name for d in used] == ["step_00000002", "step_00000003"]
    for name, value in target.state_dict().items():
        torch.testing.assert_close(value, (weights[1][name] + weights[2][name]) / 2)
    assert target.lm_head.weight is target.tgt_embed.weight  # still tied
    with pytest.raises(ValueError, match="at least 1"):
        average_checkpoints(tmp_path, 0, target)
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
        average_checkpoints(tmp_path / "empty", 2, target)
