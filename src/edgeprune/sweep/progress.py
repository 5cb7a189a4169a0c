"""What a running sweep shows and logs, read from its study: one progress line, one line per trial, the trackers.

Why from the study: a pipeline sweep runs in separate processes (producers, a consumer, perhaps on other
machines) whose only common ground is the study, so whoever shows the progress — ``edgeprune sweep`` over
its local agents — watches the study (:class:`StudyWatcher`). The embedded runner of program sweeps
(:mod:`edgeprune.sweep.runner`) uses the same lines and counts for the same look.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from edgeprune.sweep.analysis import front
from edgeprune.sweep.constraints import explain
from edgeprune.sweep.engine import QUEUED_ATTR, SweepStudy
from edgeprune.tracking import Trackers

STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING, TrialState.WAITING)


@dataclass
class SweepResult:
    """How a sweep run ended: the study's counts per state and why no further trial started."""

    study_name: str
    storage_url: str
    run_dir: Path
    counts: dict[str, int] = field(default_factory=dict)
    stop_reason: str | None = None


def state_counts(study: SweepStudy) -> dict[str, int]:
    states = [t.state for t in study.trials()]
    return {s.name.lower(): states.count(s) for s in STATES}


def finished_count(study: SweepStudy) -> int:
    """Finished trials, not counting attempts abandoned by a dead runner (their retries count instead)."""
    return sum(1 for t in study.trials() if t.state.is_finished() and not t.user_attrs.get("abandoned"))


def planned(study: SweepStudy) -> int | None:
    """How many trials the sweep will have finished at most: its cap, or its grid's size; None if open-ended."""
    cap = study.cap()
    caps = [cap[0]] if cap else []
    if study.cfg.method == "grid":
        caps.append(study.cfg.space.grid_size())
    return min(caps) if caps else None


def status_line(study: SweepStudy, activity: str) -> str:
    """``NAME: 3 done · ACTIVITY · 1 failed · 0 pruned · best top1 97.2 (trial 4)`` (or the front's size), and how
    many completed trials break the sweep's constraints (never the best, never on the front)."""
    c = state_counts(study)
    text = f"{study.cfg.study_name}: {c['complete']} done · {activity} · {c['fail']} failed · {c['pruned']} pruned"
    done = study.trials(TrialState.COMPLETE)
    best = front(done, {o.name: o.goal for o in study.cfg.directions})
    if done and not best:
        text += " · no feasible trial yet"
    elif best and len(study.cfg.directions) == 1:
        first = min(best, key=lambda t: t.number)
        text += f" · best {study.cfg.directions[0].name} {first.values[0]:.4g} (trial {first.number})"
    elif best:
        text += f" · Pareto front {len(best)} trials"
    infeasible = sum(1 for t in done if explain(t))
    return text + (f" · {infeasible} infeasible" if infeasible else "")


def trial_line(study: SweepStudy, number: int, state: str, error: str | None) -> str:
    """``trial 4 done: top1 97.2  latency_ms 0.41`` (then ``, infeasible: latency_ms 0.41 > max 0.35 (by 0.06)`` when
    it breaks a constraint), or the trial's state and error (Rich markup)."""
    if state == "COMPLETE":
        trial = study.trials()[number]
        metrics = trial.user_attrs["metrics"]
        shown = "  ".join(f"{o.name} {metrics[o.name]:.4g}" for o in study.cfg.directions)
        line, broken = f"trial {number} [green]done[/]: {shown}", explain(trial)
        return f"{line}, [yellow]infeasible[/]: {escape(broken)}" if broken else line
    style = "yellow" if state == "PRUNED" else "red"
    return f"trial {number} [{style}]{state.lower()}[/]: {escape(str(error))}"


def started_line(study: SweepStudy, number: int, values: dict[str, Any]) -> str:
    shown = ", ".join(f"{k}={v}" for k, v in values.items() if k in study.cfg.space.distributions())
    return f"trial {number} started: {shown}"


def progress_bar(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=False)


class StudyWatcher:
    """Reports the trials of a study that others run: a line when one starts or ends, and everything it recorded
    to the trackers once it ends (its config, per-epoch metrics, final metrics, artifacts, outcome).

    Trials already in the study when the watcher starts belong to an earlier run and are left out.
    """

    def __init__(self, study: SweepStudy, console: Console, trackers: Trackers) -> None:
        self.study, self.console, self.trackers = study, console, trackers
        existing = study.trials()
        self.started = {t.number for t in existing}
        self.ended = set(self.started)

    def poll(self) -> None:
        for t in self.study.trials():
            # leased (asked and not deferred) and its config written: another process may be between the two
            if t.number not in self.started and "lease" in t.user_attrs and "config" in t.user_attrs:
                self.started.add(t.number)
                self.trackers.start_trial(t.number, self.study.cfg.space.nest(t.user_attrs.get("config", {})))
                self.console.print(started_line(self.study, t.number, t.user_attrs.get("config", {})),
                                   highlight=False)
            if t.number in self.started and t.number not in self.ended and t.state.is_finished():
                self.ended.add(t.number)
                self._ended(t)

    def _ended(self, t: FrozenTrial) -> None:
        if t.state == TrialState.COMPLETE:
            for row in t.user_attrs.get("history", []):
                self.trackers.log_metrics(t.number, {k: v for k, v in row.items() if k != "epoch"},
                                          step=int(row["epoch"]) if "epoch" in row else None)
            self.trackers.log_metrics(t.number, t.user_attrs.get("metrics", {}))
            for kind, path in t.user_attrs.get("artifacts", {}).items():
                self.trackers.log_artifact(t.number, Path(path), kind)
        error = t.user_attrs.get("error")
        self.trackers.end_trial(t.number, t.state.name, error)
        self.console.print(trial_line(self.study, t.number, t.state.name, error), highlight=False)

    def activity(self) -> str:
        """``2 producing · 1 measuring or queued``: the RUNNING trials, before and after their hand-off."""
        running = self.study.trials(TrialState.RUNNING)
        queued = sum(1 for t in running if QUEUED_ATTR in t.user_attrs)
        return f"{len(running) - queued} producing · {queued} measuring or queued"
