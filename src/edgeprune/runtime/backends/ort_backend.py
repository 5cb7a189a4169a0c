"""ONNX Runtime: one ``InferenceSession`` with fixed intra-op threads; throughput from parallel sessions.

Throughput equivalent of OpenVINO's CPU throughput mode (which runs N streams of one thread each on
small core counts): ``threads`` single-threaded sessions, each driven by its own Python thread
(``InferenceSession.run`` releases the GIL), all on the same bound input.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgeprune.errors import ConfigError
from edgeprune.runtime.backends.base import Runner, RunSettings, ThroughputRun, run_streams, timed
from edgeprune.runtime.devices import check_not_removed, unavailable
from edgeprune.runtime.errors import ModelFileError, require
from edgeprune.runtime.modelfile import inspect_onnx, model_kind

_PROVIDERS = {"CPU": "CPUExecutionProvider", "GPU": "CUDAExecutionProvider"}


class OnnxRuntimeRunner(Runner):
    backend = "onnxruntime"

    def __init__(self, model: str, settings: RunSettings, **_: Any) -> None:
        self._ort = require("onnxruntime")
        path = Path(model)
        if model_kind(path) != "onnx":
            raise ConfigError(f"The onnxruntime backend runs .onnx files; {path} is not one.",
                              hint="An OpenVINO IR (.xml) runs with --backend openvino.")
        if settings.precision != "f32":
            raise ConfigError(f"ONNX Runtime's CPU/CUDA providers compute an f32 model in f32; "
                              f"--precision {settings.precision} is not available with --backend onnxruntime.",
                              hint="Use --backend openvino for bf16/f16 inference, or --precision f32.")
        io, read_ms = timed(lambda: inspect_onnx(path))
        super().__init__(io, settings)
        self._path = path
        self._provider = self._pick_provider(settings.device)
        self.device = "GPU" if self._provider == _PROVIDERS["GPU"] else "CPU"
        self.read_time_ms = read_ms
        self._session, self.compile_time_ms = timed(lambda: self._new_session(settings.threads))
        self.device_name = self._provider

    def _pick_provider(self, device: str) -> str:
        check_not_removed(device)
        available = self._ort.get_available_providers()
        name = device.upper()
        if name == "AUTO":
            return _PROVIDERS["GPU"] if _PROVIDERS["GPU"] in available else _PROVIDERS["CPU"]
        provider = _PROVIDERS.get(name.split(":")[0].split(".")[0])
        if provider is None or provider not in available:
            usable = [d for d, p in _PROVIDERS.items() if p in available]
            raise unavailable(device, f"ONNX Runtime {self._ort.__version__} (providers: {', '.join(available)})",
                              usable, hint="GPU needs the onnxruntime-gpu package and CUDA; NPU runs with "
                                           "--backend openvino.")
        return provider

    def _new_session(self, threads: int) -> Any:
        opts = self._ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = self._ort.ExecutionMode.ORT_SEQUENTIAL
        try:
            return self._ort.InferenceSession(str(self._path), opts, providers=[self._provider])
        except Exception as exc:  # onnxruntime's Fail / InvalidGraph / NoSuchFile
            raise ModelFileError(f"ONNX Runtime cannot load {self._path}: {str(exc).splitlines()[0]}",
                                 hint="Check that the file is a complete export (re-export it).") from None

    def infer(self, x: np.ndarray) -> np.ndarray:
        self.check_input(x.shape)
        return self._session.run([self.io.output_name], {self.io.input_name: x})[0]

    def bind(self, x: np.ndarray) -> Callable[[], None]:
        return self._bind(self._session, x)

    def _bind(self, session: Any, x: np.ndarray) -> Callable[[], None]:
        self.check_input(x.shape)
        where = "cuda" if self.device == "GPU" else "cpu"
        binding = session.io_binding()
        binding.bind_ortvalue_input(self.io.input_name,
                                    self._ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(x), where, 0))
        binding.bind_output(self.io.output_name, where)
        return lambda: session.run_with_iobinding(binding)

    def throughput(self, x: np.ndarray, *, iterations: int | None, seconds: float | None) -> ThroughputRun:
        streams = max(1, self.settings.threads) if self.device == "CPU" else 1
        calls = [self._bind(self._new_session(1 if self.device == "CPU" else self.settings.threads), x)
                 for _ in range(streams)]
        for call in calls:  # warm-up, as for the OpenVINO queue
            call()
        return run_streams(calls, iterations=iterations, seconds=seconds)
