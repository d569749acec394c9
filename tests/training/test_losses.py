"""cross_entropy_sum against torch's mean cross-entropy."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from transformers_zoo.training import cross_entropy_sum


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_sum_equals_mean_times_count(smoothing):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 7, 11, generator=g)
    labels = torch.randint(0, 11, (3, 7), generator=g)
    labels[0, 4:] = -100
    labels[2, 1] = -100
    loss_sum, n = cross_entropy_sum(logits, labels, label_smoothing=smoothing)
    mean = F.cross_entropy(logits.reshape(-1, 11), labels.reshape(-1), label_smoothing=smoothing)
    assert int(n) == int((labels != -100).sum()) == 21 - 3 - 1
    torch.testing.assert_close(loss_sum, mean * n, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(loss_sum / n, mean, rtol=1e-6, atol=1e-6)


def test_bf16_logits_are_scored_in_float32_and_empty_batches_are_zero():
    logits = torch.randn(2, 5, 7).bfloat16()
    labels = torch.full((2, 5), -100)
    loss_sum, n = cross_entropy_sum(logits, labels)
    assert loss_sum.dtype == torch.float32 and float(loss_sum) == 0.0 and int(n) == 0
    with pytest.raises(ValueError, match="disagree"):
        cross_entropy_sum(torch.randn(2, 5, 7), torch.zeros(2, 4, dtype=torch.long))
