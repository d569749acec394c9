"""Crash safety: SIGKILL at random points of training and of checkpoint writing never leaves a run that
cannot resume, the run still ends bitwise where an uninterrupted one does, and SIGTERM exits with 143
after a checkpoint at a step boundary."""

from __future__ import annotations

import json
import os
import queue
import random
import re
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest
from training_toy import TinyLM, assert_same_checkpoint, base_config, make_trainer, subprocess_env

from transformers_zoo.training import latest_checkpoint, load_checkpoint
from transformers_zoo.training.checkpoint import load_state
from transformers_zoo.training.metrics_log import read_metrics

ZYGOTE = Path(__file__).with_name("toy_zygote.py")
MAX_STEPS = 48
ACCUM = base_config().accum_steps
N_BATCHES = 11  # ToyStream's default epoch length


class ForkServer:
    """Client of toy_zygote.py: starts training runs as forked children and reports how they ended."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, str(ZYGOTE)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=subprocess_env())
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))

    def start(self, argv: list[str], log: Path) -> int:
        self.proc.stdin.write(json.dumps({"argv": argv, "log": str(log)}) + "\n")
        self.proc.stdin.flush()
        return self.lines.get(timeout=120)["pid"]

    def status(self, timeout: float | None = 120) -> int:
        return self.lines.get(timeout=timeout)["status"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def wait_for(path: Path, server: ForkServer, timeout: float = 60.0) -> bool:
    """Wait until the child signals readiness; False if it ended first (its status is then queued)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return True
        if not server.lines.empty():
            return False
        time.sleep(0.005)
    raise TimeoutError(f"{path} did not appear")


def check_resumable(run_dir: Path, previous_step: int) -> int:
    """The newest complete checkpoint exists (once one was written), never goes backwards, and loads."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skipped incomplete checkpoints are expected here
        ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        assert previous_step == 0, "a complete checkpoint disappeared"
        return 0
    info = load_checkpoint(ckpt, TinyLM())
    state = load_state(ckpt)
    assert info["step"] == state["step"] >= previous_step
    return state["step"]


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "fork"), reason="the fork server needs os.fork (POSIX)")
def test_sigkill_anywhere_then_resume_matches_uninterrupted_run(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "fsync", lambda fd: None)  # as in the fork server: see toy_zygote.py
    server = ForkServer()  # starts up (imports torch) while this process trains the reference
    reference = tmp_path / "ref"
    make_trainer(reference, base_config(max_steps=MAX_STEPS)).fit()
    elapsed = {r["step"]: r["elapsed_s"] for r in read_metrics(reference) if r["split"] == "train"}
    step_s = (elapsed[MAX_STEPS] - elapsed[8]) / (MAX_STEPS - 8)  # timed kills land within a few steps

    rng = random.Random(1234)
    # Kills inside checkpoint writing (N-th file operation: before it, half-written, or just after)
    # alternate with kills at random times; one SIGTERM in the middle.
    plans = []
    for i in range(12):
        if i == 6:
            plans.append(("sigterm", rng.uniform(0.0, 3 * step_s)))
        elif i % 2 == 0:
            plans.append(("event", rng.randint(1, 8), rng.choice(["before", "torn", "after"])))
        else:
            plans.append(("timer", rng.uniform(0.0, 3 * step_s)))
    run, log, ready = tmp_path / "run", tmp_path / "log.txt", tmp_path / "ready"
    base = [str(run), "--max-steps", str(MAX_STEPS), "--resume", "--ready", str(ready), "--sleep", "0.002"]
    kills, step = 0, 0
    try:
        for plan in plans:
            ready.unlink(missing_ok=True)
            argv = base + (["--kill-event", str(plan[1]), "--kill-mode", plan[2]] if plan[0] == "event" else [])
            pid = server.start(argv, log)
            if plan[0] != "event" and wait_for(ready, server):
                time.sleep(plan[1])
                os.kill(pid, signal.SIGTERM if plan[0] == "sigterm" else signal.SIGKILL)
            status = server.status()
            assert status in (0, -signal.SIGKILL, 128 + signal.SIGTERM), log.read_text()[-3000:]
            if status == 0:
                break  # finished before the fault struck
            kills += 1
            step = check_resumable(run, step)
            if plan[0] == "sigterm":
                assert status == 143
                stopped_at = int(re.findall(r"interrupted by SIGTERM at step (\d+)", log.read_text())[-1])
                assert step == stopped_at  # saved exactly at the step boundary it reported
                batches = stopped_at * ACCUM
                assert load_state(latest_checkpoint(run))["data"] == {
                    "epoch": batches // N_BATCHES, "index": batches % N_BATCHES}
        server.start(base, log)
        assert server.status() == 0, log.read_text()[-3000:]
    finally:
        server.close()
    assert kills >= 10
    final = f"step_{MAX_STEPS:08d}"
    assert_same_checkpoint(reference / "checkpoints" / final, run / "checkpoints" / final)
