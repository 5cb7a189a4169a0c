"""Does a latency table measured through the agents' queue agree with one measured here, and what does it cost?

Builds the kernel table of one architecture's search space three times, each into an empty cache: here, through
the queue by a consumer process (``edgeprune agent consumer`` on this machine, files through a Redis artifact
store, as for a device on another machine), and here again. Reported: each build's wall time, whether the
fingerprints agree, and the median and 90th-percentile relative difference per kernel between the two local
builds (how well this machine agrees with itself) and between the queued build and the first local one.

    python benchmarks/queued_table.py [--arch resnet20_cifar] [--queue redis://127.0.0.1:6379/0]
        [--backend openvino] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from edgeprune.agents.artifacts import get_artifact_store
from edgeprune.agents.latency_jobs import QueuedMeasurer
from edgeprune.agents.queue import get_queue
from edgeprune.budget_search.latency import LatencyTable
from edgeprune.budget_search.space import build_space
from edgeprune.measurement.environment import environment
from edgeprune.measurement.target import Target
from edgeprune.models import create_model


def build(target: Target, cache: Path, kernels: list, measurer=None) -> tuple[LatencyTable, float]:
    start = time.perf_counter()
    table = LatencyTable(target, cache, measurer=measurer)
    table.measure(kernels)
    return table, time.perf_counter() - start


def differences(a: LatencyTable, b: LatencyTable) -> dict[str, float]:
    rel = sorted(abs(b.entries[k] - v) / v for k, v in a.entries.items())
    return {"median": statistics.median(rel), "p90": rel[int(0.9 * (len(rel) - 1))]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="resnet20_cifar")
    p.add_argument("--queue", default="redis://127.0.0.1:6379/0")
    p.add_argument("--backend", default="openvino")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    target = Target(backend=args.backend)
    kernels = build_space(create_model(args.arch).eval()).all_kernels()
    url = f"{args.queue}?prefix=bench-{uuid.uuid4().hex[:8]}"
    work = Path(tempfile.mkdtemp(prefix="queued-table-"))
    here, here_s = build(target, work / "here", kernels)
    log = (work / "consumer.log").open("wb")
    consumer = subprocess.Popen([sys.executable, "-m", "edgeprune", "agent", "consumer", "--queue", url,
                                 "--artifacts", url, "--storage", f"sqlite:///{work / 'study.db'}", "--work-dir",
                                 str(work / "consumer"), "--backend", args.backend], stdout=log, stderr=log)
    try:
        measurer = QueuedMeasurer(target, get_queue(url), get_artifact_store(url))
        queued, queued_s = build(target, work / "queued", kernels, measurer)
    finally:
        consumer.terminate()
        consumer.wait(timeout=60)
    again, again_s = build(target, work / "again", kernels)
    result = {"arch": args.arch, "backend": args.backend, "kernels": len(kernels),
              "seconds": {"here": round(here_s, 1), "queued": round(queued_s, 1), "here_again": round(again_s, 1)},
              "fingerprints_equal": here.fingerprint == queued.fingerprint == again.fingerprint,
              "here_vs_here_again": differences(here, again), "here_vs_queued": differences(here, queued)}
    print(f"{args.arch} on {args.backend}: {len(kernels)} kernels; table built here in {here_s:.1f} s, through the "
          f"queue in {queued_s:.1f} s, here again in {again_s:.1f} s; fingerprints equal: "
          f"{result['fingerprints_equal']}")
    for name in ("here_vs_here_again", "here_vs_queued"):
        d = result[name]
        print(f"  {name}: median |difference| per kernel {100 * d['median']:.1f} %, 90th percentile "
              f"{100 * d['p90']:.1f} %")
    if args.json:
        args.json.write_text(json.dumps({"environment": environment(), **result}, indent=1))


if __name__ == "__main__":
    main()
