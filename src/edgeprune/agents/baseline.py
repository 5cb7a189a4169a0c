"""The dense reference point of a sweep: accuracy and size where the model is, latency where the trials run.

A report shows each trial's speed-up as the dense model's latency over the trial's, so both latencies must
come from the same device, runtime and settings — the consumer's. The producer that prepares the base model
(or ``edgeprune sweep`` before it starts the agents; :func:`edgeprune.agents.producer.publish_baseline`)
records the dense model's accuracy, MACs and weights in the study's ``baseline`` and puts its ONNX file into
the artifact store, like a trial's; the first consumer that serves the sweep benchmarks that file with the
settings it uses for trials and adds ``latency_ms``, ``e2e_latency_ms`` and ``throughput_fps`` to
``baseline``. Several producers or consumers doing this at once only repeat the work: every write holds the
same kind of values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeprune.agents.artifacts import ArtifactRef, StoreResolver
from edgeprune.fileio import write_json
from edgeprune.sweep.config import BenchmarkSettings
from edgeprune.sweep.engine import SweepStudy
from edgeprune.sweep.live import publish_live_views
from edgeprune.sweep.measure import benchmark, headline, measured_on

BASELINE_ATTR = "baseline"
ARTIFACT_ATTR = "baseline_artifact"


def needs_latency(study: SweepStudy) -> bool:
    attrs = study.study.user_attrs
    return ARTIFACT_ATTR in attrs and "latency_ms" not in (attrs.get(BASELINE_ATTR) or {})


def measure_baseline(study: SweepStudy, stores: StoreResolver, settings: BenchmarkSettings,
                     out_dir: Path) -> dict[str, Any]:
    """Benchmark the stored dense model with ``settings`` (the trials' own) and complete the study's baseline."""
    attrs = study.study.user_attrs
    ref = ArtifactRef.model_validate(attrs[ARTIFACT_ATTR])
    local = stores(ref).fetch(ref, out_dir / "model.onnx")
    result = benchmark(local, settings)
    write_json(out_dir / "bench.json", result)
    baseline = {**(attrs.get(BASELINE_ATTR) or {}), **headline(result), "measured_on": measured_on(result)}
    study.study.set_user_attr(BASELINE_ATTR, baseline)
    publish_live_views(study.study, study.storage_url)  # the reference point of the front and of every speed-up
    stores(ref).discard(ref)
    return baseline
