"""The consumer agent: take a job, fetch and verify its artifact, benchmark it, tell the study, acknowledge.

One consumer serves every sweep registered in its queue (or those named), opening each sweep's study from
the registered sweep (:mod:`edgeprune.agents.sweeps`). Each job goes through the sweep's own MEASURE half
(:func:`edgeprune.sweep.measure.measure_and_tell`) on a private copy of the artifact, with this machine's
benchmark settings (``--backend openvino --device CPU`` ...) over the sweep's.

Idempotence, so a job delivered twice gives one result:

* the trial's state is checked first: a finished trial's job is acknowledged without measuring (a
  redelivery after a crash between tell and ack, or a duplicate);
* the tell itself is atomic in the storage, and losing the race to another consumer counts as "already
  finished" (:func:`edgeprune.agents.trials.finish_once`);
* the acknowledgement comes only after the tell, so a crash anywhere before it redelivers the job.

Before the first trial of a sweep it measures the dense model the producers stored, with the same settings,
so the study's ``baseline`` latency compares with the trials' (:mod:`edgeprune.agents.baseline`).

A failed attempt (the artifact fails verification, the benchmark raises) releases the job for another try
after ``retry_delay_s``; after ``max_deliveries`` attempts — counting deliveries to consumers that died —
the job is dead-lettered with the reason and its trial failed, so it never stays RUNNING.

Besides its sweeps, every consumer serves the ``@latency`` namespace: single ONNX files a latency search
(``edgeprune search --queue``) needs timed on this device, answered with a reply instead of a tell
(:mod:`edgeprune.agents.latency_jobs`).

Ctrl-C or SIGTERM hands the job being measured (or just claimed) back to the queue at once, and an interrupt
that surfaces as another error — an extension module's import cut short — still counts as one, never as the
job's failure (:func:`edgeprune.signals.interrupt_requested`).
"""

from __future__ import annotations

import socket
import time
import traceback
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import optuna
from optuna.trial import TrialState
from pydantic import ValidationError
from rich.console import Console

from edgeprune.agents.artifacts import ArtifactStore, StoreResolver, get_artifact_store
from edgeprune.agents.baseline import measure_baseline, needs_latency
from edgeprune.agents.janitor import janitor_pass
from edgeprune.agents.latency_jobs import LATENCY_JOBS, LatencyJob, LatencyReply, answer
from edgeprune.agents.messages import AgentJob
from edgeprune.agents.queue import DEFAULT_DIR, Delivery, JobQueue, QueueUnavailableError, default_name, safe_name
from edgeprune.agents.sweeps import SweepStudies
from edgeprune.agents.ticker import every
from edgeprune.agents.trials import finish_once, is_finished
from edgeprune.errors import EdgepruneError
from edgeprune.runtime.errors import UnreadableModelError
from edgeprune.signals import interrupt_requested, interrupts_deferred, raise_if_interrupted
from edgeprune.sweep.config import BenchmarkSettings
from edgeprune.sweep.engine import SweepStudy
from edgeprune.sweep.job import JOB_FILE
from edgeprune.sweep.measure import measure_and_tell

BLOCK_S = 1.0
SWEEPS_REFRESH_S = 5.0
JANITOR_S = 30.0
MAX_WAIT_S = 30.0
QUIET_POLL_S = 0.2  # how often the consumer looks whether this machine's producers are idle


@dataclass
class ConsumerStats:
    """What a consumer did; ``busy_fraction`` is the share of its active span spent handling jobs."""

    outcomes: dict[str, int] = field(default_factory=dict)
    busy_s: float = 0.0
    first_start: float | None = None
    last_end: float | None = None

    def record(self, outcome: str, start: float, end: float) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        self.busy_s += end - start
        self.first_start = start if self.first_start is None else self.first_start
        self.last_end = end

    @property
    def jobs(self) -> int:
        return sum(self.outcomes.values())

    @property
    def busy_fraction(self) -> float:
        span = (self.last_end or 0.0) - (self.first_start or 0.0)
        return self.busy_s / span if span > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "jobs": self.jobs, "busy_fraction": round(self.busy_fraction, 4)}


