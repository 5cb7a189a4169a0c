"""``edgeprune schedule check|suggest``: validate a schedule against a model; suggest one from a sensitivity run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from edgeprune.cli.app import (
    ArchOpt,
    app,
    out,
)

schedule_app = typer.Typer(no_args_is_help=True, help="Check and inspect compression schedules.")
app.add_typer(schedule_app, name="schedule")


@schedule_app.command("check")
def schedule_check(
    schedule: Annotated[Path, typer.Argument(help="Distiller-format compression schedule.")],
    model: Annotated[str, typer.Option("--model", "-m", help="Zoo name, module:factory or checkpoint.")],
    epochs: Annotated[int | None, typer.Option(help="Show only epochs below this one.")] = None,
    per_epoch: Annotated[bool, typer.Option("--per-epoch", help="One row per epoch and policy, instead of one per "
                                                                 "run of identical firings.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object (every firing).")] = False,
    arch: ArchOpt = None,
) -> None:
    """Validate a schedule against a model and print which policy fires at which epoch."""
    from edgeprune.models.resolve import resolve_model
    from edgeprune.schedule import load_schedule
    from edgeprune.schedule.timeline import timeline, timeline_table

    spec = load_schedule(schedule)
    rows = timeline(spec, resolve_model(model, arch=arch).model, epochs)
    if as_json:
        print(json.dumps({"schedule": str(schedule), "valid": True, "policies": len(spec.policies),
                          "firings": [row.to_dict() for row in rows]}))
        return
    out.print(timeline_table(rows, title=f"{schedule.name} on {model}", per_epoch=per_epoch))
    out.print(f"{schedule}: valid; {len(spec.policies)} policies, {len(rows)} firings.")


@schedule_app.command("suggest")
def schedule_suggest(
    csv: Annotated[Path, typer.Argument(help="sensitivity.csv of a filter-wise `edgeprune sensitivity` run.")],
    model: Annotated[str, typer.Option("--model", "-m", help="The model the analysis was made on.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Schedule YAML to write.")],
    max_drop: Annotated[float | None, typer.Option(help="Largest top-1 drop (points) allowed for any one weight "
                                                        "(give it, --target-macs, or both).")] = None,
    target_macs: Annotated[float | None, typer.Option(
        help="Keep at most this fraction of the dense MACs, with the least summed top-1 drop.")] = None,
    round_to: Annotated[int | None, typer.Option(help="Keep a multiple of N filters in every pruned layer.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    arch: ArchOpt = None,
) -> None:
    """Write a one-shot filter-pruning schedule chosen from a sensitivity analysis."""
    from edgeprune.analysis.suggest import suggest_schedule, write_suggestion

    s = suggest_schedule(csv, model, max_drop=max_drop, target_macs=target_macs, round_to=round_to, arch=arch)
    if as_json:
        print(json.dumps({**s.to_dict(), "schedule": str(write_suggestion(s, output))}))
        return
    table = Table(title=f"{s.before.arch}: filters to prune")
    for col in ("Weight", "Filters", "Pruned", "Sparsity", "Top-1 drop", "MACs saved"):
        table.add_column(col, justify="left" if col == "Weight" else "right", overflow="fold")
    for p in s.chosen:
        table.add_row(p.weight, str(p.filters), str(p.chosen.pruned), f"{p.chosen.sparsity:.3g}",
                      f"{p.chosen.drop:.2f}", f"{p.macs_saved:,}")
    out.print(table)
    out.print(f"MACs {s.before.macs:,} -> {s.after.macs:,} ({s.after.macs / s.before.macs:.3f} of dense); summed drop "
              f"{s.summed_drop:.2f} points; {len(s.excluded)} weights left alone (coupled or not prunable, see YAML)")
    out.print(f"schedule: {write_suggestion(s, output)}")
