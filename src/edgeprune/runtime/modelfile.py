"""Reading exported model files defensively: existence, corruption, external data, input/output names.

Runtimes report a truncated protobuf or a missing weights file as a C++ exception several frames deep;
these checks turn each into one sentence naming the file and the fix, before any runtime sees it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeprune.runtime.errors import ModelFileError, require
from edgeprune.runtime.metadata import decode

ONNX_SUFFIX = ".onnx"
IR_SUFFIX = ".xml"


@dataclass(frozen=True)
class ModelIO:
    """The one input and one output of an exported classifier, and its edgeprune metadata."""

    input_name: str
    input_shape: tuple[int | None, ...]  # None where the dimension is dynamic
    output_name: str
    metadata: dict[str, Any] = field(default_factory=dict)
    opset: int | None = None  # the ONNX default-domain opset; None for other formats


def model_kind(path: str | Path) -> str | None:
    """``"onnx"`` or ``"openvino"`` for an exported model's file name, else ``None`` (checkpoint or zoo name)."""
    suffix = Path(path).suffix.lower()
    return {ONNX_SUFFIX: "onnx", IR_SUFFIX: "openvino"}.get(suffix)


def check_exists(path: Path, what: str) -> None:
    if not path.is_file():
        raise ModelFileError(f"{what} {path} does not exist.",
                             hint="Check the path; `edgeprune export CKPT -o model.onnx` writes one.")


def inspect_onnx(path: str | Path) -> ModelIO:
    """Parse an ONNX file without loading external tensors; refuse corrupt files and missing data files."""
    onnx = require("onnx")
    path = Path(path)
    check_exists(path, "ONNX model")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise ModelFileError(f"{path} is not a readable ONNX model ({type(exc).__name__}: {exc}).",
                             hint="The file is corrupt or truncated: export it again.") from None
    initializers = {t.name for t in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in initializers]
    if not proto.graph.node or len(inputs) != 1 or len(proto.graph.output) < 1:
        raise ModelFileError(
            f"{path} is not an ONNX classifier with one input: it has {len(proto.graph.node)} nodes and "
            f"{len(inputs)} inputs.", hint="The file is corrupt, or not a model edgeprune exported.")
    _check_external_data(proto, path)
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    return ModelIO(inputs[0].name, _dims(inputs[0]), proto.graph.output[0].name,
                   decode({p.key: p.value for p in proto.metadata_props}), opset)


def _dims(value_info: Any) -> tuple[int | None, ...]:
    dims = value_info.type.tensor_type.shape.dim
    return tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)


def _check_external_data(proto: Any, path: Path) -> None:
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    for tensor in proto.graph.initializer:
        if not uses_external_data(tensor):
            continue
        location = path.parent / ExternalDataInfo(tensor).location
        if not location.is_file():
            raise ModelFileError(
                f"ONNX model {path} keeps tensor {tensor.name!r} in the external data file {location}, "
                "which is missing.",
                hint="Keep the .onnx and its data file together in one directory, or re-export: "
                     "`edgeprune export` always writes one self-contained file.")


def ir_weights(xml: str | Path) -> Path:
    """The ``.bin`` beside an IR ``.xml``; both must exist."""
    xml = Path(xml)
    check_exists(xml, "OpenVINO IR")
    weights = xml.with_suffix(".bin")
    if not weights.is_file():
        raise ModelFileError(f"OpenVINO IR {xml} has no weights file {weights}.",
                             hint="Keep the .xml and .bin of an IR together (same name, same directory).")
    return weights
