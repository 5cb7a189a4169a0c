"""The producer agent: ask the study, PRODUCE the trial up to a verified ONNX, store the artifact, enqueue the job.

The PRODUCE half (:func:`edgeprune.sweep.produce.produce`) runs in this process, so a crash (``kill -9``,
out of memory) ends the producer and its trial together and the janitor retries the trial, while a trial
that fails with an error is failed in the study and the producer goes on. While a trial is produced, a
background thread renews its lease and the producer's heartbeat; once its job is in the queue, the trial
is marked as handed off (:data:`~edgeprune.agents.messages.QUEUED_ATTR`) and the queue owns it.

Every retraining epoch's validation metrics are recorded with the trial as they come (``history``), so
``early_terminate`` (WandB's hyperband) compares the trial with every other trial's history at the same
step, exactly as the embedded runner does for program sweeps, and stops a hopeless one there: the trial is
PRUNED and nothing is queued for it.

Backpressure: no trial is asked while ``max_queued`` jobs of the sweep wait unmeasured — producing far
ahead of the consumer wastes trials when the sweep stops (run_cap, target) and makes a Bayesian sampler
ask without the latest results. The producer stops after ``max_trials`` trials, when the first
``MAX_INITIAL_FAILURES`` trials it produced all failed (a broken sweep, as ``wandb agent`` judges it), or
once the study has a stop reason and none of its trials is RUNNING any more (a running one may still fail
and be retried). ``stop_at`` caps the trials of the whole study for this run, beside ``run_cap``
(``edgeprune sweep --trials``).

A heartbeat thread beats every ``HEARTBEAT_S`` for the producer's whole life (preparing, producing, waiting),
each beat carrying its lease, so ``edgeprune status`` calls a killed producer gone within seconds. Producers
sharing a work directory prepare the base model under a file lock: one pre-trains, the others wait and find
it done. Ctrl-C or SIGTERM fails the trial being produced as abandoned (queued again); one that arrives while
a trial is being asked is held back until the trial is leased, so that trial is handed back too.
"""

from __future__ import annotations

import socket
import time
import traceback
import zlib
from pathlib import Path
from typing import NoReturn

import optuna
from filelock import FileLock, Timeout
from optuna.trial import Trial, TrialState
from rich.console import Console

from edgeprune.agents.artifacts import ArtifactStore
from edgeprune.agents.baseline import ARTIFACT_ATTR, BASELINE_ATTR
from edgeprune.agents.janitor import janitor_pass
from edgeprune.agents.messages import QUEUED_ATTR, AgentJob
from edgeprune.agents.queue import (
    DEFAULT_DIR,
    HEARTBEAT_S,
    PRODUCER_LEASE_S,
    JobQueue,
    QueueUnavailableError,
    default_name,
    safe_name,
)
from edgeprune.agents.ticker import every
from edgeprune.agents.trials import finish_once
from edgeprune.errors import EdgepruneError
from edgeprune.runtime.devices import available_cpus
from edgeprune.signals import interrupt_requested, interrupts_deferred, raise_if_interrupted
from edgeprune.sweep.config import SweepConfig
from edgeprune.sweep.engine import LEASE_S, MAX_INITIAL_FAILURES, AskedTrial, SweepStudy, make_sampler
from edgeprune.sweep.job import TrialJob, TrialRequest
from edgeprune.sweep.prepare import dense_reference, preflight, prepare_base
from edgeprune.sweep.produce import EpochRecorder, produce

POLL_S = 2.0
RETRY_S = 5.0


def publish_baseline(study: SweepStudy, base: str, store: ArtifactStore, out_dir: Path) -> bool:
    """Record the dense model's accuracy and size and store its ONNX file, unless the study has them already."""
    if ARTIFACT_ATTR in study.study.user_attrs:
        return False
    metrics, onnx = dense_reference(study.cfg, base, out_dir)
    ref = store.put(onnx, study.cfg.study_name, "dense")
    study.study.set_user_attr(BASELINE_ATTR, metrics)
    study.study.set_user_attr(ARTIFACT_ATTR, ref.model_dump())
    return True


