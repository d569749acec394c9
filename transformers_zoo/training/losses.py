"""Loss helpers that return (sum, count), so the trainer can normalise over a whole optimizer step.

Averaging inside each micro-batch and then averaging the averages weights short batches too much; the
trainer instead divides the summed loss of every micro-batch on every rank by the step's total count.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cross_entropy_sum(
    logits: torch.Tensor,
    labels: torch.Tensor,
    label_smoothing: float = 0.0,
    ignore_index: int = -100,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed (optionally label-smoothed) cross-entropy and the number of scored tokens.

    logits: (..., V); labels: (...) with `ignore_index` at positions that are not scored (padding).
    Returns `(loss_sum, n_tokens)` with `loss_sum / n_tokens == F.cross_entropy(..., reduction="mean")`.
    The loss is computed in float32 whatever the logits' dtype, so bf16 autocast does not lose precision
    in the log-softmax. `n_tokens` is a tensor on the logits' device (no host sync).
    """
    if logits.shape[:-1] != labels.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} disagree: "
                         "expected logits (..., V) and labels (...)")
    flat_logits = logits.reshape(-1, logits.size(-1)).float()
    flat_labels = labels.reshape(-1)
    loss_sum = F.cross_entropy(
        flat_logits, flat_labels, reduction="sum", label_smoothing=label_smoothing, ignore_index=ignore_index
    )
    n_tokens = (flat_labels != ignore_index).sum()
    return loss_sum, n_tokens
