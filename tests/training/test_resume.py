"""Resume in new processes gives bitwise the same run: weights, optimizer state, data order and RNG."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from training_toy import Recorder, assert_same_checkpoint, base_config, make_trainer, subprocess_env

from transformers_zoo.training import latest_checkpoint
from transformers_zoo.training.checkpoint import load_state

SCRIPT = Path(__file__).with_name("toy_train.py")


def train_in_new_process(run_dir: Path, max_steps: int, record: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), str(run_dir), "--max-steps", str(max_steps), "--resume",
         "--record", str(record)],
        env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def finish(proc: subprocess.Popen) -> None:
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-4000:]


@pytest.mark.slow
def test_resume_in_new_processes_is_bitwise_identical(tmp_path):
    """14 steps of 2 micro-batches over 11-batch epochs, straight vs split 5 | 6 | 3 across processes:
    step 5 ends mid-epoch, step 6 straddles the epoch boundary, step 11 ends exactly on one."""
    run, record = tmp_path / "run", tmp_path / "seen.txt"
    first = Recorder()
    make_trainer(run, base_config(max_steps=5), loss_fn=first).fit()
    record.write_text("".join(f"{e} {b}\n" for e, b in first.seen))
    assert load_state(latest_checkpoint(run))["data"] == {"epoch": 0, "index": 10}

    second = train_in_new_process(run, 11, record)
    reference = Recorder()  # the uninterrupted run, trained while the new process starts up
    make_trainer(tmp_path / "ref", base_config(max_steps=14), loss_fn=reference).fit()
    finish(second)
    assert load_state(latest_checkpoint(run))["data"] == {"epoch": 2, "index": 0}
    finish(train_in_new_process(run, 14, record))

    seen = [tuple(map(int, line.split())) for line in record.read_text().splitlines()]
    assert seen == reference.seen and len(seen) == 28
    assert_same_checkpoint(tmp_path / "ref" / "checkpoints" / "step_00000014", run / "checkpoints" / "step_00000014")
