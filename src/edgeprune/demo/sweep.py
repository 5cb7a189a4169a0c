"""Phase 4: write the sweep file (once) and run it through the agents: 2 producers and 1 consumer over SQLite.

Why the agents rather than an in-process loop: it is the path ``edgeprune sweep`` takes and the one that scales
to other machines (:func:`edgeprune.agents.local.run_local`), so the demo shows the real thing — a crashed
trial costs one trial, Ctrl-C queues the running ones again, and a rerun continues the same study.

The sweep file is only written when missing, so a user's edit of it or of its template is what a rerun
runs: the study refuses a changed grid under the same name, so an edited sweep gets a new ``name`` (a second
study in the same ``study.db``, the one the summary then reads) or its own run directory.
"""

from __future__ import annotations

import re
from pathlib import Path

import optuna
from optuna.trial import TrialState
from rich.console import Console
from rich.markup import escape

from edgeprune.agents.local import run_local
from edgeprune.analysis.suggest import Suggestion
from edgeprune.demo.baseline import Baseline
from edgeprune.demo.rundir import RunDir
from edgeprune.demo.settings import DemoSettings
from edgeprune.demo.sweepfile import plan_groups, suggested_levels, sweep_document, sweep_text, template_text
from edgeprune.fileio import write_text
from edgeprune.sweep.config import load_sweep
from edgeprune.sweep.dashboard import dashboard_command
from edgeprune.sweep.engine import SweepStudy
from edgeprune.sweep.storage import default_url


def study_name(arch: str, data: str) -> str:
    """``demo-resnet20_cifar-digits``: says what was swept, in the report's title and in ``edgeprune status``."""
    stem = Path(data).name.split(".")[0] if data != "digits" else data
    return re.sub(r"[^A-Za-z0-9_.-]", "-", f"demo-{arch}-{stem}")


def write_sweep_files(rd: RunDir, suggestion: Suggestion, baseline: Baseline, data: str, settings: DemoSettings,
                      console: Console) -> bool:
    """``sweep.yaml`` and ``sweep_template.yaml`` from the suggestion, unless both exist; True when written.

    Paths inside are relative to the run directory when they lie in it, so the directory can be moved.
    """
    if rd.sweep_file.is_file() and rd.template.is_file():
        console.print(f"sweep file: {rd.sweep_file} (kept as it is; --fresh rewrites it)")
        return False
    levels, extensions = suggested_levels(suggestion.yaml)
    groups = plan_groups(levels, settings.multipliers, min(settings.min_trials, settings.max_trials))
    checkpoint = baseline.checkpoint
    model = str(checkpoint.relative_to(rd.root)) if checkpoint.is_relative_to(rd.root) else str(checkpoint)
    doc = sweep_document(study_name(baseline.arch, data), groups, model=model, data=data,
                         template=rd.template.name, retrain=settings.retrain(), bench=settings.bench,
                         max_trials=settings.max_trials, seed=settings.seed)
    write_text(rd.template, template_text(groups, extensions, rd.suggested.name))
    write_text(rd.sweep_file, sweep_text(doc, groups))
    for g in groups:
        console.print(f"  {g.name}: {len(g.weights)} convs, suggested {g.suggested:.2f} -> sweeps "
                      f"{', '.join(f'{v:g}' for v in g.values)}", highlight=False)
    return True


def is_finished(study: SweepStudy) -> bool:
    """Nothing left to run: the study has a stop reason (grid exhausted, run_cap) and no trial is running — the
    producers' own stop rule. A WAITING trial left then (one asked over run_cap, kept for a larger cap) would
    not run in this sweep either."""
    return study.stop_reason() is not None and not study.trials(TrialState.RUNNING)


def run_sweep(rd: RunDir, settings: DemoSettings, console: Console) -> None:
    """Run (or continue) the sweep of ``rd.sweep_file`` to its end with the local agents.

    A finished sweep is not started again: its agents would only find nothing to do, after their start-up.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cfg = load_sweep(rd.sweep_file)
    study = SweepStudy(cfg, default_url(rd.root))
    if is_finished(study):
        console.print(f"sweep: {cfg.study_name} finished earlier ({study.stop_reason()}); reusing its trials")
        return
    console.print(f"sweep: {cfg.study_name}, {settings.producers} producers + 1 consumer; the agents log to "
                  f"{rd.logs}")
    console.print(f"live view: {dashboard_command(str(rd.root), cfg.study_name)}", highlight=False, soft_wrap=True)
    run = run_local(rd.sweep_file, rd.root, producers=settings.producers, console=console)
    for failed in run.failed_agents:
        console.print(f"[yellow]agent failed:[/] {escape(failed)}", highlight=False)
