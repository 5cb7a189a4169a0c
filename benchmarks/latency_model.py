"""How well does ``edgeprune search``'s latency model predict what the device measures?

For each architecture: the search space (aligned width grid by default), the kernel latency table (measured, or read
from the cache), the latency model fitted on the dense network, the narrowest one and random configurations measured
whole (``--calibration`` in all, at least as many as the model needs; ``--model scaled-sum`` fits the earlier
``scale x kernel sum + offset`` instead), then ``--configs`` further random configurations predicted and measured
whole. Whole networks are measured as the search measures them: the dense one alone, every other one paired with it
(``Target.latency_ratio`` times the dense latency; ``--unpaired``: each alone, as before). Reported: the median
absolute error, the share within ±5 % and ±10 %, the table's size and build time, the time a prediction takes.
``--align 1`` repeats it on the unaligned grid (every eighth of the dense width, whatever the channel count), which
is how the grid's resolution was chosen.

    python benchmarks/latency_model.py [--arch resnet20_cifar resnet56_cifar] [--configs 30] [--calibration 6]
        [--model full|scaled-sum] [--align 8] [--backend openvino] [--threads 1] [--unpaired] [--cache DIR]
        [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

from edgeprune.budget_search.latency import LatencyTable
from edgeprune.budget_search.predict import LatencyModel, networks_needed
from edgeprune.budget_search.space import SearchSpace, Widths, build_space, render_widths_schedule, thinned
from edgeprune.conversion.torch_onnx import export_proto
from edgeprune.measurement.environment import environment
from edgeprune.measurement.target import Target
from edgeprune.models import create_model


def export_whole(model, space: SearchSpace, arch: str, widths: Widths, batch: int, path: Path) -> Path:
    net = thinned(model, render_widths_schedule(space, widths, arch))
    path.write_bytes(export_proto(net, space.input_shape, batch=batch, exporter="torchscript").SerializeToString())
    return path


def run(arch: str, args: argparse.Namespace, target: Target) -> dict:
    model = create_model(arch).eval()
    space = build_space(model, align=args.align)
    table = LatencyTable(target, args.cache)
    kernels = space.all_kernels()
    start = time.perf_counter()
    measured_now = table.measure(kernels)
    table_s = time.perf_counter() - start
    rng = random.Random(args.seed)

    def draw() -> Widths:
        return {u.name: rng.choice(u.options) for u in space.units}

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        dense = export_whole(model, space, arch, space.dense, target.batch, work / "dense.onnx")
        dense_ms = target.latency_ms(dense)

        def measure_whole(widths: Widths) -> float:
            path = export_whole(model, space, arch, widths, target.batch, work / "net.onnx")
            if args.unpaired:
                return target.latency_ms(path)
            return dense_ms if widths == space.dense else target.latency_ratio(path, dense) * dense_ms

        count = max(args.calibration, networks_needed(space)) if args.model == "full" else args.calibration
        calibration = [space.dense, space.narrowest] + [draw() for _ in range(count - 2)]
        measured = [(w, measure_whole(w)) for w in calibration]
        fitted = (LatencyModel.fit_scaled if args.model == "scaled-sum" else LatencyModel.fit)(space, table, measured)
        rows = []
        for _ in range(args.configs):
            widths = draw()
            t0 = time.perf_counter()
            predicted = fitted.predict(widths)
            predict_ms = (time.perf_counter() - t0) * 1e3
            rows.append({"predicted_ms": predicted, "measured_ms": measure_whole(widths),
                         "predict_time_ms": predict_ms})
    errors = [abs(r["predicted_ms"] - r["measured_ms"]) / r["measured_ms"] for r in rows]
    return {"arch": arch, "align": args.align, "paired": not args.unpaired, "units": len(space.units),
            "kernels": len(kernels),
            "kernels_measured_now": measured_now, "table_s": round(table_s, 1),
            "model": args.model, "calibration": len(calibration), "fitted": fitted.describe(),
            "median_abs_error": statistics.median(errors), "within_5pct": sum(e <= 0.05 for e in errors) / len(errors),
            "within_10pct": sum(e <= 0.10 for e in errors) / len(errors), "max_abs_error": max(errors),
            "predict_time_ms": statistics.median(r["predict_time_ms"] for r in rows), "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", nargs="+", default=["resnet20_cifar", "resnet56_cifar"])
    parser.add_argument("--configs", type=int, default=30)
    parser.add_argument("--calibration", type=int, default=6)
    parser.add_argument("--model", choices=["full", "scaled-sum"], default="full",
                        help="full: per-resolution kernel sums, MACs and an offset (what the search fits); "
                             "scaled-sum: scale x kernel sum + offset, the earlier model")
    parser.add_argument("--align", type=int, default=8)
    parser.add_argument("--backend", default="openvino")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--unpaired", action="store_true",
                        help="measure every network alone, not paired with the dense one (the search pairs them)")
    parser.add_argument("--cache", default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    target = Target(backend=args.backend, threads=args.threads)
    results = [run(arch, args, target) for arch in args.arch]
    for r in results:
        print(f"{r['arch']} (align {r['align']}, {'paired' if r['paired'] else 'unpaired'}): {r['units']} units, "
              f"{r['kernels']} kernels "
              f"({r['kernels_measured_now']} measured now, {r['table_s']} s); {r['model']} fitted on "
              f"{r['calibration']} networks: {r['fitted']}; {len(r['rows'])} configs: median |error| "
              f"{100 * r['median_abs_error']:.1f} %, "
              f"within 5 % {100 * r['within_5pct']:.0f} %, within 10 % {100 * r['within_10pct']:.0f} %, "
              f"max {100 * r['max_abs_error']:.1f} %; a prediction takes {r['predict_time_ms']:.2f} ms")
    if args.json:
        args.json.write_text(json.dumps({"environment": environment(), "results": results}, indent=1))


if __name__ == "__main__":
    main()
