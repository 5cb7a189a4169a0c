"""Do fewer MACs give proportionally lower latency at 224x224? ResNet-18, ResNet-50, MobileNet v2, dense vs pruned.

Pruned variants: ResNet-50 with Distiller's filter schedule (examples/schedules/
distiller_resnet50.schedule_agp.filters.yaml, replayed over all its epochs: 2.24x fewer MACs); ResNet-18 and
MobileNet v2 with a uniform 50 % filter schedule (resnet18_uniform50.yaml: every block's conv1;
mobilenet_v2_uniform50.yaml: every expansion conv, so the depthwise convs lose the same channels). Each is
pruned, thinned, exported to ONNX + an FP32 OpenVINO IR (parity-checked), then measured with the edgeprune
protocol (batch 1) on OpenVINO CPU f32 and ONNX Runtime CPU, interleaved: every repeat measures every
model on both backends in turn. Rows as in benchmarks/speedup.py (MAC ratio, paired latency speed-up, share
of the MAC reduction realised). Also timed: ResNet-50's prune -> thin -> export -> bench, step by step.

    python benchmarks/speedup_224.py [--repeats 3] [--niter 30] [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from speedup import BACKENDS, markdown

from edgeprune.jobs.bench import bench_model
from edgeprune.jobs.compare import measure_interleaved, speedup_row
from edgeprune.jobs.export import export_model
from edgeprune.jobs.prune import prune_model
from edgeprune.measurement.environment import environment
from edgeprune.measurement.protocol import Protocol
from edgeprune.models import create_model
from edgeprune.models.checkpoint import save_checkpoint
from edgeprune.models.summary import model_summary
from edgeprune.training.seeding import seed_everything

SCHEDULES = Path(__file__).resolve().parents[1] / "examples" / "schedules"
PRUNED = {
    "resnet18": ("resnet18_uniform50.yaml", None),
    "resnet50": ("distiller_resnet50.schedule_agp.filters.yaml", "all"),
    "mobilenet_v2": ("mobilenet_v2_uniform50.yaml", None),
}


def build_variants(work: Path, exporter: str, protocol: Protocol, threads: int | None) -> tuple[dict, dict]:
    """Dense and pruned checkpoints exported per model; returns (variants, ResNet-50 step times in s)."""
    variants: dict[str, dict] = {}
    steps: dict[str, float] = {}
    for arch, (schedule, epochs) in PRUNED.items():
        seed_everything(0)
        dense = create_model(arch)
        ckpt = save_checkpoint(work / f"{arch}.pth", dense, arch=arch, dataset={"input_shape": [3, 224, 224]})
        variants[f"{arch}/dense"] = {"ckpt": ckpt, "macs": model_summary(dense).macs}
        start = time.perf_counter()
        r = prune_model(arch, SCHEDULES / schedule, work / f"{arch}_pruned.pth", thin=True, epochs=epochs)
        steps_here = {"prune + thin": time.perf_counter() - start}
        variants[f"{arch}/pruned"] = {"ckpt": r.out, "macs": r.after.macs}
        for name in (f"{arch}/dense", f"{arch}/pruned"):
            v = variants[name]
            start = time.perf_counter()
            e = export_model(str(v["ckpt"]), work / f"{name.replace('/', '_')}.onnx", openvino_dir=work,
                             exporter=exporter)
            v.update(onnx=e.onnx, xml=e.ir, export_s=time.perf_counter() - start)
        if arch == "resnet50":
            steps_here["export (ONNX + IR, parity)"] = variants[f"{arch}/pruned"]["export_s"]
            start = time.perf_counter()
            bench_model(str(variants[f"{arch}/pruned"]["xml"]), backend="openvino", protocol=protocol,
                        threads=threads)
            steps_here["bench (OpenVINO, one run)"] = time.perf_counter() - start
            steps = {k: round(v, 1) for k, v in steps_here.items()}
    return variants, steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--niter", type=int, default=30)
    ap.add_argument("--threads", type=int, default=None, help="default: all usable CPUs")
    ap.add_argument("--exporter", default="torchscript", help="dynamo | torchscript (same graph, faster export)")
    ap.add_argument("--json", type=Path, default=None, help="also write the JSON here")
    args = ap.parse_args()
    protocol = Protocol(niter=args.niter, warmup=5, cv_threshold=0.05, budget_s=2.0)
    with tempfile.TemporaryDirectory(prefix="edgeprune-speedup224-") as tmp:
        variants, steps = build_variants(Path(tmp), args.exporter, protocol, args.threads)
        files = {name: {"openvino": v["xml"], "onnxruntime": v["onnx"]} for name, v in variants.items()}
        results = measure_interleaved(files, args.repeats, protocol, args.threads)
    rows = []
    for arch in PRUNED:
        dense, pruned = variants[f"{arch}/dense"], variants[f"{arch}/pruned"]
        for name, v in ((f"{arch}/dense", dense), (f"{arch}/pruned", pruned)):
            rows += [{"variant": name, "backend": backend, "macs": v["macs"],
                      **speedup_row(results[f"{arch}/dense"][backend], results[name][backend],
                                    dense["macs"] / v["macs"])} for backend in BACKENDS]
    report = {"input": [1, 3, 224, 224], "repeats": args.repeats,
              "protocol": results["resnet50/dense"]["openvino"][0]["settings"], "rows": rows,
              "resnet50_steps_s": steps, "environment": environment()}
    text = json.dumps(report, indent=2)
    print(text)
    print()
    print(markdown(rows))
    print()
    print("ResNet-50 prune -> thin -> export -> bench (s):", steps)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
