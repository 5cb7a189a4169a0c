"""The four kinds of scheduled policy, with Distiller's callback semantics (reference §1.4–§1.8).

A policy is only called in the epochs it is scheduled for; the scheduler re-applies every mask after
every minibatch regardless, so a mask outlives its policy. Deliberate differences from Distiller, each a
fix of a silent side effect: a pruning policy's masker options (``mask_on_forward_only``, double copies,
gradient masking, ``discard_masks_at_minibatch_end``, ``keep_mask``) act on the weights its pruner owns
rather than on every parameter of the model, and a thresholding regularizer multiplies its transient mask
into the weights instead of replacing (and thereby dropping) a pruner's mask on the same weight.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx, nn

from edgeprune.errors import ConfigError
from edgeprune.models.naming import normalize_module_name
from edgeprune.pruning.activations import (
    collect_activation_stats,
    collect_feature_maps,
    needs_activation_stats,
    needs_feature_maps,
)
from edgeprune.pruning.masks import MasksDict
from edgeprune.schedule.config import KeyPath, PolicySpec, PrunerArgs, RegularizerArgs, ScheduleSource
from edgeprune.schedule.lr import step_to_epoch

log = logging.getLogger(__name__)


@dataclass
class ScheduleContext:
    """What every policy works on: the model, its masks, and what data-driven pieces need."""

    model: nn.Module
    masks: MasksDict
    input_shape: tuple[int, ...] | None = None
    batches: Iterable[Any] | None = None  # re-iterable training batches, for activation statistics


class Policy:
    """A scheduled policy; every callback is a no-op unless overridden (Distiller's ScheduledTrainingPolicy).

    ``meta`` is Distiller's per-policy ``sched_metadata`` (starting/ending epoch, frequency, and the
    ``current_epoch`` the scheduler sets before each call); ``source``/``origin`` locate the instance's
    definition so that errors raised while running point into the YAML.
    """

    def __init__(self, spec: PolicySpec, source: ScheduleSource, origin: KeyPath, ctx: ScheduleContext) -> None:
        self.ctx = ctx
        self.spec = spec
        self.kind = spec.kind
        self.instance_name = spec.target.instance_name
        self.epochs = spec.epoch_list
        self.meta: dict[str, Any] = dict(spec.metadata)
        self.source, self.origin = source, origin

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.instance_name!r})"

    def on_epoch_begin(self, optimizer: torch.optim.Optimizer | None) -> None:
        """Before the epoch's first minibatch."""

    def on_minibatch_begin(self, epoch: int, step: int, steps: int,
                           optimizer: torch.optim.Optimizer | None) -> None:
        """Before the forward pass."""

    def before_backward_pass(self, loss: torch.Tensor) -> torch.Tensor:
        return loss

    def before_parameter_optimization(self) -> None:
        """After ``backward()``, before ``optimizer.step()``."""

    def on_minibatch_end(self, epoch: int, step: int, steps: int) -> None:
        """After ``optimizer.step()`` and after the scheduler re-applied every mask."""

    def on_epoch_end(self, optimizer: torch.optim.Optimizer | None,
                     metrics: dict[str, float]) -> None:
        """After validation."""

    @property
    def is_last_epoch(self) -> bool:
        return self.meta.get("current_epoch") == self.meta["ending_epoch"] - 1

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


# ------------------------------------------------------------------------------------------------- pruning
def _is_plain(value: Any) -> bool:
    if isinstance(value, (dict, list, tuple)):
        items = value.items() if isinstance(value, dict) else enumerate(value)
        return all(isinstance(k, (str, int)) and _is_plain(v) for k, v in items)
    return value is None or isinstance(value, (bool, int, float, str, torch.Tensor))


def _is_part(value: Any) -> bool:
    """A helper object a pruner owns (e.g. the ranking pruner an AGP pruner wraps)."""
    return hasattr(value, "__dict__") and not callable(value) and not isinstance(value, (nn.Module, type))


