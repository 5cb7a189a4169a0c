"""Distiller's fine-grained and thresholding pruners, keyed by ``{weight or '*': value}`` mappings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.fx
from torch import nn

from edgeprune.errors import ConfigError
from edgeprune.models.naming import normalize_module_name
from edgeprune.pruning.criteria import (
    create_mask_level_criterion,
    group_threshold_mask,
    splicing_mask,
    threshold_mask,
)
from edgeprune.pruning.masks import MasksDict
from edgeprune.pruning.pruners.base import (
    STRUCTURE_DIMS,
    BasePruner,
    Meta,
    canonical_mapping,
    check_fraction,
)
from edgeprune.pruning.registry import register_pruner


class MappingPruner(BasePruner):
    """A pruner configured per weight with a '*' default; it owns the explicitly named weights."""

    def __init__(self, name: str, key: str, mapping: Any) -> None:
        super().__init__(name)
        self.mapping = canonical_mapping(self.owner, key, mapping)
        self.params_names = [k for k in self.mapping if k != "*"]

    def value_for(self, param_name: str) -> Any:
        """The weight's own value, else the '*' default, else None (the weight is not pruned)."""
        return self.mapping.get(param_name, self.mapping.get("*"))


@register_pruner()
class MagnitudeParameterPruner(MappingPruner):
    """Fine-grained ``|w| > threshold``; ``thresholds`` must contain a '*' default (as Distiller asserted)."""

    def __init__(self, name: str, thresholds: Mapping[str, float]) -> None:
        if not isinstance(thresholds, Mapping) or "*" not in thresholds:
            raise ConfigError(f"Pruner {name!r} (MagnitudeParameterPruner): thresholds must be a mapping with a "
                              f"default '*' entry, got {thresholds!r}.", hint="For example: thresholds: {'*': 0.01}.")
        super().__init__(name, "thresholds", thresholds)

    def set_param_mask(self, param: torch.Tensor, param_name: str, zeros_mask_dict: MasksDict, meta: Meta) -> None:
        param_name = normalize_module_name(param_name)
        zeros_mask_dict[param_name].mask = threshold_mask(param, self.value_for(param_name))


@register_pruner()
class SensitivityPruner(MappingPruner):
    """Han et al. 2015: prune ``|w| <= std(w) * sensitivity``; the std is taken once and cached.

    Caching the first std (rather than recomputing it) is what lets the threshold "trap" more weights as
    training pulls them towards zero.
    """

    def __init__(self, name: str, sensitivities: Mapping[str, float]) -> None:
        super().__init__(name, "sensitivities", sensitivities)
        self._stddev: dict[str, float] = {}

    def set_param_mask(self, param: torch.Tensor, param_name: str, zeros_mask_dict: MasksDict, meta: Meta) -> None:
        param_name = normalize_module_name(param_name)
        sensitivity = self.value_for(param_name)
        if sensitivity is None:
            return
        if param_name not in self._stddev:
            self._stddev[param_name] = float(param.detach().std())
        zeros_mask_dict[param_name].mask = threshold_mask(param, self._stddev[param_name] * sensitivity)


@register_pruner()
class SparsityLevelParameterPruner(MappingPruner):
    """Prunes each weight to an exact fine-grained level; a level of 0 leaves the weight alone.

    ``PruningPolicy`` may replace ``levels`` per policy (``args: {levels: ...}``), hence the setter.
    """

    def __init__(self, name: str, levels: Mapping[str, float]) -> None:
        super().__init__(name, "levels", levels)
        self.levels = levels

    @property
    def levels(self) -> dict[str, float]:
        return self.mapping

    @levels.setter
    def levels(self, levels: Mapping[str, float]) -> None:
        mapping = canonical_mapping(self.owner, "levels", levels)
        self.mapping = {k: check_fraction(self.owner, f"levels[{k!r}]", v) for k, v in mapping.items()}
        self.params_names = [k for k in self.mapping if k != "*"]

    def set_param_mask(self, param: torch.Tensor, param_name: str, zeros_mask_dict: MasksDict, meta: Meta) -> None:
        param_name = normalize_module_name(param_name)
        level = self.value_for(param_name) or 0.0
        if level:
            zeros_mask_dict[param_name].mask = create_mask_level_criterion(param, level)


