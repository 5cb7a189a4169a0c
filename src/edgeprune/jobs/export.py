"""``edgeprune export``: checkpoint -> one self-contained ONNX file (+ optional OpenVINO IR), parity-checked.

Atomic: everything is written into a hidden temporary directory beside the output and checked there
(``onnx.checker``, ONNX Runtime and OpenVINO outputs against PyTorch's); only when every check passes
are the files renamed into place. A refused export leaves nothing behind, not even a directory.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgeprune.conversion.openvino_ir import convert_to_ir
from edgeprune.conversion.parity import TOLERANCE_F32, TOLERANCE_FP16_WEIGHTS, ParityReport, compare
from edgeprune.conversion.provenance import provenance_metadata
from edgeprune.conversion.torch_onnx import export_proto
from edgeprune.data import load_dataset
from edgeprune.errors import ConfigError
from edgeprune.measurement.images import prepare
from edgeprune.models.resolve import resolve_model
from edgeprune.models.summary import input_shape_of
from edgeprune.runtime.backends import RunSettings
from edgeprune.runtime.backends.ort_backend import OnnxRuntimeRunner
from edgeprune.runtime.backends.ov_backend import OpenVINORunner
from edgeprune.runtime.devices import available_cpus
from edgeprune.runtime.errors import ParityError, ShapeError
from edgeprune.runtime.metadata import encode

PARITY_SAMPLES = 16


@dataclass
class ExportResult:
    onnx: Path
    ir: Path | None
    opset: int
    input_shape: list[int | str]  # e.g. ["batch", 3, 32, 32]
    parity: list[ParityReport] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)


def export_model(spec: str, out: str | Path, *, opset: int | None = None, dynamic_batch: bool = False,
                 batch: int = 1, openvino_dir: str | Path | None = None, fp16: bool = False,
                 data: str | None = None, arch: str | None = None, exporter: str = "dynamo",
                 tolerance: float | None = None, samples: int = PARITY_SAMPLES) -> ExportResult:
    """Export MODEL (checkpoint, zoo name or ``module:factory``) to ``out`` (.onnx) and optionally an IR.

    Parity inputs are ``samples`` test images of ``data`` (with the model's normalisation) or, without
    ``data``, seeded standard-normal tensors. ``tolerance`` bounds ``max_rel_diff`` (default 1e-4, and
    1e-2 for the FP16-weight IR).
    """
    out = Path(out)
    if out.suffix.lower() != ".onnx":
        raise ConfigError(f"The export target {out} must end in .onnx.")
    loaded = resolve_model(spec, arch=arch)
    model = loaded.model.eval().cpu()
    shape = input_shape_of(model)
    meta = provenance_metadata(loaded, shape, exporter=exporter, opset=opset)
    proto = export_proto(model, shape, batch=batch, dynamic_batch=dynamic_batch, opset=opset, exporter=exporter)
    encoded = encode(meta)
    for key, value in encoded.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    x, described = _parity_inputs(shape, loaded.normalize, data, samples, batch, dynamic_batch)
    with torch.inference_mode():
        reference = model(torch.from_numpy(x)).numpy()
    ir_dir = Path(openvino_dir) if openvino_dir is not None else None
    created = _make_dirs(out.parent) + (_make_dirs(ir_dir) if ir_dir is not None else [])
    try:
        with contextlib.ExitStack() as stack:  # temporaries beside each target, so the final renames are atomic
            tmp_onnx = Path(stack.enter_context(_hidden_tmp(out.parent, out.name))) / out.name
            tmp_onnx.write_bytes(proto.SerializeToString())
            ort = OnnxRuntimeRunner(str(tmp_onnx), RunSettings(threads=available_cpus()))
            reports = [compare(reference, ort.infer_all(x), runtime="ONNX Runtime", inputs=described,
                               tolerance=TOLERANCE_F32 if tolerance is None else tolerance)]
            tmp_xml = None
            if ir_dir is not None:
                tmp_xml = Path(stack.enter_context(_hidden_tmp(ir_dir, out.name))) / out.with_suffix(".xml").name
                convert_to_ir(tmp_onnx, tmp_xml, fp16=fp16, metadata=encoded)
                ov = OpenVINORunner(str(tmp_xml), RunSettings(threads=available_cpus(), precision="f32"))
                label = f"OpenVINO f32 ({'FP16' if fp16 else 'FP32'} weights)"
                reports.append(compare(reference, ov.infer_all(x), runtime=label, inputs=described,
                                       tolerance=_ir_tolerance(tolerance, fp16)))
            _refuse_failed(reports, out)
            os.replace(tmp_onnx, out)
            xml = None
            if tmp_xml is not None and ir_dir is not None:
                xml = ir_dir / tmp_xml.name
                os.replace(tmp_xml.with_suffix(".bin"), xml.with_suffix(".bin"))
                os.replace(tmp_xml, xml)
    except BaseException:
        for directory in created:
            if directory.is_dir() and not any(directory.iterdir()):
                directory.rmdir()
        raise
    opset_used = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    return ExportResult(out, xml, int(opset_used), dims, reports, meta)


def _parity_inputs(shape: tuple[int, ...], normalize: dict[str, list[float]] | None, data: str | None,
                   samples: int, batch: int, dynamic_batch: bool) -> tuple[np.ndarray, str]:
    """Real test images (normalised as in training) or seeded random tensors, a whole number of batches."""
    count = samples if dynamic_batch else max(batch, samples - samples % batch)
    if data is None:
        rng = np.random.default_rng(0)
        return rng.standard_normal((count, *shape), dtype=np.float32), f"{count} random inputs"

    test = load_dataset(data, "test").subset(count)
    if test.input_shape != tuple(shape):
        raise ShapeError(f"The model expects input of shape {list(shape)} (C, H, W) but {data!r} has "
                         f"{list(test.input_shape)} images.", hint="Give --data of the model's image size "
                                                                   "and channels.")
    count = len(test) - len(test) % (1 if dynamic_batch else batch)
    if count == 0:
        raise ShapeError(f"{data!r} has {len(test)} test images, fewer than one batch of {batch}.")
    return prepare(test.model_images[:count], normalize), f"{count} test images of {data}"


def _ir_tolerance(tolerance: float | None, fp16: bool) -> float:
    if tolerance is not None:
        return tolerance
    return TOLERANCE_FP16_WEIGHTS if fp16 else TOLERANCE_F32


def _refuse_failed(reports: list[ParityReport], out: Path) -> None:
    failed = [r for r in reports if not r.ok]
    if failed:
        raise ParityError(f"Export to {out} refused: " + "; ".join(r.line() for r in failed) + ". Nothing was "
                          "written.", hint="A runtime disagrees with PyTorch: try --exporter torchscript/dynamo or "
                                           "another --opset; raise --tolerance only if the difference is expected "
                                           "(e.g. FP16 weights).")


def _hidden_tmp(directory: Path, name: str) -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(dir=directory, prefix=f".{name}.")


def _make_dirs(directory: Path) -> list[Path]:
    """Create ``directory``; return the directories that did not exist, deepest first (to undo on refusal)."""
    missing = []
    probe = directory
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    directory.mkdir(parents=True, exist_ok=True)
    return missing
