"""Why OpenVINO's whole-network latency is hard to predict from per-layer tables on this machine: two checks.

1. **Levels.** One dense ResNet-20 ONNX file compiled ``--compiles`` times; after 10 warm-up calls, six rounds of
   100 calls each, the round medians printed per compile. A machine whose speed switches between levels shows
   rounds at two values.
2. **Additivity.** ``--configs`` random aligned width configurations (the search's grid), each thinned,
   exported and measured twice (lowest of 5 round medians, as the search measures). Printed: the repeatability,
   and latency against MACs and against the kernel-table sum (``--cache``: a table measured before, e.g. by
   ``benchmarks/latency_model.py``).

    python benchmarks/latency_variability.py [--backend openvino] [--compiles 6] [--configs 24] [--cache DIR]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch

from edgeprune.budget_search.latency import LatencyTable
from edgeprune.budget_search.space import build_space, render_widths_schedule, thinned
from edgeprune.conversion.torch_onnx import export_proto
from edgeprune.measurement.protocol import Protocol, time_round
from edgeprune.measurement.target import Target
from edgeprune.models import create_model
from edgeprune.models.summary import model_summary


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", default="openvino")
    p.add_argument("--compiles", type=int, default=6)
    p.add_argument("--configs", type=int, default=24)
    p.add_argument("--cache", default=None)
    p.add_argument("--seed", type=int, default=5)
    args = p.parse_args()
    target = Target(backend=args.backend)
    model = create_model("resnet20_cifar").eval()
    space = build_space(model)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "net.onnx"

        def export(net: torch.nn.Module) -> Path:
            path.write_bytes(export_proto(net, space.input_shape, exporter="torchscript").SerializeToString())
            return path

        export(model)
        for c in range(args.compiles):
            call = target.runner(path).bind(torch.randn(1, *space.input_shape).numpy())
            for _ in range(10):
                call()
            medians = [time_round(lambda i, run=call: run(), Protocol(niter=100)).median_ms for _ in range(6)]
            print(f"compile {c}: round medians " + " ".join(f"{m:.3f}" for m in medians) + " ms")

        table = LatencyTable(target, args.cache)
        table.measure(space.all_kernels())
        rng = random.Random(args.seed)
        rows = []
        for _ in range(args.configs):
            widths = {u.name: rng.choice(u.options) for u in space.units}
            net = thinned(model, render_widths_schedule(space, widths, "resnet20_cifar"))
            export(net)
            first, second = target.latency_ms(path), target.latency_ms(path)
            rows.append((model_summary(net).macs, sum(table[k] for _, k in space.kernels(widths)), first, second))
    macs, sums, first, second = (np.array(c, dtype=float) for c in zip(*rows, strict=True))
    print(f"repeatability: median |first - second| / first = {statistics.median(abs(second - first) / first):.3f}")
    print(f"correlation of latency with MACs {np.corrcoef(macs, first)[0, 1]:.2f}, with the kernel sum "
          f"{np.corrcoef(sums, first)[0, 1]:.2f}")
    for m, s, a, b in sorted(rows):
        print(f"{m:>12,} MACs  kernel sum {s:.3f} ms  measured {a:.3f} / {b:.3f} ms")


if __name__ == "__main__":
    main()
