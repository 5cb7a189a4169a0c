"""OpenVINO: ``Core().compile_model`` with explicit hints, and an ``AsyncInferQueue`` for throughput.

Precision is always pinned (``INFERENCE_PRECISION_HINT``, f32 unless asked otherwise) and read back
from the compiled model: on CPUs with bf16/AMX, OpenVINO silently infers in bf16 by default, which
makes numbers incomparable with f32 runtimes (and shifts logits by ~0.5 %).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgeprune.errors import ConfigError
from edgeprune.runtime.backends.base import Runner, RunSettings, ThroughputRun, timed
from edgeprune.runtime.devices import check_not_removed, unavailable
from edgeprune.runtime.errors import ModelFileError, require
from edgeprune.runtime.metadata import decode
from edgeprune.runtime.modelfile import ModelIO, inspect_onnx, ir_weights, model_kind

_META_DEVICES = ("AUTO", "MULTI", "HETERO", "BATCH")


class OpenVINORunner(Runner):
    backend = "openvino"

    def __init__(self, model: str, settings: RunSettings, **_: Any) -> None:
        ov = require("openvino")
        path = Path(model)
        kind = model_kind(path)
        if kind is None:
            raise ConfigError(f"The openvino backend runs .onnx or .xml files; {path} is neither.")
        onnx_io = inspect_onnx(path) if kind == "onnx" else None
        if kind == "openvino":
            ir_weights(path)
        self._ov = ov
        self._core = ov.Core()
        self._device = check_device(self._core, settings.device)
        try:
            self._model, read_ms = timed(lambda: self._core.read_model(str(path)))
        except RuntimeError as exc:
            raise ModelFileError(f"OpenVINO cannot read {path}: {str(exc).splitlines()[0]}",
                                 hint="The file is corrupt or truncated: export it again.") from None
        super().__init__(onnx_io or self._ir_io(), settings)
        self.device = self._device
        self.read_time_ms = read_ms
        self._compiled, self.compile_time_ms = timed(lambda: self._compile(settings.hint))
        self.precision_used = self._precision(self._compiled)
        self.device_name = self._device_name()
        self._request = self._compiled.create_infer_request()

    def _ir_io(self) -> ModelIO:
        port_in, port_out = self._model.inputs[0], self._model.outputs[0]
        shape = tuple(None if d.is_dynamic else d.get_length() for d in port_in.get_partial_shape())
        rt = self._model.get_rt_info()
        props = {f"edgeprune.{k}": v.astype(str) for k, v in rt["edgeprune"].items()} if "edgeprune" in rt else {}
        return ModelIO(port_in.get_any_name(), shape, port_out.get_any_name(), decode(props))

    def _compile(self, hint: str) -> Any:
        import openvino.properties as props
        import openvino.properties.hint as hints

        mode = hints.PerformanceMode.THROUGHPUT if hint == "throughput" else hints.PerformanceMode.LATENCY
        config: dict[Any, Any] = {hints.performance_mode: mode}
        base = self._device.split(".")[0]
        supported = self._core.get_property(base, "SUPPORTED_PROPERTIES") if base not in _META_DEVICES else {}
        if "INFERENCE_PRECISION_HINT" in supported or base in _META_DEVICES:
            config[hints.inference_precision] = {"f32": self._ov.Type.f32, "bf16": self._ov.Type.bf16,
                                                 "f16": self._ov.Type.f16}[self.settings.precision]
        if base == "CPU":
            config[props.inference_num_threads] = self.settings.threads
        try:
            return self._core.compile_model(self._model, self._device, config)
        except RuntimeError as exc:
            raise ConfigError(f"OpenVINO cannot compile the model for {self._device}: {str(exc).splitlines()[0]}",
                              hint="Try --device CPU or another --precision.") from None

    @staticmethod
    def _precision(compiled: Any) -> str:
        value = _read_property(compiled, "INFERENCE_PRECISION_HINT")
        return "unknown" if value is None else value.to_string()

    def _device_name(self) -> str:
        try:
            devices = list(self._compiled.get_property("EXECUTION_DEVICES"))
        except RuntimeError:
            devices = [self._device]
        return ", ".join(f"{d}: {self._core.get_property(d, 'FULL_DEVICE_NAME')}" for d in devices)

    def infer(self, x: np.ndarray) -> np.ndarray:
        self.check_input(x.shape)
        self._request.infer({0: x})
        return self._request.get_output_tensor(0).data.copy()

    def bind(self, x: np.ndarray) -> Callable[[], None]:
        self.check_input(x.shape)
        request = self._compiled.create_infer_request()  # one per bound input, so several can be cycled
        request.set_input_tensor(self._ov.Tensor(np.ascontiguousarray(x)))
        return request.infer

    def throughput(self, x: np.ndarray, *, iterations: int | None, seconds: float | None) -> ThroughputRun:
        """benchmark_app's async, inference-only loop on a model compiled with the THROUGHPUT hint."""
        self.check_input(x.shape)
        compiled = self._compiled if self.settings.hint == "throughput" else self._compile("throughput")
        nireq = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        queue = self._ov.AsyncInferQueue(compiled, nireq)
        for request in queue:
            request.set_input_tensor(self._ov.Tensor(np.ascontiguousarray(x)))
        for _ in range(len(queue)):  # one warm-up inference per request
            queue.start_async()
        queue.wait_all()
        done, start = 0, time.perf_counter()
        while (iterations is not None and done < iterations) or \
                (seconds is not None and time.perf_counter() - start < seconds):
            queue.start_async()
            done += 1
        queue.wait_all()
        streams = _read_property(compiled, "NUM_STREAMS")  # AUTO does not report it
        return ThroughputRun(done, time.perf_counter() - start, None if streams is None else int(streams), nireq)


def _read_property(compiled: Any, name: str) -> Any:
    """A compiled model's property, or ``None`` where the device (or AUTO) does not report it."""
    try:
        return compiled.get_property(name)
    except RuntimeError:
        return None


def check_device(core: Any, device: str) -> str:
    """The device, upper-cased, if OpenVINO has it here; else a clear error listing what it has."""
    check_not_removed(device)
    name = device.upper()
    base = name.split(".")[0].split(":")[0]
    available = list(core.available_devices)
    if base in _META_DEVICES or name in available or base in {d.split(".")[0] for d in available}:
        return name
    from openvino import get_version

    raise unavailable(device, f"OpenVINO {get_version().split('-')[0]}", available,
                      hint="GPU needs the Intel GPU compute runtime, NPU the Intel NPU driver; "
                           "AUTO picks the best available device.")
