"""The embedded sweep: one machine asks the study, runs trial processes, measures, tells, and shows progress.

Each trial is a process: the built-in pipeline's PRODUCE half (``python -m edgeprune.sweep.produce``) or
the user's program launched as ``wandb agent`` would. Up to ``workers`` run at once; their metrics are
polled from their report file and WandB run file, feeding hyperband and the trackers. Measurement (the
MEASURE half) waits until no trial is training, so latencies are taken on a quiet machine; no new trial
starts while produced jobs wait, which makes ``--workers N`` run in rounds of N.

Interrupting (Ctrl-C, SIGTERM) kills the running trials and queues them again; a runner killed outright
leaves them RUNNING, and the next runner reclaims them (see :mod:`edgeprune.sweep.engine`). Either way,
running the same command again continues the sweep.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from edgeprune.errors import EdgepruneError
from edgeprune.sweep.config import SweepConfig, WandbSettings
from edgeprune.sweep.engine import LEASE_S, AskedTrial, SweepStudy
from edgeprune.sweep.hyperband import should_stop
from edgeprune.sweep.job import TrialJob, TrialRequest
from edgeprune.sweep.process import TrialOutput, TrialProcess, build_command, new_run_id, write_wandb_params
from edgeprune.sweep.produce import JOB_FILE
from edgeprune.sweep.storage import default_url
from edgeprune.tracking import Trackers, make_trackers

POLL_S = 0.5
MAX_INITIAL_FAILURES = 5  # as wandb agent: a sweep whose first trials all fail is broken, not unlucky


@dataclass
class Running:
    asked: AskedTrial
    proc: TrialProcess
    rows_seen: int = 0
    output: TrialOutput = field(default_factory=TrialOutput)


@dataclass
class SweepResult:
    study_name: str
    storage_url: str
    run_dir: Path
    counts: dict[str, int] = field(default_factory=dict)
    stop_reason: str | None = None


def _series(history: list[dict[str, Any]], metric: str) -> list[float]:
    return [float(h[metric]) for h in history if isinstance(h.get(metric), (int, float))]


def _sweep_id(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", name)


def prepare_base(cfg: SweepConfig, run_dir: Path, console: Console) -> str:
    """The dense checkpoint every trial prunes: the given one, or a zoo model built for the data and pre-trained
    once (``pretrain.epochs``, resumable; 0 keeps its seeded initial weights)."""
    from edgeprune.data import load_dataset
    from edgeprune.models.checkpoint import save_checkpoint
    from edgeprune.train.loop import TrainConfig
    from edgeprune.train.run import load_model_for_data, normalization_for, train_model
    from edgeprune.train.seeding import seed_everything

    assert cfg.model is not None
    p, out = cfg.pretrain, run_dir / "base" / "checkpoint.pth"
    if Path(cfg.model).is_file():
        return cfg.model
    if p.epochs == 0:
        if not out.is_file():
            train = load_dataset(cfg.data, "train")
            seed_everything(cfg.seed)
            loaded = load_model_for_data(cfg.model, train)
            save_checkpoint(out, loaded.model, arch=loaded.arch, arch_kwargs=loaded.arch_kwargs, seed=cfg.seed,
                            dataset={"name": train.name, "source": train.source, "num_classes": train.num_classes,
                                     "classes": list(train.classes), "input_shape": list(train.input_shape)},
                            normalize=normalization_for(loaded, train), provenance={"model": cfg.model})
        return str(out)
    console.print(f"pre-training {cfg.model} on {cfg.data} for {p.epochs} epochs -> {out.parent}")
    tc = TrainConfig(epochs=p.epochs, batch_size=p.batch_size, lr=p.lr, optimizer=p.optimizer, momentum=p.momentum,
                     weight_decay=p.weight_decay, lr_schedule=p.lr_schedule, seed=cfg.seed, progress=False)
    train_model(cfg.model, cfg.data, out.parent, tc, resume=True, console=console)
    return str(out)


def preflight(cfg: SweepConfig, base: str) -> None:
    """Render the template with representative values and build it on the model: a typo fails now, not N times."""
    from edgeprune.data import load_dataset
    from edgeprune.schedule import timeline
    from edgeprune.sweep.template import TemplateError, render
    from edgeprune.train.run import load_model_for_data

    assert cfg.template_text is not None and cfg.schedule_template is not None
    _, spec = render(cfg.template_text, cfg.space.preview(), cfg.schedule_template, label="the preview values")
    model = load_model_for_data(base, load_dataset(cfg.data, "train")).model
    for row in timeline(spec, model):
        if row.epoch > 0 and row.kind != "lr_scheduler":
            line, column = spec.source.locate(("policies", row.policy)) or (None, None)
            raise TemplateError(
                f"policies[{row.policy}] ({row.instance}) fires at epoch {row.epoch}; a sweep prunes one-shot at "
                "epoch 0, thins, and fine-tunes for retrain.epochs", file=cfg.schedule_template, line=line,
                column=column, hint="Let pruning, regularization and thinning policies fire at 'epochs: [0]' only.")


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Let SIGTERM unwind like Ctrl-C, so running trials are stopped and queued again."""
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class SweepRunner:
    """Runs one sweep embedded on this machine until a stop condition, ``max_trials`` or an interrupt."""

    def __init__(self, cfg: SweepConfig, run_dir: str | Path, *, storage_url: str | None = None, workers: int = 1,
                 max_trials: int | None = None, console: Console | None = None) -> None:
        from edgeprune.bench.devices import available_cpus

        self.cfg = cfg
        self.run_dir = Path(run_dir).resolve()
        self.storage_url = storage_url or default_url(self.run_dir)
        self.workers = max(1, workers)
        self.max_trials = max_trials
        self.console = console or Console(stderr=True)
        self.threads = max(1, available_cpus() // self.workers)
        self.running: dict[int, Running] = {}
        self.pending: list[tuple[Running, TrialJob]] = []
        self.started = self.initial_failures = 0
        self.succeeded = False
        self._renewed = 0.0
        self.base = ""

    # ------------------------------------------------------------------------------------------------- main
    def run(self) -> SweepResult:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.study = SweepStudy(self.cfg, self.storage_url)
        for number in self.study.reclaim_stale():
            self.console.print(f"trial {number} was left running by a runner that stopped: queued again")
        if not self.cfg.is_program:
            self._prepare_pipeline()
        self.trackers: Trackers = make_trackers(self.cfg, self.run_dir, program_trials=self.cfg.is_program)
        result = SweepResult(self.cfg.study_name, self.storage_url, self.run_dir)
        try:
            with _sigterm_as_interrupt(), self._progress() as progress:
                task = progress.add_task(self._status(), total=self._planned())
                while True:
                    self._poll()
                    self._measure_if_quiet()
                    result.stop_reason = self._start_trials()
                    progress.update(task, description=self._status(), completed=self._finished_count())
                    if not self.running and not self.pending and result.stop_reason:
                        break
                    self._renew_leases()
                    time.sleep(POLL_S)
        except KeyboardInterrupt:
            self._abandon_all("interrupted")
            raise
        finally:
            self.trackers.close()
        result.counts = self._counts()
        return result

    def _prepare_pipeline(self) -> None:
        from edgeprune.sweep.measure import measure_baseline

        self.base = prepare_base(self.cfg, self.run_dir, self.console)
        preflight(self.cfg, self.base)
        if "baseline" not in self.study.study.user_attrs:
            self.console.print("measuring the dense model (the reference point)")
            self.study.study.set_user_attr("baseline", measure_baseline(self.cfg, self.base, self.run_dir / "base"))

    # ----------------------------------------------------------------------------------------------- start
    def _start_trials(self) -> str | None:
        """Start trials while there is room; returns why no more will start (None: more may come)."""
        while True:
            reason = self.study.stop_reason()
            if reason is None and self.max_trials is not None and self.started >= self.max_trials:
                reason = f"{self.max_trials} trials run (--trials)"
            if reason is None and self.initial_failures >= MAX_INITIAL_FAILURES:
                reason = f"the first {MAX_INITIAL_FAILURES} trials all failed; see their errors above"
            if reason is not None or self.pending or len(self.running) >= self.workers:
                return reason
            self._start_one()

    def _start_one(self) -> None:
        asked = self.study.ask()
        trial_dir = self.run_dir / "trials" / f"{asked.number:04d}"
        trial_dir.mkdir(parents=True, exist_ok=True)
        asked.trial.set_user_attr("trial_dir", str(trial_dir))
        launch = self._launch_program if self.cfg.is_program else self._launch_pipeline
        proc = launch(asked, trial_dir)
        self.running[asked.number] = Running(asked, proc)
        self.started += 1
        self.trackers.start_trial(asked.number, asked.config)
        shown = ", ".join(f"{k}={v}" for k, v in asked.values.items() if k in self.cfg.space.distributions())
        self.console.print(f"trial {asked.number} started: {shown}", highlight=False)

    def _launch_pipeline(self, asked: AskedTrial, trial_dir: Path) -> TrialProcess:
        cfg = self.cfg
        assert cfg.template_text is not None
        request = TrialRequest(
            study_name=cfg.study_name, trial_number=asked.number, values=asked.values, template=cfg.template_text,
            model=self.base, data=cfg.data, retrain=cfg.retrain, export=cfg.export, benchmark=cfg.benchmark,
            out_dir=str(trial_dir), seed=cfg.seed, threads=self.threads)
        path = request.write(trial_dir / "request.json")
        return TrialProcess([sys.executable, "-m", "edgeprune.sweep.produce", str(path)], trial_dir, dict(os.environ))

    def _launch_program(self, asked: AskedTrial, trial_dir: Path) -> TrialProcess:
        from edgeprune.tracking.wandb_tracker import wandb_mode

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
        if changed and self.cfg.early_terminate is not None:
            self._hyperband()

    def _hyperband(self) -> None:
        et, m = self.cfg.early_terminate, self.cfg.metric
        assert et is not None and m is not None
        histories = [_series(t.user_attrs.get("history", []), m.name) for t in self.study.trials()]
        for r in self.running.values():
            own = _series(r.output.history, m.name)
            if should_stop(own, histories, et.bands(), et.eta, m.goal == "maximize"):
                r.proc.stop(f"stopped by hyperband: {m.name} after step {len(own) - 1} is worse than its band")

    def _finished(self, r: Running, code: int, out: TrialOutput) -> None:
        number = r.asked.number
        if r.proc.stop_reason is not None:
            self._end(r, "PRUNED", r.proc.stop_reason)
        elif code != 0:
            self._end(r, "FAIL", f"exit code {code}: {r.proc.error_tail()}".strip())
        elif self.cfg.is_program:
            self._end_program(r, out)
        else:
            job_file = r.proc.trial_dir / JOB_FILE
            if not job_file.is_file():
                self._end(r, "FAIL", f"the producer exited without writing {job_file}")
            else:
                self.pending.append((r, TrialJob.read(job_file)))
                self.console.print(f"trial {number} produced; waiting to be measured")

    def _end_program(self, r: Running, out: TrialOutput) -> None:
        names = [o.name for o in self.cfg.directions]
        metrics = {k: float(v) for k, v in out.summary.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
        missing = [n for n in names if n not in metrics]
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

    def _measure_if_quiet(self) -> None:
        from edgeprune.sweep.measure import measure_and_tell

        if not self.pending or self.running:
            return
        for r, job in self.pending:
            try:
                metrics = measure_and_tell(self.study, job)
            except EdgepruneError as exc:
                self._end(r, "FAIL", f"measurement failed: {exc.message}")
                continue
            self.trackers.log_metrics(job.trial_number, metrics)
            for kind, path in self.study.trials()[job.trial_number].user_attrs.get("artifacts", {}).items():
                self.trackers.log_artifact(job.trial_number, Path(path), kind)
            self._end(r, "COMPLETE", None, told=True)
        self.pending.clear()

    def _end(self, r: Running, state: str, error: str | None, *, told: bool = False) -> None:
        number = r.asked.number
        if not told:
            self.study.fail(r.asked.trial, error or state, pruned=state == "PRUNED")
        self.succeeded = self.succeeded or state == "COMPLETE"
        self.initial_failures += state == "FAIL" and not self.succeeded
        self.trackers.end_trial(number, state, error)
        if state == "COMPLETE":
            metrics = self.study.trials()[number].user_attrs["metrics"]
            shown = "  ".join(f"{o.name} {metrics[o.name]:.4g}" for o in self.cfg.directions)
            self.console.print(f"trial {number} [green]done[/]: {shown}")
        else:
            style = "yellow" if state == "PRUNED" else "red"
            self.console.print(f"trial {number} [{style}]{state.lower()}[/]: {error}", highlight=False)

    # ------------------------------------------------------------------------------------------- bookkeeping
    def _renew_leases(self) -> None:
        now = time.monotonic()
        if now - self._renewed < LEASE_S / 4:
            return
        self._renewed = now
        self.study.renew([r.asked.trial for r in self.running.values()] + [r.asked.trial for r, _ in self.pending])

    def _abandon_all(self, reason: str) -> None:
        for r in list(self.running.values()) + [r for r, _ in self.pending]:
            r.proc.kill()
            self.study.abandon(r.asked.number, reason)
            self.trackers.end_trial(r.asked.number, "FAIL", reason)
        self.running.clear()
        self.pending.clear()

    def _counts(self) -> dict[str, int]:
        states = [t.state for t in self.study.trials()]
        return {s.name.lower(): states.count(s) for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL,
                                                           TrialState.RUNNING, TrialState.WAITING)}

    def _finished_count(self) -> int:
        return sum(1 for t in self.study.trials() if t.state.is_finished() and not t.user_attrs.get("abandoned"))

    def _planned(self) -> int | None:
        caps = [c for c in (self.cfg.run_cap, self.max_trials and self._finished_count() + self.max_trials) if c]
        if self.cfg.method == "grid":
            caps.append(self.cfg.space.grid_size())
        return min(caps) if caps else None

    def _status(self) -> str:
        c = self._counts()
        text = (f"{self.cfg.study_name}: {c['complete']} done · {len(self.running)} running · {c['fail']} failed · "
                f"{c['pruned']} pruned")
        done = self.study.trials(TrialState.COMPLETE)
        if done and len(self.cfg.directions) == 1:
            best = self.study.study.best_trial
            text += f" · best {self.cfg.directions[0].name} {best.values[0]:.4g} (trial {best.number})"
        elif done:
            text += f" · Pareto front {len(self.study.study.best_trials)} trials"
        return text

    def _progress(self) -> Progress:
        return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=self.console, transient=False)
