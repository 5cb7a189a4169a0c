"""Latency tables of a target device — per kernel, and per whole network — measured once and cached per device
fingerprint.

A kernel is one conv (with its BatchNorm and ReLU, which OpenVINO and ONNX Runtime fuse into it) or Linear
layer at given input and output widths (:class:`~edgeprune.budget_search.space.Kernel`). Each is exported on its
own to ONNX and timed on the target (warm-up, then the lowest median of a few timed rounds:
:meth:`~edgeprune.measurement.target.Target.latency_ms`), as NetAdapt's and HALP's lookup tables are built.

The table file is keyed by everything a latency depends on — backend, device name, precision actually used,
threads, batch, the runtime's version, the CPU model — so a second search on the same device measures only
kernels it has not seen, and a table is never read for another device. Whole networks are kept beside the
kernels, keyed by a digest of their ONNX graph (the layers and weights, not the metadata edgeprune writes with the
export time and paths): the same network on the same device is measured once, whichever search asks. So are
ratios of one network's latency to another's (a search times every network against the dense one, paired). Each
measured entry is written at once (atomically), so an interrupted build resumes where it stopped.

Who measures is a :class:`Measurer`: the :class:`~edgeprune.measurement.target.Target` itself on this machine, or
:class:`~edgeprune.agents.latency_jobs.QueuedMeasurer`, which sends the files to a consumer next to the device
through the agents' queue. The fingerprint comes from whoever measures, so a remote device's table is its own.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

import onnx
import torch
from torch import nn

from edgeprune.budget_search.space import Kernel
from edgeprune.conversion.torch_onnx import export_proto
from edgeprune.errors import ConfigError
from edgeprune.fileio import write_json
from edgeprune.measurement.target import Target

TABLE_VERSION = 1
PROBE = Kernel("conv", 8, 8, (3, 3), (1, 1), (1, 1), (8, 8))  # what a fingerprint is read with


class Measurer(Protocol):
    """Measures ONNX files on one target: a :class:`Target` here, or a queue to a consumer at the device."""

    def fingerprint(self, probe: str | Path) -> dict[str, Any]: ...

    def latency_ms(self, onnx_path: str | Path) -> float: ...

    def latency_ratio(self, onnx_path: str | Path, reference: str | Path) -> float: ...

    def latencies(self, paths: Sequence[Path], done: Callable[[int, float], None]) -> None: ...


class LocalMeasurer:
    """A :class:`Target` on this machine, one file after another."""

    def __init__(self, target: Target) -> None:
        self.target = target

    def fingerprint(self, probe: str | Path) -> dict[str, Any]:
        return self.target.fingerprint(probe)

    def latency_ms(self, onnx_path: str | Path) -> float:
        return self.target.latency_ms(onnx_path)

    def latency_ratio(self, onnx_path: str | Path, reference: str | Path) -> float:
        return self.target.latency_ratio(onnx_path, reference)

    def latencies(self, paths: Sequence[Path], done: Callable[[int, float], None]) -> None:
        for i, path in enumerate(paths):
            done(i, self.target.latency_ms(path))


def default_cache_dir() -> Path:
    """``$EDGEPRUNE_CACHE/latency`` or ``~/.cache/edgeprune/latency``."""
    root = os.environ.get("EDGEPRUNE_CACHE") or Path.home() / ".cache" / "edgeprune"
    return Path(root) / "latency"


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


def graph_digest(onnx_path: str | Path) -> str:
    """SHA-256 of what an ONNX file computes — its graph with the weights, and its opsets — leaving out the model's
    metadata (export time, checkpoint paths), which differ between two exports of the same network."""
    model = onnx.load(str(onnx_path))
    digest = hashlib.sha256(model.graph.SerializeToString())
    for opset in model.opset_import:
        digest.update(f"{opset.domain}:{opset.version};".encode())
    return digest.hexdigest()


class LatencyTable:
    """Kernel and network latencies (ms) of one target, backed by ``<cache>/<fingerprint hash>.json``."""

    def __init__(self, target: Target, cache_dir: str | Path | None = None, *, measurer: Measurer | None = None,
                 fingerprint: dict[str, Any] | None = None) -> None:
        self.target = target
        self.measurer: Measurer = measurer or LocalMeasurer(target)
        self.fingerprint = fingerprint or self._probe()
        digest = hashlib.sha256(json.dumps(self.fingerprint, sort_keys=True).encode()).hexdigest()[:16]
        self.path = Path(cache_dir or default_cache_dir()) / f"{digest}.json"
        self.path.parent.mkdir(parents=True, exist_ok=True)  # an unusable cache is found before anything is measured
        self.entries: dict[str, float] = {}
        self.networks: dict[str, float] = {}  # graph_digest of a whole network's ONNX file -> ms
        self.ratios: dict[str, float] = {}  # "<network digest>/<reference digest>" -> latency ratio
        self._digests: dict[tuple[str, int, int], str] = {}  # (path, mtime, size) -> graph_digest, read once
        self.measured_now = 0
        self.networks_measured_now = 0
        if self.path.exists():
            self._read()

    def _probe(self) -> dict[str, Any]:
        with tempfile.TemporaryDirectory() as tmp:
            return self.measurer.fingerprint(export_kernel(PROBE, Path(tmp), self.target.batch))

    def _read(self) -> None:
        try:
            data = json.loads(self.path.read_text())
            if data.get("version") != TABLE_VERSION or data.get("fingerprint") != self.fingerprint:
                raise ValueError("another table version or device")
            self.entries = {str(k): float(v) for k, v in data["entries"].items()}
            self.networks = {str(k): float(v) for k, v in data.get("networks", {}).items()}
            self.ratios = {str(k): float(v) for k, v in data.get("ratios", {}).items()}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"The latency table {self.path} cannot be read: {exc}.",
                              hint="Delete it (it is a cache) and the kernels are measured again.") from None

    def _write(self) -> None:
        write_json(self.path, {"version": TABLE_VERSION, "fingerprint": self.fingerprint, "entries": self.entries,
                               "networks": self.networks, "ratios": self.ratios})

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
        """Measure the kernels not in the table yet (each saved as soon as its latency arrives); returns how many."""
        todo = self.missing(kernels)
        with tempfile.TemporaryDirectory() as tmp:
            paths = [export_kernel(kernel, Path(tmp), self.target.batch) for kernel in todo]

            count = 0

            def done(i: int, ms: float) -> None:
                nonlocal count
                self.entries[todo[i].key] = round(ms, 6)
                self._write()
                self.measured_now += 1
                count += 1
                if progress is not None:
                    progress(count, len(todo))

            self.measurer.latencies(paths, done)
        return len(todo)

    def network_ms(self, onnx_path: str | Path) -> float:
        """A whole network's latency: from the table when the same graph was measured on this device before."""
        digest = self._digest(onnx_path)
        if digest not in self.networks:
            self.networks[digest] = round(self.measurer.latency_ms(onnx_path), 6)
            self.networks_measured_now += 1
            self._write()
        return self.networks[digest]

    def network_ratio(self, onnx_path: str | Path, reference: str | Path, *, again: bool = False) -> float:
        """A whole network's latency as a fraction of ``reference``'s (the dense network), the two timed in
        alternating rounds (:meth:`~edgeprune.measurement.target.Target.latency_ratio`): from the table when this
        pair was measured on this device before. ``again`` measures it once more and keeps the lower ratio: what a
        refusal is confirmed with, so a budget is refused only when every measurement says it cannot be met."""
        key = f"{self._digest(onnx_path)}/{self._digest(reference)}"
        if again or key not in self.ratios:
            ratio = round(self.measurer.latency_ratio(onnx_path, reference), 6)
            self.ratios[key] = min(ratio, self.ratios.get(key, ratio))
            self.networks_measured_now += 1
            self._write()
        return self.ratios[key]

    def _digest(self, onnx_path: str | Path) -> str:
        """:func:`graph_digest` of the file, remembered while the file is unchanged: every network is timed against
        the same dense file, which would otherwise be read and hashed again for each (100 MB for a ResNet-50)."""
        stat = Path(onnx_path).stat()
        key = (str(Path(onnx_path).resolve()), stat.st_mtime_ns, stat.st_size)
        if key not in self._digests:
            self._digests[key] = graph_digest(onnx_path)
        return self._digests[key]
