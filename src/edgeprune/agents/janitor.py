"""The janitor: a RUNNING trial nobody works on any more is failed and queued again, so none stays RUNNING.

Why not Optuna's heartbeat (``RDBStorage(heartbeat_interval=..., grace_period=...,
heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(...))`` with ``fail_stale_trials``): Optuna
records heartbeats only inside ``study.optimize()`` — its documentation says they do not work with ask and
tell — and only RDB storages have them, not the Redis journal. The agents ask and tell, so they use the
sweep's equivalent, which works on every storage: each running trial holds a *lease* (owner ``host:pid``,
expiry) that its producer renews (:mod:`edgeprune.sweep.engine`), and :meth:`SweepStudy.abandon` fails a
trial and enqueues a retry with the same parameters (up to ``MAX_RETRIES``) as
``RetryHeartbeatStaleTrialCallback`` does.

A RUNNING trial is orphaned when

* it is still being produced (no hand-off mark) and its lease expired, or its owner is a process of this
  host that no longer exists — a ``kill -9`` is noticed at once on the producer's host, elsewhere once
  the lease runs out;
* its job was handed to the queue, but the queue no longer holds it: not queued, not in flight, and the
  trial not told (a Redis server restarted without persistence loses jobs).

A handed-off trial is otherwise left alone however long it waits: redelivering its job is the queue's
business. Producers run a pass before each trial, consumers every half minute, and
``edgeprune agent janitor`` on its own.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from optuna.trial import FrozenTrial, TrialState
from rich.console import Console

from edgeprune.agents.messages import QUEUED_ATTR
from edgeprune.agents.queue import JobQueue
from edgeprune.agents.sweeps import SweepStudies
from edgeprune.agents.trials import finish_once
from edgeprune.sweep.engine import SweepStudy, lease_lost, lease_owner


def orphan_reason(trial: FrozenTrial, queue: JobQueue, sweep: str, now: float) -> str | None:
    """Why nobody owns ``trial`` (of ``sweep``) any more, or None while somebody does."""
    handed = trial.user_attrs.get(QUEUED_ATTR)
    if handed:
        if queue.contains(sweep, handed["message_id"]):
            return None
        return f"abandoned: its job {handed['message_id']} is no longer in the queue {queue.url}"
    lost = lease_lost(trial, now)
    return None if lost is None else f"abandoned: its producer {lease_owner(trial)} {lost}"


def reclaim(study: SweepStudy, queue: JobQueue) -> list[tuple[int, str]]:
    """Fail and retry the orphaned RUNNING trials of ``study``; returns their numbers and reasons."""
    reclaimed = []
    now = time.time()
    for trial in study.trials(TrialState.RUNNING):
        reason = orphan_reason(trial, queue, study.cfg.study_name, now)
        if reason is not None and finish_once(study, trial.number,
                                              lambda n=trial.number, r=reason: study.abandon(n, r)):
            reclaimed.append((trial.number, reason))
    return reclaimed


def janitor_pass(studies: Iterable[SweepStudy], queue: JobQueue, console: Console) -> None:
    """One :func:`reclaim` over each study, saying what it did."""
    for study in studies:
        for number, reason in reclaim(study, queue):
            console.print(f"{study.cfg.study_name}: trial {number} failed and queued again ({reason})", highlight=False)


def run_janitor(studies: SweepStudies, sweeps: list[str] | None, *, every_s: float, once: bool,
                console: Console) -> None:
    """``edgeprune agent janitor``: passes over the named sweeps (default: all registered) every ``every_s``."""
    while True:
        janitor_pass([studies[s] for s in sweeps or studies.queue.sweeps()], studies.queue, console)
        if once:
            return
        time.sleep(every_s)
