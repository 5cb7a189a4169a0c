"""LR schedulers of schedules: Distiller's classes, the closed forms of the absolute epoch, the registry."""

from __future__ import annotations

import math

import pytest
import torch
from torch.optim import lr_scheduler as torch_lr

from edgeprune.errors import ConfigError
from edgeprune.schedule.config import ScheduleError, parse_schedule
from edgeprune.schedule.lr import LR_SCHEDULERS, MultiStepMultiGammaLR, PolynomialLR, lr_at_epoch, step_to_epoch
from edgeprune.schedule.scheduler import CompressionScheduler


def optimizer(lr: float = 0.1) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.zeros(2, requires_grad=True)], lr=lr)


# ---------------------------------------------------------------------------------- MultiStepMultiGammaLR (§8.8)
@pytest.mark.parametrize(("epoch", "lr"), [(0, 0.1), (15, 0.1), (30, 0.01), (33, 0.01), (60, 0.001), (79, 0.001),
                                           (80, 0.0002), (100, 0.0002)])
def test_multi_step_multi_gamma_values(epoch: int, lr: float) -> None:
    opt = optimizer()
    scheduler = MultiStepMultiGammaLR(opt, milestones=[30, 60, 80], gammas=[0.1, 0.1, 0.2])
    assert lr_at_epoch(scheduler, epoch) == [pytest.approx(lr)]
    step_to_epoch(scheduler, epoch)
    assert opt.param_groups[0]["lr"] == pytest.approx(lr)


def test_multi_step_multi_gamma_plain_stepping_is_the_closed_form() -> None:
    opt = optimizer()
    scheduler = MultiStepMultiGammaLR(opt, milestones=[2, 4], gammas=[0.5, 0.1])
    seen = [opt.param_groups[0]["lr"]]
    for _ in range(5):
        opt.step()
        scheduler.step()
        seen.append(opt.param_groups[0]["lr"])
    assert seen == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.005, 0.005])


@pytest.mark.parametrize(("milestones", "gammas", "phrase"), [
    ([30, 60, 50], [0.1, 0.1, 0.2], "increasing"),
    ([30, 60], [0.1, 0.1, 0.2], "one gamma per milestone"),
    ([30, 60, 80], [0.1, 0.1], "one gamma per milestone"),
])
def test_multi_step_multi_gamma_errors(milestones: list[int], gammas: list[float], phrase: str) -> None:
    with pytest.raises(ConfigError, match=phrase):
        MultiStepMultiGammaLR(optimizer(), milestones, gammas)
    text = f"""\
lr_schedulers:
  lr:
    class: MultiStepMultiGammaLR
    milestones: {milestones}
    gammas: {gammas}
policies:
  - lr_scheduler:
      instance_name: lr
    epochs: [0]
"""
    model = torch.nn.Linear(2, 2)
    with pytest.raises(ScheduleError, match=rf"schedule.yaml:2:3: lr_schedulers.lr: .*{phrase}"):
        CompressionScheduler(model, parse_schedule(text, "schedule.yaml"))


# ------------------------------------------------------------------------------------------------ PolynomialLR
def test_polynomial_lr_is_distillers() -> None:
    assert LR_SCHEDULERS.get("PolynomialLR") is PolynomialLR  # shadows torch's PolynomialLR(total_iters, power)
    opt = optimizer()
    scheduler = PolynomialLR(opt, T_max=10, power=2)
    for epoch in (0, 1, 5, 9, 10):
        assert lr_at_epoch(scheduler, epoch) == [pytest.approx(0.1 * (1 - epoch / 10) ** 2)]
    assert lr_at_epoch(scheduler, 12) == [0.0]  # past T_max the LR stays at 0 instead of turning negative
    step_to_epoch(scheduler, 5)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.025)
    with pytest.raises(ConfigError, match="T_max"):
        PolynomialLR(optimizer(), T_max=0, power=1)


# --------------------------------------------------------------------------------------------- torch classes
def test_registry_has_every_torch_scheduler() -> None:
    expected = {name for name, obj in vars(torch_lr).items()
                if isinstance(obj, type) and not name.startswith("_") and obj is not torch_lr.LRScheduler
                and issubclass(obj, (torch_lr.LRScheduler, torch_lr.ReduceLROnPlateau))}
    assert expected <= set(LR_SCHEDULERS.names())
    assert "MultiStepMultiGammaLR" in LR_SCHEDULERS


@pytest.mark.parametrize(("cls", "kwargs"), [
    (torch_lr.StepLR, {"step_size": 3, "gamma": 0.5}),
    (torch_lr.MultiStepLR, {"milestones": [2, 5, 5], "gamma": 0.3}),
    (torch_lr.ExponentialLR, {"gamma": 0.95}),
    (torch_lr.CosineAnnealingLR, {"T_max": 7, "eta_min": 0.001}),
    (torch_lr.ConstantLR, {"factor": 0.5, "total_iters": 3}),
    (torch_lr.LinearLR, {"start_factor": 0.2, "end_factor": 1.0, "total_iters": 4}),
])
def test_closed_forms_match_torch_stepping(cls: type, kwargs: dict) -> None:
    """Stepping once per epoch from 0 reaches the same LR as the closed form of that epoch."""
    opt = optimizer()
    stepped = cls(opt, **kwargs)
    reference = cls(optimizer(), **kwargs)
    for epoch in range(1, 10):
        opt.step()
        stepped.step()
        assert lr_at_epoch(reference, epoch) == [pytest.approx(opt.param_groups[0]["lr"])], epoch


def test_closed_form_jumps_to_the_absolute_epoch() -> None:
    opt = optimizer()
    scheduler = torch_lr.ExponentialLR(opt, gamma=0.95)
    step_to_epoch(scheduler, 11)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * 0.95**11)
    assert scheduler.last_epoch == 11


def test_classes_without_closed_form_advance_one_step() -> None:
    opt = optimizer()
    scheduler = torch_lr.CyclicLR(opt, base_lr=0.01, max_lr=0.1, step_size_up=4)
    assert lr_at_epoch(scheduler, 3) is None
    before = opt.param_groups[0]["lr"]
    opt.step()
    step_to_epoch(scheduler, 3)
    assert opt.param_groups[0]["lr"] == pytest.approx(before + (0.1 - 0.01) / 4)


def test_warm_restarts_take_the_epoch_natively() -> None:
    opt = optimizer()
    scheduler = torch_lr.CosineAnnealingWarmRestarts(opt, T_0=4)
    step_to_epoch(scheduler, 6)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05 * (1 + math.cos(math.pi * 2 / 4)))


def test_reduce_on_plateau_uses_the_metric() -> None:
    opt = optimizer()
    scheduler = torch_lr.ReduceLROnPlateau(opt, mode="min", patience=0, factor=0.1)
    step_to_epoch(scheduler, 1, metric=1.0)
    step_to_epoch(scheduler, 2, metric=2.0)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01)