class Consumer:
    """Measures the jobs of one or more sweeps and tells their studies."""

    def __init__(self, queue: JobQueue, storage_url: str, *, name: str | None = None, sweeps: list[str] | None = None,
                 artifacts: ArtifactStore | None = None, work_dir: str | Path | None = None,
                 bench: dict[str, Any] | None = None, max_deliveries: int = 3, retry_delay_s: float = 1.0,
                 quiet_wait_s: float = 0.0, console: Console | None = None) -> None:
        self.queue, self.storage_url = queue, storage_url
        self.name = name or default_name()
        self.explicit = list(sweeps) if sweeps else None
        self.stores = StoreResolver(artifacts or get_artifact_store())
        self.work_dir = Path(work_dir or DEFAULT_DIR).resolve()
        self.bench = dict(bench or {})
        self.max_deliveries, self.retry_delay_s = max(1, max_deliveries), retry_delay_s
        self.quiet_wait_s = max(0.0, quiet_wait_s)
        self.console = console or Console(stderr=True)
        self.stats = ConsumerStats()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.studies = SweepStudies(queue, storage_url, self.work_dir)
        self._sweeps: list[str] = []
        self._sweeps_at = self._janitor_at = 0.0
        self._recovered: set[str] = set()
        self._producers_seen: set[str] = set()
        self._baseline_tried: set[str] = set()
        self._fingerprints: dict[str, dict[str, Any]] = {}  # per latency target
        self.handed_back: list[Delivery] = []  # what an interrupt gave back to the queue (the CLI says so)

    # ------------------------------------------------------------------------------------------- main
    def run(self, *, max_jobs: int | None = None, exit_when_done: bool = False) -> ConsumerStats:
        """Serve until ``max_jobs`` jobs are handled, or (``exit_when_done``) every served sweep is finished."""
        backlog: list[Delivery] = []
        served = ", ".join(self.explicit) if self.explicit else "every sweep registered"
        self.console.print(f"consumer {self.name} serving {served} in {self.queue.url}", highlight=False)
        try:
            return self._serve(backlog, max_jobs, exit_when_done)
        except KeyboardInterrupt:  # jobs taken back after a restart and not yet started go back too
            for delivery in backlog:
                self.queue.release(delivery, "its consumer was interrupted", 0.0)
            self.handed_back += backlog
            raise

    def _serve(self, backlog: list[Delivery], max_jobs: int | None, exit_when_done: bool) -> ConsumerStats:
        wait = 1.0
        while max_jobs is None or self.stats.jobs < max_jobs:
            raise_if_interrupted()
            try:
                sweeps = self._served()
                namespaces = [*sweeps, LATENCY_JOBS]
                new = [s for s in namespaces if s not in self._recovered]
                if new:  # jobs this consumer took before it restarted come back first (Redis: XREADGROUP ... 0)
                    backlog += self.queue.pending(self.name, new)
                    self._recovered.update(new)
                self._janitor(sweeps)
                delivery = self._next(backlog, namespaces)
                if delivery is None:
                    if exit_when_done and self._finished(sweeps):
                        break
                    continue
                start = time.time()
                self.stats.record(self.handle(delivery), start, time.time())
                wait = 1.0
            except QueueUnavailableError as exc:
                self.console.print(f"[yellow]{exc.message}[/]; trying again in {wait:.0f} s", highlight=False)
                time.sleep(wait)
                wait = min(wait * 2, MAX_WAIT_S)
        return self.stats

    def _next(self, backlog: list[Delivery], namespaces: list[str]) -> Delivery | None:
        """The next job; one claimed as an interrupt arrives goes back at once, not after the visibility timeout."""
        delivery = None
        try:
            with interrupts_deferred():
                delivery = backlog.pop(0) if backlog else self.queue.get(self.name, namespaces, BLOCK_S)
        except KeyboardInterrupt:
            if delivery is not None:
                self._give_back(delivery)
            raise
        return delivery

    def _served(self) -> list[str]:
        if self.explicit is not None:
            return self.explicit
        if time.monotonic() - self._sweeps_at > SWEEPS_REFRESH_S:
            self._sweeps, self._sweeps_at = self.queue.sweeps(), time.monotonic()
        return self._sweeps

    def _janitor(self, sweeps: list[str]) -> None:
        if time.monotonic() - self._janitor_at < JANITOR_S:
            return
        self._janitor_at = time.monotonic()
        janitor_pass([self.studies.opened[s] for s in sweeps if s in self.studies.opened], self.queue, self.console)

    def _finished(self, sweeps: list[str]) -> bool:
        """Nothing left to measure: for every served sweep the queue is empty, no trial is RUNNING (one could
        still be failed and produced again), and either the study has a stop reason or the producers this
        consumer saw are all gone (they may stop early, ``--max-trials``)."""
        if not sweeps:
            return False
        for sweep in sweeps:
            if self.queue.sweep_document(sweep) is None:
                return False
            counts = self.queue.counts(sweep)
            if counts.queued or counts.in_flight:
                return False
            if any(p.alive() for p in self.queue.producers(sweep)):
                self._producers_seen.add(sweep)
                return False
            study = self.studies[sweep]
            if study.trials(TrialState.RUNNING):
                return False
            if study.stop_reason() is None and sweep not in self._producers_seen:
                return False
        return True

    # -------------------------------------------------------------------------------------------- job
    def handle(self, delivery: Delivery) -> str:
        """Measure one delivery; returns the outcome: measured, duplicate, released or dead."""
        if delivery.sweep == LATENCY_JOBS:
            return self._latency(delivery)
        try:
            message = AgentJob.model_validate_json(delivery.body)
        except ValidationError as exc:
            self.queue.dead_letter(delivery, f"not an edgeprune job: {exc.errors()[0]['msg']}")
            return "dead"
        sweep, number = message.sweep, message.trial_number
        study: SweepStudy | None = None
        try:
            study = self.studies[sweep]
            if is_finished(study, number):
                self.queue.ack(delivery)
                self.console.print(f"{sweep}: trial {number} is finished already; job {delivery.message_id} "
                                   "acknowledged unmeasured")
                return "duplicate"
            if delivery.deliveries > self.max_deliveries:
                return self._dead(delivery, study, number, _exhausted(delivery))
            with self._kept_visible(delivery):
                self.wait_for_quiet()
                self._baseline(study)
                told = self._measure(study, message, delivery)
        except QueueUnavailableError:
            raise
        except KeyboardInterrupt:  # hand the job back at once instead of after the visibility timeout
            self._give_back(delivery)
        except Exception as exc:
            return self._failed(delivery, exc, lambda reason: self._dead(delivery, study, number, reason),
                                f"{sweep}: trial {number}")
        self.queue.ack(delivery)
        self.stores(message.artifact).discard(message.artifact)
        return "measured" if told else "duplicate"

    def _kept_visible(self, delivery: Delivery) -> AbstractContextManager[None]:
        """While the block runs, the job stays this consumer's: its visibility timeout is renewed in the background."""
        return every(self.queue.visibility_timeout_s / 3, lambda: self.queue.extend(delivery),
                     what="visibility extension", console=self.console)

    def _failed(self, delivery: Delivery, exc: Exception, dead: Callable[[str], str], what: str) -> str:
        """A failed attempt: released for another try, or ``dead(reason)`` once the attempts are used up or when
        no retry can help; an interrupt that surfaced as this error hands the job back instead."""
        if interrupt_requested():  # the interrupt surfaced as another error: not the job's failure
            self._give_back(delivery)
        if not isinstance(exc, EdgepruneError):
            traceback.print_exc()
        reason = exc.message if isinstance(exc, EdgepruneError) else f"{type(exc).__name__}: {exc}"
        if isinstance(exc, UnreadableModelError):  # no retry on this runtime can read it
            return dead(f"this consumer cannot read the artifact: {reason} {exc.hint}")
        if delivery.deliveries >= self.max_deliveries:
            return dead(reason)
        self.queue.release(delivery, reason, self.retry_delay_s)
        self.console.print(f"{what} attempt {delivery.deliveries} failed, released for another: {reason}",
                           highlight=False)
        return "released"

    def _latency(self, delivery: Delivery) -> str:
        """Measure a latency search's file and put the reply where the search waits for it, then acknowledge."""
        try:
            job = LatencyJob.model_validate_json(delivery.body)
        except ValidationError as exc:
            self.queue.dead_letter(delivery, f"not an edgeprune latency job: {exc.errors()[0]['msg']}")
            return "dead"

        def dead(reason: str) -> str:  # the search is told, so it stops with the reason instead of waiting
            self.queue.put_reply(job.reply, LatencyReply(consumer=self.name, error=reason).model_dump_json())
            self.queue.dead_letter(delivery, reason)
            self.console.print(f"[red]latency job {job.label} from {job.requester} dead-lettered[/]: {reason}",
                               highlight=False)
            return "dead"

        if delivery.deliveries > self.max_deliveries:
            return dead(_exhausted(delivery))
        try:
            with self._kept_visible(delivery):
                self.wait_for_quiet()
                local = self.work_dir / "measured" / safe_name(LATENCY_JOBS) / f"{safe_name(delivery.message_id)}.onnx"
                fetched: list[Path] = []  # removed once measured, whatever happens
                try:
                    for ref, dest in ((job.artifact, local), (job.reference, local.with_stem(f"{local.stem}-ref"))):
                        if ref is not None:
                            fetched.append(self.stores(ref).fetch(ref, dest))
                    reply = answer(job, fetched[0], self.name, self.bench, self._fingerprints,
                                   fetched[1] if len(fetched) > 1 else None)
                finally:
                    for path in fetched:
                        path.unlink(missing_ok=True)
        except QueueUnavailableError:
            raise
        except KeyboardInterrupt:
            self._give_back(delivery)
        except Exception as exc:
            return self._failed(delivery, exc, dead, f"latency job {job.label} from {job.requester}")
        self.queue.put_reply(job.reply, reply.model_dump_json())
        self.queue.ack(delivery)
        shown = (f"{reply.latency_ms:.4g} ms" if reply.latency_ms is not None else
                 f"{reply.ratio:.4g}x the reference" if reply.ratio is not None else "fingerprint read")
        self.console.print(f"latency job {job.label} from {job.requester}: {shown}", highlight=False)
        return "measured"

    def _give_back(self, delivery: Delivery) -> NoReturn:
        self.queue.release(delivery, "its consumer was interrupted", 0.0)
        self.handed_back.append(delivery)
        raise KeyboardInterrupt

    def _measure(self, study: SweepStudy, message: AgentJob, delivery: Delivery) -> bool:
        """Fetch, verify, benchmark and tell; False when another consumer told the trial first."""
        sweep, number = message.sweep, message.trial_number
        local = self.work_dir / "measured" / safe_name(sweep) / f"{number:04d}"
        suffix = Path(message.job.artifact).suffix
        artifact = self.stores(message.artifact).fetch(message.artifact, local / f"model{suffix}")
        settings = self._settings(message.job.benchmark)
        job = message.job.model_copy(update={"artifact": str(artifact), "benchmark": settings})
        job.write(local / JOB_FILE)
        self.console.print(f"{sweep}: trial {number} measuring ({settings.backend} on {settings.device}), delivery "
                           f"{delivery.deliveries} of job {delivery.message_id}")
        results: dict[str, float] = {}
        told = finish_once(study, number, lambda: results.update(measure_and_tell(study, job)))
        if told:
            shown = "  ".join(f"{o.name} {results[o.name]:.4g}" for o in study.cfg.directions)
            self.console.print(f"{sweep}: trial {number} [green]done[/]: {shown}")
        return told

    def wait_for_quiet(self) -> float:
        """Wait, at most ``quiet_wait_s``, until no live producer on this machine is producing; returns the wait.

        Why: on one machine (``edgeprune sweep``, the demo) producers train on the cores the benchmark runs on,
        which makes latencies noisy and slow. Producers stop asking once ``max_queued`` jobs wait, so they fall
        idle while the queue is full and the consumer measures then; the cap keeps a stuck producer (whose last
        beat still says "producing") from stalling measurement. Producers on other machines do not count.
        """
        start = time.monotonic()
        if self.quiet_wait_s <= 0:
            return 0.0
        host, sweeps = socket.gethostname(), self.queue.sweeps()  # every sweep's producers: they share the CPU
        while time.monotonic() - start < self.quiet_wait_s:
            busy = [b for sweep in sweeps for b in self.queue.producers(sweep)
                    if b.alive() and b.info.get("host") == host and b.info.get("state") == "producing"]
            if not busy:
                return time.monotonic() - start
            time.sleep(QUIET_POLL_S)
        self.console.print(f"[yellow]measuring beside producers still producing after {self.quiet_wait_s:.0f} s "
                           "(--quiet-wait)[/]")
        return time.monotonic() - start

    def _settings(self, sweep_settings: BenchmarkSettings) -> BenchmarkSettings:
        """The sweep's benchmark settings with this machine's (``--backend`` ...) over them."""
        return BenchmarkSettings.model_validate({**sweep_settings.model_dump(), **self.bench})

    def _baseline(self, study: SweepStudy) -> None:
        """Measure the sweep's dense model once, before its trials; a failure is reported, never the job's."""
        sweep = study.cfg.study_name
        if sweep in self._baseline_tried or not needs_latency(study):
            return
        self._baseline_tried.add(sweep)
        try:
            baseline = measure_baseline(study, self.stores, self._settings(study.cfg.benchmark),
                                        self.work_dir / "measured" / safe_name(sweep) / "dense")
        except Exception as exc:
            reason = exc.message if isinstance(exc, EdgepruneError) else f"{type(exc).__name__}: {exc}"
            self.console.print(f"[yellow]warning:[/] {sweep}: the dense model could not be measured, so the "
                               f"report shows no speed-up: {reason}", highlight=False)
            return
        self.console.print(f"{sweep}: dense model measured: latency_ms {baseline['latency_ms']:.4g}")

    def _dead(self, delivery: Delivery, study: SweepStudy | None, number: int, reason: str) -> str:
        self.queue.dead_letter(delivery, reason)
        if study is not None:
            error = f"dead-lettered after {delivery.deliveries} deliveries: {reason}"
            finish_once(study, number, lambda: study.fail(number, error))
        self.console.print(f"[red]{delivery.sweep}: trial {number} dead-lettered[/]: {reason}", highlight=False)
        return "dead"


def _exhausted(delivery: Delivery) -> str:
    """Why a job delivered more often than allowed is given up: consumers took it and never finished it."""
    return (f"delivered {delivery.deliveries - 1} times without a result; last error: "
            f"{delivery.last_error or 'none (its consumers stopped)'}")
