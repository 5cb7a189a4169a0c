"""Benchmark backends behind one registry: ``openvino``, ``onnxruntime``, ``torch``.

Adding a runtime is one :class:`~edgeprune.runtime.backends.base.Runner` subclass registered here;
``--backend`` names are checked against the registry, so a typo gets the closest names. The torch backend
is registered as a factory that imports torch when it is opened: a measuring host (``edgeprune[consumer]``)
runs ONNX/IR files and has no torch.
"""

from __future__ import annotations

from collections.abc import Callable

from edgeprune.errors import UnknownNameError
from edgeprune.registry import Registry
from edgeprune.runtime.backends.base import HINTS, PRECISIONS, Runner, RunSettings, ThroughputRun
from edgeprune.runtime.backends.ort_backend import OnnxRuntimeRunner
from edgeprune.runtime.backends.ov_backend import OpenVINORunner

BACKENDS: Registry[Callable[..., Runner]] = Registry("benchmark backend")
for _runner in (OpenVINORunner, OnnxRuntimeRunner):
    BACKENDS.register(_runner.backend)(_runner)


@BACKENDS.register("torch")
def _torch_runner(model: str, settings: RunSettings, *, arch: str | None = None) -> Runner:
    from edgeprune.runtime.backends.torch_backend import TorchRunner

    return TorchRunner(model, settings, arch=arch)


def open_runner(backend: str, model: str, settings: RunSettings, *, arch: str | None = None) -> Runner:
    """Load and compile ``model`` (a path or zoo name) with ``backend`` under ``settings``."""
    if settings.precision not in PRECISIONS:
        raise UnknownNameError("precision", settings.precision, PRECISIONS)
    if settings.hint not in HINTS:
        raise UnknownNameError("performance hint", settings.hint, HINTS)
    return BACKENDS.get(backend)(model, settings, arch=arch)


__all__ = ["BACKENDS", "HINTS", "PRECISIONS", "RunSettings", "Runner", "ThroughputRun", "open_runner"]
