"""Distiller's sparsity regularizers: L1, Group Lasso and Group Variance loss terms, with optional thresholding.

A regularizer adds a penalty to the training loss that pushes weights (L1) or whole structures (Group
Lasso: kernels, rows, columns, channels, filters, layers) towards zero; with ``threshold_criteria`` it
also zeroes, after each optimizer step, the elements/groups that fell below their strength. The
schedule's ``RegularizationPolicy`` decides when each of these happens, and whether the thresholding
mask becomes permanent (``keep_mask``).

The loss values match Distiller exactly, including its ``EPSILON`` under the square root of each group
norm (which keeps the gradient finite at an all-zero group). Differences, all of them refusals of what
Distiller crashed on late or silently mishandled: ``reg_regims`` names are canonical (a ``module.`` prefix
is accepted); an unknown group, a group that does not fit a weight's shape, or thresholding a combined
group (``Rows+Cols``, ``Channels+4D``) is an error when the regularizer is built.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from edgeprune.errors import ConfigError
from edgeprune.models.naming import normalize_module_name
from edgeprune.pruning.criteria import group_threshold_mask, threshold_mask
from edgeprune.registry import Registry

REGULARIZERS: Registry[type] = Registry("regularizer")
EPSILON = 1e-8  # Distiller's regularization.EPSILON


def _group_lasso(groups: torch.Tensor, strength: float, dim: int) -> torch.Tensor:
    """``strength * Σ_g sqrt(Σ_{i∈g} w_i² + ε)`` over the rows (dim=1) or columns (dim=0) of ``groups``."""
    return groups.pow(2).sum(dim=dim).add(EPSILON).sqrt().sum() * strength


def _kernels(w: torch.Tensor, s: float) -> torch.Tensor:
    return _group_lasso(w.reshape(-1, w.size(2) * w.size(3)), s, 1)


def _rows(w: torch.Tensor, s: float) -> torch.Tensor:
    return _group_lasso(w, s, 1)


def _cols(w: torch.Tensor, s: float) -> torch.Tensor:
    return _group_lasso(w, s, 0)


def _channel_norms(w: torch.Tensor) -> torch.Tensor:
    """``sqrt(Σ w² + ε)`` of each input channel: every filter's kernel that reads it (Distiller's ``_channels_l2``)."""
    return w.transpose(0, 1).reshape(w.size(1), -1).pow(2).sum(dim=1).add(EPSILON).sqrt()


def _channels(w: torch.Tensor, s: float) -> torch.Tensor:
    return _channel_norms(w).sum() * s


def _filters(w: torch.Tensor, s: float) -> torch.Tensor:
    return _group_lasso(w.reshape(w.size(0), -1), s, 1)


def _layer(w: torch.Tensor, s: float) -> torch.Tensor:
    return w.norm(2) * s  # one group: Distiller adds no epsilon here


# group type -> (weight dimensionality, loss terms). "Filters" and the reversed combinations are Distiller's aliases.
GROUP_LASSO_TERMS: dict[str, tuple[int, tuple[Callable[[torch.Tensor, float], torch.Tensor], ...]]] = {
    "2D": (4, (_kernels,)),
    "Rows": (2, (_rows,)),
    "Cols": (2, (_cols,)),
    "Rows+Cols": (2, (_rows, _cols)),
    "Cols+Rows": (2, (_rows, _cols)),
    "Channels": (4, (_channels,)),
    "3D": (4, (_filters,)),
    "Filters": (4, (_filters,)),
    "4D": (4, (_layer,)),
    "Channels+4D": (4, (_channels, _layer)),
    "4D+Channels": (4, (_channels, _layer)),
}
GROUP_THRESHOLD_CRITERIA = (None, "Max", "Mean_Abs")  # what Distiller's GroupLassoRegularizer asserts


class Regularizer:
    """Common part: canonical ``reg_regims`` and the two operations a RegularizationPolicy calls."""

    def __init__(self, name: str, reg_regims: Mapping[str, Any], threshold_criteria: str | None = None) -> None:
        if not isinstance(reg_regims, Mapping) or not reg_regims:
            raise ConfigError(f"{type(self).__name__} {name!r}: reg_regims must map parameter names to strengths.")
        if threshold_criteria is not None and not isinstance(threshold_criteria, str):
            raise ConfigError(f"{type(self).__name__} {name!r}: threshold_criteria must be a name, "
                              f"got {threshold_criteria!r}.")
        self.name = name
        self.threshold_criteria = threshold_criteria
        self.reg_regims = {normalize_module_name(str(k)): v for k, v in reg_regims.items()}

    @property
    def params_names(self) -> list[str]:
        """The (canonical) weights this regularizer acts on; the schedule builder checks them against the model."""
        return list(self.reg_regims)

    def loss(self, param: torch.Tensor, param_name: str) -> torch.Tensor | None:
        """This parameter's penalty, or None if the regularizer does not act on it."""
        raise NotImplementedError

    def threshold_mask(self, param: torch.Tensor, param_name: str) -> torch.Tensor | None:
        """The mask that zeroes what fell below threshold, or None (no thresholding / nothing to zero)."""
        raise NotImplementedError

    def _error(self, param_name: str, problem: str) -> ConfigError:
        return ConfigError(f"{type(self).__name__} {self.name!r}: reg_regims[{param_name!r}]: {problem}")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0