def plain_state(obj: Any) -> dict[str, Any]:
    """An object's data attributes (tensors, numbers, strings, containers of them) and those of its parts.

    Pruners keep caches between epochs (a Leader group's map, a cached standard deviation, the last AGP
    target) without a ``state_dict``; snapshotting their plain attributes makes a resumed run rank
    exactly as the uninterrupted one. Config attributes come along unchanged, since the schedule is too.
    """
    return {"attrs": {k: v for k, v in vars(obj).items() if _is_plain(v)},
            "parts": {k: plain_state(v) for k, v in vars(obj).items() if _is_part(v)}}


def load_plain_state(obj: Any, state: dict[str, Any]) -> None:
    """Restore what :func:`plain_state` took."""
    for key, value in state.get("attrs", {}).items():
        setattr(obj, key, value)
    for key, part in state.get("parts", {}).items():
        load_plain_state(getattr(obj, key), part)


def batchnorm_after_conv(model: nn.Module) -> dict[str, nn.BatchNorm2d]:
    """Conv2d module name -> the BatchNorm2d that is the only consumer of its output (via torch.fx)."""
    try:
        graph = fx.symbolic_trace(model).graph
    except Exception as exc:  # fx raises many types for untraceable code; the model is the user's
        raise ConfigError(f"fold_batchnorm needs to find each conv's BatchNorm, but torch.fx cannot trace "
                          f"{type(model).__name__}: {exc}") from None
    modules = dict(model.named_modules())
    pairs = {}
    for node in graph.nodes:
        if node.op == "call_module" and isinstance(modules.get(node.target), nn.Conv2d) and len(node.users) == 1:
            user = next(iter(node.users))
            if user.op == "call_module" and isinstance(modules.get(user.target), nn.BatchNorm2d):
                pairs[normalize_module_name(node.target)] = modules[user.target]
    return pairs


def fold_batchnorm(weight: torch.Tensor, bn: nn.BatchNorm2d) -> torch.Tensor:
    """``w * gamma / sqrt(running_var + eps)`` per filter: the filter as BN scales it (gamma=1 if not affine)."""
    with torch.no_grad():
        gamma = bn.weight if bn.affine else torch.ones_like(bn.running_var)
        return weight * (gamma / torch.sqrt(bn.running_var + bn.eps)).view(-1, 1, 1, 1)


