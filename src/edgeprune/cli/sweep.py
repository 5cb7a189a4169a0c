"""``edgeprune sweep``: run a sweep on this machine, resumable."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from edgeprune.cli.app import (
    app,
    err,
    out,
)
from edgeprune.cli.status import print_study_status


@app.command("sweep")
def sweep_cmd(
    target: Annotated[str, typer.Argument(help="A sweep file (WandB grammar) to run.")],
    study: Annotated[str | None, typer.Argument(help="With 'status': the sweep's run directory, study.db or "
                                                     "storage URL.")] = None,
    storage: Annotated[str | None, typer.Option("--storage", help="Study storage URL (default sqlite:///RUN_DIR/"
                                                "study.db); postgresql://... or redis://... to share it.")] = None,
    trials: Annotated[int | None, typer.Option("--trials", "-n", help="Start at most N trials this time.")] = None,
    producers: Annotated[int, typer.Option("--producers", "-p", "--workers", "-w", min=1,
                                           help="Trials produced at once: producer processes of a pipeline sweep, "
                                                "trial processes of a program sweep.")] = 1,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Run directory (default "
                                                                       "runs/sweeps/NAME).")] = None,
    name: Annotated[str | None, typer.Option("--study", help="With 'status': the study, if the storage holds "
                                                             "several.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="With 'status': print one JSON object.")] = False,
) -> None:
    """Run a sweep on this machine (rerun to resume); `edgeprune status RUN_DIR` shows where it stands.

    A pipeline sweep (model + schedule_template) runs as agents over an embedded SQLite queue: N producer
    processes prune, retrain and export, one consumer benchmarks and tells the study (`edgeprune agent` runs
    the same agents across machines). A program sweep (program/command, a `wandb agent` script) runs in the
    embedded runner instead: a program is one process that cannot be split into producing and measuring.
    """
    if target == "status":
        if study is None:
            raise typer.BadParameter("give the sweep's run directory, study.db or storage URL after 'status'")
        err.print(f"deprecated: `edgeprune sweep status` is now `edgeprune status {study}`", highlight=False)
        print_study_status(study, name, as_json=as_json)
        return
    if study is not None:
        raise typer.BadParameter(f"unexpected argument {study!r} (only 'status' takes one)")
    from edgeprune.sweep.config import load_sweep
    from edgeprune.sweep.dashboard import dashboard_command
    from edgeprune.sweep.storage import redact

    cfg = load_sweep(target)
    run_dir = output or Path("runs/sweeps") / cfg.study_name
    where = run_dir if storage is None else f"{redact(storage)} --study {cfg.study_name}"
    err.print(f"live view: {dashboard_command(str(where))}", highlight=False, soft_wrap=True)
    try:
        if cfg.is_program:
            from edgeprune.sweep.runner import SweepRunner

            result = SweepRunner(cfg, run_dir, storage_url=storage, workers=producers, max_trials=trials,
                                 console=err).run()
            failed: list[str] = []
        else:
            from edgeprune.agents.local import run_local

            result = run_local(target, run_dir, producers=producers, storage_url=storage, trials=trials, console=err)
            failed = result.failed_agents
    except KeyboardInterrupt:
        err.print("interrupted: running trials are queued again; run the same command to continue")
        raise typer.Exit(130) from None
    counts = ", ".join(f"{n} {s}" for s, n in result.counts.items() if n)
    out.print(f"{result.study_name}: {counts or 'no trials'} ({result.stop_reason})")
    out.print(f"status: edgeprune status {where}    report: edgeprune report {where} -o "
              f"{run_dir / 'report.html'}")
    for agent in failed:
        err.print(f"[yellow]warning:[/] {escape(agent)}", highlight=False)
    if failed:
        raise typer.Exit(1)
