"""The same model measured by a consumer on OpenVINO 2022.3 LTS and one on today's OpenVINO, on this CPU.

The model is resnet56_cifar (the trained ``../shared`` checkpoint when present, else the zoo's), exported once
as the sweeps hand it over: ONNX, torchscript exporter, opset 17. Each repeat runs ``edgeprune bench`` on it
once in the OpenVINO 2022.3 venv (Python 3.10, ``edgeprune[consumer]``, no torch: :mod:`tests.consumer_venv`)
and once in this environment, alternating, so a slow phase of a shared machine hits both alike; the seed
protocol each time (100 timed iterations, end-to-end iterations that prepare the images, throughput).
Medians over the repeats, and their ratio. On a busy machine the minimum latency is the figure that load
moves least.

    python benchmarks/ov2022_consumer.py [--repeats 5] [--threads 1] [--budget 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.consumer_venv import consumer_python  # noqa: E402

from edgeprune.jobs.export import export_model  # noqa: E402

CHECKPOINT = REPO.parent / "shared" / "models" / "resnet56_cifar10_jpeg.pth"
KEYS = ("latency_min_ms", "latency_median_ms", "e2e_latency_median_ms", "throughput_fps", "load_time_ms")


def bench(python: str, model: Path, args: argparse.Namespace) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": str(args.threads)}
    done = subprocess.run([python, "-m", "edgeprune", "bench", str(model), "--backend", "openvino", "--device", "CPU",
                           "--threads", str(args.threads), "--niter", "100", "--budget", str(args.budget), "--json"],
                          capture_output=True, text=True, env=env, check=True)
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--budget", type=float, default=3.0, help="seconds of latency rounds per measurement")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    runtimes = {"2022.3": str(consumer_python()), "current": sys.executable}
    spec = str(CHECKPOINT) if CHECKPOINT.is_file() else "resnet56_cifar"
    with tempfile.TemporaryDirectory() as tmp:
        model = export_model(spec, Path(tmp) / "resnet56.onnx", exporter="torchscript", opset=17).onnx
        runs: dict[str, list[dict]] = {name: [] for name in runtimes}
        for _ in range(args.repeats):
            for name, python in runtimes.items():
                runs[name].append(bench(python, model, args))
    rows = {name: {k: statistics.median(r[k] for r in results) for k in KEYS} for name, results in runs.items()}
    versions = {name: results[0]["device_plugin"] for name, results in runs.items()}
    print(f"{spec}, ONNX opset 17 (torchscript), OpenVINO CPU f32, {args.threads} thread(s), batch 1, "
          f"medians of {args.repeats} alternating runs; {runs['current'][0]['environment']['cpu_model']}")
    print(f"load average {runs['current'][0]['environment']['loadavg_1m']} at the start")
    print("| runtime | " + " | ".join(KEYS) + " |")
    for name, row in rows.items():
        print(f"| {versions[name]} | " + " | ".join(f"{row[k]:.3f}" for k in KEYS) + " |")
    print("| 2022.3 / current | " + " | ".join(f"{rows['2022.3'][k] / rows['current'][k]:.3f}" for k in KEYS) + " |")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "plugins": versions, "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
