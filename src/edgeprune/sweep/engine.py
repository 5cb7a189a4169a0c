"""A sweep as an Optuna study: samplers, ask/tell, stop conditions, and reclaiming trials of dead runners.

Method -> sampler:

* ``grid`` -> ``GridSampler`` over WandB's grid values; the sweep ends when every grid point is finished.
  Optuna's sampler calls ``study.stop()`` after the last point, which raises outside ``optimize()`` (a
  documented limitation of GridSampler with ask-and-tell), so exhaustion is checked here instead.
* ``random`` -> ``RandomSampler``.
* ``bayes`` -> ``GPSampler`` (default) or ``TPESampler`` (``sampler: tpe``). Why GP: WandB's own bayes is
  a Gaussian process, pruning trials are expensive so sweeps are small (tens of trials) where a GP is the
  most sample-efficient model, and Optuna's GPSampler handles several objectives (log expected hypervolume
  improvement, for the Pareto front) and running trials (its q-batch acquisition, for ``--producers``).
  TPE scales better to hundreds of trials and many parameters. Both start with
  ``max(4, searchable parameters + 1)`` random trials.

A sampler's seed is the sweep's ``seed`` plus the number of trials already in the study, so a resumed
random or Bayesian sweep draws new points instead of repeating its first ones (grid keeps the seed: its
shuffled order must be the same in every process).

Each running trial holds a *lease* (owner ``host:pid``, expiry) that its runner renews. When a runner
dies (SIGKILL, power loss), the next runner to open the study fails its trials (on the same host at once,
elsewhere once the lease expires) and queues a retry with the same parameters. A trial whose job was handed
to a queue (:data:`QUEUED_ATTR`) has no lease any more: the queue keeps it alive, and only the agents'
janitor, which can ask the queue, decides that it is orphaned.

``run_cap`` (and a per-run ``limit``) hold even with many processes asking at once. Optuna has no
conditional ask, so every ask is checked afterwards: trial numbers are handed out in one serialised order
by every storage (RDBStorage locks the study row to number a trial, the journal numbers in log order), so
"the trials ahead of mine" is the same set for every process. A freshly asked trial with ``cap`` trials
ahead of it — counted (running or finished, not abandoned) or waiting (they run first: ``ask`` pops waiting
trials before it creates one) — is *deferred*: put back to WAITING with its sampled values, so it runs first
once a slot opens or the sweep is resumed with a larger cap. Of any ``cap + 1`` trials that pass this check,
the one numbered last would have seen the other ``cap`` ahead of it (numbers follow creation; a trial that
counts at the end was counted or waiting all along), so the study never runs more than ``cap`` trials.

A sweep's ``constraints`` are judged where a result is told (:meth:`SweepStudy.complete`) and stored with the
trial for Optuna's samplers and for every view of the front (:mod:`edgeprune.sweep.constraints`); a ``target``
counts only when a feasible trial reaches it.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
import warnings
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.samplers import BaseSampler, GPSampler, GridSampler, RandomSampler, TPESampler
from optuna.trial import FrozenTrial, Trial, TrialState

from edgeprune.errors import EdgepruneError
from edgeprune.sweep.analysis import analyse
from edgeprune.sweep.config import SweepConfig
from edgeprune.sweep.constraints import as_system_attrs, constraint_values, feasible
from edgeprune.sweep.hyperband import metric_series, should_stop
from edgeprune.sweep.live import publish_live_views
from edgeprune.sweep.storage import open_storage, redact

LEASE_S = 60.0
MAX_RETRIES = 3
MAX_INITIAL_FAILURES = 5  # as wandb agent: a sweep whose first trials all fail is broken, not unlucky
QUEUED_ATTR = "queued"  # the hand-off mark: a producer put the trial's job into a queue, which owns it now
FINGERPRINT_KEYS = ("method", "parameters", "metric", "objectives", "program", "command", "model", "data",
                    "pretrain", "schedule_template", "retrain", "export", "benchmark", "seed", "sampler")


class StudyMismatchError(EdgepruneError):
    """The storage already holds a study of this name that was made from a different sweep."""


class AskTellGridSampler(GridSampler):
    """GridSampler without its ``study.stop()`` after the last point (which raises under ask-and-tell)."""

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Any) -> None:
        """Exhaustion is checked by :meth:`SweepStudy.exhausted` instead."""


def make_sampler(cfg: SweepConfig, seed: int) -> BaseSampler:
    if cfg.method == "grid":
        return AskTellGridSampler(cfg.space.grid(), seed=cfg.seed)
    if cfg.method == "random":
        return RandomSampler(seed=seed)
    startup = max(4, len(cfg.space.searchable) + 1)
    if cfg.sampler == "tpe":
        return TPESampler(seed=seed, n_startup_trials=startup)
    return GPSampler(seed=seed, n_startup_trials=startup, warn_independent_sampling=False)


def fingerprint(cfg: SweepConfig) -> str:
    """What a study's trials depend on; resuming a study from a sweep that changes any of it is refused."""
    relevant = {k: cfg.raw.get(k) for k in FINGERPRINT_KEYS}
    relevant["template_text"] = cfg.template_text
    if cfg.raw.get("constraints"):  # only when given, so the studies of sweeps without them still match
        relevant["constraints"] = cfg.raw["constraints"]
    return hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str).encode()).hexdigest()


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_is_dead_here(owner: str) -> bool:
    """Whether ``owner`` (``host:pid``) is a process of this host that no longer runs (or is this very one)."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return int(pid) == os.getpid()  # our own earlier self cannot still own a trial we are about to reclaim


def lease_lost(trial: FrozenTrial, now: float) -> str | None:
    """Why nobody renews ``trial``'s lease any more ("stopped renewing its lease", "is no longer running"),
    or None while its owner may still be working on it."""
    lease = trial.user_attrs.get("lease") or {}
    started = trial.datetime_start.timestamp() if trial.datetime_start else now
    if float(lease.get("expires", started + LEASE_S)) < now:
        return "stopped renewing its lease"
    if owner_is_dead_here(str(lease.get("owner", ""))):
        return "is no longer running"
    return None


def lease_owner(trial: FrozenTrial) -> str:
    return str((trial.user_attrs.get("lease") or {}).get("owner", "?"))


def counts_towards_cap(trial: FrozenTrial) -> bool:
    """Running or finished, and not an attempt abandoned by a dead runner (its retry counts instead)."""
    return trial.state != TrialState.WAITING and not trial.user_attrs.get("abandoned")


@dataclass
class AskedTrial:
    trial: Trial
    values: dict[str, Any]   # flat, dotted names, constants included
    config: dict[str, Any]   # nested, what wandb.config shows
    reported: int = 0        # intermediate values told to Optuna so far

    @property
    def number(self) -> int:
        return self.trial.number


class SweepStudy:
    """One sweep's study: what to ask next, how results are told, and when the sweep is done."""

    def __init__(self, cfg: SweepConfig, storage_url: str) -> None:
        self.cfg = cfg
        self.storage_url = storage_url
        self.study = optuna.create_study(storage=open_storage(storage_url), study_name=cfg.study_name,
                                         directions=[o.goal for o in cfg.directions], load_if_exists=True)
        self.study.sampler = make_sampler(cfg, cfg.seed + len(self.study.get_trials(deepcopy=False)))
        self.limit: int | None = None  # a cap for this run only (``--trials``), beside the sweep's run_cap
        self._check_or_record("fingerprint" not in self.study.user_attrs)

    def _check_or_record(self, new: bool) -> None:
        fp = fingerprint(self.cfg)
        if not new:
            if self.study.user_attrs.get("fingerprint") != fp:
                raise StudyMismatchError(
                    f"Study {self.cfg.study_name!r} in {redact(self.storage_url)} was made from a different sweep "
                    "(parameters, objectives, template or settings changed), so its trials cannot be continued.",
                    hint="Use a new run directory (-o) or give the sweep another 'name'.")
            return
        cfg = self.cfg
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # stable in practice since 3.2
            self.study.set_metric_names([o.name for o in cfg.directions])
        for key, value in {
            "fingerprint": fp, "sweep": cfg.raw, "kind": "program" if cfg.is_program else "pipeline",
            "objectives": [o.model_dump() for o in cfg.directions],
            "constraints": [c.model_dump(exclude_none=True) for c in cfg.constraints],
            "metric": cfg.metric.model_dump() if cfg.metric else None, "params": cfg.space.names,
            "description": cfg.description,
        }.items():
            self.study.set_user_attr(key, value)

    # --------------------------------------------------------------------------------------------- state
    def trials(self, *states: TrialState) -> list[FrozenTrial]:
        return self.study.get_trials(deepcopy=False, states=states or None)

    def counted(self) -> int:
        """Trials that count towards ``run_cap``: all but those abandoned by a dead runner (they are retried)."""
        return sum(1 for t in self.trials() if counts_towards_cap(t))

    def cap(self) -> tuple[int, str] | None:
        """The tighter of ``run_cap`` and :attr:`limit`, and its name."""
        caps = [(c, name) for c, name in ((self.cfg.run_cap, f"run_cap {self.cfg.run_cap}"),
                                         (self.limit, f"this run's limit of {self.limit} trials")) if c is not None]
        return min(caps) if caps else None

    def target_reached(self) -> FrozenTrial | None:
        m = self.cfg.metric
        if m is None or m.target is None:
            return None
        for t in self.trials(TrialState.COMPLETE):
            value = t.user_attrs.get("metrics", {}).get(m.name)
            if value is not None and (value >= m.target if m.goal == "maximize" else value <= m.target) \
                    and feasible(t):
                return t
        return None

    def exhausted(self) -> bool:
        """A grid whose every point is finished or running, with no retry waiting.

        Not ``GridSampler.is_exhausted``, which waits for running points to *finish*: asking meanwhile would
        make the sampler evaluate a running point a second time.
        """
        sampler = self.study.sampler
        if not isinstance(sampler, GridSampler):
            return False
        trials = self.trials()
        started = {t.system_attrs["grid_id"] for t in trials if "grid_id" in t.system_attrs
                   and t.state != TrialState.WAITING}
        return len(started) >= self.cfg.space.grid_size() and not any(t.state == TrialState.WAITING for t in trials)

    def stop_reason(self) -> str | None:
        """Why no further trial may start, or None."""
        cap = self.cap()
        if cap is not None and self.counted() >= cap[0]:
            return f"{cap[1]} reached"
        hit = self.target_reached()
        if hit is not None:
            return f"target {self.cfg.metric.target} reached by trial {hit.number}"  # type: ignore[union-attr]
        if self.exhausted():
            return "grid exhausted"
        return None

    # ------------------------------------------------------------------------------------------ ask/tell
    def ask(self) -> AskedTrial | None:
        """The next trial to run, leased to this process; None when it was deferred because other processes'
        trials filled the cap first (see the module's docstring)."""
        trial = self.study.ask(self.cfg.space.distributions())
        cap = self.cap()
        if cap is not None and self._ahead(trial.number) >= cap[0]:
            trial.set_user_attr("deferred", f"{cap[1]} was filled by trials asked at the same time")
            self.study._storage.set_trial_state_values(trial._trial_id, TrialState.WAITING)  # values are kept
            return None
        values = self.cfg.space.values(trial.params)
        trial.set_user_attr("config", values)  # before the lease: a leased trial's config is always there to read
        self._lease(trial)
        return AskedTrial(trial, values, self.cfg.space.nest(values))

    def _ahead(self, number: int) -> int:
        """Trials numbered before ``number`` that run, ran, or wait to run: all but abandoned attempts."""
        return sum(1 for t in self.trials() if t.number < number and not t.user_attrs.get("abandoned"))

    def _lease(self, trial: Trial) -> None:
        trial.set_user_attr("lease", {"owner": _owner(), "expires": time.time() + LEASE_S})

    def renew(self, trials: list[Trial]) -> None:
        for trial in trials:
            self._lease(trial)

    def report_history(self, asked: AskedTrial, history: list[dict[str, Any]], series: list[float]) -> None:
        """Record a trial's per-step rows; a single-objective study also gets ``series`` as intermediate values."""
        asked.trial.set_user_attr("history", history)
        if len(self.study.directions) == 1:
            for step in range(asked.reported, len(series)):
                asked.trial.report(series[step], step)
            asked.reported = len(series)

    def hyperband_stop(self, history: list[dict[str, Any]]) -> str | None:
        """Why hyperband (``early_terminate``) stops a running trial whose rows so far are ``history``, or None.

        Compared with every trial's recorded history, the running ones' included (theirs as far as they got).
        """
        et, m = self.cfg.early_terminate, self.cfg.metric
        if et is None or m is None:
            return None
        own = metric_series(history, m.name)
        everyone = [metric_series(t.user_attrs.get("history", []), m.name) for t in self.trials()]
        if should_stop(own, everyone, et.bands(), et.eta, m.goal == "maximize"):
            return f"stopped by hyperband: {m.name} after step {len(own) - 1} is worse than its band"
        return None

    def complete(self, trial: Trial | int, metrics: dict[str, float], **attrs: Any) -> None:
        """Tell the objectives; store every metric, the artifacts and the constraint values (before the tell, where
        the samplers read them); recompute importance, correlation and the live dashboard's figures.

        ``trial`` may be a number: the trial may have been asked by another process (a remote producer).
        """
        constraints = as_system_attrs(constraint_values(self.cfg.constraints, metrics))
        number = self._set_attrs(trial, {"metrics": metrics, **attrs}, constraints)
        self.study.tell(number, [float(metrics[o.name]) for o in self.cfg.directions])
        self.refresh_analysis()
        try:  # edgeprune's figures on the live dashboard; the result is told already and must stay so
            publish_live_views(self.study, self.storage_url)
        except Exception as exc:  # a locked or unreachable storage: the next result or dashboard redraws them
            warnings.warn(f"trial {number}: the live dashboard's figures were not updated: {exc}", stacklevel=2)

    def fail(self, trial: Trial | int, error: str, *, pruned: bool = False, **attrs: Any) -> None:
        number = self._set_attrs(trial, {"error": error, **attrs})
        self.study.tell(number, state=TrialState.PRUNED if pruned else TrialState.FAIL)

    def _set_attrs(self, trial: Trial | int, attrs: dict[str, Any], system: dict[str, Any] | None = None) -> int:
        number = trial if isinstance(trial, int) else trial.number
        trial_id = self.study.get_trials(deepcopy=False)[number]._trial_id
        for key, value in attrs.items():  # through the storage, as Optuna's RetryFailedTrialCallback does
            self.study._storage.set_trial_user_attr(trial_id, key, value)
        for key, value in (system or {}).items():
            self.study._storage.set_trial_system_attr(trial_id, key, value)
        return number

    def refresh_analysis(self) -> None:
        names = [o.name for o in self.cfg.directions]
        if self.cfg.metric is not None and self.cfg.metric.name not in names:
            names.append(self.cfg.metric.name)
        self.study.set_user_attr("analysis", analyse(self.study, names, [p.name for p in self.cfg.space.searchable]))

    def reclaim_stale(self) -> list[int]:
        """Fail the RUNNING trials whose runner is gone and queue a retry of each; returns their numbers.

        Trials handed to a queue are left alone: their lease is no longer renewed, and whether their job is
        still queued only the agents' janitor can tell (:mod:`edgeprune.agents.janitor`).
        """
        reclaimed = []
        now = time.time()
        for t in self.trials(TrialState.RUNNING):
            lost = None if QUEUED_ATTR in t.user_attrs else lease_lost(t, now)
            if lost is not None:
                self.abandon(t.number, f"abandoned: its runner {lease_owner(t)} {lost}")
                reclaimed.append(t.number)
        return reclaimed

    def abandon(self, number: int, reason: str) -> None:
        """Fail a trial that did not fail by itself (its runner stopped) and queue it again, up to MAX_RETRIES."""
        frozen = self.study.get_trials(deepcopy=False)[number]
        self.fail(number, reason, abandoned=True)
        retries = int(frozen.user_attrs.get("retries", 0))
        if retries < MAX_RETRIES:
            self.study.enqueue_trial(frozen.params, user_attrs={"retry_of": number, "retries": retries + 1})
