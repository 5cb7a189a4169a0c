"""Scale-out: trials per hour with 1, 2 and 4 producers feeding one consumer, and the consumer's busy fraction.

Each configuration runs a fresh random sweep through :func:`edgeprune.agents.local.run_local` — P producer
processes and one consumer process on this machine, embedded SQLite queue and study. A trial is real and
tiny: resnet20_cifar on the built-in digits, one-shot L1 filter pruning of two stages at sampled
sparsities, thinning, one fine-tuning epoch, a parity-checked ONNX export (torchscript), and an ONNX
Runtime benchmark on the consumer, which measures while producers train (``quiet_wait_s=0``: this measures
the pipeline's throughput, not clean latencies).

Throughput comes from the study's own timestamps, first trial started to last trial completed, so process
start-up (imports: seconds each) is not counted — this is the steady pipeline. The consumer's busy time
includes its one benchmark of the dense reference model, taken just before the first trial's. Goal: at least 0.8x linear
scaling until the consumer saturates. Each producer trains with one thread by default (``--threads``), so
P = 1 is one trial's worth of work and P = N asks for N cores: producers and the consumer share this
machine's cores, and once P reaches the core count they only slice the same cores — scaling stops for that
reason, not the queue's; on a 2-core machine 4 producers cannot beat 2.

    .venv/bin/python benchmarks/scaleout.py --producers 1,2,4 --trials-per-producer 4 -o runs/scaleout.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

TEMPLATE = """\
version: 1
pruners:
  stage1:
    class: L1RankedStructureParameterPruner
    group_type: Filters
    desired_sparsity: ${sparsity.layer1}
    weights: [module.layer1.0.conv1.weight, module.layer1.1.conv1.weight, module.layer1.2.conv1.weight]
  stage2:
    class: L1RankedStructureParameterPruner
    group_type: Filters
    desired_sparsity: ${sparsity.layer2}
    weights: [module.layer2.0.conv1.weight, module.layer2.1.conv1.weight, module.layer2.2.conv1.weight]
extensions:
  net_thinner: {class: FilterRemover, thinning_func_str: remove_filters, arch: resnet20_cifar, dataset: digits}
policies:
  - pruner: {instance_name: stage1}
    epochs: [0]
  - pruner: {instance_name: stage2}
    epochs: [0]
  - extension: {instance_name: net_thinner}
    epochs: [0]
"""
SWEEP = """\
name: scaleout-{producers}
method: random
run_cap: {trials}
objectives: [{{name: top1, goal: maximize}}, {{name: latency_ms, goal: minimize}}]
parameters:
  sparsity:
    parameters:
      layer1: {{min: 0.1, max: 0.8}}
      layer2: {{min: 0.1, max: 0.8}}
model: resnet20_cifar
data: digits
schedule_template: template.yaml
retrain: {{epochs: {epochs}, batch_size: 128}}
export: {{exporter: torchscript, parity_images: 16}}
benchmark: {{backend: onnxruntime, threads: 1, niter: 200, warmup: 20, budget_s: {budget}}}
"""


def run_one(producers: int, trials: int, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    import optuna

    from edgeprune.agents.local import run_local
    from edgeprune.agents.messages import QUEUED_ATTR

    run_dir = root / f"p{producers}"
    run_dir.mkdir(parents=True)
    (run_dir / "template.yaml").write_text(TEMPLATE)
    sweep = run_dir / "sweep.yaml"
    sweep.write_text(SWEEP.format(producers=producers, trials=trials, budget=args.budget, epochs=args.epochs))
    wall = time.perf_counter()
    result = run_local(sweep, run_dir, producers=producers, threads=args.threads or None, quiet_wait_s=0)
    wall = time.perf_counter() - wall
    study = optuna.load_study(study_name=f"scaleout-{producers}", storage=result.storage_url)
    done = study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.COMPLETE])
    start = min(t.datetime_start for t in done)
    end = max(t.datetime_complete for t in done)
    span = (end - start).total_seconds()
    produce_s = [t.user_attrs[QUEUED_ATTR]["at"] - t.datetime_start.timestamp() for t in done]
    stats = result.consumer_stats
    return {
        "producers": producers, "trials": len(done), "span_s": round(span, 1), "wall_s": round(wall, 1),
        "trials_per_hour": round(len(done) / span * 3600, 1),
        "produce_s_median": round(statistics.median(produce_s), 2),
        "measure_s_mean": round(stats["busy_s"] / max(1, stats["jobs"]), 2),
        "consumer_busy_fraction": round(stats["busy_s"] / span, 3),  # over the same window as the throughput
        "exit_codes": [*result.producer_codes, result.consumer_code],
    }


def main() -> None:
    from edgeprune.runtime.devices import available_cpus

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--producers", default="1,2,4", help="Comma-separated producer counts.")
    parser.add_argument("--trials-per-producer", type=int, default=4, help="run_cap = P x this.")
    parser.add_argument("--epochs", type=int, default=1, help="Fine-tuning epochs per trial (the producers' work).")
    parser.add_argument("--budget", type=float, default=1.0, help="Seconds of benchmark rounds per trial (the "
                                                                  "consumer's work).")
    parser.add_argument("--threads", type=int, default=1,
                        help="Training threads per producer (0: CPUs // producers, run_local's default).")
    parser.add_argument("-o", "--output", type=Path, help="Also write the JSON here.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgeprune-scaleout-") as tmp:
        rows = [run_one(p, p * args.trials_per_producer, args, Path(tmp))
                for p in (int(x) for x in args.producers.split(","))]
    base = next((r["trials_per_hour"] for r in rows if r["producers"] == 1), None)
    for r in rows:
        if base:
            r["speedup"] = round(r["trials_per_hour"] / base, 2)
            r["efficiency"] = round(r["speedup"] / r["producers"], 2)
    report = {"cpus": available_cpus(), "trials_per_producer": args.trials_per_producer, "epochs": args.epochs,
              "budget_s": args.budget, "threads_per_producer": args.threads or "cpus // producers", "runs": rows}
    text = json.dumps(report, indent=2)
    print(text)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text + "\n")


if __name__ == "__main__":
    main()
