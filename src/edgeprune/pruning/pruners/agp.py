"""Automated Gradual Pruning (Zhu & Gupta 2017): a cubic sparsity schedule driving a pruner.

``AutomatedGradualPruner`` prunes fine-grained; the ``*_AGP`` classes feed the AGP target to a wrapped
ranking pruner (reference §2.5, §2.6), keeping Distiller's class names and YAML keys. The schedule's span
comes from the policy's epoch range, which is why AGP needs the range form of a policy: with ``epochs:``
there is no frequency, and Distiller crashed on ``// None`` — here that is a clear ConfigError.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import torch

from edgeprune.errors import ConfigError
from edgeprune.models.naming import normalize_module_name
from edgeprune.pruning.criteria import FILTER_GROUP_TYPES, create_mask_level_criterion
from edgeprune.pruning.masks import MasksDict
from edgeprune.pruning.pruners.base import BasePruner, Meta, canonical_weights, check_fraction
from edgeprune.pruning.pruners.order import (
    ActivationAPoZRankedFilterPruner,
    ActivationMeanRankedFilterPruner,
    BernoulliFilterPruner,
    GradientRankedFilterPruner,
    RandomRankedFilterPruner,
)
from edgeprune.pruning.pruners.ranked import (
    L1RankedStructureParameterPruner,
    L2RankedStructureParameterPruner,
    RankedStructurePruner,
)
from edgeprune.pruning.registry import register_pruner

AGP_RANGE_HINT = "Schedule the policy with starting_epoch, ending_epoch and frequency instead of an epochs: list."


def agp_target_sparsity(initial: float, final: float, starting_epoch: int, ending_epoch: int, frequency: int,
                        current_epoch: int) -> float:
    """AGP's cubic target: ``initial`` at the first scheduled epoch, exactly ``final`` at the last one.

    ``span`` is the last scheduled epoch minus the first (``ending_epoch`` is exclusive), as in Distiller.
    """
    span = ((ending_epoch - starting_epoch - 1) // frequency) * frequency
    if span <= 0:
        raise ConfigError(f"AGP needs at least two scheduled epochs; starting_epoch={starting_epoch}, "
                          f"ending_epoch={ending_epoch}, frequency={frequency} schedule only one.",
                          hint=AGP_RANGE_HINT)
    return final + (initial - final) * (1.0 - (current_epoch - starting_epoch) / span) ** 3


class AutomatedGradualPrunerBase(BasePruner):
    """Validates the sparsity pair and turns ``meta`` into the current AGP target.

    ``requires_epoch_range`` lets the schedule builder refuse an ``epochs:`` list at load time, with the
    YAML line, instead of at the first scheduled epoch.
    """

    requires_epoch_range: ClassVar[bool] = True

    def __init__(self, name: str, initial_sparsity: float, final_sparsity: float) -> None:
        super().__init__(name)
        self.initial_sparsity = check_fraction(self.owner, "initial_sparsity", initial_sparsity)
        self.final_sparsity = check_fraction(self.owner, "final_sparsity", final_sparsity)
        if not self.final_sparsity > self.initial_sparsity:
            raise ConfigError(f"{self.owner}: final_sparsity ({final_sparsity}) must be greater than "
                              f"initial_sparsity ({initial_sparsity}).")

    def compute_target_sparsity(self, meta: Meta) -> float:
        keys = ("starting_epoch", "ending_epoch", "frequency", "current_epoch")
        if not meta or any(meta.get(k) is None for k in keys):
            raise ConfigError(f"{self.owner}: AGP pruners need starting_epoch/ending_epoch/frequency "
                              f"(got {({k: meta.get(k) for k in keys} if meta else None)}).", hint=AGP_RANGE_HINT)
        try:
            return agp_target_sparsity(self.initial_sparsity, self.final_sparsity, meta["starting_epoch"],
                                       meta["ending_epoch"], meta["frequency"], meta["current_epoch"])
        except ConfigError as exc:
            raise ConfigError(f"{self.owner}: {exc.message}", hint=exc.hint) from None

    def set_param_mask(self, param: torch.Tensor, param_name: str, zeros_mask_dict: MasksDict, meta: Meta) -> None:
        param_name = normalize_module_name(param_name)
        if self.owns(param_name):
            self.set_param_mask_by_sparsity_target(param, param_name, zeros_mask_dict,
                                                   self.compute_target_sparsity(meta), meta)

    def set_param_mask_by_sparsity_target(self, param: torch.Tensor, param_name: str, zeros_mask_dict: MasksDict,
                                          target_sparsity: float, meta: Meta) -> None:
        raise NotImplementedError


@register_pruner()
class AutomatedGradualPruner(AutomatedGradualPrunerBase):
    """Fine-grained AGP: at each step, prune the ``int(target * numel)`` smallest magnitudes."""

    def __init__(self, name: str, initial_sparsity: float, final_sparsity: float, weights: str | Iterable[str]) -> None:
        super().__init__(name, initial_sparsity, final_sparsity)
        self.params_names = canonical_weights(self.owner, weights)

    def set_param_mask_by_sparsity_target(self, param: torch.Tensor, param_name: str, zeros_mask_dict: MasksDict,
                                          target_sparsity: float, meta: Meta) -> None:
        zeros_mask_dict[param_name].mask = create_mask_level_criterion(param, target_sparsity)


class StructuredAGP(AutomatedGradualPrunerBase):
    """Feeds the AGP target to a wrapped ranking pruner (built with desired_sparsity 0)."""

    def __init__(self, name: str, initial_sparsity: float, final_sparsity: float,
                 pruner: RankedStructurePruner) -> None:
        super().__init__(name, initial_sparsity, final_sparsity)
        self.pruner = pruner
        self.params_names = pruner.params_names

    def structure_dims(self) -> dict[str, str]:
        return self.pruner.structure_dims()

    @property
    def shares_coupled_maps(self) -> bool:
        return self.pruner.shares_coupled_maps

    def group_coupled_weights(self) -> bool:
        return self.pruner.group_coupled_weights()

    def set_param_mask_by_sparsity_target(self, param: torch.Tensor, param_name: str, zeros_mask_dict: MasksDict,
                                          target_sparsity: float, meta: Meta) -> None:
        self.pruner.prune_to_target_sparsity(param, param_name, zeros_mask_dict, target_sparsity, meta)


def _filters_only(name: str, cls: str, group_type: str) -> None:
    """Distiller asserted 3D/Filters for the filter-ranking AGP variants."""
    if group_type not in FILTER_GROUP_TYPES:
        raise ConfigError(f"Pruner {name!r} ({cls}): group_type {group_type!r} is not supported; "
                          "accepted: 3D, Filters.")


@register_pruner()
class L1RankedStructureParameterPruner_AGP(StructuredAGP):
    """AGP schedule over L1-ranked structures (filters, channels, Linear columns or blocks).

    ``auto_group: true`` (edgeprune) ranks coupled weights as groups, see ``RankedStructurePruner``.
    """

    def __init__(self, name: str, initial_sparsity: float, final_sparsity: float, group_type: str,
                 weights: str | Iterable[str], group_dependency: str | None = None,
                 kwargs: Mapping[str, Any] | None = None, round_to: int | None = None,
                 auto_group: bool = False) -> None:
        super().__init__(name, initial_sparsity, final_sparsity, L1RankedStructureParameterPruner(
            name, group_type, 0.0, weights, group_dependency, kwargs, round_to=round_to, auto_group=auto_group))


@register_pruner()
class L2RankedStructureParameterPruner_AGP(StructuredAGP):
    """AGP schedule over L2-ranked structures."""

    def __init__(self, name: str, initial_sparsity: float, final_sparsity: float, group_type: str,
                 weights: str | Iterable[str], group_dependency: str | None = None,
                 kwargs: Mapping[str, Any] | None = None, round_to: int | None = None,
                 auto_group: bool = False) -> None:
        super().__init__(name, initial_sparsity, final_sparsity, L2RankedStructureParameterPruner(
            name, group_type, 0.0, weights, group_dependency, kwargs, round_to=round_to, auto_group=auto_group))


@register_pruner()
class ActivationAPoZRankedFilterPruner_AGP(StructuredAGP):
    """AGP schedule over APoZ-ranked filters (needs activation statistics, see ``activations``)."""

    def __init__(self, name: str, initial_sparsity: float, final_sparsity: float, group_type: str,
                 weights: str | Iterable[str], group_dependency: str | None = None) -> None:
        _filters_only(name, type(self).__name__, group_type)
        super().__init__(name, initial_sparsity, final_sparsity, ActivationAPoZRankedFilterPruner(
            name, group_type, 0.0, weights, group_dependency))


@register_pruner()
class ActivationMeanRankedFilterPruner_AGP(StructuredAGP):
    """AGP schedule over mean-activation-ranked filters (Distiller's inverted criterion, see the base pruner)."""

    def __init__(self, name: str, initial_sparsity: float, final_sparsity: float, group_type: str,
                 weights: str | Iterable[str], group_dependency: str | None = None) -> None:
        _filters_only(name, type(self).__name__, group_type)
        super().__init__(name, initial_sparsity, final_sparsity, ActivationMeanRankedFilterPruner(
            name, group_type, 0.0, weights, group_dependency))


@register_pruner()
class GradientRankedFilterPruner_AGP(StructuredAGP):
    """AGP schedule over gradient-ranked filters."""

    def __init__(self, name: str, initial_sparsity: float, final_sparsity: float, group_type: str,
                 weights: str | Iterable[str], group_dependency: str | None = None) -> None:
        _filters_only(name, type(self).__name__, group_type)
        super().__init__(name, initial_sparsity, final_sparsity, GradientRankedFilterPruner(
            name, group_type, 0.0, weights, group_dependency))


@register_pruner()
class RandomRankedFilterPruner_AGP(StructuredAGP):
    """AGP schedule over randomly ranked filters."""

    def __init__(self, name: str, initial_sparsity: float, final_sparsity: float, group_type: str,
                 weights: str | Iterable[str], group_dependency: str | None = None) -> None:
        _filters_only(name, type(self).__name__, group_type)
        super().__init__(name, initial_sparsity, final_sparsity, RandomRankedFilterPruner(
            name, group_type, 0.0, weights, group_dependency))


@register_pruner()
class BernoulliFilterPruner_AGP(StructuredAGP):
    """AGP schedule over Bernoulli filter dropping."""

    def __init__(self, name: str, initial_sparsity: float, final_sparsity: float, group_type: str,
                 weights: str | Iterable[str], group_dependency: str | None = None) -> None:
        _filters_only(name, type(self).__name__, group_type)
        super().__init__(name, initial_sparsity, final_sparsity, BernoulliFilterPruner(
            name, group_type, 0.0, weights, group_dependency))
