"""``edgeprune prune``: a schedule's one-shot (or replayed) pruning and thinning, no training."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from edgeprune.cli.app import (
    ArchOpt,
    ModelArg,
    app,
    out,
)


@app.command()
def prune(
    model: ModelArg,
    schedule: Annotated[Path, typer.Option("--schedule", "-s", help="Distiller-format compression schedule.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Checkpoint to write (e.g. runs/x/pruned.pth).")],
    thin: Annotated[bool, typer.Option(help="Remove every zeroed filter/channel (Distiller's --thinnify).")] = False,
    data: Annotated[str | None, typer.Option("--data", "-d", help="Training data, for activation-ranked "
                                                                  "pruners' statistics.")] = None,
    arch: ArchOpt = None,
    epochs: Annotated[str | None, typer.Option("--epochs", help="Replay epochs 0..N-1 of the schedule without "
                                               "training, or 'all' (through its last pruning/thinning epoch): "
                                               "gradual (AGP) schedules reach their final shapes only there. "
                                               "Default: epoch 0 only.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """One-shot: apply every policy that fires at epoch 0 (or --epochs) — prune, regularize, thin — no training."""
    from edgeprune.jobs.prune import prune_model

    r = prune_model(model, schedule, output, thin=thin, data=data, arch=arch, epochs=epochs)
    if as_json:
        print(json.dumps(r.to_dict()))
        return
    when = "at epoch 0" if epochs is None else "over all its epochs" if epochs == "all" else \
        f"over epochs 0 to {int(epochs) - 1}"
    table = Table(title=f"{r.arch}: weights changed by {schedule.name} {when}")
    for col in ("Weight", "Shape before", "Shape after", "Zero filters (%)", "Zero channels (%)", "Zero (%)"):
        table.add_column(col, justify="left" if col.startswith(("Weight", "Shape")) else "right")
    for x in r.layers:
        table.add_row(x.name, str(x.shape_before), str(x.shape_after), f"{x.zero_filters_pct:.2f}",
                      f"{x.zero_channels_pct:.2f}", f"{x.zero_elements_pct:.2f}")
    out.print(table)
    b, a = r.before, r.after
    out.print(f"weights {b.weight_params:,} -> {a.weight_params:,}   MACs {b.macs:,} -> {a.macs:,} "
              f"({b.macs / max(a.macs, 1):.2f}x fewer)" + ("   [thinned]" if r.thinned else "   [zeroed in place]"))
    out.print(f"checkpoint: {r.out}")
