"""``edgeprune demo``: the whole job end to end, offline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgeprune.cli.app import (
    DataOpt,
    app,
    err,
    out,
)


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
) -> None:
    """The whole job, offline: train, analyse, suggest a schedule, sweep with agents, report the best trade-offs."""
    from edgeprune.demo import DemoSettings, print_summary, run_demo

    settings = DemoSettings(epochs=epochs, retrain_epochs=retrain_epochs, max_trials=trials)
    try:
        result = run_demo(output, model=model, data=data, settings=settings, fresh=fresh, console=err)
    except KeyboardInterrupt:
        err.print(f"interrupted: what is done stays in {output}; run the same command to continue")
        raise typer.Exit(130) from None
    print_summary(result, out)
