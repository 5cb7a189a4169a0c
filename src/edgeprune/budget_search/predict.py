"""Whole-network latency from the kernel table: the kernels' latencies summed per input resolution, and the
network's MACs, weighted by coefficients fitted on networks of the same model measured whole.

Why not the plain kernel sum: a kernel timed alone pays a runtime call and its input and output in the plain
layout, which a network pays once, and it misses what is not a kernel (residual adds, pooling). Where a
runtime runs each layer on its own (ONNX Runtime), ``scale * sum + offset`` predicts a network within a few
per cent. OpenVINO's CPU plugin does not: it picks kernels and blocked layouts for the whole graph, so a layer
costs what its neighbours let it cost. Measured on ResNet-20 and ResNet-56 (BENCHMARKS.md, "the latency
model"), its whole-network latency follows the MACs closely and the kernel sums with a different weight per
output resolution (a stage at 32x32 runs at another efficiency than one at 8x8): fitting one coefficient per
resolution, one per MAC and an offset brought the median error from about 8-12 % to about 2 %.

The coefficients are fitted by non-negative least squares (the offset may be negative), so narrowing a layer
never predicts a slower network. The full model needs ``networks_needed`` measured networks; with fewer, the
plain ``scale * sum + offset`` is fitted (both are the same model with tied coefficients).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from edgeprune.budget_search.latency import LatencyTable
from edgeprune.budget_search.space import Kernel, SearchSpace

NETWORKS_PER_TERM = 2  # measured networks per coefficient before the full model is fitted (see networks_needed)


def kernel_sum(space: SearchSpace, table: LatencyTable, widths: Mapping[str, int]) -> float:
    """The summed table latency (ms) of every kernel of the network at ``widths``."""
    return float(sum(table[kernel] for _, kernel in space.kernels(widths)))


def output_hw(kernel: Kernel) -> tuple[int, int]:
    """A conv's output height and width (a Linear layer's: 1 x 1)."""
    if kernel.op == "linear":
        return (1, 1)
    h, w = ((n + 2 * p - k) // s + 1 for n, p, k, s in zip(kernel.hw, kernel.padding, kernel.kernel, kernel.stride,
                                                            strict=True))
    return (h, w)


def kernel_macs(kernel: Kernel) -> int:
    """Multiply-accumulates of one conv or Linear layer (batch 1)."""
    if kernel.op == "linear":
        return kernel.cin * kernel.cout
    h, w = output_hw(kernel)
    per_output = (1 if kernel.op == "dwconv" else kernel.cin) * kernel.kernel[0] * kernel.kernel[1]
    return kernel.cout * h * w * per_output


def _resolutions(space: SearchSpace) -> list[tuple[int, int]]:
    """The output resolutions of the space's convs, largest first."""
    return sorted({output_hw(k) for _, k in space.kernels(space.dense) if k.op != "linear"},
                  key=lambda hw: -hw[0] * hw[1])


def _group(kernel: Kernel, resolutions: list[tuple[int, int]]) -> int:
    """A conv's term: its output resolution's. A Linear layer joins the smallest resolution (the classifier
    follows the last stage, and a term of its own is nearly constant, so it fits as noise)."""
    if kernel.op == "linear" or not resolutions:
        return max(len(resolutions) - 1, 0)
    return resolutions.index(output_hw(kernel))


def terms(space: SearchSpace) -> tuple[str, ...]:
    """The model's terms for this space: the kernel sum per conv output resolution (Linear layers with the
    smallest), the MACs in millions, and the offset."""
    names = [f"kernels at {h}x{w}" for h, w in _resolutions(space)] or ["kernels"]
    return (*names, "MMACs", "offset")


def networks_needed(space: SearchSpace) -> int:
    """Measured networks the full model needs (with fewer, the plain scaled sum is fitted): twice its terms. With
    one network more than the terms, one disturbed measurement could set a coefficient; measured on ResNet-20 and
    OpenVINO, 7 networks for its 5 terms gave a median error of 2-12 % depending on the draw, 10 gave 2.6-3.7 %."""
    return NETWORKS_PER_TERM * len(terms(space))


