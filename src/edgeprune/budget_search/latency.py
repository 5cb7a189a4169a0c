"""Per-kernel latency tables of a target device, measured once and cached per device fingerprint.

A kernel is one conv (with its BatchNorm and ReLU, which OpenVINO and ONNX Runtime fuse into it) or Linear
layer at given input and output widths (:class:`~edgeprune.budget_search.space.Kernel`). Each is exported on its
own to ONNX and timed on the target with ``edgeprune bench``'s protocol (warm-up, rounds until the CV
settles, the median of the last round), exactly as NetAdapt's and HALP's lookup tables are built.

The table file is keyed by everything a latency depends on — backend, device name, precision actually used,
threads, batch, the runtime's version, the CPU model — so a second search on the same device measures only
kernels it has not seen, and a table is never read for another device. Each measured entry is written at once
(atomically), so an interrupted build resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgeprune.budget_search.space import Kernel
from edgeprune.conversion.torch_onnx import export_proto
from edgeprune.errors import ConfigError
from edgeprune.fileio import write_json
from edgeprune.measurement.environment import environment
from edgeprune.measurement.protocol import Protocol, time_round
from edgeprune.runtime.backends import RunSettings, open_runner

TABLE_VERSION = 1
KERNEL_PROTOCOL = Protocol(niter=100, warmup=10)  # per round; see Target.latency_ms


def default_cache_dir() -> Path:
    """``$EDGEPRUNE_CACHE/latency`` or ``~/.cache/edgeprune/latency``."""
    root = os.environ.get("EDGEPRUNE_CACHE") or Path.home() / ".cache" / "edgeprune"
    return Path(root) / "latency"


@dataclass(frozen=True)
class Target:
    """Where latencies are measured: what ``edgeprune bench --backend --device --batch --threads`` takes."""

    backend: str = "openvino"
    device: str = "CPU"
    batch: int = 1
    threads: int = 1
    precision: str = "f32"
    protocol: Protocol = KERNEL_PROTOCOL
    rounds: int = 5

    def runner(self, path: str | Path) -> Any:
        return open_runner(self.backend, str(path), RunSettings(device=self.device, threads=self.threads,
                                                                 precision=self.precision, hint="latency"))

    def latency_ms(self, onnx_path: str | Path) -> float:
        """Latency of one ONNX file on this target: pure inference on a bound random input, ``protocol.warmup``
        calls, then ``rounds`` rounds of ``protocol.niter`` timed calls; the lowest round median.

        Why the lowest median and not bench's last round: a table and its calibration are hundreds of short
        measurements, and on a machine shared with other work a round that another process disturbs is slower,
        never faster — measured here, one dense ResNet-20 in eight came out 3x slow with a single round.
        """
        runner = self.runner(onnx_path)
        shape = tuple(int(d) if d else self.batch for d in runner.input_shape)
        x = torch.randn(shape, generator=torch.Generator().manual_seed(0)).numpy()
        call = runner.bind(x)
        for _ in range(self.protocol.warmup):
            call()
        return min(float(time_round(lambda i: call(), self.protocol).median_ms) for _ in range(self.rounds))

    def fingerprint(self) -> dict[str, Any]:
        """Everything a measured latency depends on, read from the runtime itself (a one-conv probe)."""
        with tempfile.TemporaryDirectory() as tmp:
            path = export_kernel(Kernel("conv", 8, 8, (3, 3), (1, 1), (1, 1), (8, 8)), Path(tmp), self.batch)
            runner = self.runner(path)
        env = environment()
        runtime = {"openvino": "openvino", "onnxruntime": "onnxruntime"}.get(self.backend, "torch")
        return {"backend": runner.backend, "device": self.device, "device_name": runner.device_name,
                "precision": runner.precision_used, "threads": self.threads, "batch": self.batch,
                "runtime_version": env["versions"].get(runtime), "cpu_model": env["cpu_model"],
                "protocol": {**asdict(self.protocol), "rounds": self.rounds}}


def kernel_module(kernel: Kernel) -> nn.Module:
    """The layer a table entry times: conv + BN + ReLU (depthwise: groups = channels), or a Linear."""
    if kernel.op == "linear":
        return nn.Linear(kernel.cin, kernel.cout)
    groups = kernel.cin if kernel.op == "dwconv" else 1
    conv = nn.Conv2d(kernel.cin, kernel.cout, kernel.kernel, kernel.stride, kernel.padding, groups=groups,
                     bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(kernel.cout), nn.ReLU())


def export_kernel(kernel: Kernel, directory: Path, batch: int) -> Path:
    """The kernel as an ONNX file (seeded weights, so a file is the same on every run; the caller's random
    state is left as it was)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        module = kernel_module(kernel).eval()
        shape = (kernel.cin,) if kernel.op == "linear" else (kernel.cin, *kernel.hw)
        proto = export_proto(module, shape, batch=batch, exporter="torchscript")
    path = directory / (hashlib.sha1(kernel.key.encode()).hexdigest()[:16] + ".onnx")
    path.write_bytes(proto.SerializeToString())
    return path


class LatencyTable:
    """Kernel latencies (ms) of one target, backed by ``<cache>/<fingerprint hash>.json``."""

    def __init__(self, target: Target, cache_dir: str | Path | None = None,
                 fingerprint: dict[str, Any] | None = None) -> None:
        self.target = target
        self.fingerprint = fingerprint or target.fingerprint()
        digest = hashlib.sha256(json.dumps(self.fingerprint, sort_keys=True).encode()).hexdigest()[:16]
        self.path = Path(cache_dir or default_cache_dir()) / f"{digest}.json"
        self.entries: dict[str, float] = {}
        self.measured_now = 0
        if self.path.exists():
            self._read()

    def _read(self) -> None:
        try:
            data = json.loads(self.path.read_text())
            if data.get("version") != TABLE_VERSION or data.get("fingerprint") != self.fingerprint:
                raise ValueError("another table version or device")
            self.entries = {str(k): float(v) for k, v in data["entries"].items()}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"The latency table {self.path} cannot be read: {exc}.",
                              hint="Delete it (it is a cache) and the kernels are measured again.") from None

    def _write(self) -> None:
        write_json(self.path, {"version": TABLE_VERSION, "fingerprint": self.fingerprint, "entries": self.entries})

    def __contains__(self, kernel: Kernel) -> bool:
        return kernel.key in self.entries

    def __getitem__(self, kernel: Kernel) -> float:
        return self.entries[kernel.key]

    def missing(self, kernels: Iterable[Kernel]) -> list[Kernel]:
        seen: dict[str, Kernel] = {}
        for k in kernels:
            if k.key not in self.entries:
                seen.setdefault(k.key, k)
        return list(seen.values())

    def measure(self, kernels: Iterable[Kernel], progress: Callable[[int, int], None] | None = None) -> int:
        """Measure the kernels not in the table yet (each saved as soon as it is measured); returns how many."""
        todo = self.missing(kernels)
        with tempfile.TemporaryDirectory() as tmp:
            for i, kernel in enumerate(todo):
                path = export_kernel(kernel, Path(tmp), self.target.batch)
                self.entries[kernel.key] = round(self.target.latency_ms(path), 6)
                path.unlink()
                self._write()
                self.measured_now += 1
                if progress is not None:
                    progress(i + 1, len(todo))
        return len(todo)
