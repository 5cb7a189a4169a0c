"""Measure one model by the protocol, on one backend and device: what ``edgeprune bench`` reports.

Phases, each reported separately: read + compile (``load_time_ms``), the first inference (lazy
initialisation shows here, not in the latency), warm-up, latency rounds on bound inputs (pure inference),
end-to-end iterations (prepare the images, upload, infer, download), and throughput (the backend's
parallel mode). It runs what a runtime can load — an .onnx or OpenVINO .xml file, or for the torch backend a
checkpoint or zoo name — and needs no torch for files: this is what a consumer on a device host runs.
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from edgeprune.errors import ConfigError
from edgeprune.measurement.environment import environment
from edgeprune.measurement.images import DEFAULT_IMAGES, benchmark_images, prepare, select
from edgeprune.measurement.protocol import Protocol, measure, time_round
from edgeprune.measurement.result import result_dict
from edgeprune.runtime.backends import RunSettings, open_runner
from edgeprune.runtime.backends.base import timed
from edgeprune.runtime.devices import available_cpus
from edgeprune.runtime.modelfile import model_kind

MODEL_FORMATS = {"onnx": "onnx", "openvino": "openvino-ir"}


def measure_model(path: str, *, backend: str = "openvino", device: str = "CPU", batch: int = 1,
                  protocol: Protocol | None = None, hint: str = "latency", precision: str = "f32",
                  threads: int | None = None, images: str | Path | None = None, arch: str | None = None,
                  label: str | None = None, model_format: str | None = None) -> dict[str, Any]:
    """Measure the model at ``path`` with ``backend``; returns the JSON object of docs/benchmark-json.md.

    ``label`` and ``model_format`` describe what the user asked for when ``path`` is an intermediate file (a
    checkpoint exported to ONNX first): the result names the model, not the temporary file.
    """
    protocol = protocol or Protocol()
    if batch < 1:
        raise ConfigError(f"--batch must be at least 1, got {batch}.")
    if threads is not None and threads < 0:
        raise ConfigError(f"--threads must be 0 (every CPU this process may use) or more, got {threads}.")
    settings = RunSettings(device=device, threads=threads or available_cpus(), precision=precision, hint=hint)
    model_format = model_format or MODEL_FORMATS.get(model_kind(path) or "", "pytorch")
    runner = open_runner(backend, path, settings, arch=arch)
    c, h, w = (int(d) for d in runner.input_shape[1:])  # type: ignore[arg-type]
    pictures = benchmark_images(images, runner.io.metadata, (c, h, w))
    normalize = runner.io.metadata.get("normalize")
    distinct = DEFAULT_IMAGES // math.gcd(DEFAULT_IMAGES, batch)  # batches before the images repeat
    batches = [prepare(select(pictures.images, i * batch, batch), normalize) for i in range(distinct)]
    bound = [runner.bind(x) for x in batches]
    _, first_ms = timed(bound[0])
    latency = measure(lambda i: bound[i % distinct](), protocol)
    e2e = time_round(lambda i: runner.infer(prepare(select(pictures.images, i * batch, batch), normalize)),
                     protocol)
    run = runner.throughput(batches[0], iterations=None if protocol.time_s else protocol.niter,
                            seconds=protocol.time_s)
    return result_dict(
        model=label or str(path), model_format=model_format, arch=runner.io.metadata.get("arch"),
        backend=runner.backend, device=runner.device, device_name=runner.device_name,
        device_plugin=runner.device_plugin, precision_used=runner.precision_used,
        settings={**asdict(protocol), "batch": batch, "input_shape": [batch, c, h, w], "hint": hint,
                  "precision": precision, "threads": settings.threads,
                  "images": str(images) if images is not None else None},
        input_source=pictures.source, input_detail=pictures.detail,
        times_ms={"read_time_ms": runner.read_time_ms, "compile_time_ms": runner.compile_time_ms,
                  "load_time_ms": runner.read_time_ms + runner.compile_time_ms, "first_inference_ms": first_ms},
        latency=latency.stats, rounds=latency.rounds, cv_met=latency.cv_met, e2e=e2e,
        throughput={"throughput_fps": round(batch * run.iterations / run.seconds, 3),
                    "throughput_streams": run.streams, "throughput_requests": run.requests,
                    "throughput_iterations": run.iterations, "throughput_duration_ms": round(run.seconds * 1e3, 3)},
        environment=environment(), timestamp=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )
