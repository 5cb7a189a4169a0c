"""The ``edgeprune`` command line: one sub-command per box of the flow, no logic of its own.

Every user error is an :class:`~edgeprune.errors.EdgepruneError`, printed as one paragraph with
a non-zero exit; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from edgeprune.errors import EdgepruneError

app = typer.Typer(
    name="edgeprune", no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
    help="Prune, thin, retrain, export and measure convolutional networks for edge devices.",
)
out = Console()
err = Console(stderr=True)

ModelArg = Annotated[str, typer.Argument(help="Zoo name, package.module:factory, or a checkpoint file.")]
DataOpt = Annotated[str, typer.Option("--data", "-d", help="'digits' (built in), or a CIFAR/MNIST/image-folder "
                                                            "directory or .tar.gz.")]
ArchOpt = Annotated[str | None, typer.Option("--arch", help="Architecture of a checkpoint that does not name it.")]
ScheduleOpt = Annotated[Path | None, typer.Option("--schedule", "-s", help="Distiller-format compression schedule.")]
KdTeacherOpt = Annotated[str | None, typer.Option(
    "--kd-teacher", help="Knowledge distillation (Distiller's --kd-*): learn from this trained checkpoint's outputs "
                         "too, or 'dense' for the dense model the run's model was pruned from.")]
KdTempOpt = Annotated[float | None, typer.Option("--kd-temp", "--kd-temperature",
                                                 help="Distillation softmax temperature T [default: 1].")]
KdDistillWtOpt = Annotated[float | None, typer.Option("--kd-distill-wt", "--kd-dw", help="Weight of the distillation "
                                                      "loss (student vs teacher soft targets, × T²) [default: 0.5].")]
KdStudentWtOpt = Annotated[float | None, typer.Option("--kd-student-wt", "--kd-sw", help="Weight of the student's "
                                                      "loss against the labels [default: 0.5].")]
KdTeacherWtOpt = Annotated[float | None, typer.Option("--kd-teacher-wt", "--kd-tw", help="Weight of the teacher's "
                                                      "loss against the labels; 0, the teacher is frozen "
                                                      "[default: 0].")]
KdStartOpt = Annotated[int | None, typer.Option("--kd-start-epoch", help="First epoch that distils [default: 0].")]
schedule_app = typer.Typer(no_args_is_help=True, help="Check and inspect compression schedules.")
app.add_typer(schedule_app, name="schedule")


def _input_shape(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    try:
        return tuple(int(x) for x in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"expected C,H,W such as 3,32,32, got {text!r}") from None


@app.command("models")
def models_cmd(pattern: Annotated[str, typer.Argument(help="Shell-style filter.")] = "*") -> None:
    """List the architectures of the model zoo."""
    from edgeprune.models import MODELS

    for name in MODELS.names(pattern):
        doc = (MODELS.get(name).__doc__ or "").strip().splitlines()
        out.print(f"[bold]{name}[/]  {doc[0] if doc else ''}")


@app.command()
def summary(
    model: ModelArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    sparsity: Annotated[bool, typer.Option("--sparsity", help="Print Distiller's sparsity table too.")] = False,
    input_shape: Annotated[str | None, typer.Option(help="C,H,W of the input (default: the model's).")] = None,
    arch: ArchOpt = None,
) -> None:
    """Per-layer MACs and weights with Distiller-exact counts."""
    from edgeprune.analysis.summary import model_summary
    from edgeprune.models.resolve import resolve_model

    loaded = resolve_model(model, arch=arch)
    s = model_summary(loaded.model, _input_shape(input_shape), arch=loaded.arch)
    if as_json:
        d = s.to_dict()
        d["layers"] = [{k: layer[k] for k in ("name", "type", "weight_shape", "ifm", "ofm", "macs", "weight_params")}
                       for layer in d["layers"]]
        print(json.dumps(d))
        return
    table = Table(title=f"{s.arch}  input {tuple(s.input_shape)}")
    for col in ("Name", "Type", "Attrs", "Weight shape", "IFM", "OFM", "Weights", "MACs"):
        table.add_column(col, justify="right" if col in ("Weights", "MACs") else "left")
    for layer in s.layers:
        table.add_row(layer.name, layer.type, layer.attrs, str(tuple(layer.weight_shape)), str(tuple(layer.ifm)),
                      str(tuple(layer.ofm)), f"{layer.weight_params:,}", f"{layer.macs:,}")
    out.print(table)
    out.print(f"Total MACs: {s.macs:,}   Weight parameters: {s.weight_params:,}   Parameters: {s.params:,}")
    if sparsity:
        _print_sparsity(loaded.model)


def _print_sparsity(model) -> None:
    from edgeprune.analysis.sparsity import sparsity_table

    rows, total = sparsity_table(model)
    table = Table(title="Parameters")
    cols = ("Name", "Shape", "NNZ (dense)", "NNZ (sparse)", "Cols (%)", "Rows (%)", "Ch (%)", "2D (%)", "3D (%)",
            "Fine (%)", "Std", "Mean", "Abs-Mean")
    for col in cols:
        table.add_column(col, justify="left" if col in ("Name", "Shape") else "right")
    for r in rows:
        table.add_row(r.name, str(r.shape), str(r.nnz_dense), str(r.nnz_sparse),
                      *(f"{v:.5f}" for v in (r.cols_pct, r.rows_pct, r.ch_pct, r.k2d_pct, r.k3d_pct, r.fine_pct,
                                              r.std, r.mean, r.abs_mean)))
    out.print(table)
    out.print(f"Total sparsity: {total:0.2f}")


@app.command()
def train(
    model: ModelArg,
    data: DataOpt = "digits",
    epochs: Annotated[int, typer.Option(help="Epochs to train (the end epoch when resuming).")] = 10,
    output: Annotated[Path, typer.Option("--output", "-o", help="Run directory (checkpoints, history).")] = Path(
        "runs/train"),
    batch_size: Annotated[int, typer.Option(help="Minibatch size.")] = 128,
    lr: Annotated[float, typer.Option(help="Initial learning rate.")] = 0.1,
    optimizer: Annotated[str, typer.Option(help="sgd | adam | adamw.")] = "sgd",
    momentum: Annotated[float, typer.Option(help="SGD momentum.")] = 0.9,
    nesterov: Annotated[bool, typer.Option(help="Nesterov momentum (SGD).")] = False,
    weight_decay: Annotated[float, typer.Option(help="Weight decay.")] = 5e-4,
    lr_schedule: Annotated[str, typer.Option(help="constant | cosine | step.")] = "cosine",
    augment: Annotated[bool | None, typer.Option(
        help="Pad-4 random crop + horizontal flip (default: on for colour images, off for grey ones).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of every random stream (recorded in checkpoints).")] = 0,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda[:N].")] = "auto",
    channels_last: Annotated[bool, typer.Option(help="Use the channels_last memory format.")] = False,
    resume: Annotated[bool, typer.Option(help="Continue from OUTPUT's last checkpoint if there is one.")] = True,
    schedule: ScheduleOpt = None,
    arch: ArchOpt = None,
    kd_teacher: KdTeacherOpt = None,
    kd_temp: KdTempOpt = None,
    kd_distill_wt: KdDistillWtOpt = None,
    kd_student_wt: KdStudentWtOpt = None,
    kd_teacher_wt: KdTeacherWtOpt = None,
    kd_start_epoch: KdStartOpt = None,
) -> None:
    """Train or fine-tune MODEL on DATA, under a compression schedule if given, distilled if asked; exact resume."""
    from edgeprune.train.distill import distill_config
    from edgeprune.train.loop import TrainConfig
    from edgeprune.train.run import train_model

    distill = distill_config(kd_teacher, temperature=kd_temp, distill_wt=kd_distill_wt, student_wt=kd_student_wt,
                             teacher_wt=kd_teacher_wt, start_epoch=kd_start_epoch)
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer, momentum=momentum,
                      nesterov=nesterov, weight_decay=weight_decay, lr_schedule=lr_schedule, augment=augment,
                      seed=seed, device=device, channels_last=channels_last)
    result, _ = train_model(model, data, output, cfg, arch=arch, schedule=schedule, resume=resume, console=err,
                            distill=distill)
    f = result.final
    out.print(f"top1 {f.get('top1', 0):.2f}  top5 {f.get('top5', 0):.2f}  loss {f.get('loss', 0):.4f}  "
              f"-> {output / 'checkpoint.pth'}")


@app.command("eval")
def eval_cmd(
    model: ModelArg,
    data: DataOpt = "digits",
    split: Annotated[str, typer.Option(help="train | test.")] = "test",
    limit: Annotated[int | None, typer.Option(help="Evaluate only the first N images.")] = None,
    batch_size: Annotated[int, typer.Option(help="Minibatch size.")] = 512,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda[:N].")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    arch: ArchOpt = None,
) -> None:
    """Top-1 / top-5 / loss of MODEL on DATA (with the checkpoint's normalisation)."""
    from edgeprune.train.run import evaluate_model

    r = evaluate_model(model, data, split=split, arch=arch, batch_size=batch_size, device=device, limit=limit)
    if as_json:
        print(json.dumps({**r.metrics, "images": r.images, "normalize": r.normalize}))
    else:
        out.print(f"top1 {r.metrics['top1']:.2f}  top5 {r.metrics['top5']:.2f}  loss {r.metrics['loss']:.4f}  "
                  f"({r.images} images)")


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
) -> None:
    """One-shot: apply every policy that fires at epoch 0 (or --epochs) — prune, regularize, thin — no training."""
    from edgeprune.schedule.oneshot import prune_model

    r = prune_model(model, schedule, output, thin=thin, data=data, arch=arch, epochs=epochs)
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