@REGULARIZERS.register()
class L1Regularizer(Regularizer):
    """``strength * Σ|w|`` per listed weight; thresholding zeroes ``|w| <= strength``.

    ``model`` is unused; it keeps Distiller's positional signature ``(name, model, reg_regims, ...)``.
    """

    def __init__(self, name: str, model: nn.Module, reg_regims: Mapping[str, float],
                 threshold_criteria: str | None = None) -> None:
        super().__init__(name, reg_regims, threshold_criteria)
        for param_name, strength in self.reg_regims.items():
            if not _number(strength):
                raise self._error(param_name, f"the strength must be a number >= 0, got {strength!r}")

    def loss(self, param: torch.Tensor, param_name: str) -> torch.Tensor | None:
        strength = self.reg_regims.get(param_name)
        return None if strength is None else param.abs().sum() * strength

    def threshold_mask(self, param: torch.Tensor, param_name: str) -> torch.Tensor | None:
        if self.threshold_criteria is None or param_name not in self.reg_regims:
            return None
        return threshold_mask(param, self.reg_regims[param_name])


@REGULARIZERS.register()
class GroupLassoRegularizer(Regularizer):
    """Group Lasso: ``strength * Σ_groups ||group||₂`` per listed weight, ``reg_regims: {weight: [strength, group]}``.

    Groups: 2D (k×k kernels), Rows/Cols (of a 2D weight), Rows+Cols, Channels, 3D/Filters, 4D (the whole
    layer), Channels+4D. Thresholding (Max or Mean_Abs) zeroes every group whose norm is at or below the
    strength; for 4D it zeroes the whole layer or nothing.
    """

    def __init__(self, name: str, model: nn.Module, reg_regims: Mapping[str, Any],
                 threshold_criteria: str | None = None) -> None:
        super().__init__(name, reg_regims, threshold_criteria)
        shapes = {normalize_module_name(n): p.shape for n, p in model.named_parameters()}
        if threshold_criteria not in GROUP_THRESHOLD_CRITERIA:
            raise ConfigError(f"GroupLassoRegularizer {name!r}: threshold_criteria must be Max or Mean_Abs (or "
                              f"absent), got {threshold_criteria!r}.")
        for param_name, regim in self.reg_regims.items():
            if not (isinstance(regim, (list, tuple)) and len(regim) == 2 and _number(regim[0])):
                raise self._error(param_name, f"expected [strength, group], got {regim!r}")
            group = regim[1]
            if group not in GROUP_LASSO_TERMS:
                raise self._error(param_name, f"unknown group {group!r}; expected one of "
                                  f"{', '.join(GROUP_LASSO_TERMS)}")
            dims = GROUP_LASSO_TERMS[group][0]
            shape = shapes.get(param_name)  # unknown names are the schedule builder's to report
            if shape is not None and len(shape) != dims:
                raise self._error(param_name, f"group {group!r} needs a {dims}D weight, but it is "
                                  f"{tuple(shape)}")
            if threshold_criteria is not None and "+" in group:
                raise self._error(param_name, f"thresholding is not defined for the combined group {group!r}")

    def loss(self, param: torch.Tensor, param_name: str) -> torch.Tensor | None:
        regim = self.reg_regims.get(param_name)
        if regim is None:
            return None
        strength, group = regim
        terms = GROUP_LASSO_TERMS[group][1]
        return sum((term(param, strength) for term in terms[1:]), terms[0](param, strength))

    def threshold_mask(self, param: torch.Tensor, param_name: str) -> torch.Tensor | None:
        if self.threshold_criteria is None or param_name not in self.reg_regims:
            return None
        strength, group = self.reg_regims[param_name]
        if group == "4D":
            w = param.detach().abs()
            level = w.mean() if self.threshold_criteria == "Mean_Abs" else w.max()
            return None if level > strength else torch.zeros_like(param)
        return group_threshold_mask(param, group, strength, self.threshold_criteria)[0]


@REGULARIZERS.register()
class GroupVarianceRegularizer(Regularizer):
    """Group variance (Torfi et al., "Attention-Based Guided Structured Sparsity of Deep Neural Networks", 2018):
    ``strength / var(channel norms)`` per listed conv weight, ``reg_regims: {weight: [strength, Channels]}``.

    Why it exists beside Group Lasso: a low variance among the input channels' L2 norms is penalised, so the norms
    spread apart and a Group Lasso regularizer with thresholding (as in Distiller's GSS example) zeroes the weak
    channels rather than shrinking all alike. Only the ``Channels`` group and no thresholding, as in Distiller; the
    variance is the unbiased one, as Distiller's ``Tensor.var()``.
    """

    def __init__(self, name: str, model: nn.Module, reg_regims: Mapping[str, Any]) -> None:
        super().__init__(name, reg_regims)
        shapes = {normalize_module_name(n): p.shape for n, p in model.named_parameters()}
        for param_name, regim in self.reg_regims.items():
            if not (isinstance(regim, (list, tuple)) and len(regim) == 2 and _number(regim[0])):
                raise self._error(param_name, f"expected [strength, Channels], got {regim!r}")
            if regim[1] != "Channels":
                raise self._error(param_name, f"unknown group {regim[1]!r}; GroupVarianceRegularizer takes only "
                                  "'Channels'")
            shape = shapes.get(param_name)  # unknown names are the schedule builder's to report
            if shape is not None and (len(shape) != 4 or shape[1] < 2):
                raise self._error(param_name, f"needs a conv weight with at least 2 input channels (a variance "
                                  f"among them), but it is {tuple(shape)}")

    def loss(self, param: torch.Tensor, param_name: str) -> torch.Tensor | None:
        regim = self.reg_regims.get(param_name)
        return None if regim is None else regim[0] / _channel_norms(param).var()

    def threshold_mask(self, param: torch.Tensor, param_name: str) -> torch.Tensor | None:
        return None
