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
) -> None:
    """Train or fine-tune MODEL on DATA, under a compression schedule if given; exact resume."""
    from edgeprune.train.loop import TrainConfig
    from edgeprune.train.run import train_model

    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer, momentum=momentum,
                      nesterov=nesterov, weight_decay=weight_decay, lr_schedule=lr_schedule, augment=augment,
                      seed=seed, device=device, channels_last=channels_last)
    result, _ = train_model(model, data, output, cfg, arch=arch, schedule=schedule, resume=resume, console=err)
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
) -> None:
    """One-shot: apply every policy that fires at epoch 0 (prune, regularize, thin), no training."""
    from edgeprune.schedule.oneshot import prune_model

    r = prune_model(model, schedule, output, thin=thin, data=data, arch=arch)
    table = Table(title=f"{r.arch}: weights changed by {schedule.name} at epoch 0")
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


@app.command()
def demo(
    output: Annotated[Path, typer.Option("--output", "-o", help="Run directory.")] = Path("runs/demo"),
    model: Annotated[str, typer.Option(help="Zoo name or checkpoint.")] = "resnet20_cifar",
    data: DataOpt = "digits",
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 5,
) -> None:
    """The main job on its embedded default: train a small net offline, print its summary and accuracy."""
    from edgeprune.analysis.summary import model_summary
    from edgeprune.train.loop import TrainConfig
    from edgeprune.train.run import train_model

    cfg = TrainConfig(epochs=epochs, batch_size=64, lr=0.05)
    result, loaded = train_model(model, data, output, cfg, resume=False, console=err)
    s = model_summary(loaded.model, arch=loaded.arch)
    best = max(result.history, key=lambda h: h["top1"])
    out.print(f"[bold]{s.arch}[/] on {data} {tuple(s.input_shape)}: {s.weight_params:,} weight parameters, "
              f"{s.macs:,} MACs per image")
    out.print(f"top-1 {result.final['top1']:.2f} % / top-5 {result.final['top5']:.2f} % after {epochs} epochs "
              f"(best top-1 {best['top1']:.2f} % at epoch {best['epoch']})")
    out.print(f"checkpoint: {output / 'checkpoint.pth'} (best: {output / 'best.pth'})")


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    err.print(f"[yellow]warning:[/] {message}", highlight=False)


def main() -> None:
    import warnings

    warnings.showwarning = _show_warning
    try:
        app()
    except EdgepruneError as exc:
        err.print(f"[bold red]error:[/] {exc.message}", highlight=False)
        if exc.hint:
            err.print(exc.hint, highlight=False)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
