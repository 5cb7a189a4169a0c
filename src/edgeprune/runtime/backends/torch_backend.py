"""PyTorch eager: the reference every export is compared against, measured with the same protocol.

Threads are ``torch.set_num_threads`` (process-wide, so the value is restored after throughput runs);
bf16/f16 use autocast, which runs convolutions and linear layers in the reduced precision.
Throughput: ``threads`` single-threaded streams on CPU (the OpenVINO CPU throughput layout), one on CUDA.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgeprune.errors import ConfigError
from edgeprune.models.checkpoint import load_checkpoint, model_from_checkpoint
from edgeprune.models.resolve import resolve_model
from edgeprune.models.summary import input_shape_of
from edgeprune.runtime.backends.base import Runner, RunSettings, ThroughputRun, run_streams, timed
from edgeprune.runtime.devices import check_not_removed, unavailable
from edgeprune.runtime.modelfile import ModelIO, model_kind

_DTYPES = {"bf16": torch.bfloat16, "f16": torch.float16}


class TorchRunner(Runner):
    backend = "torch"

    def __init__(self, model: str, settings: RunSettings, *, arch: str | None = None) -> None:
        if model_kind(model) is not None:
            raise ConfigError(f"The torch backend runs checkpoints and zoo models, not the exported file {model}.",
                              hint="Benchmark .onnx with --backend onnxruntime|openvino, .xml with openvino.")
        self._torch_device = _torch_device(settings.device)
        torch.set_num_threads(settings.threads)
        if Path(model).is_file():
            ckpt, read_ms = timed(lambda: load_checkpoint(model))
            net, compile_ms = timed(lambda: model_from_checkpoint(ckpt, arch).eval().to(self._torch_device))
            meta = {"arch": arch or ckpt.arch, "normalize": ckpt.normalize, "dataset": ckpt.dataset}
        else:
            loaded, compile_ms = timed(lambda: resolve_model(model, arch=arch))
            read_ms, net = 0.0, loaded.model.eval().to(self._torch_device)
            meta = {"arch": loaded.arch}
        shape = (None, *input_shape_of(net))
        super().__init__(ModelIO("input", shape, "logits", {k: v for k, v in meta.items() if v}), settings)
        self._net = net
        self.read_time_ms, self.compile_time_ms = read_ms, compile_ms
        self.device = self._torch_device.type.upper() if self._torch_device.type == "cpu" else "GPU"
        self.device_name = (torch.cuda.get_device_name(self._torch_device) if self._torch_device.type == "cuda"
                            else "CPU")

    def _context(self) -> contextlib.AbstractContextManager[Any]:
        dtype = _DTYPES.get(self.settings.precision)
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self._torch_device.type, dtype=dtype)

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), self._context():
            out = self._net(x)
        if self._torch_device.type == "cuda":
            torch.cuda.synchronize(self._torch_device)
        return out

    def infer(self, x: np.ndarray) -> np.ndarray:
        self.check_input(x.shape)
        return self._run(torch.from_numpy(x).to(self._torch_device)).float().cpu().numpy()

    def bind(self, x: np.ndarray) -> Callable[[], None]:
        self.check_input(x.shape)
        bound = torch.from_numpy(np.ascontiguousarray(x)).to(self._torch_device)
        return lambda: self._run(bound)

    def throughput(self, x: np.ndarray, *, iterations: int | None, seconds: float | None) -> ThroughputRun:
        on_cpu = self._torch_device.type == "cpu"
        streams = max(1, self.settings.threads) if on_cpu else 1
        call = self.bind(x)
        torch.set_num_threads(1 if on_cpu else self.settings.threads)
        try:
            for _ in range(streams):
                call()
            return run_streams([call] * streams, iterations=iterations, seconds=seconds)
        finally:
            torch.set_num_threads(self.settings.threads)


def _torch_device(device: str) -> torch.device:
    check_not_removed(device)
    name = device.upper()
    has_cuda = torch.cuda.is_available()
    if name == "CPU" or (name == "AUTO" and not has_cuda):
        return torch.device("cpu")
    if (name.startswith("GPU") or name == "AUTO") and has_cuda:
        index = name.partition(".")[2] or "0"
        return torch.device(f"cuda:{index}")
    raise unavailable(device, f"PyTorch {torch.__version__}", ["CPU", *(["GPU"] if has_cuda else [])],
                      hint="PyTorch runs on CPU and CUDA GPUs; NPU runs with --backend openvino.")
