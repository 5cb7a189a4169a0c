"""Do fewer MACs give proportionally lower latency? resnet56_cifar, dense vs four pruned + thinned variants.

Variants: dense; Distiller's filter-rank schedule (examples/schedules/resnet56_cifar_filter_rank.yaml); a
uniform 50 % filter prune of every block's conv1 (resnet56_cifar_uniform50.yaml); and the same with
``round_to: 8`` and ``round_to: 16`` (kept filter counts multiples of 8 / 16). Each is pruned one-shot, thinned,
exported to ONNX + an FP32 OpenVINO IR (parity-checked), then measured with the edgeprune protocol on
OpenVINO CPU f32 and ONNX Runtime CPU — interleaved: every repeat measures every variant on both backends
in turn, so a slow phase of a shared machine hits them all alike. Medians over the repeats.

Reported per variant and backend: MAC ratio (dense / variant), latency speed-up (median over repeats of
dense median / variant median, each pair measured seconds apart), the speed-up of the minimum latencies,
throughput speed-up, and the share of the MAC reduction the latency realises, ``speedup / mac_ratio`` (the
project's goal: >= 0.8 for the latency-aware variants).

    python benchmarks/speedup.py [--repeats 5] [--niter 100] [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

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
ARCH = "resnet56_cifar"
BACKENDS = ("openvino", "onnxruntime")


def build_variants(work: Path, exporter: str) -> dict[str, dict]:
    """Prune + thin every variant and export it; returns name -> {macs, xml, onnx}."""
    uniform = (SCHEDULES / "resnet56_cifar_uniform50.yaml").read_text()
    schedules = {"filter_rank": SCHEDULES / "resnet56_cifar_filter_rank.yaml",
                 "uniform50": SCHEDULES / "resnet56_cifar_uniform50.yaml"}
    for n in (8, 16):  # the same schedule with round_to: N on its pruner
        path = work / f"uniform50_round{n}.yaml"
        path.write_text(uniform.replace("desired_sparsity: 0.5\n", f"desired_sparsity: 0.5\n    round_to: {n}\n"))
        schedules[f"uniform50_round{n}"] = path
    seed_everything(0)
    dense = create_model(ARCH)
    variants = {"dense": {"ckpt": save_checkpoint(work / "dense.pth", dense, arch=ARCH,
                                                  dataset={"input_shape": [3, 32, 32]}),
                          "macs": model_summary(dense).macs}}
    for name, schedule in schedules.items():
        r = prune_model(ARCH, schedule, work / f"{name}.pth", thin=True)
        variants[name] = {"ckpt": r.out, "macs": r.after.macs}
    for name, v in variants.items():
        e = export_model(str(v["ckpt"]), work / f"{name}.onnx", openvino_dir=work, exporter=exporter)
        v.update(onnx=e.onnx, xml=e.ir)
    return variants


def summarise(variants: dict[str, dict], results: dict) -> list[dict]:
    """One row per variant and backend (see :func:`edgeprune.jobs.compare.speedup_row`)."""
    return [{"variant": name, "backend": backend, "macs": v["macs"],
             **speedup_row(results["dense"][backend], results[name][backend], variants["dense"]["macs"] / v["macs"])}
            for backend in BACKENDS for name, v in variants.items()]


def markdown(rows: list[dict]) -> str:
    lines = ["| variant | backend | MACs | MAC ratio | latency median (ms) | speed-up | speed-up of min latency "
             "| throughput (FPS) | throughput speed-up | realised (speed-up / MAC ratio) | steady (CV met) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['backend']} | {r['macs']:,} | {r['mac_ratio']:.2f} | "
                     f"{r['latency_median_ms']:.3f} | {r['latency_speedup']:.2f} | {r['latency_speedup_min']:.2f} | "
                     f"{r['throughput_fps']:.0f} | {r['throughput_speedup']:.2f} | {r['realised']:.2f} | "
                     f"{'yes' if r['cv_met_all'] else 'no'} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--niter", type=int, default=100)
    ap.add_argument("--threads", type=int, default=None, help="default: all usable CPUs")
    ap.add_argument("--exporter", default="torchscript", help="dynamo | torchscript (same graph, faster export)")
    ap.add_argument("--json", type=Path, default=None, help="also write the JSON here")
    args = ap.parse_args()
    protocol = Protocol(niter=args.niter, warmup=20, cv_threshold=0.05, budget_s=2.0)
    with tempfile.TemporaryDirectory(prefix="edgeprune-speedup-") as tmp:
        variants = build_variants(Path(tmp), args.exporter)
        files = {name: {"openvino": v["xml"], "onnxruntime": v["onnx"]} for name, v in variants.items()}
        results = measure_interleaved(files, args.repeats, protocol, args.threads)
    rows = summarise(variants, results)
    any_run = results["dense"]["openvino"][0]
    report = {"model": ARCH, "repeats": args.repeats, "protocol": any_run["settings"], "rows": rows,
              "environment": environment()}
    text = json.dumps(report, indent=2)
    print(text)
    print()
    print(markdown(rows))
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