@app.command("export")
def export_cmd(
    model: ModelArg,
    output: Annotated[Path, typer.Option("--output", "-o", help="The .onnx file to write (self-contained).")],
    opset: Annotated[int | None, typer.Option(help="ONNX opset (default: the exporter's).")] = None,
    dynamic_batch: Annotated[bool, typer.Option("--dynamic-batch", help="Any batch size (symbolic N).")] = False,
    openvino: Annotated[Path | None, typer.Option("--openvino", help="Also write an OpenVINO IR (.xml + .bin) "
                                                                    "into this directory.")] = None,
    fp16: Annotated[bool, typer.Option("--fp16", help="Compress the IR's weights to FP16 (default: FP32).")] = False,
    data: Annotated[str | None, typer.Option("--data", "-d", help="Check parity on test images of this data set "
                                                                  "(default: random inputs).")] = None,
    exporter: Annotated[str, typer.Option(help="dynamo (PyTorch's default) | torchscript (legacy, ~4x faster).")
                        ] = "dynamo",
    tolerance: Annotated[float | None, typer.Option(help="Largest accepted max rel diff (default 1e-4; 1e-2 for "
                                                         "an FP16 IR).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    arch: ArchOpt = None,
) -> None:
    """Export to one ONNX file (+ OpenVINO IR), refused unless ONNX Runtime/OpenVINO match PyTorch."""
    from edgeprune.export.job import export_model

    r = export_model(model, output, opset=opset, dynamic_batch=dynamic_batch, openvino_dir=openvino, fp16=fp16,
                     data=data, arch=arch, exporter=exporter, tolerance=tolerance)
    if as_json:
        print(json.dumps({"onnx": str(r.onnx), "openvino": str(r.ir) if r.ir else None, "opset": r.opset,
                          "input_shape": r.input_shape, "parity": [p.to_dict() for p in r.parity]}))
        return
    for p in r.parity:
        out.print(p.line(), highlight=False)
    out.print(f"onnx: {r.onnx} (opset {r.opset}, input {r.input_shape})" + (f"   openvino: {r.ir}" if r.ir else ""))


@app.command()
def bench(
    model: Annotated[str, typer.Argument(help="A .onnx, an OpenVINO .xml, a checkpoint or a zoo name.")],
    backend: Annotated[str, typer.Option(help="openvino | onnxruntime | torch.")] = "openvino",
    device: Annotated[str, typer.Option(help="CPU | GPU | NPU | AUTO.")] = "CPU",
    batch: Annotated[int, typer.Option(help="Images per inference.")] = 1,
    niter: Annotated[int, typer.Option(help="Timed iterations per round.")] = 100,
    time_s: Annotated[float | None, typer.Option("--time", help="Seconds per round instead of --niter.")] = None,
    hint: Annotated[str, typer.Option(help="latency | throughput (OpenVINO's performance hint).")] = "latency",
    precision: Annotated[str, typer.Option(help="f32 | bf16 | f16 (inference precision, pinned).")] = "f32",
    threads: Annotated[int | None, typer.Option(help="Inference threads (default: all usable CPUs).")] = None,
    images: Annotated[Path | None, typer.Option(help="Directory of image files to feed (resized to the "
                                                      "model's input).")] = None,
    cv: Annotated[float, typer.Option(help="Repeat rounds until their coefficient of variation is below.")] = 0.1,
    budget: Annotated[float, typer.Option(help="Stop repeating rounds after this many seconds.")] = 20.0,
    warmup: Annotated[int, typer.Option(help="Untimed iterations before measuring.")] = 10,
    exporter: Annotated[str, typer.Option(help="ONNX exporter for checkpoints: dynamo | torchscript.")] = "dynamo",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object (keys: docs/benchmark-json.md).")
                       ] = False,
    arch: ArchOpt = None,
) -> None:
    """Latency, end-to-end latency and throughput of MODEL on one backend and device."""
    from edgeprune.bench.protocol import Protocol
    from edgeprune.bench.result import text_summary
    from edgeprune.bench.run import bench_model

    protocol = Protocol(niter=niter, time_s=time_s, warmup=warmup, cv_threshold=cv, budget_s=budget)
    r = bench_model(model, backend=backend, device=device, batch=batch, protocol=protocol, hint=hint,
                    precision=precision, threads=threads, images=images, arch=arch, exporter=exporter)
    if as_json:
        print(json.dumps(r))
        return
    for line in text_summary(r):
        out.print(line, highlight=False)


@schedule_app.command("check")
def schedule_check(
    schedule: Annotated[Path, typer.Argument(help="Distiller-format compression schedule.")],
    model: Annotated[str, typer.Option("--model", "-m", help="Zoo name, module:factory or checkpoint.")],
    epochs: Annotated[int | None, typer.Option(help="Show only epochs below this one.")] = None,
    arch: ArchOpt = None,
) -> None:
    """Validate a schedule against a model and print which policy fires at which epoch."""
    from edgeprune.models.resolve import resolve_model
    from edgeprune.schedule import load_schedule, timeline, timeline_table

    spec = load_schedule(schedule)
    rows = timeline(spec, resolve_model(model, arch=arch).model, epochs)
    out.print(timeline_table(rows, title=f"{schedule.name} on {model}"))
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
    arch: ArchOpt = None,
) -> None:
    """Write a one-shot filter-pruning schedule chosen from a sensitivity analysis."""
    from edgeprune.schedule.suggest import suggest_schedule, write_suggestion

    s = suggest_schedule(csv, model, max_drop=max_drop, target_macs=target_macs, round_to=round_to, arch=arch)
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
    from edgeprune.analysis.sensitivity import run_sensitivity

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
) -> None:
    """Print a run's accuracy before pruning, right after pruning + thinning, and after each epoch.

    For a sweep, write one offline HTML file: Pareto front, importance, correlation and every trial.
    """
    from edgeprune.sweep.results import is_study_target

    if is_study_target(path):
        from edgeprune.report.study_html import write_study_report

        out.print(f"report: {write_study_report(path, output, study_name=study, png=png)}")
        return
    from edgeprune.report.run_report import load_run_report, report_table

    out.print(report_table(load_run_report(Path(path))))


