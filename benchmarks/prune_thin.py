"""Wall time to prune + thin resnet56_cifar with Distiller's filter-rank schedule (one-shot, epoch 0).

Times the three parts of ``edgeprune prune`` separately — reading and validating the YAML, building
the scheduler on the model (strict keyword and weight-name checks), and running epoch 0 (L1 ranking,
masking, FilterRemover thinning with its fx trace and MAC recount) — on a fresh model each repeat,
and reports medians. Model construction is not timed.

    python benchmarks/prune_thin.py [--repeats 11]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from edgeprune.models import create_model
from edgeprune.models.summary import model_summary
from edgeprune.schedule import CompressionScheduler, load_schedule

SCHEDULE = Path(__file__).resolve().parents[1] / "examples" / "schedules" / "resnet56_cifar_filter_rank.yaml"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=11)
    args = ap.parse_args()
    parts: dict[str, list[float]] = {"load_yaml": [], "build": [], "prune_and_thin": [], "total": []}
    for _ in range(args.repeats):
        torch.manual_seed(0)
        model = create_model("resnet56_cifar")
        t0 = time.perf_counter()
        spec = load_schedule(SCHEDULE)
        t1 = time.perf_counter()
        scheduler = CompressionScheduler(model, spec)
        t2 = time.perf_counter()
        scheduler.apply_epoch_zero()
        t3 = time.perf_counter()
        for key, value in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t3 - t0), strict=True):
            parts[key].append(value)
    s = model_summary(model)
    print(json.dumps({
        "model": "resnet56_cifar", "schedule": SCHEDULE.name, "repeats": args.repeats,
        "threads": torch.get_num_threads(), "weight_params_after": s.weight_params, "macs_after": s.macs,
        **{f"{k}_s_median": round(statistics.median(v), 4) for k, v in parts.items()},
        "total_s_max": round(max(parts["total"]), 4),
    }, indent=2))


if __name__ == "__main__":
    main()
