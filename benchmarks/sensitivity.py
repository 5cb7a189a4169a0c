"""Wall time per (weight, sparsity) point of ``edgeprune sensitivity`` relative to one plain evaluation pass.

The analysis should cost its evaluations and nothing else (goal: at most 1.1× a plain pass per point).
Both sides see the same cached, normalised batches of synthetic 3×32×32 images on resnet20_cifar:

* plain: a hand-written ``no_grad`` loop computing logits, cross-entropy and top-1/top-5 — the least any
  evaluation can cost;
* analysis: :func:`edgeprune.analysis.sensitivity.analyse_to_dir` (L1 pruning of one weight with the
  schedule pruners, the ``evaluate`` used everywhere in edgeprune, the atomic write of ``sensitivity.json``
  after every point, the progress bar) over ``--layers`` weights × sparsities 0.1…0.4, where every point
  prunes more filters than the last, so none is reused. Per point: the evaluation plus the work between it
  and the previous one; set-up and the final CSV/plots are reported apart.

Every evaluation of the analysis is paired with a plain pass just before it (on the same pruned model), so
load from other processes hits both alike; the ratio is the median of the per-pair ratios.

    python benchmarks/sensitivity.py [--images 512] [--batch-size 128] [--layers 3] [--repeats 5]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import tempfile
import time

import torch
from rich.console import Console
from torch.nn import functional as F

from edgeprune.analysis.sensitivity import SensitivitySettings, analyse_to_dir, sensitivity_weights
from edgeprune.models import create_model
from edgeprune.training.metrics import evaluate

SPARSITIES = [0.1, 0.2, 0.3, 0.4]


@torch.no_grad()
def plain_pass(model: torch.nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[float, ...]:
    model.eval()
    correct1 = correct5 = 0
    loss = 0.0
    for x, y in batches:
        logits = model(x)
        loss += float(F.cross_entropy(logits, y, reduction="sum"))
        top5 = logits.topk(5, dim=1).indices.eq(y[:, None])
        correct1 += int(top5[:, 0].sum())
        correct5 += int(top5.any(dim=1).sum())
    n = sum(len(y) for _, y in batches)
    return 100.0 * correct1 / n, 100.0 * correct5 / n, loss / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--layers", type=int, default=3, help="weights analysed per repeat (layer1.x.conv1 first)")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.manual_seed(0)
    model = create_model("resnet20_cifar").eval()
    x = torch.randn(args.images, 3, 32, 32)
    y = torch.randint(0, 10, (args.images,))
    batches = [(x[i : i + args.batch_size], y[i : i + args.batch_size]) for i in range(0, args.images, args.batch_size)]
    weights = sensitivity_weights(model, "filter", "layer*.conv1")[: args.layers]
    settings = SensitivitySettings.of(model, weights, SPARSITIES, "filter", batches)
    plain_pass(model, batches)  # warm-up: first-call dispatch and allocator
    ratios, plain, per_point, gaps, outside = [], [], [], [], []
    evaluations = 0
    for _ in range(args.repeats):
        passes: list[tuple[float, float, float]] = []  # (plain pass start, evaluation start, evaluation end)

        def timed(m: torch.nn.Module, passes: list[tuple[float, float, float]] = passes) -> dict[str, float]:
            t0 = time.perf_counter()
            plain_pass(m, batches)  # paired with the evaluation right after it: load changes hit both alike
            t1 = time.perf_counter()
            metrics = evaluate(m, batches)
            passes.append((t0, t1, time.perf_counter()))
            return metrics

        with tempfile.TemporaryDirectory() as out:
            t0 = time.perf_counter()
            result = analyse_to_dir(model, out, settings, timed, console=Console(quiet=True))
            total = time.perf_counter() - t0
        evaluations = result.evaluations
        # With no sparsity 0 the dense model is measured once after the last point: leave it out of the steady state.
        points = passes[: evaluations - 1]
        for (_, _, prev_end), (plain_start, start, end) in itertools.pairwise(points):
            gaps.append(plain_start - prev_end)  # prune, persist, progress bar
            plain.append(start - plain_start)
            per_point.append(end - start + gaps[-1])
            ratios.append(per_point[-1] / plain[-1])
        dense = passes[-1]
        outside.append(total - (points[-1][2] - points[0][0]) - (dense[2] - dense[0]))
    print(json.dumps({
        "model": "resnet20_cifar", "images": args.images, "batch_size": args.batch_size, "weights": weights,
        "sparsities": SPARSITIES, "points": len(weights) * len(SPARSITIES), "evaluations": evaluations,
        "repeats": args.repeats, "pairs": len(ratios), "threads": torch.get_num_threads(),
        "plain_pass_s_median": round(statistics.median(plain), 4),
        "per_point_s_median": round(statistics.median(per_point), 4),
        "ratio_median": round(statistics.median(ratios), 3),
        "between_points_ms_median": round(1000 * statistics.median(gaps), 2),
        "setup_csv_plots_s_median": round(statistics.median(outside), 3),
    }, indent=2))


if __name__ == "__main__":
    main()