@app.command("sweep")
def sweep_cmd(
    target: Annotated[str, typer.Argument(help="A sweep file (WandB grammar) to run, or 'status'.")],
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
) -> None:
    """Run a sweep on this machine (rerun to resume), or show one: `edgeprune sweep status RUN_DIR`.

    A pipeline sweep (model + schedule_template) runs as agents over an embedded SQLite queue: N producer
    processes prune, retrain and export, one consumer benchmarks and tells the study (`edgeprune agent` runs
    the same agents across machines). A program sweep (program/command, a `wandb agent` script) runs in the
    embedded runner instead: a program is one process that cannot be split into producing and measuring.
    """
    if target == "status":
        if study is None:
            raise typer.BadParameter("give the sweep's run directory, study.db or storage URL after 'status'")
        from edgeprune.sweep.status import status_table, study_status

        out.print(status_table(study_status(study, name)))
        return
    if study is not None:
        raise typer.BadParameter(f"unexpected argument {study!r} (only 'status' takes one)")
    from edgeprune.sweep.config import load_sweep
    from edgeprune.sweep.storage import redact

    cfg = load_sweep(target)
    run_dir = output or Path("runs/sweeps") / cfg.study_name
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
    where = run_dir if storage is None else f"{redact(storage)} --study {cfg.study_name}"
    out.print(f"status: edgeprune sweep status {where}    report: edgeprune report {where} -o "
              f"{run_dir / 'report.html'}")
    for agent in failed:
        err.print(f"[yellow]warning:[/] {escape(agent)}", highlight=False)
    if failed:
        raise typer.Exit(1)


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
    kd: Annotated[bool, typer.Option("--kd", help="Retrain each trial distilled from the dense baseline "
                                                  "(knowledge distillation, Distiller's --kd-*).")] = False,
    kd_temp: KdTempOpt = None,
    kd_distill_wt: KdDistillWtOpt = None,
    kd_student_wt: KdStudentWtOpt = None,
    kd_start_epoch: KdStartOpt = None,
) -> None:
    """The whole job, offline: train, analyse, suggest a schedule, sweep with agents, report the best trade-offs."""
    from edgeprune.demo import DemoSettings, print_summary, run_demo
    from edgeprune.train.distill import DENSE, distill_config

    distill = distill_config(DENSE if kd else None, temperature=kd_temp, distill_wt=kd_distill_wt,
                             student_wt=kd_student_wt, start_epoch=kd_start_epoch, switch="--kd")
    settings = DemoSettings(epochs=epochs, retrain_epochs=retrain_epochs, max_trials=trials, distill=distill)
    try:
        result = run_demo(output, model=model, data=data, settings=settings, fresh=fresh, console=err)
    except KeyboardInterrupt:
        err.print(f"interrupted: what is done stays in {output}; run the same command to continue")
        raise typer.Exit(130) from None
    print_summary(result, out)


