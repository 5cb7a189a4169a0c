"""OpenVINO: ``Core().compile_model`` with explicit hints, and an ``AsyncInferQueue`` for throughput.

Precision is always pinned (``INFERENCE_PRECISION_HINT``, f32 unless asked otherwise) and read back
from the compiled model: on CPUs with bf16/AMX, OpenVINO silently infers in bf16 by default, which
makes numbers incomparable with f32 runtimes (and shifts logits by ~0.5 %).

Runs on OpenVINO 2022.3 LTS as on 2026: the API lives in ``openvino.runtime`` there (top-level ``openvino``
since 2023.1), compile properties are passed by their string names (both releases parse them), and on
2022.3 ``--device MYRIAD`` (the Neural Compute Stick 2, removed in 2023.0) is a device like any other: it
computes in FP16 whatever the weights (its plugin converts FP32 weights when it compiles), so its results
record ``precision_used`` f16.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any
from xml.etree import ElementTree

import numpy as np

from edgeprune.errors import ConfigError
from edgeprune.runtime.backends.base import Runner, RunSettings, ThroughputRun, timed
from edgeprune.runtime.devices import check_not_removed, unavailable
from edgeprune.runtime.errors import ModelFileError, UnreadableModelError, require
from edgeprune.runtime.metadata import decode
from edgeprune.runtime.modelfile import ModelIO, inspect_onnx, ir_weights, model_kind
from edgeprune.signals import raise_if_interrupted

_META_DEVICES = ("AUTO", "MULTI", "HETERO", "BATCH")
MYRIAD_LAST_RELEASE = (2022, 3)  # the last OpenVINO release line with the MYRIAD (Neural Compute Stick 2) plugin
# The newest ONNX opset OpenVINO 2022.3 reads correctly. Measured: opset 18 turned the axes of ReduceMean (and the
# other reductions) from an attribute into an input, and 2022.3 then reduces over every axis (a global-pool
# classifier fails to load; other graphs could load wrong). Exports for such a consumer use it (the sweeps' default).
OPSET_2022_3 = 17
_FP16_ONLY = ("MYRIAD",)


def openvino_api() -> ModuleType:
    """The module holding ``Core``, ``Tensor``, ``AsyncInferQueue``: ``openvino`` (2023.1+) or ``openvino.runtime``."""
    ov = require("openvino")
    return ov if hasattr(ov, "Core") else require("openvino.runtime")


def openvino_release(ov: ModuleType) -> tuple[int, int]:
    """``(2022, 3)`` for ``2022.3.2-9279-...``: the release line, which decides what a device or file means."""
    major, minor = ov.get_version().split("-")[0].split(".")[:2]
    return int(major), int(minor)


class OpenVINORunner(Runner):
    backend = "openvino"

    def __init__(self, model: str, settings: RunSettings, **_: Any) -> None:
        ov = openvino_api()
        path = Path(model)
        kind = model_kind(path)
        if kind is None:
            raise ConfigError(f"The openvino backend runs .onnx or .xml files; {path} is neither.")
        onnx_io = inspect_onnx(path) if kind == "onnx" else None
        if kind == "openvino":
            ir_weights(path)
        elif onnx_io is not None:
            check_opset(ov, path, onnx_io)
        self._ov = ov
        self._core = ov.Core()
        self._device = check_device(self._core, settings.device)
        try:
            self._model, read_ms = timed(lambda: self._core.read_model(str(path)))
        except RuntimeError as exc:
            first = str(exc).splitlines()[0]
            if onnx_io is not None:  # a sound ONNX file (onnx parsed it): the runtime is what cannot read it
                raise UnreadableModelError(f"OpenVINO {ov.get_version().split('-')[0]} cannot read {path} "
                                           f"({_describe(onnx_io)}): {first}", hint=_EXPORT_HINT) from None
            raise ModelFileError(f"OpenVINO cannot read {path}: {first}",
                                 hint="The file is corrupt or truncated: export it again.") from None
        super().__init__(onnx_io or self._ir_io(path), settings)
        self.device = self._device
        self.read_time_ms = read_ms
        self._compiled, self.compile_time_ms = timed(lambda: self._compile(settings.hint))
        fp16_only = self._device.split(".")[0] in _FP16_ONLY
        self.precision_used = "f16" if fp16_only else self._precision(self._compiled)
        self.device_name = self._device_name()
        self.device_plugin = self._plugin_version()
        self._request = self._compiled.create_infer_request()

    def _ir_io(self, xml: Path) -> ModelIO:
        port_in, port_out = self._model.inputs[0], self._model.outputs[0]
        shape = tuple(None if d.is_dynamic else d.get_length() for d in port_in.get_partial_shape())
        return ModelIO(port_in.get_any_name(), shape, port_out.get_any_name(), decode(self._ir_metadata(xml)))

    def _ir_metadata(self, xml: Path) -> dict[str, str]:
        """The IR's ``edgeprune.*`` rt_info, from the runtime, or from the .xml where the runtime cannot return a
        nested map (2022.3 raises on it)."""
        try:
            rt = self._model.get_rt_info()
            return {f"edgeprune.{k}": v.astype(str) for k, v in rt["edgeprune"].items()} if "edgeprune" in rt else {}
        except (TypeError, RuntimeError):
            node = ElementTree.parse(xml).getroot().find("rt_info/edgeprune")
            return {} if node is None else {f"edgeprune.{c.tag}": c.get("value", "") for c in node}

    def _compile(self, hint: str) -> Any:
        config: dict[str, str] = {}
        base = self._device.split(".")[0]
        supported = self._core.get_property(base, "SUPPORTED_PROPERTIES") if base not in _META_DEVICES else {}
        if "PERFORMANCE_HINT" in supported or base in _META_DEVICES:  # a plugin refuses keys it does not list
            config["PERFORMANCE_HINT"] = hint.upper()  # LATENCY | THROUGHPUT
        if "INFERENCE_PRECISION_HINT" in supported or base in _META_DEVICES:
            config["INFERENCE_PRECISION_HINT"] = self.settings.precision
        if base == "CPU":
            config["INFERENCE_NUM_THREADS"] = str(self.settings.threads)
            if hint == "throughput" and openvino_release(self._ov) <= MYRIAD_LAST_RELEASE:
                # 2022.3's THROUGHPUT hint overrides the thread cap with its own streams (2 threads for --threads
                # 1, measured); one single-threaded stream per thread is what later releases choose under the cap
                config["NUM_STREAMS"] = str(self.settings.threads)
        try:
            return self._core.compile_model(self._model, self._device, config)
        except RuntimeError as exc:
            raise ConfigError(f"OpenVINO cannot compile the model for {self._device}: {str(exc).splitlines()[0]}",
                              hint="Try --device CPU or another --precision.") from None

    @staticmethod
    def _precision(compiled: Any) -> str:
        value = _read_property(compiled, "INFERENCE_PRECISION_HINT")
        return "unknown" if value is None else str(value.get_type_name())  # to_string() is 2023+ only

    def _device_name(self) -> str:
        try:
            devices = list(self._compiled.get_property("EXECUTION_DEVICES"))
        except RuntimeError:  # 2022.3 does not report it
            devices = [self._device]
        return ", ".join(f"{d}: {self._core.get_property(d, 'FULL_DEVICE_NAME')}" for d in devices)

    def _plugin_version(self) -> str:
        """``openvino_intel_cpu_plugin 2022.3.2-9279-...``: the plugin that ran, as its release reports it."""
        base = self._device.split(".")[0].split(":")[0]
        return "; ".join(f"{v.description} {v.build_number}" for v in self._core.get_versions(base).values())

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
            raise_if_interrupted()
            queue.start_async()
            done += 1
        queue.wait_all()
        streams = _read_property(compiled, "NUM_STREAMS")  # AUTO does not report it
        return ThroughputRun(done, time.perf_counter() - start, None if streams is None else int(streams), nireq)


_EXPORT_HINT = (f"Export for this runtime: in the sweep file `export: {{exporter: torchscript, opset: "
                f"{OPSET_2022_3}}}` (the default), or `edgeprune export --exporter torchscript --opset "
                f"{OPSET_2022_3}`; or measure with a newer OpenVINO.")


def _describe(io: ModelIO) -> str:
    exporter = io.metadata.get("exporter")
    return f"ONNX opset {io.opset}" + (f", exported by torch.onnx {exporter}" if exporter else "")


def check_opset(ov: ModuleType, path: Path, io: ModelIO) -> None:
    """Refuse an ONNX file newer than the runtime reads correctly, before it is misread."""
    version = ov.get_version().split("-")[0]
    if openvino_release(ov) <= MYRIAD_LAST_RELEASE and (io.opset or 0) > OPSET_2022_3:
        raise UnreadableModelError(f"OpenVINO {version} reads ONNX up to opset {OPSET_2022_3}; {path} has "
                                   f"{_describe(io)}.", hint=_EXPORT_HINT)


def _read_property(compiled: Any, name: str) -> Any:
    """A compiled model's property, or ``None`` where the device (or AUTO) does not report it."""
    try:
        return compiled.get_property(name)
    except RuntimeError:
        return None


