"""A device host's Python environment, built for real: Python 3.10, ``openvino==2022.3.2``, ``edgeprune[consumer]``.

OpenVINO 2022.3 LTS is the last release with the Neural Compute Stick 2 plugin and installs on Python <= 3.10,
so the consumer is tested there, beside the main environment's producers. Building the venv takes about a
minute (mostly downloads), so it is cached: ``$EDGEPRUNE_OV2022_VENV``, else
``~/.cache/edgeprune/venvs/ov2022-py310-<key>``, where the key changes with what it installs from (pyproject.toml,
the OpenVINO pin). The package itself is installed from a copy of the
sources, to prove the install target; tests run the current sources (``PYTHONPATH=src``), so a code change
needs no rebuild.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OPENVINO_PIN = "openvino==2022.3.2"
PYTHON_VERSION = "3.10"
BUILD_TIMEOUT_S = 900


class NoPython310(RuntimeError):
    """No Python 3.10 interpreter on this machine: the venv cannot be built."""


def find_python310() -> str:
    """``python3.10`` from pyenv (``$(pyenv root)/versions/3.10*``) or the PATH."""
    roots = [os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")]
    pyenv = shutil.which("pyenv")
    if pyenv:
        roots.insert(0, subprocess.run([pyenv, "root"], capture_output=True, text=True).stdout.strip())
    for root in roots:
        found = sorted(glob.glob(f"{root}/versions/{PYTHON_VERSION}*/bin/python{PYTHON_VERSION}"))
        if found:
            return found[-1]
    on_path = shutil.which(f"python{PYTHON_VERSION}")
    if on_path:
        return on_path
    raise NoPython310(f"no Python {PYTHON_VERSION} (looked in {', '.join(roots)}/versions and on PATH); install "
                      f"one, e.g. `pyenv install {PYTHON_VERSION}`")


def _key() -> str:
    wanted = [(REPO / "pyproject.toml").read_text(), OPENVINO_PIN, PYTHON_VERSION]
    return hashlib.sha256(json.dumps(wanted).encode()).hexdigest()[:12]


def venv_dir() -> Path:
    configured = os.environ.get("EDGEPRUNE_OV2022_VENV")
    if configured:
        return Path(configured)
    return Path.home() / ".cache" / "edgeprune" / "venvs" / f"ov2022-py310-{_key()}"


def consumer_python() -> Path:
    """The venv's ``python``, building the venv first if it is not cached (then ~1 min, needs the package index)."""
    final = venv_dir()
    python = final / "bin" / "python"
    if python.exists():
        return python
    final.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=final.parent, prefix=f".{final.name}.") as tmp:
        build = Path(tmp) / "venv"
        subprocess.run([find_python310(), "-m", "venv", str(build)], check=True, timeout=BUILD_TIMEOUT_S)
        sources = Path(tmp) / "edgeprune"  # a copy, so the build leaves nothing in the checkout
        shutil.copytree(REPO / "src", sources / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(REPO / name, sources / name)
        pip = [str(build / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        done = subprocess.run([*pip, OPENVINO_PIN, f"{sources}[consumer]"], capture_output=True, text=True,
                              timeout=BUILD_TIMEOUT_S)
        if done.returncode != 0:
            raise RuntimeError(f"pip could not install {OPENVINO_PIN} and edgeprune[consumer] on Python "
                               f"{PYTHON_VERSION}:\n{done.stdout}\n{done.stderr}")
        try:
            build.rename(final)  # a venv runs from any directory when started as bin/python -m ...
        except OSError:  # another process finished first
            if not python.exists():
                raise
    return python


if __name__ == "__main__":  # print the path (building it when needed), for scripts and CI caches
    try:
        print(consumer_python())
    except NoPython310 as exc:
        sys.exit(str(exc))
