"""Choosing widths under a predicted-latency budget: two methods over the same latency model.

* :func:`greedy_path` (NetAdapt-style, Yang et al. 2018): start dense; at each step narrow the one unit, by one
  grid step, whose step costs the least measured loss per predicted millisecond saved; stop once the prediction
  meets the budget. Latency is re-predicted for the whole network at every step, so a kernel whose cost depends
  on two units (a conv reading one and producing another) is always priced at both current widths — the
  interaction a per-layer knapsack must approximate. Each step's loss is measured *in context* (the network
  as narrowed so far), lazily: a step's rise measured at an earlier point of the path stands in until it is
  the cheapest, and is then measured again where the path is now; only a step measured where the path is can
  be taken. Damage compounds as a network narrows, so an older rise is an optimistic bound; where it is one,
  re-measuring the front-runner until it stays in front takes the step measuring every unit afresh would
  (tested), at a few measurements per step instead of one per unit.
* :func:`uniform_widths` (the baseline every method is compared with): every unit at the same fraction of its
  dense width, the largest fraction whose prediction meets the budget.

Budgets nothing on the grid meets give ``None``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from edgeprune.budget_search.predict import LatencyModel
from edgeprune.budget_search.space import SearchSpace, Widths


def greedy_path(space: SearchSpace, model: LatencyModel, loss: Callable[[Widths], float],
                budgets: Sequence[float]) -> list[Widths | None]:
    """Per budget (ms), the first configuration of the greedy path predicted to meet it: one path serves them
    all, tighter budgets further along it. ``loss(widths)`` is the measured loss rise of a configuration."""
    pending = sorted(range(len(budgets)), key=lambda i: -budgets[i])  # the loosest first
    found: list[Widths | None] = [None] * len(budgets)
    widths = dict(space.dense)
    current, latency, step = loss(widths), model.predict(widths), 0
    rises: dict[str, tuple[int, float, int]] = {}  # unit -> (from width, loss rise of its next step, at step)
    while True:
        while pending and latency <= budgets[pending[0]]:
            found[pending.pop(0)] = dict(widths)
        steps = _next_steps(space, model, widths, latency)
        if not pending or not steps:
            return found
        while True:  # measure the front-runner where the path is until one measured here stays in front
            name = _cheapest(steps, widths, rises)
            width, _, at = rises.get(name, (-1, 0.0, -1))
            if width == widths[name] and at == step:
                break
            rises[name] = (widths[name], loss(steps[name][0]) - current, step)
        widths = steps[name][0]
        current, latency, step = current + rises[name][1], latency - steps[name][1], step + 1


def _cheapest(steps: dict[str, tuple[Widths, float]], widths: Widths,
              rises: dict[str, tuple[int, float, int]]) -> str:
    """The unit whose next step costs the least loss per millisecond saved, by the latest rise measured for that
    step (a step never measured counts as free, so that it is measured next); ties go to the earlier unit."""
    def ratio(item: tuple[int, str]) -> tuple[float, int]:
        i, name = item
        width, rise, _ = rises.get(name, (-1, 0.0, -1))
        return (rise if width == widths[name] else 0.0) / steps[name][1], i
    return min(enumerate(steps), key=ratio)[1]


def _next_steps(space: SearchSpace, model: LatencyModel, widths: Widths,
                latency: float) -> dict[str, tuple[Widths, float]]:
    """Per unit that can still narrow and save predicted time: the configuration one grid step narrower, and
    the milliseconds it saves."""
    steps = {}
    for unit in space.units:
        i = unit.options.index(widths[unit.name])
        if i > 0:
            trial = {**widths, unit.name: unit.options[i - 1]}
            saved = latency - model.predict(trial)
            if saved > 0:
                steps[unit.name] = (trial, saved)
    return steps


def uniform_widths(space: SearchSpace, model: LatencyModel, budget_ms: float) -> Widths | None:
    fractions = sorted({o / u.width for u in space.units for o in u.options}, reverse=True)
    for f in fractions:  # widest first: every unit at the widest of its widths within f of its dense width
        widths = {u.name: max((o for o in u.options if o <= f * u.width + 1e-9), default=u.options[0])
                  for u in space.units}
        if model.predict(widths) <= budget_ms:
            return widths
    return None
