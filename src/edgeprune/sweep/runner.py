"""The embedded runner of *program* sweeps: one machine asks the study, runs each trial's program, tells the study.

A sweep with ``program``/``command`` (a script written for ``wandb agent``) runs here: each trial is a
process launched as ``wandb agent`` would, up to ``workers`` at once; their metrics are polled from their
report file and WandB run file, feeding hyperband and the trackers. Pipeline sweeps (edgeprune's own
prune -> retrain -> export -> benchmark) do not come here: they run through the agents, which split each
trial into a PRODUCE half and a MEASURE half that may run on different machines
(:func:`edgeprune.agents.local.run_local` on one machine); a program is one opaque process that cannot be
split that way.

Interrupting (Ctrl-C, SIGTERM) kills the running trials and queues them again; a runner killed outright
leaves them RUNNING, and the next runner reclaims them (see :mod:`edgeprune.sweep.engine`). Either way,
running the same command again continues the sweep.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from rich.console import Console

from edgeprune.errors import ConfigError
from edgeprune.signals import sigterm_as_interrupt
from edgeprune.sweep.config import SweepConfig
from edgeprune.sweep.constraints import unmeasured
from edgeprune.sweep.engine import LEASE_S, MAX_INITIAL_FAILURES, AskedTrial, SweepStudy
from edgeprune.sweep.process import TrialOutput, TrialProcess, build_command, new_run_id, write_wandb_params
from edgeprune.sweep.progress import (
    SweepResult,
    finished_count,
    planned,
    progress_bar,
    started_line,
    state_counts,
    status_line,
    trial_line,
)
from edgeprune.sweep.storage import default_url
from edgeprune.tracking import Trackers, make_trackers
from edgeprune.tracking.settings import WandbSettings
from edgeprune.tracking.wandb_tracker import wandb_mode

POLL_S = 0.5


@dataclass
class Running:
    asked: AskedTrial
    proc: TrialProcess
    rows_seen: int = 0
    output: TrialOutput = field(default_factory=TrialOutput)


def _sweep_id(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", name)


class SweepRunner:
    """Runs one program sweep embedded on this machine until a stop condition, ``max_trials`` or an interrupt."""

    def __init__(self, cfg: SweepConfig, run_dir: str | Path, *, storage_url: str | None = None, workers: int = 1,
                 max_trials: int | None = None, console: Console | None = None) -> None:
        if not cfg.is_program:
            raise ConfigError(f"Sweep {cfg.study_name!r} runs edgeprune's pipeline, which runs through the agents, "
                              "not the embedded runner of program sweeps.",
                              hint="Run it with `edgeprune sweep FILE` or edgeprune.agents.local.run_local().")
        self.cfg = cfg
        self.run_dir = Path(run_dir).resolve()
        self.storage_url = storage_url or default_url(self.run_dir)
        self.workers = max(1, workers)
        self.max_trials = max_trials
        self.console = console or Console(stderr=True)
        self.running: dict[int, Running] = {}
        self.initial_failures = 0
        self.succeeded = False
        self._renewed = 0.0

    # ------------------------------------------------------------------------------------------------- main
    def run(self) -> SweepResult:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.study = SweepStudy(self.cfg, self.storage_url)
        for number in self.study.reclaim_stale():
            self.console.print(f"trial {number} was left running by a runner that stopped: queued again")
        if self.max_trials is not None:
            self.study.limit = self.study.counted() + self.max_trials
        self.trackers: Trackers = make_trackers(self.cfg, self.run_dir, program_trials=True)
        result = SweepResult(self.cfg.study_name, self.storage_url, self.run_dir)
        try:
            with sigterm_as_interrupt(), progress_bar(self.console) as progress:
                task = progress.add_task(self._status(), total=planned(self.study))
                while True:
                    self._poll()
                    result.stop_reason = self._start_trials()
                    progress.update(task, description=self._status(), completed=finished_count(self.study))
                    if not self.running and result.stop_reason:
                        break
                    self._renew_leases()
                    time.sleep(POLL_S)
        except KeyboardInterrupt:
            self._abandon_all("interrupted")
            raise
        finally:
            self.trackers.close()
        result.counts = state_counts(self.study)
        return result

    def _status(self) -> str:
        return status_line(self.study, f"{len(self.running)} running")

    # ----------------------------------------------------------------------------------------------- start
    def _start_trials(self) -> str | None:
        """Start trials while there is room; returns why no more will start (None: more may come)."""
        while True:
            reason = self.study.stop_reason()
            if reason is None and self.initial_failures >= MAX_INITIAL_FAILURES:
                reason = f"the first {MAX_INITIAL_FAILURES} trials all failed; see their errors above"
            if reason is not None or len(self.running) >= self.workers:
                return reason
            if not self._start_one():
                return None  # another runner filled the cap meanwhile: the next round tells why

    def _start_one(self) -> bool:
        asked = self.study.ask()
        if asked is None:
            return False
        trial_dir = self.run_dir / "trials" / f"{asked.number:04d}"
        trial_dir.mkdir(parents=True, exist_ok=True)
        asked.trial.set_user_attr("trial_dir", str(trial_dir))
        self.running[asked.number] = Running(asked, self._launch(asked, trial_dir))
        self.trackers.start_trial(asked.number, asked.config)
        self.console.print(started_line(self.study, asked.number, asked.values), highlight=False)
        return True

    def _launch(self, asked: AskedTrial, trial_dir: Path) -> TrialProcess:
        cfg = self.cfg
        run_id, sweep_id = new_run_id(asked.number), _sweep_id(cfg.study_name)
        params_dir = trial_dir / "wandb" / f"sweep-{sweep_id}"
        write_wandb_params(params_dir / f"config-{run_id}.yaml", asked.config)
        (params_dir / f"config-{run_id}.json").write_text(json.dumps(asked.config), encoding="utf-8")
        env = {**os.environ, "WANDB_SWEEP_ID": sweep_id, "WANDB_RUN_ID": run_id, "WANDB_DIR": str(trial_dir),
               "WANDB_SWEEP_PARAM_PATH": str(params_dir / f"config-{run_id}.yaml")}
        mode = wandb_mode(cfg.tracking.wandb or WandbSettings())  # offline unless WANDB_MODE / the sweep says
        env.update({"WANDB_MODE": mode} if mode else {})
        env.update({"WANDB_PROJECT": cfg.project} if cfg.project else {})
        env.update({"WANDB_ENTITY": cfg.entity} if cfg.entity else {})
        argv = build_command(cfg.command, cfg.program, asked.config, str(params_dir / f"config-{run_id}.json"), env)
        asked.trial.set_user_attr("command", argv)
        return TrialProcess(argv, trial_dir, env, run_id=run_id, cwd=os.getcwd())

    # ------------------------------------------------------------------------------------------------ poll
    def _poll(self) -> None:
        metric = self.cfg.metric.name if self.cfg.metric else None
        changed = False
        for number, r in list(self.running.items()):
            out = r.output = r.proc.output()
            if len(out.history) > r.rows_seen:
                for row in out.history[r.rows_seen:]:  # a row without a step is a one-off value
                    values = {k: v for k, v in row.items() if not k.startswith("_") and isinstance(v, (int, float))}
                    self.trackers.log_metrics(number, values, step=row.get("_step"))
                r.rows_seen = len(out.history)
                self.study.report_history(r.asked, out.history, out.series(metric) if metric else [])
                changed = True
            code = r.proc.poll()
            if code is not None:
                del self.running[number]
                self._finished(r, code, out)
        if changed:
            for r in self.running.values():
                reason = self.study.hyperband_stop(r.output.history)
                if reason is not None:
                    r.proc.stop(reason)

    def _finished(self, r: Running, code: int, out: TrialOutput) -> None:
        if r.proc.stop_reason is not None:
            self._end(r, "PRUNED", r.proc.stop_reason)
        elif code != 0:
            self._end(r, "FAIL", f"exit code {code}: {r.proc.error_tail()}".strip())
        else:
            self._end_program(r, out)

    def _end_program(self, r: Running, out: TrialOutput) -> None:
        names = [o.name for o in self.cfg.directions]
        metrics = {k: float(v) for k, v in out.summary.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
        missing = [n for n in names if n not in metrics]
        missing += [n for n in unmeasured(self.cfg.constraints, metrics) if n not in missing]  # cannot be judged
        if missing:
            logged = ", ".join(sorted(metrics)) or "nothing"
            self._end(r, "FAIL", f"the program never logged {', '.join(missing)} (it logged: {logged})")
            return
        run_file = next(iter(sorted(r.proc.trial_dir.glob("wandb/*run-*/run-*.wandb"))), None)
        artifacts = {"trial_dir": str(r.proc.trial_dir), "stdout": str(r.proc.stdout_path),
                     **({"wandb_run": str(run_file)} if run_file else {})}
        self.study.complete(r.asked.trial, metrics, history=out.history, artifacts=artifacts)
        self.trackers.log_metrics(r.asked.number, metrics)
        self._end(r, "COMPLETE", None, told=True)

    def _end(self, r: Running, state: str, error: str | None, *, told: bool = False) -> None:
        number = r.asked.number
        if not told:
            self.study.fail(r.asked.trial, error or state, pruned=state == "PRUNED")
        self.succeeded = self.succeeded or state == "COMPLETE"
        self.initial_failures += state == "FAIL" and not self.succeeded
        self.trackers.end_trial(number, state, error)
        self.console.print(trial_line(self.study, number, state, error), highlight=False)

    # ------------------------------------------------------------------------------------------- bookkeeping
    def _renew_leases(self) -> None:
        now = time.monotonic()
        if now - self._renewed < LEASE_S / 4:
            return
        self._renewed = now
        self.study.renew([r.asked.trial for r in self.running.values()])

    def _abandon_all(self, reason: str) -> None:
        for r in list(self.running.values()):
            r.proc.kill()
            self.study.abandon(r.asked.number, reason)
            self.trackers.end_trial(r.asked.number, "FAIL", reason)
        self.running.clear()
