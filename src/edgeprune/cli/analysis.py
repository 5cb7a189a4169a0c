"""``edgeprune sensitivity``, ``edgeprune show …`` pictures and ``edgeprune report``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from edgeprune.cli.app import (
    ArchOpt,
    ModelArg,
    ScheduleOpt,
    app,
    err,
    out,
)


@app.command()
def sensitivity(
    model: ModelArg,
    data: Annotated[str, typer.Option("--data", "-d", help="Data whose test split is evaluated ('digits', or a "
                                                            "CIFAR/MNIST/image-folder directory or .tar.gz).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Directory for sensitivity.csv/.json and plots.")],
    group: Annotated[str, typer.Option(help="filter | channel | element (Distiller's --sense).")] = "filter",
    sparsities: Annotated[str, typer.Option(help="START:STOP:STEP of np.arange; STOP is exclusive.")] = "0:0.95:0.05",
    layers: Annotated[str | None, typer.Option(help="Comma-separated globs of weights, e.g. 'layer1.*'.")] = None,
    eval_batches: Annotated[int | None, typer.Option(help="Evaluate on the first N test batches only.")] = None,
    batch_size: Annotated[int, typer.Option(help="Evaluation batch size.")] = 256,
    module_prefix: Annotated[bool, typer.Option(help="Write Distiller's 'module.' weight names in the CSV.")] = False,
    restart: Annotated[bool, typer.Option(help="Discard an earlier analysis in OUTPUT, don't resume it.")] = False,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda[:N].")] = "auto",
    arch: ArchOpt = None,
) -> None:
    """Prune each weight alone at each sparsity and evaluate without retraining; resumes if interrupted."""
    from edgeprune.jobs.sensitivity import run_sensitivity

    r = run_sensitivity(model, data, output, group=group, sparsities=sparsities, layers=layers,
                        eval_batches=eval_batches, batch_size=batch_size, device=device, module_prefix=module_prefix,
                        restart=restart, arch=arch, console=err)
    out.print(f"{len(r.results)} weights x {len(r.settings.sparsities)} sparsities on {r.settings.images:,} images: "
              f"{r.evaluations} evaluations for {r.points - r.resumed} new points ({r.resumed} resumed); dense top-1 "
              f"{r.baseline['top1']:.2f}")
    out.print(f"-> {r.csv}, {r.json}, {', '.join(str(p) for p in r.plots)}")


show_app = typer.Typer(no_args_is_help=True, help="Pictures of pruning (PNG or SVG by the output's suffix).")
app.add_typer(show_app, name="show")
PictureOpt = Annotated[Path, typer.Option("--output", "-o", help="Picture to write: .png or .svg.")]
SparsityOpt = Annotated[float | None, typer.Option(help="Mark what L1 ranking prunes at this sparsity instead.")]


@show_app.command("filters")
def show_filters_cmd(
    model: ModelArg,
    layer: Annotated[str, typer.Option("--layer", "-l", help="Conv or linear layer, e.g. layer1.0.conv1.")],
    output: PictureOpt,
    schedule: ScheduleOpt = None,
    sparsity: SparsityOpt = None,
    channels: Annotated[bool, typer.Option(help="Input channels instead of filters.")] = False,
    arch: ArchOpt = None,
) -> None:
    """One layer's filter (or input-channel) L1 norms as bars, the pruned ones marked."""
    from edgeprune.analysis.pictures import show_filters

    path = show_filters(model, layer, output, channels=channels, schedule=schedule, sparsity=sparsity, arch=arch)
    out.print(f"-> {path}")


@show_app.command("kernels")
def show_kernels_cmd(model: ModelArg, output: PictureOpt, schedule: ScheduleOpt = None, sparsity: SparsityOpt = None,
                     arch: ArchOpt = None) -> None:
    """The first conv's kernels as RGB tiles, the pruned ones crossed out."""
    from edgeprune.analysis.pictures import show_kernels

    out.print(f"-> {show_kernels(model, output, schedule=schedule, sparsity=sparsity, arch=arch)}")


@show_app.command("widths")
def show_widths_cmd(model: ModelArg, output: PictureOpt, schedule: ScheduleOpt = None, arch: ArchOpt = None) -> None:
    """Kept vs removed filters and input channels per layer after thinning (schedule, or a thinned checkpoint)."""
    from edgeprune.analysis.pictures import show_widths

    out.print(f"-> {show_widths(model, output, schedule=schedule, arch=arch)}")


@show_app.command("macs")
def show_macs_cmd(model: ModelArg, output: PictureOpt, schedule: ScheduleOpt = None, arch: ArchOpt = None) -> None:
    """MACs per layer before and after thinning (schedule, or a thinned checkpoint)."""
    from edgeprune.analysis.pictures import show_macs

    out.print(f"-> {show_macs(model, output, schedule=schedule, arch=arch)}")


@show_app.command("graph")
def show_graph_cmd(model: ModelArg, output: PictureOpt, schedule: ScheduleOpt = None, arch: ArchOpt = None) -> None:
    """The network as a diagram with the weight names schedules use; a schedule's pruned weights highlighted."""
    from edgeprune.analysis.diagram import show_graph

    out.print(f"-> {show_graph(model, output, schedule=schedule, arch=arch)}")


@app.command("report")
def report_cmd(
    path: Annotated[str, typer.Argument(help="A run directory: `edgeprune train --schedule` writes report.json; "
                                             "or a sweep: its run directory, study.db or storage URL.")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Sweep: the HTML file to write "
                                                                       "(default RUN_DIR/report.html).")] = None,
    png: Annotated[bool, typer.Option("--png", help="Sweep: also write each figure as PNG beside the HTML.")] = False,
    study: Annotated[str | None, typer.Option("--study", help="Sweep: the study, if the storage has several.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Run: print its report.json; sweep: the HTML file "
                                                          "written, as one JSON object.")] = False,
) -> None:
    """Print a run's accuracy before pruning, right after pruning + thinning, and after each epoch.

    For a sweep, write one offline HTML file: Pareto front, importance, correlation and every trial.
    """
    from edgeprune.sweep.results import is_study_target

    if is_study_target(path):
        from edgeprune.report.study_html import write_study_report

        written = write_study_report(path, output, study_name=study, png=png)
        if as_json:
            print(json.dumps({"report": str(written)}))
        else:
            out.print(f"report: {written}")
        return
    from edgeprune.analysis.run_report import load_run_report, report_table

    report = load_run_report(Path(path))
    if as_json:
        print(json.dumps(report))
    else:
        out.print(report_table(report))
