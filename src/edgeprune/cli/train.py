"""``edgeprune train`` and ``edgeprune eval``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from edgeprune.cli.app import (
    ArchOpt,
    DataOpt,
    KdDistillWtOpt,
    KdStartOpt,
    KdStudentWtOpt,
    KdTempOpt,
    ModelArg,
    ScheduleOpt,
    app,
    err,
    out,
)
from edgeprune.distillation import distill_config


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
        help="Pad-4 random crop + horizontal flip; random-resized crop + flip for data loaded with ?size=N "
             "(default: on for colour images, off for grey ones).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of every random stream (recorded in checkpoints).")] = 0,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda[:N].")] = "auto",
    channels_last: Annotated[bool, typer.Option(help="Use the channels_last memory format.")] = False,
    resume: Annotated[bool, typer.Option(help="Continue from OUTPUT's last checkpoint if there is one.")] = True,
    holdout: Annotated[int, typer.Option(min=0, help="Hold out N training images, evenly spaced over the split, "
                                                     "and validate on them instead of the test split (0: the "
                                                     "test split).")] = 0,
    schedule: ScheduleOpt = None,
    schedule_changed: Annotated[str, typer.Option(help="On resume, if --schedule differs from the checkpoint's: "
                                                       "refuse (list the changes) | continue (under the edited "
                                                       "schedule from the next epoch).")] = "refuse",
    arch: ArchOpt = None,
    kd_teacher: Annotated[str | None, typer.Option(
        "--kd-teacher", help="Knowledge distillation (Distiller's --kd-*): learn from this trained checkpoint's "
                             "outputs too, or 'dense' for the dense model the run's model was pruned from.")] = None,
    kd_temp: KdTempOpt = None,
    kd_distill_wt: KdDistillWtOpt = None,
    kd_student_wt: KdStudentWtOpt = None,
    kd_teacher_wt: Annotated[float | None, typer.Option("--kd-teacher-wt", "--kd-tw", help="Weight of the teacher's "
                                                        "loss against the labels; 0, the teacher is frozen "
                                                        "[default: 0].")] = None,
    kd_start_epoch: KdStartOpt = None,
) -> None:
    """Train or fine-tune MODEL on DATA, under a compression schedule if given, distilled if asked; exact resume."""
    from edgeprune.jobs.train import train_model
    from edgeprune.training.loop import TrainConfig

    distill = distill_config(kd_teacher, temperature=kd_temp, distill_wt=kd_distill_wt, student_wt=kd_student_wt,
                             teacher_wt=kd_teacher_wt, start_epoch=kd_start_epoch)
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer, momentum=momentum,
                      nesterov=nesterov, weight_decay=weight_decay, lr_schedule=lr_schedule, augment=augment,
                      seed=seed, device=device, channels_last=channels_last, holdout=holdout)
    result, _ = train_model(model, data, output, cfg, arch=arch, schedule=schedule, resume=resume, console=err,
                            schedule_changed=schedule_changed, distill=distill)
    f = result.final
    out.print(f"top1 {f.get('top1', 0):.2f}  top5 {f.get('top5', 0):.2f}  loss {f.get('loss', 0):.4f}  "
              f"-> {output / 'checkpoint.pth'}")


@app.command("eval")
def eval_cmd(
    model: ModelArg,
    data: DataOpt = "digits",
    split: Annotated[str, typer.Option(help="train | test.")] = "test",
    limit: Annotated[int | None, typer.Option(help="Evaluate only N images: the first N, or with --spread N spaced "
                                                   "evenly over the split.")] = None,
    spread: Annotated[bool, typer.Option("--spread", help="With --limit: take the N images evenly spaced over the "
                                                          "split (an image folder's first images are all of one "
                                                          "class).")] = False,
    batch_size: Annotated[int, typer.Option(help="Minibatch size.")] = 512,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda[:N].")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    arch: ArchOpt = None,
) -> None:
    """Top-1 / top-5 / loss of MODEL on DATA (with the checkpoint's normalisation)."""
    from edgeprune.jobs.train import evaluate_model

    if spread and limit is None:
        raise typer.BadParameter("--spread chooses which N images --limit N evaluates; give --limit too",
                                 param_hint="--spread")
    r = evaluate_model(model, data, split=split, arch=arch, batch_size=batch_size, device=device, limit=limit,
                       spread=spread)
    if as_json:
        print(json.dumps({**r.metrics, "images": r.images, "normalize": r.normalize}))
    else:
        out.print(f"top1 {r.metrics['top1']:.2f}  top5 {r.metrics['top5']:.2f}  loss {r.metrics['loss']:.4f}  "
                  f"({r.images} images)")
