"""Learning-rate schedulers a schedule may name, and Distiller's "LR of the absolute epoch" rule.

Distiller (torch 1.3.1) stepped its LR policies with ``scheduler.step(epoch=current_epoch + 1)``, which
set the LR to the *closed form* of that absolute epoch: an ``ExponentialLR`` policy starting at epoch 10
jumps straight to ``base * gamma**11`` after epoch 10. Modern torch deprecates ``step(epoch)``, so the
closed forms are computed here explicitly (:func:`lr_at_epoch`) and written into the optimizer.

The registry holds every ``torch.optim.lr_scheduler`` class by name plus Distiller's two own classes.
Distiller's config imported ``distiller.learning_rate`` after ``torch.optim.lr_scheduler``, so its
``PolynomialLR(T_max, power)`` shadows torch's ``PolynomialLR(total_iters, power)``; so does ours.
"""

from __future__ import annotations

import bisect
import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.optim import lr_scheduler as torch_lr

from edgeprune.errors import ConfigError
from edgeprune.registry import Registry

LR_SCHEDULERS: Registry[type] = Registry("LR scheduler")


@LR_SCHEDULERS.register()
class PolynomialLR(torch_lr.LRScheduler):
    """Distiller's ``lr = base * (1 - epoch / T_max) ** power``.

    Past ``T_max`` Distiller's formula goes negative (or complex for a fractional power); the LR is
    held at 0 there instead.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, T_max: int, power: float, last_epoch: int = -1) -> None:
        if isinstance(T_max, bool) or not isinstance(T_max, int) or T_max <= 0:
            raise ConfigError(f"PolynomialLR: T_max must be a positive integer, got {T_max!r}.")
        if isinstance(power, bool) or not isinstance(power, (int, float)):
            raise ConfigError(f"PolynomialLR: power must be a number, got {power!r}.")
        self.T_max, self.power = T_max, power
        super().__init__(optimizer, last_epoch)

    def lr_at(self, epoch: int) -> list[float]:
        return [base * max(0.0, 1 - epoch / self.T_max) ** self.power for base in self.base_lrs]

    def get_lr(self) -> list[float]:
        return self.lr_at(self.last_epoch)


@LR_SCHEDULERS.register()
class MultiStepMultiGammaLR(torch_lr.LRScheduler):
    """Like ``MultiStepLR`` but with one gamma per milestone, applied cumulatively (Distiller's class).

    ``milestones [30, 60, 80]``, ``gammas [.1, .1, .2]``, base .1: LR .1 before 30, .01 from 30,
    .001 from 60, .0002 from 80.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, milestones: Sequence[int], gammas: Sequence[float],
                 last_epoch: int = -1) -> None:
        if not isinstance(milestones, (list, tuple)) or not isinstance(gammas, (list, tuple)):
            raise ConfigError("MultiStepMultiGammaLR: milestones and gammas must be lists.")
        if not all(isinstance(m, int) and not isinstance(m, bool) for m in milestones):
            raise ConfigError(f"MultiStepMultiGammaLR: milestones must be integers, got {list(milestones)}.")
        if list(milestones) != sorted(milestones):
            raise ConfigError(f"MultiStepMultiGammaLR: milestones must be increasing, got {list(milestones)}.")
        if len(milestones) != len(gammas):
            raise ConfigError(f"MultiStepMultiGammaLR: {len(milestones)} milestones but {len(gammas)} gammas; "
                              "give one gamma per milestone.")
        if not all(isinstance(g, (int, float)) and not isinstance(g, bool) for g in gammas):
            raise ConfigError(f"MultiStepMultiGammaLR: gammas must be numbers, got {list(gammas)}.")
        self.milestones = list(milestones)
        self.multiplicative_gammas = [1.0]
        for gamma in gammas:
            self.multiplicative_gammas.append(self.multiplicative_gammas[-1] * gamma)
        super().__init__(optimizer, last_epoch)

    def lr_at(self, epoch: int) -> list[float]:
        factor = self.multiplicative_gammas[bisect.bisect_right(self.milestones, epoch)]
        return [base * factor for base in self.base_lrs]

    def get_lr(self) -> list[float]:
        return self.lr_at(self.last_epoch)


def _register_torch_schedulers() -> None:
    """Every public scheduler class of ``torch.optim.lr_scheduler`` that a name does not already shadow."""
    for name, obj in vars(torch_lr).items():
        if (inspect.isclass(obj) and not name.startswith("_") and name not in LR_SCHEDULERS
                and issubclass(obj, (torch_lr.LRScheduler, torch_lr.ReduceLROnPlateau))
                and obj is not torch_lr.LRScheduler):
            LR_SCHEDULERS.register(name)(obj)


_register_torch_schedulers()

# torch 1.3.1's get_lr() of the classes Distiller used was the closed form; these are those forms.
_TORCH_CLOSED_FORMS: dict[type, Callable[[Any, int, float], float]] = {
    torch_lr.StepLR: lambda s, e, base: base * s.gamma ** (e // s.step_size),
    torch_lr.MultiStepLR: lambda s, e, base: base * s.gamma ** bisect.bisect_right(sorted(s.milestones.elements()),
                                                                                   e),
    torch_lr.ExponentialLR: lambda s, e, base: base * s.gamma ** e,
    torch_lr.CosineAnnealingLR: lambda s, e, base: s.eta_min + (base - s.eta_min) * (1 + math.cos(math.pi * e /
                                                                                                  s.T_max)) / 2,
    torch_lr.ConstantLR: lambda s, e, base: base * (s.factor + (e >= s.total_iters) * (1 - s.factor)),
    torch_lr.LinearLR: lambda s, e, base: base * (s.start_factor + (s.end_factor - s.start_factor)
                                                  * min(s.total_iters, e) / s.total_iters),
}


def lr_at_epoch(scheduler: Any, epoch: int) -> list[float] | None:
    """The closed-form LR of every param group at absolute ``epoch``, or None if the class has none."""
    if isinstance(scheduler, (PolynomialLR, MultiStepMultiGammaLR)):
        return scheduler.lr_at(epoch)
    form = _TORCH_CLOSED_FORMS.get(type(scheduler))
    if form is None:
        return None
    return [form(scheduler, epoch, base) for base in scheduler.base_lrs]


def step_to_epoch(scheduler: Any, epoch: int, metric: float | None = None) -> None:
    """Distiller's ``scheduler.step(epoch=epoch)`` (``step(metric, epoch)`` for ReduceLROnPlateau).

    Classes with a closed form get the LR of the absolute ``epoch``; ``CosineAnnealingWarmRestarts``
    takes the epoch natively; the rest (cyclic, one-cycle, ...) have no closed form and advance one
    step per call, i.e. per scheduled epoch.
    """
    if isinstance(scheduler, torch_lr.ReduceLROnPlateau):
        scheduler.step(metric)
        return
    if isinstance(scheduler, torch_lr.CosineAnnealingWarmRestarts):
        scheduler.step(epoch)
        return
    lrs = lr_at_epoch(scheduler, epoch)
    if lrs is None:
        scheduler.step()
        return
    scheduler.last_epoch = epoch
    for group, lr in zip(scheduler.optimizer.param_groups, lrs, strict=True):
        group["lr"] = lr
