"""The measurement protocol: warm up, time rounds of iterations, stop when they are steady or time is up.

Why rounds and a coefficient of variation: on a shared or thermally throttled machine one round can be
disturbed; repeating until the round's CV (std/mean) is under a threshold, within a time budget, gives a
number that is either steady or explicitly marked as not (``cv_met`` false), never silently noisy.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edgeprune.errors import ConfigError
from edgeprune.signals import raise_if_interrupted


@dataclass(frozen=True)
class LatencyStats:
    """Summary of one round of per-iteration times (milliseconds); percentiles interpolate linearly."""

    median_ms: float
    avg_ms: float
    min_ms: float
    max_ms: float
    p90_ms: float
    p99_ms: float
    std_ms: float
    cv: float
    iterations: int

    @classmethod
    def from_samples(cls, samples_ms: list[float]) -> LatencyStats:
        a = np.asarray(samples_ms, dtype=np.float64)
        if a.size == 0:
            raise ValueError("no latency samples")
        mean = float(a.mean())
        std = float(a.std(ddof=1)) if a.size > 1 else 0.0
        p50, p90, p99 = (float(v) for v in np.percentile(a, [50, 90, 99]))
        return cls(p50, mean, float(a.min()), float(a.max()), p90, p99, std, std / mean if mean > 0 else 0.0,
                   int(a.size))


@dataclass(frozen=True)
class Protocol:
    """``niter`` iterations per round (or ``time_s`` seconds), after ``warmup`` untimed ones; rounds repeat
    until the round's CV <= ``cv_threshold`` or ``budget_s`` seconds of measuring have passed."""

    niter: int = 100
    time_s: float | None = None
    warmup: int = 10
    cv_threshold: float = 0.10
    budget_s: float = 20.0

    def __post_init__(self) -> None:
        if self.niter < 1 or (self.time_s is not None and self.time_s <= 0):
            raise ConfigError(f"Need at least one iteration per round (--niter {self.niter}, --time {self.time_s}).")
        if self.warmup < 0 or self.cv_threshold <= 0 or self.budget_s < 0:
            raise ConfigError("--warmup must be >= 0, --cv > 0 and --budget >= 0.")


@dataclass(frozen=True)
class Measurement:
    stats: LatencyStats
    rounds: int
    cv_met: bool


def time_round(call: Callable[[int], object], protocol: Protocol,
               clock: Callable[[], float] = time.perf_counter) -> LatencyStats:
    """One round: ``call(i)`` for i = 0, 1, ... timed individually, for ``niter`` calls or ``time_s`` seconds.

    ``clock`` (seconds) is injectable so that the protocol's decisions can be tested without real time.
    """
    samples: list[float] = []
    start = clock()
    i = 0
    while (protocol.time_s is None and i < protocol.niter) or \
            (protocol.time_s is not None and (i == 0 or clock() - start < protocol.time_s)):
        raise_if_interrupted()
        t0 = clock()
        call(i)
        samples.append((clock() - t0) * 1000.0)
        i += 1
    return LatencyStats.from_samples(samples)


def measure(call: Callable[[int], object], protocol: Protocol,
            clock: Callable[[], float] = time.perf_counter) -> Measurement:
    """Warm up, then rounds until steady (CV under the threshold) or out of budget; the last round counts."""
    for i in range(protocol.warmup):
        raise_if_interrupted()
        call(i)
    start = clock()
    rounds = 0
    while True:
        stats = time_round(call, protocol, clock)
        rounds += 1
        if stats.cv <= protocol.cv_threshold:
            return Measurement(stats, rounds, True)
        if clock() - start >= protocol.budget_s:
            return Measurement(stats, rounds, False)
