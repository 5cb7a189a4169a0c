"""A measuring target — backend, device, batch, threads, precision and a short timing protocol — and the two
things a latency search asks of it: one ONNX file's latency, and the fingerprint of the device that measured it.

Torch-free on purpose: a consumer next to the device (``edgeprune[consumer]``) runs exactly this code for the
jobs a search sends through the queue (:mod:`edgeprune.agents.latency_jobs`), so a table measured remotely and
one measured locally come from the same function and carry the same fingerprint.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgeprune.errors import ConfigError
from edgeprune.measurement.environment import environment
from edgeprune.measurement.protocol import Protocol, time_round
from edgeprune.runtime.backends import RunSettings, open_runner
from edgeprune.runtime.devices import available_cpus

KERNEL_PROTOCOL = Protocol(niter=100, warmup=10)  # per round; see Target.latency_ms
RUNTIME_PACKAGE = {"openvino": "openvino", "onnxruntime": "onnxruntime"}


@dataclass(frozen=True)
class Target:
    """Where latencies are measured: what ``edgeprune bench --backend --device --batch --threads`` takes."""

    backend: str = "openvino"
    device: str = "CPU"
    batch: int = 1
    threads: int = 1
    precision: str = "f32"
    protocol: Protocol = field(default=KERNEL_PROTOCOL)
    rounds: int = 5

    def __post_init__(self) -> None:
        """Refuse what no device can be timed with, before any file is exported for it."""
        for name, value in (("--batch", self.batch), ("--threads", self.threads), ("rounds", self.rounds)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a whole number of at least 1, got {value!r}.",
                                  hint=f"A latency is timed at a fixed batch and thread count; this machine has "
                                       f"{available_cpus()} CPU(s) to give --threads." if name == "--threads" else None)

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
        call = self._warmed(onnx_path)
        return min(float(time_round(lambda i: call(), self.protocol).median_ms) for _ in range(self.rounds))

    def latency_ratio(self, onnx_path: str | Path, reference: str | Path, *, rounds: int = 15) -> float:
        """``onnx_path``'s latency as a fraction of ``reference``'s, both opened and warmed together, timed in
        alternating rounds (reference first, then second, in turn); the median of the per-pair ratios.

        Why: a relative budget (0.6x of the dense model) is a ratio, and on a VM whose speed shifts between
        levels for seconds at a time two latencies measured apart can differ by 1.5x while the ratio of two
        measured a round apart holds (BENCHMARKS.md, "Greedy against uniform widths")."""
        calls = [self._warmed(reference), self._warmed(onnx_path)]
        ratios = []
        for r in range(rounds):
            medians = [0.0, 0.0]
            for k in ((0, 1) if r % 2 == 0 else (1, 0)):
                medians[k] = float(time_round(lambda i, c=calls[k]: c(), self.protocol).median_ms)
            ratios.append(medians[1] / medians[0])
        return float(np.median(ratios))

    def _warmed(self, onnx_path: str | Path) -> Callable[[], None]:
        """One inference on a bound random input, called ``protocol.warmup`` times already."""
        runner = self.runner(onnx_path)
        shape = tuple(int(d) if d else self.batch for d in runner.input_shape)
        call = runner.bind(np.random.default_rng(0).standard_normal(shape, dtype=np.float32))
        for _ in range(self.protocol.warmup):
            call()
        return call

    def fingerprint(self, probe: str | Path) -> dict[str, Any]:
        """Everything a measured latency depends on, read from the runtime itself with ``probe`` (any ONNX file
        this target can run): the device's own name, the precision the runtime really uses, its version, the
        CPU model, the protocol."""
        runner = self.runner(probe)
        env = environment()
        return {"backend": runner.backend, "device": self.device, "device_name": runner.device_name,
                "precision": runner.precision_used, "threads": self.threads, "batch": self.batch,
                "runtime_version": env["versions"].get(RUNTIME_PACKAGE.get(self.backend, "torch")),
                "cpu_model": env["cpu_model"], "protocol": {**asdict(self.protocol), "rounds": self.rounds}}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Target:
        """The inverse of :meth:`to_dict` (what travels in a queued job); unknown keys are refused."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown target field(s) {', '.join(unknown)}; expected some of "
                             f"{', '.join(sorted(names))}")
        values = dict(data)
        if isinstance(values.get("protocol"), dict):
            values["protocol"] = Protocol(**values["protocol"])
        return cls(**values)

    def with_machine(self, overrides: dict[str, Any]) -> Target:
        """This target with a consumer's own ``--backend/--device/--threads`` over it (None: keep)."""
        kept = {k: v for k, v in overrides.items() if k in ("backend", "device", "threads") and v is not None}
        return replace(self, **kept)