def check_device(core: Any, device: str) -> str:
    """The device, upper-cased, if OpenVINO has it here; else a clear error listing what it has."""
    ov = openvino_api()
    if openvino_release(ov) > MYRIAD_LAST_RELEASE:
        check_not_removed(device)
    name = device.upper()
    base = name.split(".")[0].split(":")[0]
    available = list(core.available_devices)
    if base in _META_DEVICES or name in available or base in {d.split(".")[0] for d in available}:
        return name
    hint = ("GPU needs the Intel GPU compute runtime, NPU the Intel NPU driver; AUTO picks the best available "
            "device.")
    if base == "MYRIAD":
        hint = _myriad_hint(core)
    raise unavailable(device, f"OpenVINO {ov.get_version().split('-')[0]}", available, hint=hint)


def _myriad_hint(core: Any) -> str:
    """Why no stick is seen: this OpenVINO has no MYRIAD plugin (the pip wheel), or the stick is not reachable."""
    try:
        core.get_versions("MYRIAD")
    except RuntimeError:
        return ("This OpenVINO has no MYRIAD plugin (the pip wheel of 2022.3 ships none): install the OpenVINO "
                "2022.3 LTS archive and `source <INSTALL_DIR>/setupvars.sh` before starting the consumer.")
    return ("The MYRIAD plugin is installed but sees no Neural Compute Stick 2: plug it in (USB 3 port) and install "
            "the udev rules (<INSTALL_DIR>/install_dependencies/install_NCS_udev_rules.sh), then log in again.")
