"""Wall time of the whole no-training path for resnet56_cifar: prune + thin, export + convert, benchmark.

One fresh process, as a sweep consumer or a user at the shell runs it: imports, one-shot pruning with
Distiller's filter-rank schedule and thinning, ONNX export + OpenVINO IR conversion with both parity checks
(ONNX Runtime and OpenVINO f32 against PyTorch), then ``edgeprune bench`` of the IR on OpenVINO CPU f32:
100 latency iterations (one round), 100 end-to-end iterations and 100 throughput inferences.
Goal: at most 10 s on 2 cores.

    python benchmarks/pipeline.py [--exporter dynamo|torchscript] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

T0 = time.perf_counter()
from edgeprune.jobs.bench import bench_model  # noqa: E402
from edgeprune.jobs.export import export_model  # noqa: E402
from edgeprune.jobs.prune import prune_model  # noqa: E402
from edgeprune.measurement.protocol import Protocol  # noqa: E402  (imports are part of what a user waits for)

IMPORTS_S = time.perf_counter() - T0
SCHEDULE = Path(__file__).resolve().parents[1] / "examples" / "schedules" / "resnet56_cifar_filter_rank.yaml"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--exporter", default="dynamo", help="dynamo (default) | torchscript")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    times = {"imports_s": IMPORTS_S}
    with tempfile.TemporaryDirectory(prefix="edgeprune-pipeline-") as tmp:
        work = Path(tmp)
        t = time.perf_counter()
        pruned = prune_model("resnet56_cifar", SCHEDULE, work / "pruned.pth", thin=True)
        times["prune_thin_s"] = time.perf_counter() - t
        t = time.perf_counter()
        exported = export_model(str(pruned.out), work / "model.onnx", openvino_dir=work, exporter=args.exporter)
        times["export_convert_parity_s"] = time.perf_counter() - t
        t = time.perf_counter()
        result = bench_model(str(exported.ir), backend="openvino", threads=args.threads,
                             protocol=Protocol(niter=100, warmup=10, cv_threshold=10.0, budget_s=0))
        times["benchmark_s"] = time.perf_counter() - t
    times["total_s"] = time.perf_counter() - T0
    times["process_cpu_s"] = time.process_time()  # CPU seconds of all threads: less inflated by a busy machine
    print(json.dumps({
        "model": "resnet56_cifar", "schedule": SCHEDULE.name, "exporter": args.exporter, "threads": args.threads,
        "macs_after": pruned.after.macs, "parity_max_rel_diff": max(p.max_rel_diff for p in exported.parity),
        "latency_median_ms": result["latency_median_ms"], "throughput_fps": result["throughput_fps"],
        **{k: round(v, 3) for k, v in times.items()}, "goal_total_s": 10.0,
        "loadavg_1m": result["environment"]["loadavg_1m"],
    }, indent=2))


if __name__ == "__main__":
    main()