agent_app = typer.Typer(no_args_is_help=True, help="Producer/consumer agents: produce a sweep's trials on some "
                                                   "machines, measure them on others.")
app.add_typer(agent_app, name="agent")
QueueOpt = Annotated[str | None, typer.Option("--queue", help="sqlite:///PATH/queue.db (default runs/agents/queue.db)"
                                              " or redis://HOST:6379/0[?prefix=NAME] for several machines.")]
AgentStorageOpt = Annotated[str | None, typer.Option("--storage", help="Study storage: postgresql://USER@HOST/DB or "
                                                     "redis://HOST:6379/0 (default sqlite:///runs/agents/study.db).")]
ArtifactsOpt = Annotated[str | None, typer.Option("--artifacts", help="Artifact store: a directory every machine "
                                                  "mounts at the same path (default runs/agents/artifacts) or "
                                                  "redis://HOST:6379/0[?ttl_s=S&max_mb=MB].")]
WorkDirOpt = Annotated[Path | None, typer.Option("--work-dir", help="Local files of this agent (default "
                                                                    "runs/agents).")]
AgentNameOpt = Annotated[str | None, typer.Option("--name", help="This agent's name (default HOST:PID).")]
SweepsOpt = Annotated[list[str] | None, typer.Option("--sweep", help="Serve only this registered sweep (repeat for "
                                                                     "several; default: all).")]


