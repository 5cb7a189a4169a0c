"""What every benchmark backend provides: a :class:`Runner` over one loaded, compiled model.

Why one small interface for OpenVINO, ONNX Runtime and PyTorch: the measurement protocol, the export
parity check and ``edgeprune eval`` of exported models all run models the same way, so each backend
is written once and every caller treats them alike (Optuna-style: one responsibility per base class).
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edgeprune.runtime.errors import ShapeError
from edgeprune.runtime.modelfile import ModelIO
from edgeprune.signals import raise_if_interrupted

PRECISIONS = ("f32", "bf16", "f16")
HINTS = ("latency", "throughput")


@dataclass(frozen=True)
class RunSettings:
    """How a model is compiled and run; recorded with every result."""

    device: str = "CPU"
    threads: int = 1
    precision: str = "f32"
    hint: str = "latency"


@dataclass(frozen=True)
class ThroughputRun:
    """``iterations`` inferences of one batch each, finished in ``seconds`` by ``streams`` parallel streams
    (``None`` where the device does not say, e.g. OpenVINO AUTO)."""

    iterations: int
    seconds: float
    streams: int | None
    requests: int


class Runner(ABC):
    """One model compiled for one device; ``infer`` is host-to-host, ``bind`` measures pure inference."""

    backend: str = ""

    def __init__(self, io: ModelIO, settings: RunSettings) -> None:
        self.io = io
        self.settings = settings
        self.device = settings.device
        self.device_name = settings.device
        self.device_plugin: str | None = None  # the device plugin's name and version, where the runtime has plugins
        self.precision_used = settings.precision
        self.read_time_ms = 0.0
        self.compile_time_ms = 0.0

    @property
    def input_shape(self) -> tuple[int | None, ...]:
        return self.io.input_shape

    def check_input(self, shape: tuple[int, ...]) -> None:
        """Refuse, in words, an input the model does not accept (instead of a runtime's shape assertion)."""
        expected = self.io.input_shape
        fits = len(shape) == len(expected) and all(e is None or e == s for e, s in zip(expected, shape, strict=True))
        if not fits:
            want = shape_text(expected)
            anything = "; N means any size" if None in expected else ""
            raise ShapeError(
                f"The model expects input of shape {want} (N, C, H, W{anything}) but got {list(shape)}.",
                hint="Use a batch size the model was exported for (--batch), re-export with --dynamic-batch, "
                     "or give images/data of the model's channels and size.")

    @property
    def static_batch(self) -> int | None:
        """The batch size fixed in the model, or ``None`` when any batch runs."""
        return self.io.input_shape[0] if self.io.input_shape else None

    def infer_all(self, x: np.ndarray) -> np.ndarray:
        """Outputs for any number of samples: chunks of the model's fixed batch size, or all at once."""
        step = self.static_batch or len(x)
        if len(x) % step:
            raise ShapeError(f"{len(x)} samples do not split into the model's fixed batch of {step}.",
                             hint="Re-export with --dynamic-batch to run any number of samples.")
        return np.concatenate([self.infer(x[i:i + step]) for i in range(0, len(x), step)])

    @abstractmethod
    def infer(self, x: np.ndarray) -> np.ndarray:
        """Upload ``x`` (float32 NCHW), run, and return the output on the host."""

    @abstractmethod
    def bind(self, x: np.ndarray) -> Callable[[], None]:
        """Upload ``x`` once; the returned call runs one inference on it (no input preparation or copy)."""

    @abstractmethod
    def throughput(self, x: np.ndarray, *, iterations: int | None, seconds: float | None) -> ThroughputRun:
        """Run as many inferences in parallel as the backend's throughput mode does, for a count or a time."""


def shape_text(shape: tuple[int | None, ...]) -> str:
    """``[N, 3, 32, 32]``: a model's input shape with ``N`` for a dynamic dimension."""
    return "[" + ", ".join("N" if d is None else str(d) for d in shape) + "]"


JOIN_SLICE_S = 0.1  # how long the main thread waits for stream workers before it can take a signal


def timed(fn: Callable[[], object]) -> tuple[object, float]:
    """``fn()`` and its wall time in milliseconds."""
    start = time.perf_counter()
    value = fn()
    return value, (time.perf_counter() - start) * 1000.0


def run_streams(calls: list[Callable[[], None]], *, iterations: int | None, seconds: float | None) -> ThroughputRun:
    """Drive one Python thread per call until ``iterations`` inferences are done or ``seconds`` have passed.

    The throughput equivalent of OpenVINO's async queue for runtimes without one (ONNX Runtime, PyTorch):
    their inference calls release the GIL, so the streams really run in parallel.

    The main thread waits in short slices, never in one unbounded ``join``: Linux may deliver SIGTERM or
    Ctrl-C to a worker thread, and Python runs the handler only when the main thread executes bytecode, so an
    unbounded join would hold an interrupted consumer for the whole run (a million iterations: minutes). An
    interrupt stops the workers after their current inference.
    """
    lock = threading.Lock()
    stop = threading.Event()
    issued = 0
    start = time.perf_counter()
    deadline = start + seconds if seconds is not None else None

    def worker(call: Callable[[], None]) -> None:
        nonlocal issued
        while not stop.is_set():
            with lock:
                if iterations is not None and issued >= iterations:
                    return
                if deadline is not None and time.perf_counter() >= deadline:
                    return
                issued += 1
            call()

    threads = [threading.Thread(target=worker, args=(call,), daemon=True) for call in calls]
    for t in threads:
        t.start()
    try:
        for t in threads:
            while t.is_alive():
                t.join(JOIN_SLICE_S)
                raise_if_interrupted()
    finally:
        stop.set()
    return ThroughputRun(issued, time.perf_counter() - start, len(calls), len(calls))
