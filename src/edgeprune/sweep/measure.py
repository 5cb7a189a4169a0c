"""The MEASURE half of a pipeline trial: benchmark the produced ONNX artifact and tell the study.

Kept apart from PRODUCE because measuring needs the target device while producing needs training
hardware: a consumer agent (:mod:`edgeprune.agents.consumer`) runs it on the device itself, one job at a
time. Everything it needs is in the :class:`~edgeprune.sweep.job.TrialJob`.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from edgeprune.fileio import write_json
from edgeprune.measurement.protocol import Protocol
from edgeprune.measurement.run import measure_model
from edgeprune.sweep.config import BenchmarkSettings
from edgeprune.sweep.engine import SweepStudy
from edgeprune.sweep.job import TrialJob


def benchmark(onnx: str | Path, settings: BenchmarkSettings) -> dict[str, Any]:
    """The full benchmark result (edgeprune bench's JSON object) of one ONNX file."""
    protocol = Protocol(niter=settings.niter, warmup=settings.warmup, budget_s=settings.budget_s)
    return measure_model(str(onnx), backend=settings.backend, device=settings.device, batch=settings.batch,
                         protocol=protocol, threads=settings.threads)


def headline(result: dict[str, Any]) -> dict[str, float]:
    """The three numbers a sweep optimises over: median latency, median end-to-end latency, throughput."""
    return {"latency_ms": float(result["latency_median_ms"]), "e2e_latency_ms": float(result["e2e_latency_median_ms"]),
            "throughput_fps": float(result["throughput_fps"])}


def measured_on(result: dict[str, Any]) -> str:
    """Where a latency was measured, in words: the device and runtime, the CPU, the settings and the host.

    Recorded with each trial because a latency means nothing without it, and in the distributed case the
    benchmark's JSON stays on the consumer's machine while the study is read everywhere.
    """
    settings = result.get("settings", {})
    threads = settings.get("threads")
    return (f"{result.get('device_name') or result.get('device')} ({result.get('backend')}) on "
            f"{result.get('environment', {}).get('cpu_model', '?')}, {threads} thread{'s' * (threads != 1)}, "
            f"batch {settings.get('batch')}, host {socket.gethostname()}")


def measure(job: TrialJob) -> tuple[dict[str, float], Path, str]:
    """Benchmark the job's (verified) artifact; the full result is saved beside it as ``bench.json``."""
    artifact = job.verified_artifact()
    result = benchmark(artifact, job.benchmark)
    write_json(artifact.parent / "bench.json", result)
    return headline(result), artifact.parent / "bench.json", measured_on(result)


def measure_and_tell(study: SweepStudy, job: TrialJob) -> dict[str, float]:
    """MEASURE: benchmark, then record every metric and artifact path with the trial (completing it)."""
    bench, bench_file, device = measure(job)
    metrics = {**job.metrics, **bench}
    study.complete(job.trial_number, metrics, history=job.history, measured_on=device,
                   artifacts={"onnx": job.artifact, "checkpoint": job.checkpoint, "schedule": job.schedule,
                              "bench": str(bench_file), "job": str(Path(job.artifact).parent / "job.json")})
    return metrics
