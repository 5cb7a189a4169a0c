"""The results of ``run.sh``: accuracy before / after pruning / after retraining, MACs, OpenVINO latency and
speed-up of each schedule, and the table against Distiller's published resnet20 results.

Run by ``run.sh`` once the retraining runs are done (it only reads them, so it can be rerun alone):

    python examples/cifar10_resnet20/results.py --model M.pth --data CIFAR.tar.gz --runs runs/cifar10_resnet20 \
        --out examples/cifar10_resnet20

"after pruning" is the baseline with each schedule's *final* masks applied at once, thinned where the schedule
thins, before any retraining (``edgeprune prune --epochs all``): for a gradual (AGP) schedule that is the
network its last pruning epoch leaves, without the training in between. Latency: every network (the dense
one included) is exported to ONNX (parity-checked on CIFAR-10 test images) and an FP32 OpenVINO IR, and
measured on OpenVINO CPU, batch 1, interleaved over repeats; the speed-up is the median of paired ratios
(:mod:`edgeprune.jobs.compare`). Writes ``results.json``, ``RESULTS.md`` and copies the run reports'
accuracy plots, the sensitivity analysis and the suggested schedule into ``OUT/results/``.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

from edgeprune.analysis import run_report
from edgeprune.analysis.run_report import load_run_report
from edgeprune.jobs.compare import measure_interleaved, speedup_row
from edgeprune.jobs.export import export_model
from edgeprune.jobs.prune import prune_model
from edgeprune.jobs.train import evaluate_model
from edgeprune.measurement.environment import environment
from edgeprune.measurement.protocol import Protocol

RUNS = {"agp": "Distiller resnet20_filters.schedule_agp", "agp4": "Distiller resnet20_filters.schedule_agp_4 (Leader)",
        "suggested": "suggested from the sensitivity analysis"}
# Distiller's published results (the schedules' headers, examples/agp-pruning): 180 epochs from its dense
# checkpoint (91.78 top-1, 40,813,184 MACs), best test top-1 over the epochs.
DISTILLER = {"agp": {"baseline": 91.78, "top1": 91.34, "macs": 30_655_104},
             "agp4": {"baseline": 91.78, "top1": 90.89, "macs": 24_723_776}}
DENSE_MACS = 40_813_184


def evaluate(spec: str | Path, data: str) -> dict[str, float]:
    return {k: round(v, 2) for k, v in evaluate_model(str(spec), data).metrics.items()}


def collect(model: str, data: str, runs: Path, work: Path) -> dict[str, Any]:
    """Accuracy and MACs of every finished run, from its report and from fresh evaluations."""
    out: dict[str, Any] = {"baseline": {"checkpoint": model, **evaluate(model, data), "macs": DENSE_MACS},
                           "runs": {}}
    for name, title in RUNS.items():
        run_dir = runs / name
        if not (run_dir / "report.json").is_file():
            continue
        report = load_run_report(run_dir)
        pruned = prune_model(model, report["schedule"], work / f"{name}-pruned.pth", epochs="all")
        settled = max((e["epoch"] for e in report["events"]), default=0)  # the network's final shape from here
        best = max((e for e in report["epochs"] if e["epoch"] >= settled), key=lambda e: e["top1"])
        out["runs"][name] = {
            "title": title, "schedule": report["schedule"], "epochs": len(report["epochs"]),
            "macs": report["final"]["macs"], "weight_params": report["final"]["weight_params"],
            "after_pruning": {**evaluate(pruned.out, data), "macs": pruned.after.macs},
            "final": {k: round(report["final"][k], 2) for k in ("top1", "top5", "loss")},
            "best": {"epoch": best["epoch"], "top1": round(best["top1"], 2)},
            "checkpoint": str(run_dir / "checkpoint.pth"),
        }
    return out


def measure(results: dict[str, Any], data: str, work: Path, repeats: int, threads: int | None) -> None:
    """Export every network, measure them interleaved on OpenVINO CPU, and add latency and speed-up."""
    checkpoints = {"baseline": results["baseline"]["checkpoint"],
                   **{name: r["checkpoint"] for name, r in results["runs"].items()}}
    files = {}
    for name, ckpt in checkpoints.items():
        exported = export_model(ckpt, work / f"{name}.onnx", openvino_dir=work / name, data=data,
                                exporter="torchscript")
        files[name] = {"openvino": str(exported.ir)}
    protocol = Protocol(niter=500, warmup=50, cv_threshold=0.05, budget_s=3.0)
    measured = measure_interleaved(files, repeats, protocol, threads)
    dense = measured["baseline"]["openvino"]
    results["baseline"]["latency"] = speedup_row(dense, dense, 1.0)
    for name, r in results["runs"].items():
        r["latency"] = speedup_row(dense, measured[name]["openvino"], DENSE_MACS / r["macs"])
    results["bench"] = {"backend": "openvino", "device": "CPU", "batch": 1, "repeats": repeats,
                        "settings": dense[0]["settings"], "environment": environment()}


def markdown(results: dict[str, Any]) -> str:
    base = results["baseline"]
    lines = [
        "# ResNet-20 on CIFAR-10: Distiller's AGP filter schedules and a suggested one, on a CPU budget",
        "",
        f"Baseline `{Path(base['checkpoint']).name}`: top-1 {base['top1']:.2f} %, top-5 {base['top5']:.2f} % on the "
        f"10,000 CIFAR-10 JPEG test images, {DENSE_MACS:,} MACs, OpenVINO CPU latency "
        f"{base['latency']['latency_median_ms']:.3f} ms (batch 1).",
        "",
        "| schedule | epochs | MACs (dense / pruned) | weights | top-1 after pruning, not retrained | top-1 / top-5 "
        "after retraining (last epoch) | best top-1 once fully pruned (epoch) | Δ top-1 vs baseline | "
        "OpenVINO latency (ms) | speed-up | realised (speed-up / MAC ratio) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["runs"].values():
        lat = r["latency"]
        lines.append(
            f"| {r['title']} | {r['epochs']} | {r['macs']:,} ({lat['mac_ratio']:.2f}×) | {r['weight_params']:,} | "
            f"{r['after_pruning']['top1']:.2f} | {r['final']['top1']:.2f} / {r['final']['top5']:.2f} | "
            f"{r['best']['top1']:.2f} ({r['best']['epoch']}) | {r['final']['top1'] - base['top1']:+.2f} | "
            f"{lat['latency_median_ms']:.3f} | {lat['latency_speedup']:.2f}× | {lat['realised']:.2f} |")
    lines += ["", "## Against Distiller's published results (deltas from each one's own baseline)", "",
              "| schedule | MACs | Distiller: baseline → best top-1 (Δ), 180 epochs | edgeprune: baseline → last-epoch "
              "top-1 (Δ) | edgeprune best (Δ) | epochs |", "|---|---:|---:|---:|---:|---:|"]
    for name, d in DISTILLER.items():
        r = results["runs"].get(name)
        if r is None:
            continue
        lines.append(
            f"| {r['title']} | {d['macs']:,} (ours: {r['macs']:,}) | {d['baseline']:.2f} → {d['top1']:.2f} "
            f"({d['top1'] - d['baseline']:+.2f}) | {base['top1']:.2f} → {r['final']['top1']:.2f} "
            f"({r['final']['top1'] - base['top1']:+.2f}) | {r['best']['top1']:.2f} "
            f"({r['best']['top1'] - base['top1']:+.2f}) | {r['epochs']} |")
    bench = results.get("bench", {})
    settings = bench.get("settings", {})
    env = bench.get("environment", {})
    lines += ["", "Measured with `examples/cifar10_resnet20/run.sh` (see its header); latency: OpenVINO "
              f"{env.get('versions', {}).get('openvino', '?')} CPU, f32, batch 1, {settings.get('threads', '?')} "
              f"threads, {bench.get('repeats', '?')} interleaved repeats on {env.get('cpu_model', 'this machine')} "
              f"({env.get('affinity_cpus', '?')} CPUs, load {env.get('loadavg_1m', '?')} when measured)."]
    return "\n".join(lines) + "\n"


def copy_artifacts(runs: Path, out: Path) -> None:
    """The small, reviewable outputs of the runs, next to the table."""
    dest = out / "results"
    dest.mkdir(parents=True, exist_ok=True)
    for name in RUNS:
        if (runs / name / "report.json").is_file():  # the report as the current code words it
            text = run_report.markdown(load_run_report(runs / name))
            (dest / f"{name}_report.md").write_text(text.replace("(accuracy.png)", f"({name}_accuracy.png)"))
            shutil.copy(runs / name / "accuracy.png", dest / f"{name}_accuracy.png")
    for file in ("sensitivity.csv", "sensitivity.png", "sensitivity_heatmap.png"):
        if (runs / "sensitivity" / file).is_file():
            shutil.copy(runs / "sensitivity" / file, dest / file)
    if (runs / "suggested.yaml").is_file():
        shutil.copy(runs / "suggested.yaml", dest / "suggested.yaml")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--runs", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--threads", type=int, default=None, help="inference threads (default: all usable CPUs)")
    args = ap.parse_args()
    work = args.runs / "results"
    work.mkdir(parents=True, exist_ok=True)
    results = collect(args.model, args.data, args.runs, work)
    measure(results, args.data, work, args.repeats, args.threads)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "RESULTS.md").write_text(markdown(results))
    copy_artifacts(args.runs, args.out)
    print(markdown(results))


if __name__ == "__main__":
    main()
