"""Bayesian (GP) vs random search on the same budget, over a real pruning objective: which finds the better front?

Every trial is real: resnet20_cifar pre-trained on the built-in digits, the filters of each stage's block
convs pruned to three searched sparsities (continuous, 0-0.9), thinned, fine-tuned, exported to ONNX and
measured with ONNX Runtime, each through the local agents as `edgeprune sweep` runs it (one producer, one
consumer). Both searches maximise top-1 and minimise measured latency. Their trials are interleaved one by
one, so load on a shared machine hits both alike.

The score is the hypervolume each search's Pareto front dominates (higher is better), for (top-1, latency)
and for (top-1, MACs) — MACs are exact, so that front is free of timing noise. Reference point: top-1 = 10 %
(chance on 10 classes) and 1.1 x the largest latency / the dense model's MACs.

    .venv/bin/python benchmarks/sweep_engine.py --trials 12 --out runs/bench-sweep/result.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from optuna.trial import TrialState
from rich.console import Console

from edgeprune.agents.local import run_local
from edgeprune.sweep.analysis import hypervolume_2d, pareto_mask
from edgeprune.sweep.config import SweepConfig, load_sweep
from edgeprune.sweep.engine import SweepStudy
from edgeprune.sweep.prepare import prepare_base
from edgeprune.sweep.storage import default_url

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "sweeps"
SWEEP = """\
name: {name}
method: {method}
sampler: {sampler}
seed: {seed}
objectives:
  - {{name: top1, goal: maximize}}
  - {{name: latency_ms, goal: minimize}}
parameters:
  sparsity:
    parameters:
      layer1: {{min: 0.0, max: 0.9}}
      layer2: {{min: 0.0, max: 0.9}}
      layer3: {{min: 0.0, max: 0.9}}
model: {model}
pretrain: {{epochs: {pretrain}}}
data: digits
schedule_template: {template}
retrain: {{epochs: {epochs}, lr: 0.01, batch_size: 64}}
export: {{exporter: torchscript}}
benchmark: {{backend: onnxruntime, threads: 1, niter: 200, warmup: 20, budget_s: 3}}
"""
METHODS = {"random": ("random", "gp"), "bayes": ("bayes", "gp"), "bayes-tpe": ("bayes", "tpe")}


def front_summary(trials: list[dict], ref_latency: float, ref_macs: float) -> dict:
    top1 = np.array([t["top1"] for t in trials])
    out = {}
    for key, ref in (("latency_ms", ref_latency), ("macs", ref_macs)):
        pts = np.column_stack([top1, [t[key] for t in trials]])
        out[f"hypervolume_{key}"] = round(hypervolume_2d(pts, [True, False], [10.0, ref]), 4)
        out[f"front_{key}"] = [trials[i]["trial"] for i in np.flatnonzero(pareto_mask(pts, [True, False]))]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12, help="Trials per search (the budget).")
    parser.add_argument("--methods", default="random,bayes", help=f"Comma-separated, from {', '.join(METHODS)}.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--retrain-epochs", type=int, default=1)
    parser.add_argument("--pretrain-epochs", type=int, default=3)
    parser.add_argument("--run-dir", type=Path, default=Path("runs/bench-sweep"))
    parser.add_argument("--out", type=Path, default=None, help="Write the JSON result here too.")
    args = parser.parse_args()
    console = Console(stderr=True)
    run_dir = args.run_dir.resolve()
    template = EXAMPLES / "resnet20_digits_template.yaml"
    methods = args.methods.split(",")
    start = time.perf_counter()

    def config(method: str, model: str, pretrain: int = 0) -> tuple[Path, SweepConfig]:
        kind, sampler = METHODS[method]
        path = run_dir / f"{method}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(SWEEP.format(name=f"bench-{method}-s{args.seed}", method=kind, sampler=sampler,
                                     seed=args.seed, model=model, pretrain=pretrain, template=template,
                                     epochs=args.retrain_epochs))
        return path, load_sweep(path)

    base = prepare_base(config(methods[0], "resnet20_cifar", args.pretrain_epochs)[1], run_dir, console)
    configs = {m: config(m, base) for m in methods}
    for _ in range(args.trials):  # interleaved: one trial of each search in turn
        for method, (path, _) in configs.items():
            run_local(path, run_dir / method, trials=1, console=console)

    results: dict[str, list[dict]] = {}
    for method, (_, cfg) in configs.items():
        study = SweepStudy(cfg, default_url(run_dir / method))
        results[method] = [{"trial": t.number, **t.user_attrs["config"], **t.user_attrs["metrics"]}
                           for t in study.trials(TrialState.COMPLETE)]
        baseline = study.study.user_attrs["baseline"]
    ref_latency = 1.1 * max(t["latency_ms"] for ts in results.values() for t in ts)
    summary = {m: {"completed": len(ts), **front_summary(ts, ref_latency, baseline["macs"]),
                   "best_top1": round(max(t["top1"] for t in ts), 3),
                   "lowest_latency_ms": round(min(t["latency_ms"] for t in ts), 5), "trials": ts}
               for m, ts in results.items()}
    out = {
        "benchmark": "sweep_engine", "budget_per_search": args.trials, "seed": args.seed,
        "retrain_epochs": args.retrain_epochs, "reference": {"top1": 10.0, "latency_ms": ref_latency,
                                                             "macs": baseline["macs"]},
        "dense_model": baseline, "searches": summary,
        "winner_latency": max(summary, key=lambda m: summary[m]["hypervolume_latency_ms"]),
        "winner_macs": max(summary, key=lambda m: summary[m]["hypervolume_macs"]),
        "seconds": round(time.perf_counter() - start, 1),
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine()},
    }
    text = json.dumps(out, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