def _agent_storage(storage: str | None) -> str:
    from edgeprune.agents.queue import DEFAULT_DIR
    from edgeprune.sweep.storage import default_url

    return storage or default_url(DEFAULT_DIR)


@agent_app.command("producer")
def agent_producer(
    sweep: Annotated[str, typer.Option("--sweep", help="A sweep file (it is registered in the queue), or the name "
                                                       "of a sweep registered there.")],
    storage: AgentStorageOpt = None,
    queue: QueueOpt = None,
    artifacts: ArtifactsOpt = None,
    work_dir: WorkDirOpt = None,
    max_trials: Annotated[int | None, typer.Option("--max-trials", help="Stop after producing N trials.")] = None,
    max_queued: Annotated[int, typer.Option("--max-queued", help="Ask no trial while N jobs wait unmeasured.")] = 4,
    stop_at: Annotated[int | None, typer.Option("--stop-at", help="Ask no trial once the study counts N trials "
                                                                  "(a run_cap for this run).")] = None,
    threads: Annotated[int | None, typer.Option(help="Training threads (default: all usable CPUs).")] = None,
    name: AgentNameOpt = None,
) -> None:
    """Ask the study, prune + retrain + export each trial to a verified ONNX, and queue it for the consumers."""
    from edgeprune.agents.artifacts import get_artifact_store
    from edgeprune.agents.producer import Producer
    from edgeprune.agents.queue import DEFAULT_DIR, get_queue
    from edgeprune.agents.sweeps import resolve_sweep

    q = get_queue(queue)
    cfg = resolve_sweep(sweep, q, work_dir or DEFAULT_DIR)
    producer = Producer(cfg, _agent_storage(storage), q, get_artifact_store(artifacts), work_dir=work_dir, name=name,
                        threads=threads, max_trials=max_trials, max_queued=max_queued, stop_at=stop_at, console=err)
    from edgeprune.sweep.progress import sigterm_as_interrupt

    try:
        with sigterm_as_interrupt():
            produced = producer.run()
    except KeyboardInterrupt:
        err.print("interrupted: the trial being produced is queued again")
        raise typer.Exit(130) from None
    out.print(f"{cfg.study_name}: {produced} trials produced by {producer.name}")


