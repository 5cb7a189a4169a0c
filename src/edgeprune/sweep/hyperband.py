"""WandB's hyperband early termination, re-implemented exactly (Optuna's ``HyperbandPruner`` is a different rule).

WandB compares a running run with *all* runs of the sweep at fixed iteration indices ("bands"): at band
``b`` the threshold is the ``1/eta`` quantile of every run's metric at index ``b`` (``sorted(v)[int(len(v)/eta)]``,
lower is better after negating a maximised metric), and a running run whose best value so far is worse than
the threshold of the last band it has passed is stopped. Here a run's history is a trial's per-epoch
validation metric, and stopping means the trial is pruned (its process gets SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def band_thresholds(histories: Sequence[Sequence[float]], bands: Sequence[int], eta: float) -> list[float]:
    """Per band, the value a run must reach (minimisation space); ``inf`` while no run has got that far."""
    out = []
    for band in bands:
        values = sorted(h[band] for h in histories if len(h) > band)
        out.append(values[int((1.0 / eta) * len(values))] if values else math.inf)  # WandB: int(r * n)
    return out


def should_stop(history: Sequence[float], histories: Sequence[Sequence[float]], bands: Sequence[int], eta: float,
                maximize: bool) -> bool:
    """Whether a running trial with ``history`` is stopped, given every trial's history (its own included)."""
    sign = -1.0 if maximize else 1.0
    own = [sign * v for v in history]
    everyone = [[sign * v for v in h] for h in histories if h]
    passed = [(b, t) for b, t in zip(bands, band_thresholds(everyone, bands, eta), strict=True) if b < len(own)]
    return bool(passed) and min(own) > passed[-1][1]


def metric_series(history: Sequence[dict[str, Any]], metric: str) -> list[float]:
    """A trial's values of ``metric``, step by step, from its recorded rows (rows without it are skipped)."""
    return [float(h[metric]) for h in history if isinstance(h.get(metric), (int, float))]
