"""What each width of each unit costs in accuracy: measured, by thinning the unit to that width alone.

A sensitivity analysis over the search's own grid (the per-layer analysis of Han et al. 2015 and Distiller,
with a coupled unit — every conv of one residual stream — narrowed as one): for every unit and every narrower
width on its grid, the network is thinned to that width by the very schedule the search writes (L1-ranked
filters, ``FilterRemover``) and the mean cross-entropy on a fixed set of training images is taken. A width's
cost is how much that loss rises over the dense network's; a configuration's estimated cost is the sum over its
units.

Why measured rather than a gradient estimate: on trained ResNets a first-order Taylor score (Molchanov et al.
2019) ranked narrowing a residual stream as cheap, yet a quarter of one stream's channels removed takes
ResNet-20 from 86 % to 62 % top-1 before fine-tuning, against 83 % for the same cut inside one block: the
damage spreads through every block the stream feeds, and a first-order score of the removed filters alone does
not see it. Thinning and evaluating sees exactly what the output schedule will do.

Cost: one thinning and one pass over the images per grid width — ResNet-20 (12 units, 40 narrower widths) on
1,024 CIFAR images takes about half a minute on two CPU cores.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from edgeprune.budget_search.space import SearchSpace, render_widths_schedule, thinned
from edgeprune.training.metrics import evaluate

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]  # iterated once per width: a list or a BatchLoader


@dataclass(frozen=True)
class UnitCost:
    """Per unit: the measured loss increase of each candidate width (0 at the dense width)."""

    loss: dict[int, float]


def narrowings(space: SearchSpace) -> list[tuple[str, int]]:
    """Every (unit, width) the analysis measures: each unit's grid below its dense width."""
    return [(u.name, w) for u in space.units for w in u.options if w != u.width]


def measure_costs(model: nn.Module, arch: str, batches: Batches, space: SearchSpace, *,
                  known: Mapping[str, Mapping[int, float]] | None = None,
                  on_measured: Callable[[str, int, float], None] | None = None) -> dict[str, UnitCost]:
    """The loss increase of every width of every unit, each unit narrowed alone.

    ``known`` holds increases measured before (an interrupted search's) and is not measured again;
    ``on_measured(unit, width, increase)`` is called after each new one, to save it and show progress.
    """
    known = known or {}
    dense_loss = _loss(model, batches)
    costs: dict[str, dict[int, float]] = {u.name: {u.width: 0.0} for u in space.units}
    for name, width in narrowings(space):
        if width in known.get(name, {}):
            costs[name][width] = float(known[name][width])
            continue
        net = thinned(model, render_widths_schedule(space, {name: width}, arch))
        costs[name][width] = _loss(net, batches) - dense_loss
        if on_measured is not None:
            on_measured(name, width, costs[name][width])
    return {name: UnitCost(loss) for name, loss in costs.items()}


def estimated_loss(costs: Mapping[str, UnitCost], widths: Mapping[str, int]) -> float:
    return sum(costs[name].loss[w] for name, w in widths.items())


def _loss(model: nn.Module, batches: Batches) -> float:
    with torch.no_grad():
        return float(evaluate(model, batches)["loss"])
