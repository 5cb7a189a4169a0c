"""Shared fixtures: paths to ../shared (real data and checkpoints) and a CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def shared_file(relative: str) -> Path:
    """A file under ../shared, or skip the test saying what is missing."""
    path = SHARED / relative
    if not path.exists():
        pytest.skip(f"{path} is absent (../shared holds the real data and checkpoints beside the checkout)")
    return path


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``python -m edgeprune ARGS`` as a user would, capturing output."""
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "edgeprune", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep dataset caches of unit tests out of the user's home directory."""
    if "EDGEPRUNE_CACHE" not in os.environ:
        monkeypatch.setenv("EDGEPRUNE_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
