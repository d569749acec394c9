"""Training engine: the Trainer loop, optimisation, checkpoints, distributed helpers and reports.

A recipe's training section:

    from transformers_zoo.training import Interrupted, TrainConfig, Trainer, distributed
    distributed.init_distributed(args.device)        # no-op unless launched by torchrun; before Trainer
    trainer = Trainer(model, train_stream, loss_fn, cfg, run_dir, evaluate, fingerprint)
    try:
        summary = trainer.fit()
    except Interrupted as e:                          # SIGINT/SIGTERM: checkpoint saved at a step boundary
        sys.exit(e.exit_code)                         # 128 + signum: 130 (Ctrl-C), 143 (SIGTERM)
    if distributed.is_main():
        plot_curves(run_dir); write_report(run_dir, report, sections, images)
"""

from .checkpoint import best_checkpoint, latest_checkpoint, load_checkpoint, verify_checkpoint
from .config import TrainConfig
from .errors import CheckpointError, Interrupted, TrainingError
from .losses import cross_entropy_sum
from .optim import build_optimizer, param_groups, split_decay
from .reporting import plot_curves, write_report
from .schedules import build_scheduler, lr_factor
from .trainer import Trainer

__all__ = [
    "CheckpointError",
    "Interrupted",
    "TrainConfig",
    "Trainer",
    "TrainingError",
    "best_checkpoint",
    "build_optimizer",
    "build_scheduler",
    "cross_entropy_sum",
    "latest_checkpoint",
    "load_checkpoint",
    "lr_factor",
    "param_groups",
    "plot_curves",
    "split_decay",
    "verify_checkpoint",
    "write_report",
]
