"""ONNX -> OpenVINO IR (.xml + .bin) with ``openvino.convert_model`` / ``openvino.save_model``.

``save_model`` compresses weights to FP16 *by default*; edgeprune makes that an explicit choice
(``--fp16``) because it changes the numbers (~1e-3 relative), and an IR is parity-checked either way.
The edgeprune metadata goes into the IR's ``rt_info`` under ``edgeprune``, so ``edgeprune eval
model.xml`` finds the normalisation without the ONNX file.
"""

from __future__ import annotations

from pathlib import Path

from edgeprune.runtime.errors import require
from edgeprune.runtime.metadata import PREFIX


def convert_to_ir(onnx_path: Path, xml_path: Path, *, fp16: bool, metadata: dict[str, str]) -> Path:
    """Write ``xml_path`` and the ``.bin`` beside it; ``metadata`` are the encoded ``edgeprune.*`` pairs."""
    ov = require("openvino")
    model = ov.convert_model(str(onnx_path))
    for key, value in {**metadata, PREFIX + "ir_weights": "f16" if fp16 else "f32"}.items():
        model.set_rt_info(value, ["edgeprune", key.removeprefix(PREFIX)])
    ov.save_model(model, str(xml_path), compress_to_fp16=fp16)
    return xml_path
