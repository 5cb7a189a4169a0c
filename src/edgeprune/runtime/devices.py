"""Device names (OpenVINO's vocabulary: CPU, GPU, NPU, AUTO) checked before any runtime is asked.

Why a module of its own: a removed or absent device must fail with the same clear words whichever
backend the user picked, and ``available_cpus`` is the default thread count everywhere.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from edgeprune.runtime.errors import DeviceError

DEVICES = ("CPU", "GPU", "NPU", "AUTO")


def available_cpus() -> int:
    """CPUs this process may run on (the affinity mask, which containers and ``taskset`` narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def check_not_removed(device: str) -> None:
    """Devices that once existed: say when they went and what to use now."""
    if device.upper().split(".")[0].split(":")[0] == "MYRIAD":
        raise DeviceError(
            "Device 'MYRIAD' (Intel Movidius Myriad X VPU / Neural Compute Stick 2) was removed from OpenVINO "
            "in release 2023.0; the last release line that supports it is OpenVINO 2022.3 LTS.",
            hint="Use --device NPU (Intel Core Ultra NPU) or --device CPU, or benchmark the exported .xml with "
                 "OpenVINO 2022.3 LTS's own benchmark_app on the stick.",
        )


def unavailable(device: str, backend: str, available: Iterable[str], *, hint: str | None = None) -> DeviceError:
    """The error for a device the backend cannot use here, listing the ones it can."""
    names = ", ".join(sorted(set(available))) or "(none)"
    return DeviceError(f"Device {device!r} is not available to {backend} on this machine. Available: {names}.",
                       hint=hint or "Pick one of the available devices with --device.")
