"""Comparing models' speed honestly on a shared machine: interleaved rounds and paired speed-ups.

Why interleaved: a busy phase of the machine (another process, thermal throttling, a frequency change)
would make whichever model was measured then look slow. Measuring every model once per repeat, in turn,
and taking the median over repeats of *paired* ratios (a model and the reference measured seconds apart)
cancels such phases out; the ratio of minimum latencies, the figure least touched by other processes, is
reported beside it. Every result is checked to be comparable with the reference (same backend settings,
input, threads) — speed-ups are never computed silently across different conditions.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from typing import Any

from edgeprune.errors import EdgepruneError
from edgeprune.jobs.bench import bench_model
from edgeprune.measurement.protocol import Protocol
from edgeprune.measurement.result import comparable


def measure_interleaved(models: Mapping[str, Mapping[str, str]], repeats: int, protocol: Protocol,
                        threads: int | None = None) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """``models[name][backend]`` is the file to measure there; returns ``[name][backend]`` -> one result per
    repeat, every model and backend measured once per repeat, in turn."""
    results: dict[str, dict[str, list[dict[str, Any]]]] = {
        name: {backend: [] for backend in files} for name, files in models.items()}
    for _ in range(repeats):
        for name, files in models.items():
            for backend, path in files.items():
                results[name][backend].append(bench_model(str(path), backend=backend, protocol=protocol,
                                                          threads=threads))
    return results


def speedup_row(reference: list[dict[str, Any]], runs: list[dict[str, Any]], mac_ratio: float) -> dict[str, Any]:
    """Latency and throughput of ``runs`` against ``reference`` (the same repeats, paired in order).

    ``realised`` is the share of the MAC reduction that the latency realises: ``speedup / mac_ratio``.
    """
    for run in runs:
        verdict = comparable(run, reference[0])
        if not verdict:
            raise EdgepruneError("Benchmark results that are not comparable were to be compared: "
                                 + "; ".join(verdict.reasons))
    pairs = list(zip(reference, runs, strict=True))
    speedup = statistics.median(d["latency_median_ms"] / r["latency_median_ms"] for d, r in pairs)
    return {
        "mac_ratio": round(mac_ratio, 3),
        "latency_median_ms": round(statistics.median(r["latency_median_ms"] for r in runs), 4),
        "latency_min_ms": round(min(r["latency_min_ms"] for r in runs), 4),
        "latency_speedup": round(speedup, 3),
        "latency_speedup_min": round(min(d["latency_min_ms"] for d in reference)
                                     / min(r["latency_min_ms"] for r in runs), 3),
        "throughput_fps": round(statistics.median(r["throughput_fps"] for r in runs), 1),
        "throughput_speedup": round(statistics.median(r["throughput_fps"] / d["throughput_fps"] for d, r in pairs),
                                    3),
        "realised": round(speedup / mac_ratio, 3),
        "latency_cv_max": round(max(r["latency_cv"] for r in runs), 3),
        "cv_met_all": all(r["cv_met"] for r in runs),
    }
