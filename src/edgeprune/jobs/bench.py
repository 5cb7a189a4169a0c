"""``edgeprune bench``: measure MODEL — a model file, or a checkpoint / zoo name — by the protocol.

A checkpoint benchmarked on an ONNX backend is first exported, parity-checked, to a temporary ONNX file with a
static batch of ``batch``; the measuring itself is :func:`edgeprune.measurement.run.measure_model`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from edgeprune.measurement.protocol import Protocol
from edgeprune.measurement.run import measure_model
from edgeprune.runtime.modelfile import model_kind


def bench_model(model: str, *, backend: str = "openvino", device: str = "CPU", batch: int = 1,
                protocol: Protocol | None = None, hint: str = "latency", precision: str = "f32",
                threads: int | None = None, images: str | Path | None = None, arch: str | None = None,
                exporter: str = "dynamo") -> dict[str, Any]:
    """Measure MODEL (.onnx, .xml, checkpoint or zoo name); returns the documented JSON object."""
    options: dict[str, Any] = {"backend": backend, "device": device, "batch": batch, "protocol": protocol,
                               "hint": hint, "precision": precision, "threads": threads, "images": images,
                               "arch": arch}
    if model_kind(model) is not None or backend == "torch":
        return measure_model(model, **options)
    # Exporting needs torch, which a measuring host (edgeprune[consumer]) does not have: loaded only here.
    from edgeprune.jobs.export import export_model

    with tempfile.TemporaryDirectory(prefix="edgeprune-bench-") as tmp:
        onnx = export_model(model, Path(tmp) / "model.onnx", batch=batch, arch=arch, exporter=exporter).onnx
        return measure_model(str(onnx), label=str(model), model_format=f"pytorch, exported to ONNX ({exporter})",
                             **options)
