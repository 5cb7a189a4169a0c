"""PyTorch module -> one self-contained, checked ONNX ``ModelProto``.

Two exporters, both of torch's own ``torch.onnx.export``:

* ``dynamo`` (default): the ``torch.export``-based exporter, PyTorch's recommended path since 2.9 (needs
  ``onnxscript``, part of the ``export`` extra). Slow-ish: ~6 s for resnet56_cifar on 2 cores, most of it
  in ``torch.export`` tracing and decomposition.
* ``torchscript``: the legacy TorchScript tracer, deprecated by PyTorch but present in torch 2.2-2.13 and
  about 4x faster to export (~1.5 s for resnet56_cifar) — worth it inside sweeps that export every trial.

Both fold BatchNorm into the convolutions and give the same runtime speed for edgeprune's CNNs; the parity
check after export is what guarantees correctness either way. ``external_data=False``: torch 2.13 defaults
to writing weights to a side file, which a model that travels alone cannot have.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from edgeprune.errors import ConfigError, UnknownNameError
from edgeprune.runtime.errors import require

EXPORTERS = ("dynamo", "torchscript")
INPUT_NAME, OUTPUT_NAME = "input", "logits"
# torch.export specialises a dimension whose example size is 0 or 1, so a dynamic batch is traced at 2.
_DYNAMIC_EXAMPLE_BATCH = 2


def export_proto(model: nn.Module, input_shape: tuple[int, ...], *, batch: int = 1, dynamic_batch: bool = False,
                 opset: int | None = None, exporter: str = "dynamo") -> Any:
    """Export ``model`` (eval mode, on CPU) for inputs ``(batch, *input_shape)``; returns a checked ``ModelProto``.

    With ``dynamic_batch`` the batch dimension is symbolic (``"batch"``) and any batch size runs.
    """
    if exporter not in EXPORTERS:
        raise UnknownNameError("ONNX exporter", exporter, EXPORTERS)
    onnx = require("onnx")
    model = model.eval().cpu()
    example = torch.randn(_DYNAMIC_EXAMPLE_BATCH if dynamic_batch else batch, *input_shape)
    with _quiet():
        if exporter == "dynamo":
            require("onnxscript")
            proto = _dynamo(model, example, dynamic_batch, opset)
        else:
            proto = _torchscript(model, example, dynamic_batch, opset, onnx)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as exc:  # onnx.checker.ValidationError, shape-inference errors
        raise ConfigError(f"The {exporter} exporter produced an invalid ONNX model: {exc}",
                          hint="Try the other exporter (--exporter dynamo|torchscript) or another --opset.") from None
    return proto


def _dynamo(model: nn.Module, example: torch.Tensor, dynamic_batch: bool, opset: int | None) -> Any:
    dynamic = ({0: torch.export.Dim("batch")},) if dynamic_batch else None
    try:
        program = torch.onnx.export(model, (example,), dynamo=True, external_data=False, verbose=False,
                                    input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], opset_version=opset,
                                    dynamic_shapes=dynamic)
    except Exception as exc:  # torch.export / translation failures name the unsupported construct
        raise ConfigError(f"torch.onnx (dynamo) cannot export {type(model).__name__}: {str(exc).splitlines()[0]}",
                          hint="Try --exporter torchscript, or make the model torch.export-able.") from None
    return program.model_proto


def _torchscript(model: nn.Module, example: torch.Tensor, dynamic_batch: bool, opset: int | None, onnx: Any) -> Any:
    axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
    buffer = io.BytesIO()
    try:
        torch.onnx.export(model, (example,), buffer, dynamo=False, input_names=[INPUT_NAME],
                          output_names=[OUTPUT_NAME], opset_version=opset, dynamic_axes=axes)
    except Exception as exc:
        raise ConfigError(f"torch.onnx (torchscript) cannot export {type(model).__name__}: "
                          f"{str(exc).splitlines()[0]}", hint="Try --exporter dynamo.") from None
    return onnx.load_from_string(buffer.getvalue())


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporters' chatter (deprecation notices, 'torchvision is not installed') for a clean CLI."""
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        registration.setLevel(level)