@agent_app.command("consumer")
def agent_consumer(
    queue: QueueOpt = None,
    storage: AgentStorageOpt = None,
    sweep: SweepsOpt = None,
    artifacts: ArtifactsOpt = None,
    work_dir: WorkDirOpt = None,
    backend: Annotated[str | None, typer.Option(help="openvino | onnxruntime (default: the sweep's).")] = None,
    device: Annotated[str | None, typer.Option(help="CPU | GPU | NPU | AUTO (default: the sweep's).")] = None,
    threads: Annotated[int | None, typer.Option(help="Inference threads (default: the sweep's).")] = None,
    niter: Annotated[int | None, typer.Option(help="Timed iterations per round (default: the sweep's).")] = None,
    warmup: Annotated[int | None, typer.Option(help="Untimed iterations (default: the sweep's).")] = None,
    budget: Annotated[float | None, typer.Option(help="Seconds of repeated rounds (default: the sweep's).")] = None,
    name: AgentNameOpt = None,
    visibility_timeout: Annotated[float, typer.Option(help="Seconds before a job whose consumer went silent goes "
                                                           "to another.")] = 60.0,
    max_deliveries: Annotated[int, typer.Option(help="Attempts per job before it is dead-lettered.")] = 3,
    retry_delay: Annotated[float, typer.Option(help="Seconds before a failed attempt is tried again.")] = 1.0,
    max_jobs: Annotated[int | None, typer.Option(help="Stop after handling N jobs.")] = None,
    exit_when_done: Annotated[bool, typer.Option("--exit-when-done", help="Stop once every served sweep is finished "
                                                                          "and no producer is alive.")] = False,
    stats: Annotated[Path | None, typer.Option(help="Write what this consumer did (busy fraction ...) as JSON.")
                     ] = None,
    quiet_wait: Annotated[float, typer.Option(help="Before measuring, wait up to S seconds for producers on this "
                                                   "machine to stop producing (they share its CPU).")] = 0.0,
) -> None:
    """Fetch and verify each queued artifact, benchmark it, tell the study, acknowledge; serves several sweeps."""
    from edgeprune.agents.artifacts import get_artifact_store
    from edgeprune.agents.consumer import Consumer
    from edgeprune.agents.queue import get_queue
    from edgeprune.fileio import write_json

    bench = {"backend": backend, "device": device, "threads": threads, "niter": niter, "warmup": warmup,
             "budget_s": budget}
    consumer = Consumer(get_queue(queue, visibility_timeout_s=visibility_timeout), _agent_storage(storage),
                        name=name, sweeps=sweep, artifacts=get_artifact_store(artifacts), work_dir=work_dir,
                        bench={k: v for k, v in bench.items() if v is not None}, max_deliveries=max_deliveries,
                        retry_delay_s=retry_delay, quiet_wait_s=quiet_wait, console=err)
    from edgeprune.sweep.progress import sigterm_as_interrupt

    try:
        with sigterm_as_interrupt():
            result = consumer.run(max_jobs=max_jobs, exit_when_done=exit_when_done)
    except KeyboardInterrupt:
        err.print("interrupted: the job being measured goes back to the queue")
        raise typer.Exit(130) from None
    if stats is not None:
        write_json(stats, result.to_dict())
    shown = ", ".join(f"{n} {outcome}" for outcome, n in sorted(result.outcomes.items())) or "no jobs"
    out.print(f"consumer {consumer.name}: {shown}; busy {result.busy_fraction:.0%} of the time")


