"""Choosing widths under a predicted-latency budget: two methods over the same latency model and costs.

* :func:`greedy_widths` (NetAdapt-style, Yang et al. 2018, driven by importance instead of short-term
  fine-tuning): start dense; at each step narrow the one unit, by one grid step, that loses the least estimated
  accuracy per millisecond saved; stop once the prediction meets the budget. Latency is re-predicted for the
  whole network at every step, so a kernel whose cost depends on two units (a conv reading one and producing
  another) is always priced at both current widths — the interaction a per-layer knapsack must approximate.
* :func:`uniform_widths` (the baseline every method is compared with): every unit at the same fraction of its
  dense width, the largest fraction whose prediction meets the budget.

Both return ``None`` when even the narrowest configuration misses the budget.
"""

from __future__ import annotations

from collections.abc import Mapping

from edgeprune.budget_search.importance import UnitCost
from edgeprune.budget_search.predict import LatencyModel
from edgeprune.budget_search.space import SearchSpace, Widths


def greedy_widths(space: SearchSpace, model: LatencyModel, costs: Mapping[str, UnitCost],
                  budget_ms: float) -> Widths | None:
    widths = dict(space.dense)
    latency = model.predict(widths)
    while latency > budget_ms:
        best: tuple[float, str, int, float] | None = None
        for unit in space.units:
            i = unit.options.index(widths[unit.name])
            if i == 0:
                continue
            narrower = unit.options[i - 1]
            trial = {**widths, unit.name: narrower}
            saved = latency - model.predict(trial)
            lost = costs[unit.name].loss[narrower] - costs[unit.name].loss[widths[unit.name]]
            ratio = lost / saved if saved > 0 else float("inf")
            if best is None or ratio < best[0]:
                best = (ratio, unit.name, narrower, latency - saved)
        if best is None:
            return None  # every unit is at its narrowest
        _, name, narrower, latency = best
        widths[name] = narrower
    return widths


def uniform_widths(space: SearchSpace, model: LatencyModel, budget_ms: float) -> Widths | None:
    fractions = sorted({o / u.width for u in space.units for o in u.options}, reverse=True)
    for f in fractions:  # widest first: every unit at the widest of its widths within f of its dense width
        widths = {u.name: max((o for o in u.options if o <= f * u.width + 1e-9), default=u.options[0])
                  for u in space.units}
        if model.predict(widths) <= budget_ms:
            return widths
    return None
