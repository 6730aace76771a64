"""Warmup + cosine schedule: per-iteration values, end point, resume state."""

from __future__ import annotations

import math

import pytest
import torch

from swinlab.training.schedule import WarmupCosineSchedule


def _opt(n_groups: int = 1, scales: tuple[float, ...] = (1.0,)) -> torch.optim.Optimizer:
    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr_scale": s} for s in scales[:n_groups]]
    return torch.optim.AdamW(groups, lr=0.123)


def test_warmup_is_linear_per_iteration_then_cosine_to_min_lr() -> None:
    opt = _opt()
    base, init, min_lr, warm, total = 1e-3, 1e-6, 1e-5, 10, 50
    s = WarmupCosineSchedule(opt, base, total, warm, init, min_lr)
    seen = [opt.param_groups[0]["lr"]]
    for _ in range(total):
        s.step()
        seen.append(opt.param_groups[0]["lr"])
    # warmup: a straight line from init to base over `warm` iterations
    for k in range(warm + 1):
        assert seen[k] == pytest.approx(init + (base - init) * k / warm, rel=1e-12)
    # cosine: half-way between warmup end and total is the mean of base and min_lr
    mid = warm + (total - warm) // 2
    assert seen[mid] == pytest.approx((base + min_lr) / 2, rel=1e-9)
    # ends exactly at min_lr, strictly decreasing after warmup
    assert seen[total] == pytest.approx(min_lr, rel=1e-12)
    assert all(a > b for a, b in zip(seen[warm:total], seen[warm + 1 : total + 1]))
    # an arbitrary point matches the cosine formula
    t = (37 - warm) / (total - warm)
    assert seen[37] == pytest.approx(min_lr + 0.5 * (base - min_lr) * (1 + math.cos(math.pi * t)), rel=1e-12)


def test_constant_kind_and_lr_scale_groups() -> None:
    opt = _opt(2, (1.0, 0.25))
    s = WarmupCosineSchedule(opt, 2e-3, 20, 4, 0.0, 0.0, kind="constant")
    for _ in range(20):
        s.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(2e-3)
    assert opt.param_groups[1]["lr"] == pytest.approx(0.25 * 2e-3)


def test_state_dict_resume_gives_identical_lrs() -> None:
    a = WarmupCosineSchedule(_opt(), 1e-3, 30, 5, 1e-6, 1e-5)
    for _ in range(12):
        a.step()
    b = WarmupCosineSchedule(_opt(), 1e-3, 30, 5, 1e-6, 1e-5)
    b.load_state_dict(a.state_dict())
    assert b.optimizer.param_groups[0]["lr"] == a.optimizer.param_groups[0]["lr"]
    assert [a.step() for _ in range(18)] == [b.step() for _ in range(18)]


def test_progress_moves_the_cosine_ahead_but_not_the_warmup() -> None:
    s = WarmupCosineSchedule(_opt(), 1e-3, 100, 10, 0.0, 0.0)
    lr = s.step(progress=0.9)  # still in warmup: progress ignored
    assert lr == pytest.approx(1e-4)
    for _ in range(9):
        s.step()
    assert s.step(progress=1.0) == pytest.approx(0.0, abs=1e-15)  # time is up: min_lr


@pytest.mark.parametrize("kwargs", [dict(total_steps=0), dict(warmup_steps=11), dict(base_lr=0.0), dict(kind="step")])
def test_bad_arguments_raise(kwargs: dict) -> None:
    args = dict(base_lr=1e-3, total_steps=10, warmup_steps=0)
    args.update(kwargs)
    with pytest.raises(ValueError):
        WarmupCosineSchedule(_opt(), **args)
