"""torchrun entry point of the distributed test: trains the toy LM (no dropout) for --max-steps steps
with DDP over gloo; each rank saves its gradients and the inputs it trained on to OUT.rank{rank}.

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/training/ddp_train.py RUN_DIR OUT
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parents[1])]

import torch  # noqa: E402
from training_toy import Recorder, TinyLM, ToyStream, base_config, lm_loss  # noqa: E402

from transformers_zoo.training import Trainer  # noqa: E402
from transformers_zoo.training import distributed as dist  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("run_dir")
    p.add_argument("out")
    p.add_argument("--max-steps", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(1)
    assert dist.init_distributed("cpu") and dist.world_size() == 2
    torch.manual_seed(0)  # same init on every rank (DDP would broadcast rank 0's anyway)
    cfg = base_config(max_steps=args.max_steps, grad_clip=0.0, eval_every=None)
    inputs = []
    recorder = Recorder(loss_fn=lambda model, batch: (inputs.append(batch["input"].clone()), lm_loss(model, batch))[1])
    trainer = Trainer(TinyLM(dropout=0.0), ToyStream(), recorder, cfg, args.run_dir, fingerprint={})
    trainer.fit()
    grads = {n: p.grad for n, p in trainer.model.named_parameters()}
    torch.save({"grads": grads, "inputs": inputs, "seen": recorder.seen}, f"{args.out}.rank{dist.rank()}")
    dist.barrier()
    dist.destroy()


if __name__ == "__main__":
    main()
