"""One machine, the agents' way: N producer processes and one consumer process over the embedded queue.

This is how ``edgeprune sweep FILE`` runs a pipeline sweep. Why processes: producing and measuring are
CPU-bound, a crashed trial must not take the others down, and it is the very code path that runs across
machines — only the URLs differ. Each producer trains with ``available CPUs // N`` threads so N of them do
not oversubscribe the machine.

What must happen once happens here, before the agents start: the sweep is registered in the queue, the
study is created, the dense base model is pre-trained, the template is checked on it (a typo fails now,
not in every producer), and the dense reference model is stored for the consumer to measure. Then this
process watches the study (:class:`~edgeprune.sweep.progress.StudyWatcher`): a progress bar, a line per
trial, and the trackers the sweep configures — one process owns each tracker's runs, the agents log to
none. The agents' own output goes to ``logs/``.

The consumer measures only while no producer is producing (``quiet_wait_s``, at most that long): they
share this machine's cores, and a benchmark beside a training process measures the training as much as the
model. The producers stop asking once ``max_queued`` jobs wait, so production and measurement take turns.

The consumer ends by itself once the producers are gone and nothing is left to measure. Should it never
have seen a producer alive (they all failed at once), it is stopped once the queue is drained; should it
die, the producers are stopped (their trials are queued again for the next run).

Everything lives in the run directory: ``study.db`` (unless another storage is given), ``queue.db``,
``artifacts/``, ``base/``, ``trials/NNNN`` (producers), ``measured/SWEEP/NNNN`` (the consumer),
``logs/``, ``trials.jsonl`` and ``consumer-stats.json``.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from edgeprune.agents.artifacts import DirectoryStore
from edgeprune.agents.producer import publish_baseline
from edgeprune.agents.queue import JobQueue, get_queue
from edgeprune.agents.sweeps import resolve_sweep
from edgeprune.runtime.devices import available_cpus
from edgeprune.sweep.engine import SweepStudy
from edgeprune.sweep.prepare import preflight, prepare_base
from edgeprune.sweep.progress import (
    StudyWatcher,
    SweepResult,
    finished_count,
    planned,
    progress_bar,
    sigterm_as_interrupt,
    state_counts,
    status_line,
)
from edgeprune.sweep.storage import default_url
from edgeprune.tracking import make_trackers

POLL_S = 1.0
DRAIN_GRACE_S = 15.0  # the consumer normally notices within seconds that it is done
LOG_TAIL_LINES = 15
QUIET_WAIT_S = 120.0  # the longest a measurement waits for the producers to pause (see the module docstring)


@dataclass
class Agent:
    """One agent process of a local run and where its output goes."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def tail(self) -> str:
        lines = self.log.read_text(encoding="utf-8", errors="replace").splitlines() if self.log.is_file() else []
        return "\n".join(lines[-LOG_TAIL_LINES:])


@dataclass
class LocalRun(SweepResult):
    """A finished local run: the sweep's result, and what became of each agent process."""

    queue_url: str = ""
    producer_codes: list[int] = field(default_factory=list)
    consumer_code: int = 0
    consumer_stats: dict[str, Any] = field(default_factory=dict)
    failed_agents: list[str] = field(default_factory=list)  # "producer-1 (exit 1, logs/producer-1.log)"


