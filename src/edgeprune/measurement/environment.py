"""What a number was measured on: CPU, cores, OS, package versions, and how busy the machine was.

Recorded with every result because latency depends on all of it, and :func:`~edgeprune.measurement.result.comparable`
uses it to refuse comparing numbers from different machines.
"""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from edgeprune.runtime.devices import available_cpus

PACKAGES = ("edgeprune", "torch", "numpy", "onnx", "onnxruntime", "openvino")


def environment() -> dict[str, Any]:
    cpu_model, physical = _cpuinfo()
    return {
        "cpu_model": cpu_model,
        "physical_cores": physical,
        "logical_cpus": os.cpu_count(),
        "affinity_cpus": available_cpus(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "loadavg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "versions": {name: _version(name) for name in PACKAGES},
    }


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _cpuinfo() -> tuple[str, int | None]:
    """CPU model name and physical core count from /proc/cpuinfo (Linux); the platform's words elsewhere."""
    info = Path("/proc/cpuinfo")
    if not info.is_file():
        return platform.processor() or platform.machine(), None
    model, cores, phys = "", set(), ""
    for line in info.read_text(errors="replace").splitlines():
        key, _, value = (part.strip() for part in line.partition(":"))
        if key == "model name" and not model:
            model = value
        elif key == "physical id":
            phys = value
        elif key == "core id":
            cores.add((phys, value))
    return model or platform.machine(), len(cores) or None
