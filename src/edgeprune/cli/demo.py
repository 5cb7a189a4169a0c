"""``edgeprune demo``: the whole job end to end, offline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from edgeprune.cli.app import (
    DataOpt,
    KdDistillWtOpt,
    KdStartOpt,
    KdStudentWtOpt,
    KdTempOpt,
    app,
    err,
    out,
)
from edgeprune.distillation import DENSE, distill_config


@app.command()
def demo(
    output: Annotated[Path, typer.Option("--output", "-o", help="Run directory (rerun to continue it).")] = Path(
        "runs/demo"),
    model: Annotated[str, typer.Option(help="Zoo name to train, or a checkpoint to use as the baseline.")] = (
        "resnet20_cifar"),
    data: DataOpt = "digits",
    epochs: Annotated[int, typer.Option(help="Baseline training epochs.")] = 20,
    retrain_epochs: Annotated[int, typer.Option(help="Fine-tuning epochs of each sweep trial.")] = 3,
    trials: Annotated[int, typer.Option(help="At most N sweep trials (a sample of a larger grid).")] = 27,
    fresh: Annotated[bool, typer.Option(help="Delete the run directory's earlier demo and start over.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object (summary.json).")
                       ] = False,
    kd: Annotated[bool, typer.Option("--kd", help="Retrain each trial distilled from the dense baseline "
                                                  "(knowledge distillation, Distiller's --kd-*).")] = False,
    search: Annotated[str | None, typer.Option(
        "--search", help="End with edgeprune search on the baseline under this latency budget (e.g. 0.7x).")] = None,
    kd_temp: KdTempOpt = None,
    kd_distill_wt: KdDistillWtOpt = None,
    kd_student_wt: KdStudentWtOpt = None,
    kd_start_epoch: KdStartOpt = None,
) -> None:
    """The whole job, offline: train, analyse, suggest a schedule, sweep with agents, report the best trade-offs."""
    from edgeprune.demo import DemoSettings, print_summary, run_demo

    distill = distill_config(DENSE if kd else None, temperature=kd_temp, distill_wt=kd_distill_wt,
                             student_wt=kd_student_wt, start_epoch=kd_start_epoch, switch="--kd")
    settings = DemoSettings(epochs=epochs, retrain_epochs=retrain_epochs, max_trials=trials, distill=distill,
                            search=search)
    try:
        result = run_demo(output, model=model, data=data, settings=settings, fresh=fresh, console=err)
    except KeyboardInterrupt:
        err.print(f"interrupted: what is done stays in {output}; run the same command to continue")
        raise typer.Exit(130) from None
    if as_json:
        print(json.dumps(result.to_dict()))
    else:
        print_summary(result, out)
