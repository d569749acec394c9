"""Data parallelism: batch sharding, and DDP under torchrun (2 CPU processes, gloo) against one process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from training_toy import Recorder, TinyLM, ToyStream, base_config, subprocess_env

from transformers_zoo.training import Trainer
from transformers_zoo.training.checkpoint import load_state
from transformers_zoo.training.distributed import is_main, rank, shard_batch, world_size

SCRIPT = Path(__file__).with_name("ddp_train.py")


def test_shard_batch_is_contiguous_disjoint_and_complete():
    batch = {"x": torch.arange(10).reshape(5, 2), "y": torch.arange(5), "meta": "keep", "n": torch.tensor(3)}
    shards = [shard_batch(batch, r, 2) for r in range(2)]
    assert [s["y"].tolist() for s in shards] == [[0, 1, 2], [3, 4]]
    assert torch.equal(torch.cat([s["x"] for s in shards]), batch["x"])
    assert all(s["meta"] == "keep" and int(s["n"]) == 3 for s in shards)
    assert shard_batch(batch, 0, 1) is batch
    assert (rank(), world_size(), is_main()) == (0, 1, True)  # no process group: a single process


def single_process(run_dir: Path, max_steps: int, resume: bool = False) -> Trainer:
    torch.manual_seed(0)
    cfg = base_config(max_steps=max_steps, grad_clip=0.0, eval_every=None, resume=resume)
    trainer = Trainer(TinyLM(dropout=0.0), ToyStream(), Recorder(), cfg, run_dir, fingerprint={})
    trainer.fit()
    return trainer


@pytest.mark.slow
def test_torchrun_two_processes_match_one_process_and_resume_on_one(tmp_path):
    ddp_dir, out = tmp_path / "ddp", tmp_path / "grads.pt"
    proc = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(SCRIPT), str(ddp_dir), str(out), "--max-steps", "1"],
        env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    single = single_process(tmp_path / "one", max_steps=1)  # meanwhile, the same step in one process
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-4000:]

    ranks = [torch.load(f"{out}.rank{r}", weights_only=True) for r in range(2)]
    # Each rank trained on its contiguous half of every global batch (2 micro-batches of 4 rows).
    stream = ToyStream()
    for micro in range(2):
        global_batch = next(stream)["input"]
        assert torch.equal(torch.cat([ranks[0]["inputs"][micro], ranks[1]["inputs"][micro]]), global_batch)
    # Gradients of the global mean: equal on both ranks and to the single process on the whole batch.
    for name, p in single.model.named_parameters():
        for r in range(2):
            torch.testing.assert_close(ranks[r]["grads"][name], p.grad, rtol=0, atol=1e-6, msg=name)
    assert load_state(ddp_dir / "checkpoints" / "step_00000001")["world_size"] == 2

    # The DDP checkpoint resumes in a single process (data position counts global batches).
    resumed = single_process(ddp_dir, max_steps=3, resume=True)
    straight = single_process(tmp_path / "one", max_steps=3, resume=True)
    for (name, a), b in zip(resumed.model.named_parameters(), straight.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5, msg=name)
    assert resumed.stream.state_dict() == straight.stream.state_dict() == {"epoch": 0, "index": 6}

