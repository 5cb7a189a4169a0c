"""Filter pruners that remove ``int(fraction * n)`` filters by an order (Distiller's rule: no keep-one guard)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.fx

from edgeprune.errors import ConfigError
from edgeprune.pruning.activations import resolve_activation_module
from edgeprune.pruning.criteria import (
    FILTER_GROUP_TYPES,
    expand_binary_map,
    gradient_filter_scores,
)
from edgeprune.pruning.pruners.base import (
    Meta,
)
from edgeprune.pruning.pruners.ranked import RankedStructurePruner
from edgeprune.pruning.registry import register_pruner


class FilterOrderPruner(RankedStructurePruner):
    """Prunes the ``int(fraction * n)`` filters with the lowest ``structure_scores`` (None: skip the weight).

    Distiller's activation/random/gradient rule: no keep-one guard, ties kept in index order (a stable sort).
    """

    group_types = FILTER_GROUP_TYPES

    def __init__(self, name: str, group_type: str, desired_sparsity: float, weights: str | Iterable[str],
                 group_dependency: str | None = None) -> None:
        super().__init__(name, group_type, desired_sparsity, weights, group_dependency)

    def group_coupled_weights(self) -> bool:
        """These rank each weight by its own statistic, which cannot be summed over a group."""
        return self.shares_coupled_maps

    def binary_map(self, fraction: float, param: torch.Tensor, param_name: str, meta: Meta) -> torch.Tensor | None:
        self._require_4d(param, param_name)
        n = param.size(0)
        k = int(fraction * n)
        if k == 0:
            return None
        scores = self.structure_scores(param, param_name, meta)
        if scores is None:
            return None
        kept = torch.argsort(-scores, stable=True)[: n - k]  # the n - k most important, in index order on ties
        binary_map = torch.zeros(n, dtype=param.dtype, device=param.device)
        binary_map[kept.to(param.device)] = 1
        return binary_map

    def _require_4d(self, param: torch.Tensor, param_name: str) -> None:
        if param.dim() != 4:
            raise ConfigError(f"{self.owner}: weight {param_name!r} has shape {tuple(param.shape)}; "
                              "this pruner ranks the filters of 4D (conv) weights only.")


class ActivationRankedFilterPruner(FilterOrderPruner):
    """Ranks filters by a statistic of their output channels, from ``meta["activation_stats"]``.

    The statistics module is the ReLU named by Distiller's rule (``layer1.0.conv1.weight`` → ``layer1.0.relu1``),
    or the conv itself when there is no such module; ``activations.needs_activation_stats`` lists them.
    """

    activation_rank_criterion = ""

    def structure_scores(self, param: torch.Tensor, param_name: str, meta: Meta) -> torch.Tensor:
        """Minus the statistic: the filters with the highest statistic go first (Distiller's order)."""
        model = self._model(meta, "to find the module whose activations rank the filters")
        module = resolve_activation_module(model, param_name)
        stats = (meta.get("activation_stats") if meta else None) or {}
        if module not in stats:
            raise ConfigError(
                f"{self.owner}: no activation statistics for module {module!r} (which ranks {param_name!r}) "
                "in meta['activation_stats'].",
                hint="Collect them with edgeprune.pruning.activations.collect_activation_stats(model, batches, "
                     "needs_activation_stats(pruner, model)); the scheduler does this for activation pruners.")
        criterion = getattr(stats[module], self.activation_rank_criterion)
        if criterion.numel() != param.size(0):
            raise ConfigError(f"{self.owner}: module {module!r} has statistics for {criterion.numel()} channels but "
                              f"{param_name!r} has {param.size(0)} filters; collect the statistics again.")
        return -criterion.to(param.device)


@register_pruner()
class ActivationAPoZRankedFilterPruner(ActivationRankedFilterPruner):
    """Prunes the filters whose output channels are most often zero (highest APoZ; Hu et al. 2016)."""

    activation_rank_criterion = "apoz"


@register_pruner()
class ActivationMeanRankedFilterPruner(ActivationRankedFilterPruner):
    """Prunes the filters with the HIGHEST mean activation — Distiller's behaviour, kept for compatibility.

    Molchanov et al. 2017 prune the lowest-mean channels; Distiller shares the APoZ code path
    (``argsort(criterion)[:-k]`` kept), which inverts the criterion here. Schedules relying on Distiller's
    results get the same masks; for the paper's criterion use ActivationAPoZ or TaylorFO pruning.
    """

    activation_rank_criterion = "mean"


@register_pruner()
class RandomRankedFilterPruner(FilterOrderPruner):
    """Prunes ``int(fraction * n)`` random filters (a baseline for other criteria)."""

    def structure_scores(self, param: torch.Tensor, param_name: str, meta: Meta) -> torch.Tensor:
        return -torch.randperm(param.size(0)).to(param.dtype)


@register_pruner()
class GradientRankedFilterPruner(FilterOrderPruner):
    """Keeps the filters with the highest ``Σ w·∂L/∂w``; skips a weight that has no gradient yet."""

    def structure_scores(self, param: torch.Tensor, param_name: str, meta: Meta) -> torch.Tensor | None:
        return None if param.grad is None else gradient_filter_scores(param, param.grad)


@register_pruner()
class BernoulliFilterPruner(FilterOrderPruner):
    """Drops each filter with probability ``fraction`` and scales the kept ones by ``n / kept`` (DropFilter).

    The mask is therefore not 0/1; it is meant for regularisation, not for thinning.
    """

    def binary_map(self, fraction: float, param: torch.Tensor, param_name: str, meta: Meta) -> torch.Tensor:
        self._require_4d(param, param_name)
        keep_prob = torch.full((param.size(0),), 1.0 - fraction, dtype=param.dtype, device=param.device)
        return torch.bernoulli(keep_prob)

    def mask_for(self, param: torch.Tensor, param_name: str, binary_map: torch.Tensor, meta: Meta) -> torch.Tensor:
        mask = expand_binary_map(param, "Filters", binary_map)
        kept = float(binary_map.sum())
        return mask * (binary_map.numel() / kept) if kept else mask
