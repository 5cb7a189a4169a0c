"""Errors of the export / evaluate / benchmark boxes, each one paragraph that says what, where and how to fix."""

from __future__ import annotations

import importlib
from types import ModuleType

from edgeprune.errors import EdgepruneError

#: The pip extra that installs the optional packages these boxes import (onnx, onnxruntime, openvino, onnxscript).
EXTRA = "export"


class MissingDependencyError(EdgepruneError):
    """An optional package (ONNX, ONNX Runtime, OpenVINO ...) that the requested step needs is not installed."""


class ModelFileError(EdgepruneError):
    """A model file (.onnx, .xml/.bin) that is missing, corrupt, or lacks a file it refers to."""


class UnreadableModelError(ModelFileError):
    """A sound model file that this runtime cannot read (a format or opset newer than it knows). Trying again
    on the same runtime cannot help, so a consumer dead-letters the job at once with this reason."""


class ParityError(EdgepruneError):
    """An exported model whose outputs differ from PyTorch's by more than the tolerance."""


class ShapeError(EdgepruneError):
    """An input whose shape the model does not accept."""


class DeviceError(EdgepruneError):
    """A device that does not exist, was removed, or is not available to the chosen backend."""


def require(module: str) -> ModuleType:
    """Import an optional package, or fail with the one ``pip install`` line that brings it.

    Why not a plain import at the top of the module: ``import edgeprune`` and every command that does not
    export or benchmark must keep working without the multi-hundred-MB runtimes installed.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        raise MissingDependencyError(
            f"This step needs the Python package {top!r}, which is not installed ({exc}).",
            hint=f"Install the optional extra: pip install 'edgeprune[{EXTRA}]'",
        ) from None