class PruningPolicy(Policy):
    """Computes a pruner's masks at the start of scheduled epochs and applies them at each minibatch."""

    def __init__(self, pruner: Any, spec: PolicySpec, source: ScheduleSource, origin: KeyPath,
                 ctx: ScheduleContext) -> None:
        super().__init__(spec, source, origin, ctx)
        self.pruner = pruner
        self.args: PrunerArgs = spec.options if isinstance(spec.options, PrunerArgs) else PrunerArgs()
        self.levels = {normalize_module_name(k): v for k, v in (self.args.levels or {}).items()} or None
        self.is_initialized = False
        self.hooks_registered = False

    def _owns(self, name: str) -> bool:
        """Whether the pruner masks this weight: its own weights, or every weight if it has a '*' default."""
        if "*" in (getattr(self.pruner, "mapping", None) or {}) or not hasattr(self.pruner, "owns"):
            return True
        return self.pruner.owns(name)

    def _named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(normalize_module_name(n), p) for n, p in self.ctx.model.named_parameters()]

    def _register_gradient_hooks(self) -> None:
        for name, param in self._named_parameters():
            masker = self.ctx.masks[name]
            if self._owns(name) and masker.backward_hook_handle is None:
                masker.backward_hook_handle = param.register_hook(masker.mask_gradient)
        self.hooks_registered = True

    def _collect_data(self) -> None:
        """Collect the activation statistics / feature maps a data-driven pruner ranks or refits with."""
        modules = needs_activation_stats(self.pruner, self.ctx.model)
        layers = needs_feature_maps(self.pruner)
        if not modules and not layers:
            return
        if self.ctx.batches is None:
            raise ConfigError(f"{type(self.pruner).__name__} ranks by activations and needs a few training batches, "
                              "but the scheduler was given none.",
                              hint="Pass batches=<training loader> to CompressionScheduler (CLI: give --data).")
        if modules:
            self.meta["activation_stats"] = collect_activation_stats(self.ctx.model, self.ctx.batches, modules)
            log.info("pruner %r: collected activation statistics of %s on training batches",
                     self.instance_name, ", ".join(modules))
        if layers:
            self.meta["feature_maps"] = collect_feature_maps(self.ctx.model, self.ctx.batches, layers)
            log.info("pruner %r: sampled feature maps of %s on training batches", self.instance_name,
                     ", ".join(layers))

    def _set_masks(self) -> None:
        with self.source.blame(self.origin):
            self._collect_data()
            folded = batchnorm_after_conv(self.ctx.model) if self.args.fold_batchnorm else {}
            for name, param in self._named_parameters():
                bn = folded.get(name.removesuffix(".weight")) if name.endswith(".weight") else None
                ranked = fold_batchnorm(param, bn) if bn is not None else param
                self.pruner.set_param_mask(ranked, name, self.ctx.masks, self.meta)

    def on_epoch_begin(self, optimizer: torch.optim.Optimizer | None) -> None:
        if self.levels is not None:
            self.pruner.levels = self.levels
        self.meta["model"] = self.ctx.model
        self.meta["input_shape"] = self.ctx.input_shape  # auto_group pruners trace the model with it
        first = not self.is_initialized
        if first:
            for name, masker in self.ctx.masks.items():
                if self._owns(name):
                    masker.use_double_copies = self.args.use_double_copies
                    masker.mask_on_forward_only = self.args.mask_on_forward_only
            if self.args.mask_gradients:
                self._register_gradient_hooks()
            self.is_initialized = True
        if not (first and self.args.skip_first_minibatch):
            self._set_masks()

    def on_minibatch_begin(self, epoch: int, step: int, steps: int,
                           optimizer: torch.optim.Optimizer | None) -> None:
        global_step = epoch * steps + step
        freq = self.args.mini_batch_pruning_frequency
        if (step > 0 and freq and global_step % freq == 0) or (self.args.skip_first_minibatch and global_step == 1):
            self._set_masks()
        for name, param in self._named_parameters():
            self.ctx.masks[name].apply_mask(param)

    def before_parameter_optimization(self) -> None:
        for name, param in self._named_parameters():
            self.ctx.masks[name].revert_weights(param)

    def on_minibatch_end(self, epoch: int, step: int, steps: int) -> None:
        if self.args.discard_masks_at_minibatch_end:
            for name, masker in self.ctx.masks.items():
                if self._owns(name):
                    masker.mask = None

    def on_epoch_end(self, optimizer: torch.optim.Optimizer | None,
                     metrics: dict[str, float]) -> None:
        if not self.is_last_epoch:
            return
        for name, param in self._named_parameters():
            if not self._owns(name):
                continue
            masker = self.ctx.masks[name]
            if self.args.keep_mask:
                masker.use_double_copies = False
                masker.mask_on_forward_only = False
                masker.mask_tensor(param)
            if masker.backward_hook_handle is not None:
                masker.backward_hook_handle.remove()
                masker.backward_hook_handle = None
        self.hooks_registered = False

    def state_dict(self) -> dict[str, Any]:
        return {"is_initialized": self.is_initialized, "hooks_registered": self.hooks_registered,
                "pruner": plain_state(self.pruner)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.is_initialized = bool(state.get("is_initialized", False))
        load_plain_state(self.pruner, state.get("pruner", {}))
        if state.get("hooks_registered"):
            self._register_gradient_hooks()


# -------------------------------------------------------------------------------------------- regularizing
class RegularizationPolicy(Policy):
    """Adds a regularizer's loss before each backward pass; thresholds after each step if configured."""

    def __init__(self, regularizer: Any, spec: PolicySpec, source: ScheduleSource, origin: KeyPath,
                 ctx: ScheduleContext) -> None:
        super().__init__(spec, source, origin, ctx)
        self.regularizer = regularizer
        self.keep_mask = spec.options.keep_mask if isinstance(spec.options, RegularizerArgs) else False

    def before_backward_pass(self, loss: torch.Tensor) -> torch.Tensor:
        total = torch.zeros((), dtype=torch.float32, device=loss.device)
        for name, param in self.ctx.model.named_parameters():
            term = self.regularizer.loss(param, normalize_module_name(name))
            if term is not None:
                total = total + term
        return loss + total

    def on_minibatch_end(self, epoch: int, step: int, steps: int) -> None:
        if self.regularizer.threshold_criteria is None:
            return
        keep = self.keep_mask and self.is_last_epoch and step == steps - 1
        if keep:
            log.info("regularizer %r: keeping its thresholding mask", self.instance_name)
        for name, param in self.ctx.model.named_parameters():
            name = normalize_module_name(name)
            mask = self.regularizer.threshold_mask(param, name)
            if mask is None:
                continue
            if keep:
                masker = self.ctx.masks[name]
                masker.mask = mask if masker.mask is None else masker.mask * mask
            param.data.mul_(mask)


# --------------------------------------------------------------------------------------------------- LR
def plateau_metric(mode: str, metrics: dict[str, float]) -> float:
    """Distiller's ``metrics[mode]``: 'min' watches the validation loss, 'max' the validation top-1."""
    key = "loss" if mode == "min" else "top1"
    return metrics[key] if key in metrics else metrics[mode]


class LRPolicy(Policy):
    """Sets the LR to the closed form of ``current_epoch + 1`` at the end of each scheduled epoch.

    The scheduler object is created on the first optimizer the policy sees (the schedule is usually
    built before the optimizer exists) and re-created, state kept, if the optimizer is replaced, e.g.
    after a resume re-creates it for a thinned model. Creating it never changes the optimizer's LR.
    """

    def __init__(self, factory: Callable[[torch.optim.Optimizer], Any], spec: PolicySpec, source: ScheduleSource,
                 origin: KeyPath, ctx: ScheduleContext) -> None:
        super().__init__(spec, source, origin, ctx)
        self.factory = factory
        self.scheduler: Any = None
        self._pending_state: dict[str, Any] | None = None

    def bind(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scheduler is not None and self.scheduler.optimizer is optimizer:
            return
        state = self.scheduler.state_dict() if self.scheduler is not None else self._pending_state
        lrs = [group["lr"] for group in optimizer.param_groups]
        with self.source.blame(self.origin):
            self.scheduler = self.factory(optimizer)
        for group, lr in zip(optimizer.param_groups, lrs, strict=True):
            group["lr"] = lr
        if state is not None:
            self.scheduler.load_state_dict(state)
        self._pending_state = None

    def on_epoch_end(self, optimizer: torch.optim.Optimizer | None,
                     metrics: dict[str, float]) -> None:
        if optimizer is None:
            raise ConfigError(f"LR policy {self.instance_name!r} needs the optimizer; the training loop passed none.")
        self.bind(optimizer)
        metric = None
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            metric = plateau_metric(self.scheduler.mode, metrics)
        step_to_epoch(self.scheduler, self.meta["current_epoch"] + 1, metric)

    def state_dict(self) -> dict[str, Any]:
        state = self.scheduler.state_dict() if self.scheduler is not None else self._pending_state
        return {"lr_scheduler": state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("lr_scheduler") is None:
            return
        if self.scheduler is None:
            self._pending_state = state["lr_scheduler"]
        else:
            self.scheduler.load_state_dict(state["lr_scheduler"])


# ------------------------------------------------------------------------------------------------ thinning
class ExtensionPolicy(Policy):
    """Runs a thinning extension once, at the first minibatch of each scheduled epoch.

    Policies run in declaration order, so it thins what the pruning policies listed before it zeroed at
    that minibatch and nothing of those listed after it (Distiller's AGP example relies on both).
    """

    def __init__(self, extension: Any, spec: PolicySpec, source: ScheduleSource, origin: KeyPath,
                 ctx: ScheduleContext) -> None:
        super().__init__(spec, source, origin, ctx)
        self.extension = extension
        self.done = False

    def on_minibatch_begin(self, epoch: int, step: int, steps: int,
                           optimizer: torch.optim.Optimizer | None) -> None:
        if self.done:
            return
        with self.source.blame(self.origin):
            record = self.extension.thin(self.ctx.model, self.ctx.masks, optimizer=optimizer,
                                         input_shape=self.ctx.input_shape)
        log.info("extension %r thinned the model at epoch %d: %s", self.instance_name, epoch, record)
        self.done = True

    def on_epoch_end(self, optimizer: torch.optim.Optimizer | None,
                     metrics: dict[str, float]) -> None:
        self.done = False

    def state_dict(self) -> dict[str, Any]:
        return {"done": self.done}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.done = bool(state.get("done", False))
