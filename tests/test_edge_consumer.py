"""The measuring side without the training stack: the consumer, the queues and a real benchmark with torch blocked.

A device host installs ``edgeprune[consumer]`` (no torch). Here torch is installed, so a subprocess makes it
unimportable with a ``sys.meta_path`` finder that refuses it, imports the consumer and every queue and artifact
backend, and measures a real ONNX file; any import of torch on that path fails the test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edgeprune.jobs.export import export_model

from .conftest import REPO

TINY = "tests.tiny_nets:tiny_resnet"
BLOCK_TORCH = """\
import importlib.abc, sys

class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("torch", "torchvision"):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked: a measuring host has no torch)", name=name)
        return None

sys.meta_path.insert(0, NoTorch())
"""


def run_without_torch(code: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", BLOCK_TORCH + textwrap.dedent(code)], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=REPO)


def test_the_blocker_really_blocks_torch() -> None:
    """The oracle of the next test: with the finder in place, importing torch (or the trainer) fails."""
    done = run_without_torch("import edgeprune.training.loop")
    assert done.returncode != 0 and "blocked: a measuring host has no torch" in done.stderr


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_the_consumer_and_queues_import_and_measure_with_torch_unimportable(tmp_path: Path, backend: str) -> None:
    onnx = export_model(TINY, tmp_path / "tiny.onnx", exporter="torchscript").onnx
    done = run_without_torch(f"""
        import json, sys
        import edgeprune.agents.consumer, edgeprune.agents.queue, edgeprune.agents.sqlite_queue
        import edgeprune.agents.redis_queue, edgeprune.agents.redis_artifacts, edgeprune.agents.artifacts
        from edgeprune.agents.consumer import Consumer
        from edgeprune.sweep.config import BenchmarkSettings
        from edgeprune.sweep.measure import benchmark

        result = benchmark({str(onnx)!r}, BenchmarkSettings(backend={backend!r}, niter=100, warmup=2, budget_s=0))
        print(json.dumps({{"result": result, "torch_loaded": "torch" in sys.modules}}))
    """)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    r = out["result"]
    assert out["torch_loaded"] is False
    assert r["backend"] == backend and r["environment"]["versions"]["torch"] is not None  # installed, yet unused
    assert r["latency_iterations"] == 100 and r["e2e_iterations"] == 100
    assert 0 < r["latency_median_ms"] < 1000 and 0 < r["e2e_latency_median_ms"] < 1000 and r["throughput_fps"] > 0
    assert r["settings"]["input_shape"] == [1, 1, 8, 8]  # tiny_resnet takes 8x8 grey digits