class Producer:
    """Produces trials of one sweep into a queue until the sweep is done or ``max_trials`` are produced."""

    def __init__(self, cfg: SweepConfig, storage_url: str, queue: JobQueue, artifacts: ArtifactStore, *,
                 work_dir: str | Path | None = None, name: str | None = None, threads: int | None = None,
                 max_trials: int | None = None, max_queued: int = 4, stop_at: int | None = None,
                 console: Console | None = None) -> None:
        self.cfg, self.queue, self.artifacts = cfg, queue, artifacts
        self.sweep = cfg.study_name
        self.work_dir = Path(work_dir or DEFAULT_DIR / safe_name(self.sweep)).resolve()
        self.name = name or default_name()
        self.threads = threads or available_cpus()
        self.max_trials, self.max_queued = max_trials, max(1, max_queued)
        self.console = console or Console(stderr=True)
        self.produced = self.initial_failures = 0
        self.handed_back: list[int] = []  # trials an interrupt failed as abandoned and queued again (the CLI says)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.study = SweepStudy(cfg, storage_url)
        self.study.limit = stop_at
        if cfg.method != "grid":  # producers started together would otherwise draw the same random points
            seed = cfg.seed + len(self.study.trials()) + zlib.crc32(self.name.encode())
            self.study.study.sampler = make_sampler(cfg, seed)
        self._beat(state="preparing")

    def _beat(self, state: str, trial: int | None = None, since: float | None = None) -> None:
        self._last_beat = {"state": state, "trial": trial, "since": since or time.time(), "host": socket.gethostname(),
                           "lease_s": PRODUCER_LEASE_S}
        self.queue.beat(self.sweep, self.name, self._last_beat)

    def _beat_again(self) -> None:
        """The heartbeat thread's beat: still alive, doing what the last beat said."""
        self.queue.beat(self.sweep, self.name, self._last_beat)

    # ------------------------------------------------------------------------------------------- main
    def run(self) -> int:
        """Produce until done; returns the number of trials handed to the queue. A heartbeat thread beats every
        ``HEARTBEAT_S`` throughout, so `edgeprune status` tells a live producer from a killed one within seconds."""
        try:
            with every(HEARTBEAT_S, self._beat_again, what="heartbeat", console=self.console):
                return self._run()
        finally:
            self.queue.forget_producer(self.sweep, self.name)

    def _prepare(self) -> None:
        """Pre-train the base model and store the dense reference once: producers sharing a work directory
        take turns (a file lock), so one does the work and the others find it done."""

        (self.work_dir / "base").mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.work_dir / "base" / ".prepare.lock")
        try:
            lock.acquire(timeout=0)
        except Timeout:
            self.console.print(f"{self.sweep}: waiting for another producer preparing the base model in "
                               f"{self.work_dir / 'base'}", highlight=False)
            lock.acquire()
        try:
            self.base = prepare_base(self.cfg, self.work_dir, self.console)
            preflight(self.cfg, self.base)
            if publish_baseline(self.study, self.base, self.artifacts, self.work_dir / "base"):
                self.console.print(f"{self.sweep}: the dense model (the reference point) is stored for the consumer")
        finally:
            lock.release()

    def _run(self) -> int:
        self._prepare()
        while (reason := self._stop_reason()) is None:
            raise_if_interrupted()
            try:
                janitor_pass([self.study], self.queue, self.console)
                if self._may_ask():
                    self.produce_one()
                else:
                    self._beat(state="waiting")
                    time.sleep(POLL_S)
            except QueueUnavailableError as exc:  # an outage, not a failure: wait for the queue to return
                self.console.print(f"[yellow]{exc.message}[/]; trying again in {RETRY_S:.0f} s", highlight=False)
                time.sleep(RETRY_S)
        self.console.print(f"{self.sweep}: producer {self.name} stops: {reason}")
        return self.produced

    def _may_ask(self) -> bool:
        return self.study.stop_reason() is None and self.queue.counts(self.sweep).queued < self.max_queued

    def _stop_reason(self) -> str | None:
        if self.max_trials is not None and self.produced >= self.max_trials:
            return f"{self.produced} trials produced (--max-trials)"
        if self.initial_failures >= MAX_INITIAL_FAILURES:
            return f"the first {MAX_INITIAL_FAILURES} trials it produced all failed; see their errors above"
        reason = self.study.stop_reason()
        return reason if reason is not None and not self.study.trials(TrialState.RUNNING) else None

    # ------------------------------------------------------------------------------------------ trial
    def produce_one(self) -> None:
        """Ask one trial and produce it; an error fails the trial, an interrupt abandons it (it is retried).
        Nothing is produced when the trial asked was deferred (others filled the cap first)."""

        asked = None
        try:
            with interrupts_deferred():
                asked = self.study.ask()
        except KeyboardInterrupt:
            if asked is not None:
                self._abandon(asked.number)
            raise
        if asked is None:
            return
        number, started = asked.number, time.time()
        try:  # from here on, an interrupt hands the trial back
            trial_dir = self.work_dir / "trials" / f"{number:04d}"
            asked.trial.set_user_attr("trial_dir", str(trial_dir))
            request = TrialRequest(
                study_name=self.sweep, trial_number=number, values=asked.values, template=self.cfg.template_text or "",
                model=self.base, data=self.cfg.data, retrain=self.cfg.retrain, export=self.cfg.export,
                benchmark=self.cfg.benchmark, out_dir=str(trial_dir), seed=self.cfg.seed, threads=self.threads)
            request.write(trial_dir / "request.json")
            shown = ", ".join(f"{k}={v}" for k, v in asked.values.items() if k in self.cfg.space.distributions())
            self.console.print(f"{self.sweep}: trial {number} producing: {shown}", highlight=False)
            self._beat(state="producing", trial=number, since=started)
            with every(LEASE_S / 4, lambda: self._keep_alive(asked, started), what="lease renewal",
                       console=self.console):
                job = produce(request, hooks=[EpochRecorder(self.study, asked)])
                message_id = self._hand_off_until_queued(asked.trial, job)
        except KeyboardInterrupt:
            self._abandon(number)
        except optuna.TrialPruned as exc:
            why = str(exc)
            finish_once(self.study, number, lambda: self.study.fail(asked.trial, why, pruned=True))
            self.console.print(f"{self.sweep}: trial {number} [yellow]pruned[/]: {why}", highlight=False)
            return
        except Exception as exc:
            if interrupt_requested():  # the interrupt surfaced as another error: not the trial's failure
                self._abandon(number)
            if not isinstance(exc, EdgepruneError):
                traceback.print_exc()
            reason = exc.message if isinstance(exc, EdgepruneError) else f"{type(exc).__name__}: {exc}"
            finish_once(self.study, number, lambda: self.study.fail(asked.trial, f"producing failed: {reason}"))
            self.console.print(f"{self.sweep}: trial {number} [red]failed[/]: {reason}", highlight=False)
            self.initial_failures += self.produced == 0
            return
        self.produced += 1
        self.console.print(f"{self.sweep}: trial {number} produced in {time.time() - started:.1f} s, queued as "
                           f"{message_id}")

    def _abandon(self, number: int) -> NoReturn:
        """Interrupted: the trial is failed as abandoned and queued again with the same parameters."""
        finish_once(self.study, number, lambda: self.study.abandon(number, "abandoned: its producer was interrupted"))
        self.handed_back.append(number)
        raise KeyboardInterrupt

    def _keep_alive(self, asked: AskedTrial, started: float) -> None:
        self.study.renew([asked.trial])
        self._beat(state="producing", trial=asked.number, since=started)

    def _hand_off_until_queued(self, trial: Trial, job: TrialJob) -> str:
        """The produced work is not thrown away because the queue is briefly down: keep trying (the lease is
        renewed meanwhile)."""
        while True:
            try:
                return self.hand_off(trial, job)
            except QueueUnavailableError as exc:
                self.console.print(f"[yellow]{exc.message}[/]; trying again in {RETRY_S:.0f} s", highlight=False)
                time.sleep(RETRY_S)

    def hand_off(self, trial: Trial, job: TrialJob) -> str:
        """Store the artifact, enqueue the job, and mark the trial as owned by the queue; returns the message id.

        The mark comes after the job is in the queue: a crash in between leaves a trial whose lease runs out
        (retried) and a job whose trial is finished by then (acknowledged unmeasured) — wasted work, never a
        lost or doubled result. A consumer may even finish the trial before the mark is written.
        """
        ref = self.artifacts.put(Path(job.artifact), self.sweep, job.trial_number)
        message = AgentJob(job=job, artifact=ref, producer=self.name, produced_at=time.time())
        message_id = self.queue.put(self.sweep, message.model_dump_json())
        mark = {"message_id": message_id, "queue": self.queue.url, "producer": self.name, "at": time.time()}
        finish_once(self.study, job.trial_number, lambda: trial.set_user_attr(QUEUED_ATTR, mark))
        return message_id
