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
import re
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
from edgeprune.models.checkpoint import load_checkpoint
from edgeprune.models.resolve import resolve_model
from edgeprune.models.summary import model_summary
from edgeprune.training.distill import total_cost

RUNS = {"agp": "Distiller resnet20_filters.schedule_agp", "agp4": "Distiller resnet20_filters.schedule_agp_4 (Leader)",
        "suggested": "suggested from the sensitivity analysis (first 2,000 test images: two classes)",
        "suggested10": "suggested from the sensitivity analysis (2,000 test images over all ten classes)"}
# Distiller's published results (the schedules' headers, examples/agp-pruning): 180 epochs from its dense
# checkpoint (91.78 top-1, 40,813,184 MACs), best test top-1 over the epochs.
DISTILLER = {"agp": {"baseline": 91.78, "top1": 91.34, "macs": 30_655_104},
             "agp4": {"baseline": 91.78, "top1": 90.89, "macs": 24_723_776}}
DENSE_MACS = 40_813_184
KD = "_kd"  # the run directory of a schedule retrained with distillation: runs/NAME_kd
EPOCH_ROW = re.compile(r"^\| after epoch (\d+) \| \d+ \| ([\d.]+) \|")


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


def distilled(runs: Path, reports: Path, final_macs: dict[str, int]) -> dict[str, Any]:
    """Every schedule retrained with distillation (``runs/NAME_kd``), finished or not, beside the same
    schedule's epochs without it (``reports/NAME_report.md``, same seed and recipe). MACs are the schedule's
    final ones (``final_macs``, from the run without distillation) where known: a gradual schedule's
    unfinished run is not at its final shape yet."""
    out: dict[str, Any] = {}
    for name, title in RUNS.items():
        ckpt_path = runs / f"{name}{KD}" / "checkpoint.pth"
        if not ckpt_path.is_file():
            continue
        ckpt = load_checkpoint(ckpt_path)
        state = next(h for h in ckpt.schedule["hooks"] if isinstance(h, dict) and "distillation" in h)
        summary = model_summary(resolve_model(str(ckpt_path)).model, (3, 32, 32))
        without = {}
        if (reports / f"{name}_report.md").is_file():
            for line in (reports / f"{name}_report.md").read_text().splitlines():
                if m := EPOCH_ROW.match(line):
                    without[int(m.group(1))] = float(m.group(2))
        out[name] = {
            "title": title, "distillation": ckpt.provenance["distillation"],
            "epochs_planned": ckpt.provenance["train_config"]["epochs"],
            "macs": final_macs.get(name, summary.macs),
            "epochs": [{"epoch": h["epoch"], "top1": round(h["top1"], 2), "top5": round(h["top5"], 2),
                        "top1_without": without.get(h["epoch"])} for h in ckpt.schedule["history"]],
            "cost": total_cost(state["cost"]),
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
    lines += distilled_markdown(results)
    bench = results.get("bench", {})
    settings = bench.get("settings", {})
    env = bench.get("environment", {})
    lines += ["", "Measured with `examples/cifar10_resnet20/run.sh` (see its header); latency: OpenVINO "
              f"{env.get('versions', {}).get('openvino', '?')} CPU, f32, batch 1, {settings.get('threads', '?')} "
              f"threads, {bench.get('repeats', '?')} interleaved repeats on {env.get('cpu_model', 'this machine')} "
              f"({env.get('affinity_cpus', '?')} CPUs, load {env.get('loadavg_1m', '?')} when measured)."]
    return "\n".join(lines) + "\n"


def distilled_markdown(results: dict[str, Any]) -> list[str]:
    """The schedules retrained with distillation from the dense model, epoch by epoch beside the runs without."""
    kd = results.get("distilled", {})
    if not kd:
        return []
    base = results["baseline"]["top1"]
    first = next(iter(kd.values()))["distillation"]
    lines = ["", "## With knowledge distillation from the dense model (same seed and recipe)", "",
             f"Teacher: the dense baseline (`--kd-teacher dense`), T = {first['temperature']:g}, distillation weight "
             f"{first['distill_wt']:g}, student weight {first['student_wt']:g} (Distiller's CIFAR examples), "
             "from epoch 0. Top-1 after each epoch; Δ against the dense model's "
             f"{base:.2f} %.", "",
             "| schedule | final MACs | after epoch (of N planned) | top-1 without distillation | top-1 with "
             "distillation | gain | Δ top-1 vs dense, with |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in kd.values():
        for e in r["epochs"]:
            w = e["top1_without"]
            without, gain = ("—", "—") if w is None else (f"{w:.2f}", f"{e['top1'] - w:+.2f}")
            lines.append(f"| {r['title']} | {r['macs']:,} ({r['macs'] / DENSE_MACS:.3f} of dense) | {e['epoch']} "
                         f"({r['epochs_planned']}) | {without} | {e['top1']:.2f} | {gain} | {e['top1'] - base:+.2f} |")
    unfinished = [f"{r['title']} ({len(r['epochs'])} of {r['epochs_planned']} epochs)" for r in kd.values()
                  if len(r["epochs"]) < r["epochs_planned"]]
    if unfinished:
        lines += ["", "Not finished when this table was written, so shown only as far as they went: "
                  + "; ".join(unfinished) + ". Each row compares the two runs after the same epoch, with the same "
                  "cosine LR schedule planned over all epochs; the AGP schedules prune gradually through epoch 3, so "
                  "their earlier epochs are of a network not yet at its final MACs."]
    lines += ["", "What the teacher costs (training only: the teacher's forward pass on every batch, timed inside "
              "the same epochs; \"without\" is the same epochs less that time):", "",
              "| schedule | epochs | training images/s with the teacher | without | teacher's share of training time |",
              "|---|---:|---:|---:|---:|"]
    for r in kd.values():
        c = r["cost"]
        if c:
            lines.append(f"| {r['title']} | {c['epochs']} | {c['images_per_s']:.0f} | "
                         f"{c['images_per_s_without_teacher']:.0f} | {100 * c['teacher_s'] / c['train_s']:.0f} % |")
    return lines


def copy_artifacts(runs: Path, out: Path) -> None:
    """The small, reviewable outputs of the runs, next to the table."""
    dest = out / "results"
    dest.mkdir(parents=True, exist_ok=True)
    for name in [*RUNS, *(name + KD for name in RUNS)]:
        if (runs / name / "report.json").is_file():  # the report as the current code words it
            text = run_report.markdown(load_run_report(runs / name))
            (dest / f"{name}_report.md").write_text(text.replace("(accuracy.png)", f"({name}_accuracy.png)"))
            shutil.copy(runs / name / "accuracy.png", dest / f"{name}_accuracy.png")
    for file in ("sensitivity.csv", "sensitivity.png", "sensitivity_heatmap.png"):
        if (runs / "sensitivity" / file).is_file():
            shutil.copy(runs / "sensitivity" / file, dest / file)
    for name in ("suggested", "suggested10"):
        if (runs / f"{name}.yaml").is_file():
            shutil.copy(runs / f"{name}.yaml", dest / f"{name}.yaml")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--runs", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--threads", type=int, default=None, help="inference threads (default: all usable CPUs)")
    ap.add_argument("--distilled-only", action="store_true",
                    help="add the distilled runs to OUT/results.json as it is, without retraining or re-measuring "
                         "the others (a distilled network has its undistilled twin's shapes, so its latency)")
    args = ap.parse_args()
    work = args.runs / "results"
    work.mkdir(parents=True, exist_ok=True)
    if args.distilled_only:
        results = json.loads((args.out / "results.json").read_text())
    else:
        results = collect(args.model, args.data, args.runs, work)
        measure(results, args.data, work, args.repeats, args.threads)
    copy_artifacts(args.runs, args.out)
    results["distilled"] = distilled(args.runs, args.out / "results",
                                     {name: r["macs"] for name, r in results["runs"].items()})
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "RESULTS.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
