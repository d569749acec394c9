"""Subprocess entry point of the resume and fault-injection tests: trains the toy LM in RUN_DIR.

    python tests/training/toy_train.py RUN_DIR --max-steps 14 [--resume] [--record FILE] [--ready FILE]
        [--sleep SECONDS] [--kill-event N --kill-mode before|torn|after]

--kill-event N makes the N-th checkpoint file operation (an atomic file write or a checkpoint deletion)
SIGKILL the process: before it starts, after writing half of the temporary file, or right after it.
Exit status: 0 when training finished, 128 + signum after Interrupted (143 for SIGTERM).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parents[1])]

import torch  # noqa: E402
from training_toy import Recorder, base_config, make_trainer  # noqa: E402

from transformers_zoo.training import Interrupted  # noqa: E402
from transformers_zoo.training import checkpoint as ckpt_module  # noqa: E402


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def install_fault(event: int, mode: str) -> None:
    """Patch the checkpoint module's file operations so that the `event`-th one dies as `mode` says."""
    count = [0]
    real_write, real_remove = ckpt_module.atomic_write, ckpt_module.remove_checkpoint

    def hit() -> bool:
        count[0] += 1
        return count[0] == event

    def atomic_write(path, write):
        if not hit():
            return real_write(path, write)
        if mode == "before":
            _die()
        if mode == "torn":
            def torn(tmp):
                write(tmp)
                os.truncate(tmp, Path(tmp).stat().st_size // 2)
                _die()
            return real_write(path, torn)
        real_write(path, write)
        _die()

    def atomic_write_text(path, text):
        atomic_write(path, lambda tmp: Path(tmp).write_bytes(text.encode("utf-8")))

    def remove_checkpoint(d):
        if not hit():
            return real_remove(d)
        if mode == "before":
            _die()
        os.replace(d, d.with_name(".trash-" + d.name))  # renamed out of the way, not yet deleted
        _die()

    ckpt_module.atomic_write = atomic_write
    ckpt_module.atomic_write_text = atomic_write_text
    ckpt_module.remove_checkpoint = remove_checkpoint


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("run_dir")
    p.add_argument("--max-steps", type=int, default=14)
    p.add_argument("--save-every", type=int, default=1)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--record", help="append the (epoch, batch_id) of every micro-batch to this file")
    p.add_argument("--ready", help="create this file when the first micro-batch starts")
    p.add_argument("--sleep", type=float, default=0.0, help="seconds to sleep in every micro-batch")
    p.add_argument("--kill-event", type=int)
    p.add_argument("--kill-mode", choices=("before", "torn", "after"), default="before")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if args.kill_event:
        install_fault(args.kill_event, args.kill_mode)

    def hook(call: int) -> None:
        if call == 1 and args.ready:
            Path(args.ready).touch()
        if args.sleep:
            time.sleep(args.sleep)

    recorder = Recorder(hook=hook)
    cfg = base_config(max_steps=args.max_steps, save_every=args.save_every, resume=args.resume)
    trainer = make_trainer(Path(args.run_dir), cfg, loss_fn=recorder)
    code = 0
    try:
        summary = trainer.fit()
        print(json.dumps(summary))
    except Interrupted as e:
        print(e, file=sys.stderr)
        code = e.exit_code
    if args.record:
        with open(args.record, "a") as f:
            f.writelines(f"{e} {b}\n" for e, b in recorder.seen)
    return code


if __name__ == "__main__":
    sys.exit(main())