@dataclass(frozen=True)
class LatencyModel:
    """``predict(widths) = features(widths) · coefficients`` for one model on one target (see the module)."""

    space: SearchSpace
    table: LatencyTable
    coefficients: tuple[float, ...]

    @cached_property
    def _resolutions(self) -> list[tuple[int, int]]:  # once per model: predict() runs in the search's inner loop
        return _resolutions(self.space)

    def features(self, widths: Mapping[str, int]) -> np.ndarray:
        return features(self.space, self.table, widths, self._resolutions)

    def predict(self, widths: Mapping[str, int]) -> float:
        return float(self.features(widths) @ np.asarray(self.coefficients))

    def describe(self) -> str:
        """The fitted model in words, e.g. ``0.61 x kernels at 32x32 + ... + 0.0041 x MMACs - 0.12 ms``."""
        named = zip(self.coefficients[:-1], terms(self.space)[:-1], strict=True)
        parts = [f"{c:.3g} x {t}" for c, t in named if c != 0]
        offset = self.coefficients[-1]
        return " + ".join(parts or ["0"]) + f" {'-' if offset < 0 else '+'} {abs(offset):.3g} ms"

    def to_dict(self) -> dict[str, float]:
        return dict(zip(terms(self.space), self.coefficients, strict=True))

    @classmethod
    def scaled(cls, space: SearchSpace, table: LatencyTable, scale: float, offset: float) -> LatencyModel:
        """``scale * kernel sum + offset``: every resolution weighted alike, no MAC term."""
        n = len(terms(space)) - 2
        return cls(space, table, (*([scale] * n), 0.0, offset))

    @classmethod
    def fit(cls, space: SearchSpace, table: LatencyTable, measured: Sequence[tuple[Mapping[str, int], float]]
            ) -> LatencyModel:
        """Fit on measured whole-network latencies (ms): the full model once ``networks_needed`` are measured,
        else the scaled sum (with a single network, only its offset)."""
        if not measured:
            raise ValueError("at least one measured network is needed")
        lat = np.array([ms for _, ms in measured])
        if len(measured) >= networks_needed(space):
            resolutions = _resolutions(space)
            x = np.stack([features(space, table, w, resolutions) for w, _ in measured])
            return cls(space, table, tuple(float(c) for c in _nonnegative_lstsq(x, lat)))
        return cls.fit_scaled(space, table, measured)

    @classmethod
    def fit_scaled(cls, space: SearchSpace, table: LatencyTable,
                   measured: Sequence[tuple[Mapping[str, int], float]]) -> LatencyModel:
        """``scale * kernel sum + offset`` by least squares (with a single network, only its offset)."""
        lat = np.array([ms for _, ms in measured])
        sums = np.array([kernel_sum(space, table, w) for w, _ in measured])
        if len(measured) == 1 or np.ptp(sums) < 1e-9:
            return cls.scaled(space, table, 1.0, float(np.mean(lat - sums)))
        scale, offset = np.polyfit(sums, lat, 1)
        if scale <= 0:  # noise larger than the spread of the networks: a constant is all the data supports
            return cls.scaled(space, table, 0.0, float(np.mean(lat)))
        return cls.scaled(space, table, float(scale), float(offset))


def features(space: SearchSpace, table: LatencyTable, widths: Mapping[str, int],
             resolutions: list[tuple[int, int]] | None = None) -> np.ndarray:
    """The model's terms for the network at ``widths`` (``resolutions``: the space's, if already known)."""
    resolutions = _resolutions(space) if resolutions is None else resolutions
    x = np.zeros(max(len(resolutions), 1) + 2)
    for _, kernel in space.kernels(widths):
        x[_group(kernel, resolutions)] += table[kernel]
        x[-2] += kernel_macs(kernel) / 1e6
    x[-1] = 1.0
    return x


def _nonnegative_lstsq(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least squares with every coefficient but the last (the offset) kept >= 0: an active-set loop that drops
    the most negative term and refits, as Lawson and Hanson's NNLS does, for the handful of terms here."""
    active = list(range(x.shape[1]))
    while True:
        coef, *_ = np.linalg.lstsq(x[:, active], y, rcond=None)
        negative = [(c, i) for c, i in zip(coef, active, strict=True) if c < 0 and i != x.shape[1] - 1]
        if not negative:
            full = np.zeros(x.shape[1])
            full[active] = coef
            return full
        active.remove(min(negative)[1])
