"""What each width of each unit costs in accuracy: first-order Taylor importance of the filters it removes.

Which filters a width removes is what the output schedule's pruner removes: the lowest by L1 magnitude (a
coupled unit by the sum of its members' length-normalised magnitudes, as ``auto_group`` ranks). What they
are worth is their first-order Taylor importance (Molchanov et al. 2019: ``Σ |w · ∂L/∂w|`` per filter,
summed over the unit's members and over a few training batches), which — unlike a magnitude — is comparable
across layers: it estimates the loss change of removing the filter. HALP (Shen et al. 2022) ranks by the same
kind of score. Estimated loss of a configuration = the summed importance of everything it removes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from edgeprune.budget_search.space import SearchSpace
from edgeprune.models.naming import normalize_module_name
from edgeprune.pruning.criteria import filters_norm, taylor_fo_filter_scores


@dataclass(frozen=True)
class UnitCost:
    """Per unit: the estimated loss (summed importance of removed filters) of each candidate width."""

    loss: dict[int, float]


def taylor_importance(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                      space: SearchSpace) -> dict[str, torch.Tensor]:
    """Per unit, one Taylor score per filter (summed over its members and the batches)."""
    convs = {normalize_module_name(n): m for n, m in model.named_modules()}
    scores = {u.name: torch.zeros(u.width) for u in space.units}
    was_training = model.training
    model.eval()  # BN statistics of the trained model, no dropout: the importance of the network as it is
    try:
        for x, y in batches:
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            for unit in space.units:
                for member in unit.members:
                    w = convs[member].weight
                    if w.grad is not None:
                        scores[unit.name] += taylor_fo_filter_scores(w, w.grad).cpu()
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return scores


def removal_order(model: nn.Module, space: SearchSpace) -> dict[str, torch.Tensor]:
    """Per unit, filter indices in the order the L1-ranked schedule removes them (weakest first)."""
    convs = {normalize_module_name(n): m for n, m in model.named_modules()}
    order = {}
    for unit in space.units:
        norms = [filters_norm(convs[m].weight.detach(), length_normalized=len(unit.members) > 1)
                 for m in unit.members]
        order[unit.name] = torch.argsort(torch.stack(norms).sum(dim=0), stable=True)
    return order


def unit_costs(importance: Mapping[str, torch.Tensor], order: Mapping[str, torch.Tensor],
               space: SearchSpace) -> dict[str, UnitCost]:
    """The estimated loss of every candidate width, normalised so the whole network's importance is 1."""
    total = float(sum(float(s.sum()) for s in importance.values())) or 1.0
    costs = {}
    for unit in space.units:
        ranked = importance[unit.name][order[unit.name]]
        removed = torch.cat([torch.zeros(1), torch.cumsum(ranked, 0)])  # removed[k]: the k weakest filters
        costs[unit.name] = UnitCost({w: float(removed[unit.width - w]) / total for w in unit.options})
    return costs


def estimated_loss(costs: Mapping[str, UnitCost], widths: Mapping[str, int]) -> float:
    return sum(costs[name].loss[w] for name, w in widths.items())
