"""One machine, the agents' way: N producer processes and one consumer process over the embedded queue.

Why processes: producing and measuring are CPU-bound, a crashed trial must not take the others down, and
it is the very code path that runs across machines — only the URLs differ. Each producer trains with
``available CPUs // N`` threads so N of them do not oversubscribe the machine; the study and the dense base
model are created once, here, before they start, so they do not all create the database's tables or
pre-train the base at the same time.

Everything lives in the run directory: ``study.db`` (unless another storage is given), ``queue.db``,
``artifacts/``, ``trials/NNNN`` (producers), ``measured/SWEEP/NNNN`` (the consumer) and
``consumer-stats.json``.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from edgeprune.sweep.storage import default_url


@dataclass
class LocalRun:
    storage_url: str
    queue_url: str
    producer_codes: list[int]
    consumer_code: int
    consumer_stats: dict[str, Any]


def run_local(sweep_file: str | Path, run_dir: str | Path, *, producers: int = 1, threads: int | None = None,
              storage_url: str | None = None, consumer_args: Sequence[str] = (),
              console: Console | None = None) -> LocalRun:
    """Run a pipeline sweep to its end with ``producers`` producer processes (``threads`` each, default
    CPUs // producers) and one consumer; Ctrl-C stops all of them (the trials being produced are queued again,
    the job being measured goes back to the queue)."""
    from edgeprune.bench.devices import available_cpus
    from edgeprune.sweep.config import load_sweep
    from edgeprune.sweep.engine import SweepStudy
    from edgeprune.sweep.runner import prepare_base

    console = console or Console(stderr=True)
    run_dir = Path(run_dir).resolve()
    cfg = load_sweep(sweep_file)
    storage_url = storage_url or default_url(run_dir)
    queue_url = f"sqlite:///{run_dir / 'queue.db'}"
    SweepStudy(cfg, storage_url)  # created once here: N processes creating a fresh database's tables collide
    prepare_base(cfg, run_dir, console)
    agent = [sys.executable, "-m", "edgeprune", "agent"]
    common = ["--queue", queue_url, "--storage", storage_url, "--work-dir", str(run_dir)]
    per_producer = str(threads or max(1, available_cpus() // producers))
    procs = [subprocess.Popen([*agent, "producer", "--sweep", str(Path(sweep_file).resolve()), *common, "--artifacts",
                               str(run_dir / "artifacts"), "--threads", per_producer, "--name", f"local-{i}"])
             for i in range(producers)]
    stats = run_dir / "consumer-stats.json"
    consumer = subprocess.Popen([*agent, "consumer", *common, "--sweep", cfg.study_name, "--exit-when-done",
                                 "--stats", str(stats), *consumer_args])
    try:
        codes = [p.wait() for p in procs]
        consumer_code = consumer.wait()
    except KeyboardInterrupt:
        for p in [*procs, consumer]:
            p.send_signal(signal.SIGINT)
        for p in [*procs, consumer]:
            p.wait()
        raise
    return LocalRun(storage_url, queue_url, codes, consumer_code,
                    json.loads(stats.read_text()) if stats.is_file() else {})
