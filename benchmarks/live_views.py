"""What the live dashboard's figures cost the consumer: ``SweepStudy.complete`` with and without saving them.

Every told result saves edgeprune's figures into the study (:mod:`edgeprune.sweep.live`), on the consumer's
path between the tell and the acknowledgement. Two SQLite studies of the same sweep are told the same results
in turn — one tell with the figures, one without, alternating — so load from other processes hits both sides
alike. Reported: the median time of one tell on each side, their difference, and the figures' JSON size at the
end (what each save writes, in optuna-dashboard's 2,045-character chunks).

    python benchmarks/live_views.py [--trials 27]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import tempfile
import time
from pathlib import Path
from unittest import mock

import optuna

from edgeprune.sweep.config import parse_sweep
from edgeprune.sweep.engine import SweepStudy
from edgeprune.sweep.live import live_views
from edgeprune.sweep.results import study_data

SWEEP = """\
name: live-views
method: grid
program: t.py
objectives: [{name: top1, goal: maximize}, {name: latency_ms, goal: minimize}]
parameters:
  a: {values: %s}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=27, help="results told to each study (the demo's sweep: 27)")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cfg = parse_sweep(SWEEP % list(range(args.trials)), "live.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        studies = {side: SweepStudy(cfg, f"sqlite:///{Path(tmp) / side}.db") for side in ("with", "without")}
        for study in studies.values():
            study.study.set_user_attr("baseline", {"top1": 98.0, "latency_ms": 0.06, "macs": 2.5e6})
        times: dict[str, list[float]] = {side: [] for side in studies}
        for i in range(args.trials):
            metrics = {"top1": 97.0 - 0.1 * i, "latency_ms": 0.06 - 0.001 * i, "macs": 2.5e6 - 5e4 * i}
            for side, study in studies.items():
                asked = study.ask()
                off = mock.patch("edgeprune.sweep.engine.publish_live_views", return_value=[])
                with off if side == "without" else contextlib.nullcontext():
                    start = time.perf_counter()
                    study.complete(asked.trial, metrics, measured_on="benchmark")
                    times[side].append(time.perf_counter() - start)
        sizes = {k: len(v.to_json()) for k, v in live_views(study_data(studies["with"].study, "")).items()}
    medians = {side: statistics.median(t) * 1e3 for side, t in times.items()}
    print(json.dumps({"trials": args.trials, "tell_median_ms": medians,
                      "figures_extra_ms": medians["with"] - medians["without"], "figure_json_chars": sizes}, indent=1))


if __name__ == "__main__":
    main()
