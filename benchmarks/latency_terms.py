"""Which terms should the latency model have? Candidate models fitted on random draws of measured networks.

Measures ``--networks`` random width configurations of one architecture (plus the dense and the narrowest) twice,
interleaved, on the target, with the kernel table of the search. Then, for ``--draws`` random draws of K networks
(dense and narrowest always in), fits each candidate model by least squares on the draw and scores it on the
networks left out. Reported per candidate and K: the median over the draws of the median absolute error and of
the share within ±10 %, and the machine's own test-retest difference (the floor any model meets).

    python benchmarks/latency_terms.py [--arch resnet20_cifar] [--networks 60] [--k 6 8 10] [--backend openvino]
        [--cache DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
from pathlib import Path

import numpy as np

from edgeprune.budget_search.latency import LatencyTable
from edgeprune.budget_search.predict import features, kernel_macs, kernel_sum
from edgeprune.budget_search.space import build_space, render_widths_schedule, thinned
from edgeprune.conversion.torch_onnx import export_proto
from edgeprune.measurement.environment import environment
from edgeprune.measurement.target import Target
from edgeprune.models import create_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="resnet20_cifar")
    p.add_argument("--networks", type=int, default=60)
    p.add_argument("--k", type=int, nargs="+", default=[6, 8, 10])
    p.add_argument("--draws", type=int, default=200)
    p.add_argument("--backend", default="openvino")
    p.add_argument("--cache", default=None)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    target = Target(backend=args.backend)
    model = create_model(args.arch).eval()
    space = build_space(model)
    table = LatencyTable(target, args.cache)
    table.measure(space.all_kernels())
    rng = random.Random(args.seed)
    configs = [space.dense, space.narrowest] + [{u.name: rng.choice(u.options) for u in space.units}
                                                for _ in range(args.networks)]
    work = Path(tempfile.mkdtemp(prefix="latency-terms-"))
    paths = []
    for i, widths in enumerate(configs):
        net = thinned(model, render_widths_schedule(space, widths, args.arch))
        paths.append(work / f"{i}.onnx")
        paths[-1].write_bytes(export_proto(net, space.input_shape, batch=1, exporter="torchscript")
                              .SerializeToString())
    times = [[target.latency_ms(path) for path in paths] for _ in range(2)]  # two interleaved passes
    y = np.minimum(*map(np.array, times))
    retest = statistics.median(abs(a - b) / min(a, b) for a, b in zip(*times, strict=True))

    def macs(w: dict) -> float:
        return sum(kernel_macs(k) for _, k in space.kernels(w)) / 1e6

    candidates = {
        "scale x kernel sum + offset": lambda w: [kernel_sum(space, table, w), 1.0],
        "MACs + offset": lambda w: [macs(w), 1.0],
        "kernel sum + MACs + offset": lambda w: [kernel_sum(space, table, w), macs(w), 1.0],
        "per-resolution sums + MACs + offset (kept)": lambda w: list(features(space, table, w)),
    }
    draw_rng = random.Random(0)
    rows = []
    for k in args.k:
        draws = [[0, 1, *draw_rng.sample(range(2, len(configs)), k - 2)] for _ in range(args.draws)]
        for name, terms_of in candidates.items():
            x = np.array([terms_of(w) for w in configs])
            medians, within = [], []
            for fit in draws:
                rest = [i for i in range(len(configs)) if i not in fit]
                coef, *_ = np.linalg.lstsq(x[fit], y[fit], rcond=None)
                err = np.abs(x[rest] @ coef - y[rest]) / y[rest]
                medians.append(float(np.median(err)))
                within.append(float(np.mean(err <= 0.10)))
            rows.append({"k": k, "model": name, "median_error": statistics.median(medians),
                         "within_10pct": statistics.median(within)})
            print(f"{args.arch} K={k:2d} {name:45s} median error {100 * rows[-1]['median_error']:.1f} %, "
                  f"within ±10 % {100 * rows[-1]['within_10pct']:.0f} %")
    print(f"test-retest median difference: {100 * retest:.1f} %")
    if args.json:
        args.json.write_text(json.dumps({"environment": environment(), "arch": args.arch, "retest": retest,
                                         "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