@agent_app.command("janitor")
def agent_janitor(
    queue: QueueOpt = None,
    storage: AgentStorageOpt = None,
    sweep: SweepsOpt = None,
    work_dir: WorkDirOpt = None,
    every: Annotated[float, typer.Option(help="Seconds between passes.")] = 30.0,
    once: Annotated[bool, typer.Option("--once", help="One pass, then exit.")] = False,
) -> None:
    """Fail and queue again the trials whose producer died or whose job the queue lost (consumers do it too)."""
    from edgeprune.agents.janitor import run_janitor
    from edgeprune.agents.queue import DEFAULT_DIR, get_queue
    from edgeprune.agents.sweeps import SweepStudies

    studies = SweepStudies(get_queue(queue), _agent_storage(storage), work_dir or DEFAULT_DIR)
    run_janitor(studies, sweep, every_s=every, once=once, console=err)


@app.command("status")
def status_cmd(
    queue: QueueOpt = None,
    storage: AgentStorageOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON list, an object per sweep.")] = False,
) -> None:
    """Per sweep of a queue: producing, queued, in flight (where, since when), done, failed, dead letters, producers."""
    from edgeprune.agents.queue import get_queue
    from edgeprune.agents.status import agents_status, status_table

    q = get_queue(queue)
    rows = agents_status(q, _agent_storage(storage))
    if as_json:
        print(json.dumps(rows))
        return
    out.print(status_table(rows, q.url))


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    err.print(f"[yellow]warning:[/] {escape(str(message))}", highlight=False)  # brackets are text, not markup


def main() -> None:
    import warnings

    warnings.showwarning = _show_warning
    try:
        app()
    except EdgepruneError as exc:
        err.print("[bold red]error:[/] " + escape(exc.message), highlight=False)  # brackets are text, not markup
        if exc.hint:
            err.print(exc.hint, highlight=False, markup=False)  # e.g. pip install 'edgeprune[export]'
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
