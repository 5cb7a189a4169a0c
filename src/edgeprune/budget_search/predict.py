"""Whole-network latency from the kernel table: the per-kernel sum, scaled and offset by a fitted per-network term.

Why a fitted term: kernels timed one by one each pay a runtime call, an input upload and an output download
that a network pays once, and they miss what is not a kernel (the residual adds, pooling, the stem's input
copy). For one model those costs change little with the widths, so the network's latency is close to
``scale * sum + offset``; ``scale`` and ``offset`` are fitted by least squares on a few networks of the same
model measured whole (the dense one, the narrowest one and random configurations between). With a single
calibration network only the offset is fitted (scale 1).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from edgeprune.budget_search.latency import LatencyTable
from edgeprune.budget_search.space import SearchSpace


def kernel_sum(space: SearchSpace, table: LatencyTable, widths: Mapping[str, int]) -> float:
    """The summed table latency (ms) of every kernel of the network at ``widths``."""
    return float(sum(table[kernel] for _, kernel in space.kernels(widths)))


@dataclass(frozen=True)
class LatencyModel:
    """``predict(widths) = scale * kernel_sum(widths) + offset`` for one model on one target."""

    space: SearchSpace
    table: LatencyTable
    scale: float = 1.0
    offset: float = 0.0

    def predict(self, widths: Mapping[str, int]) -> float:
        return self.scale * kernel_sum(self.space, self.table, widths) + self.offset

    @classmethod
    def fit(cls, space: SearchSpace, table: LatencyTable, measured: Sequence[tuple[Mapping[str, int], float]]
            ) -> LatencyModel:
        """Least squares of measured whole-network latencies (ms) on the kernel sums."""
        if not measured:
            raise ValueError("at least one measured network is needed")
        sums = np.array([kernel_sum(space, table, w) for w, _ in measured])
        lat = np.array([ms for _, ms in measured])
        if len(measured) == 1 or np.ptp(sums) < 1e-9:
            return cls(space, table, 1.0, float(np.mean(lat - sums)))
        scale, offset = np.polyfit(sums, lat, 1)
        return cls(space, table, float(scale), float(offset))
