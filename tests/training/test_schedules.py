"""Learning-rate schedules (values at chosen steps) and TrainConfig validation."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from transformers_zoo.training import TrainConfig, build_scheduler, lr_factor


def lrs(schedule: str, n: int, **kw) -> list[float]:
    """The lr used by optimizer steps 1..n (peak lr 1.0), read from a real optimizer + LambdaLR."""
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = build_scheduler(opt, schedule, **kw)
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_inverse_sqrt_matches_vaswani():
    got = lrs("inverse_sqrt", 16, warmup_steps=4)
    assert got[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert got[4] == pytest.approx(math.sqrt(4 / 5))
    assert got[15] == pytest.approx(0.5)  # sqrt(4/16)
    for s in (1, 3, 4, 9, 100):  # lr * min(s/w, sqrt(w/s))
        assert lr_factor("inverse_sqrt", 4)(s - 1) == pytest.approx(min(s / 4, math.sqrt(4 / s)))


def test_a_restarted_cosine_runs_each_phase_as_its_own_schedule():
    got = lrs("cosine", 16, warmup_steps=2, max_steps=16, min_lr_ratio=0.1, restart_at=6)
    first, second = lrs("cosine", 6, warmup_steps=2, max_steps=6, min_lr_ratio=0.1), \
        lrs("cosine", 10, warmup_steps=2, max_steps=10, min_lr_ratio=0.1)
    assert got == pytest.approx(first + second)
    assert got[5] == pytest.approx(0.1) and got[6] == pytest.approx(0.5)  # the floor, then warmup again
    with pytest.raises(ValueError, match="restart_at must be below max_steps"):
        lr_factor("cosine", 2, 6, 0.1, restart_at=6)
    with pytest.raises(ValueError, match="both phases longer than warmup_steps"):
        TrainConfig(max_steps=10, schedule="cosine", warmup_steps=3, restart_at=8)
    with pytest.raises(ValueError, match="restart_at must be below max_steps"):
        TrainConfig(max_steps=10, schedule="cosine", warmup_steps=3, restart_at=10)


def test_cosine_warms_up_then_decays_to_floor():
    got = lrs("cosine", 14, warmup_steps=2, max_steps=10, min_lr_ratio=0.1)
    assert got[0] == pytest.approx(0.5)
    assert got[1] == pytest.approx(1.0)
    assert got[5] == pytest.approx(0.1 + 0.9 * 0.5)  # step 6: half-way through the decay
    assert got[9] == pytest.approx(0.1)  # max_steps
    assert got[13] == pytest.approx(0.1)  # flat after
    assert all(a >= b for a, b in zip(got[1:], got[2:], strict=False))


def test_constant_with_and_without_warmup():
    assert lrs("constant", 4, warmup_steps=2) == pytest.approx([0.5, 1.0, 1.0, 1.0])
    assert lrs("constant", 3, warmup_steps=0) == pytest.approx([1.0, 1.0, 1.0])


def test_train_config_validation_and_json_round_trip():
    with pytest.raises(ValueError, match="budget"):
        TrainConfig()
    with pytest.raises(ValueError, match="cosine"):
        TrainConfig(max_minutes=1, schedule="cosine")
    with pytest.raises(ValueError, match="best_mode"):
        TrainConfig(max_steps=1, best_mode="lowest")
    cfg = TrainConfig(max_steps=10, betas=(0.9, 0.95))
    again = TrainConfig.from_dict(json.loads(json.dumps(dataclasses.asdict(cfg))))
    assert again == cfg