def run_local(sweep_file: str | Path, run_dir: str | Path, *, producers: int = 1, threads: int | None = None,
              storage_url: str | None = None, trials: int | None = None, quiet_wait_s: float = QUIET_WAIT_S,
              consumer_args: Sequence[str] = (),
              console: Console | None = None) -> LocalRun:
    """Run a pipeline sweep to its end with ``producers`` producer processes (``threads`` each, default
    CPUs // producers) and one consumer; ``trials`` starts at most that many trials this time. Ctrl-C (or
    SIGTERM) stops all of them: the trials being produced are queued again, the job being measured goes
    back to the queue, and running the same call again continues. ``quiet_wait_s`` 0 lets the consumer
    measure while producers train (throughput over clean latencies, as benchmarks/scaleout.py wants)."""
    import optuna


    optuna.logging.set_verbosity(optuna.logging.WARNING)
    console = console or Console(stderr=True)
    run_dir = Path(run_dir).resolve()
    storage_url = storage_url or default_url(run_dir)
    queue_url = f"sqlite:///{run_dir / 'queue.db'}"
    queue = get_queue(queue_url)
    cfg = resolve_sweep(str(sweep_file), queue, run_dir)  # checked (program sweeps refused) and registered
    trackers = make_trackers(cfg, run_dir)  # a tracker that is not installed fails before any work
    try:
        study = SweepStudy(cfg, storage_url)
        base = prepare_base(cfg, run_dir, console)
        preflight(cfg, base)
        if publish_baseline(study, base, DirectoryStore(run_dir / "artifacts"), run_dir / "base"):
            console.print("the dense model (the reference point) is ready; the consumer measures it first")
        if trials is not None:
            study.limit = study.counted() + trials
        agent = [sys.executable, "-m", "edgeprune", "agent"]
        common = ["--queue", queue_url, "--storage", storage_url, "--work-dir", str(run_dir)]
        per_producer = str(threads or max(1, available_cpus() // producers))
        limit = ["--stop-at", str(study.limit)] if study.limit is not None else []
        stats = run_dir / "consumer-stats.json"
        stats.unlink(missing_ok=True)
        commands = {f"producer-{i}": [*agent, "producer", "--sweep", str(Path(sweep_file).resolve()), *common,
                                      "--artifacts", str(run_dir / "artifacts"), "--threads", per_producer,
                                      "--name", f"local-{i}", *limit] for i in range(producers)}
        commands["consumer"] = [*agent, "consumer", *common, "--sweep", cfg.study_name, "--exit-when-done",
                                "--stats", str(stats), "--quiet-wait", str(quiet_wait_s), *consumer_args]
        agents, stopped = _supervise(commands, run_dir / "logs", StudyWatcher(study, console, trackers), queue)
    finally:
        trackers.close()
    *producing, consumer = agents
    return LocalRun(
        cfg.study_name, storage_url, run_dir, counts=state_counts(study),
        stop_reason=study.stop_reason() or f"the producers stopped; their reasons are in {run_dir / 'logs'}",
        queue_url=queue_url, producer_codes=[a.proc.returncode for a in producing],
        consumer_code=consumer.proc.returncode,
        consumer_stats=json.loads(stats.read_text()) if stats.is_file() else {},
        failed_agents=[f"{a.name} (exit {a.proc.returncode}, {a.log}):\n{a.tail()}"
                       for a in agents if a.proc.returncode != 0 and a not in stopped])


def _supervise(commands: dict[str, list[str]], logs: Path, watcher: StudyWatcher,
               queue: JobQueue) -> tuple[list[Agent], list[Agent]]:
    """Start the agents (the consumer last), show the sweep's progress until every agent has exited; returns the
    agents and those stopped here for a reason already reported (not failures of their own)."""
    study = watcher.study
    logs.mkdir(parents=True, exist_ok=True)
    agents: list[Agent] = []
    stopped: list[Agent] = []
    try:
        for name, argv in commands.items():
            with open(logs / f"{name}.log", "ab") as log:  # the child keeps its own descriptor
                agents.append(Agent(name, subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                                           start_new_session=True), logs / f"{name}.log"))
        *producing, consumer = agents
        with sigterm_as_interrupt(), progress_bar(watcher.console) as progress:
            task = progress.add_task(status_line(study, watcher.activity()), total=planned(study))
            drained_at: float | None = None
            while True:
                running = any(a.proc.poll() is None for a in agents)
                watcher.poll()
                progress.update(task, description=status_line(study, watcher.activity()),
                                completed=finished_count(study))
                if not running:
                    return agents, stopped
                if consumer.proc.poll() is not None:  # nobody measures any more: stop producing
                    stopped += _stop([a for a in producing if a.proc.poll() is None])
                elif all(a.proc.poll() is not None for a in producing):
                    counts = queue.counts(study.cfg.study_name)
                    idle = not counts.queued and not counts.in_flight
                    drained_at = (drained_at or time.monotonic()) if idle else None
                    if drained_at is not None and time.monotonic() - drained_at > DRAIN_GRACE_S:
                        stopped += _stop([consumer])  # it never saw a producer alive: nothing left to wait for
                time.sleep(POLL_S)
    except BaseException:  # Ctrl-C, SIGTERM, or an error here: no agent is left running unwatched
        _stop([a for a in agents if a.proc.poll() is None])
        raise


def _stop(agents: list[Agent]) -> list[Agent]:
    """Stop ``agents`` as Ctrl-C would: a producer queues its trial again, a consumer hands its job back. SIGTERM,
    which the agents take as Ctrl-C, because SIGINT may be ignored (a shell's background jobs inherit that)."""
    for a in agents:
        a.proc.send_signal(signal.SIGTERM)
    for a in agents:
        a.proc.wait()
    return agents