@register_pruner()
class SplicingPruner(MappingPruner):
    """Dynamic Network Surgery: prune below a low threshold, splice back at/above a high one.

    Thresholds are ``(mean|w| + std|w| * s) * multiplier`` with the mean/std taken once per weight; with
    ``sensitivity_multiplier > 0`` the sensitivity s grows linearly with the epochs since the start.
    """

    def __init__(self, name: str, sensitivities: Mapping[str, float], low_thresh_mult: float, hi_thresh_mult: float,
                 sensitivity_multiplier: float = 0) -> None:
        super().__init__(name, "sensitivities", sensitivities)
        self.low_thresh_mult = low_thresh_mult
        self.hi_thresh_mult = hi_thresh_mult
        self.sensitivity_multiplier = sensitivity_multiplier
        self._abs_stats: dict[str, tuple[float, float]] = {}

    def set_param_mask(self, param: torch.Tensor, param_name: str, zeros_mask_dict: MasksDict, meta: Meta) -> None:
        param_name = normalize_module_name(param_name)
        sensitivity = self.value_for(param_name)
        if sensitivity is None:
            return
        if self.sensitivity_multiplier > 0:
            if not meta or "starting_epoch" not in meta or "current_epoch" not in meta:
                raise ConfigError(f"{self.owner}: sensitivity_multiplier needs meta starting_epoch/current_epoch.")
            sensitivity *= (meta["current_epoch"] - meta["starting_epoch"]) * self.sensitivity_multiplier + 1
        weights_abs = param.detach().abs()
        if param_name not in self._abs_stats:
            self._abs_stats[param_name] = (float(weights_abs.mean()), float(weights_abs.std()))
        mean, std = self._abs_stats[param_name]
        masker = zeros_mask_dict[param_name]
        current = masker.mask if masker.mask is not None else torch.ones_like(param)
        base = mean + std * sensitivity
        masker.mask = splicing_mask(weights_abs, current, base * self.low_thresh_mult, base * self.hi_thresh_mult)


@register_pruner()
class StructureParameterPruner(MappingPruner):
    """Group thresholding: ``reg_regims: {weight: [threshold, group_type]}``, criterion Max or Mean_Abs.

    ``model`` is accepted for Distiller's signature (the builder injects it) and is not needed.
    """

    def __init__(self, name: str, model: nn.Module | None, reg_regims: Mapping[str, Sequence[Any]],
                 threshold_criteria: str) -> None:
        super().__init__(name, "reg_regims", reg_regims)
        if "*" in self.mapping:
            raise ConfigError(f"{self.owner}: reg_regims needs explicit weight names; '*' is not supported.")
        if threshold_criteria not in ("Max", "Mean_Abs"):
            raise ConfigError(f"{self.owner}: threshold_criteria must be 'Max' or 'Mean_Abs', "
                              f"got {threshold_criteria!r}.")
        for weight, regime in self.mapping.items():
            if not isinstance(regime, Sequence) or isinstance(regime, str) or len(regime) != 2:
                raise ConfigError(f"{self.owner}: reg_regims[{weight!r}] must be [threshold, group_type], "
                                  f"got {regime!r}.")
        self.threshold_criteria = threshold_criteria

    def structure_dims(self) -> dict[str, str]:
        return {weight: STRUCTURE_DIMS[group_type] for weight, (_, group_type) in self.mapping.items()
                if isinstance(group_type, str) and group_type in STRUCTURE_DIMS}

    def set_param_mask(self, param: torch.Tensor, param_name: str, zeros_mask_dict: MasksDict, meta: Meta) -> None:
        param_name = normalize_module_name(param_name)
        if not self.owns(param_name):
            return
        threshold, group_type = self.mapping[param_name]
        try:
            mask, _ = group_threshold_mask(param, group_type, threshold, self.threshold_criteria)
        except ConfigError as exc:
            raise ConfigError(f"{self.owner}, weight {param_name!r}: {exc.message}") from None
        zeros_mask_dict[param_name].mask = mask
