"""``edgeprune search``: a latency budget in, the most accurate pruned model that measurably meets it out."""

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
    ModelArg,
    app,
    err,
    out,
)
from edgeprune.distillation import distill_config


@app.command()
def search(
    model: ModelArg,
    data: DataOpt = "digits",
    latency: Annotated[str, typer.Option(help="The budget: a fraction of the dense model's measured latency (0.6x) "
                                              "or a time (0.35ms, 350us).")] = "0.6x",
    output: Annotated[Path, typer.Option("--output", "-o", help="Search directory (resumable).")] = Path(
        "runs/search"),
    backend: Annotated[str, typer.Option(help="openvino | onnxruntime: the runtime measured on.")] = "openvino",
    device: Annotated[str, typer.Option(help="Device of the backend (CPU, GPU, MYRIAD, ...).")] = "CPU",
    batch: Annotated[int, typer.Option(help="Batch size the latency is for.")] = 1,
    threads: Annotated[int, typer.Option(help="Inference threads (CPU).")] = 1,
    precision: Annotated[str, typer.Option(help="f32 | f16: inference precision asked of the device.")] = "f32",
    width_steps: Annotated[int, typer.Option(help="Candidate widths per layer: fractions 1/N .. N/N of dense.")] = 8,
    align: Annotated[int, typer.Option(help="Candidate widths are multiples of this many channels (the device's "
                                            "SIMD channel block).")] = 8,
    min_fraction: Annotated[float, typer.Option(help="No layer narrower than this fraction of its width.")] = 0.25,
    calibration: Annotated[int, typer.Option(help="Whole networks measured to fit the latency model.")] = 6,
    loss_images: Annotated[int, typer.Option(
        min=1, help="Training images the loss of each width configuration the search considers is measured on.")
    ] = 512,
    candidates: Annotated[int, typer.Option(help="Candidates measured whole per round.")] = 3,
    finetune: Annotated[int, typer.Option(help="Candidates under budget that are fine-tuned (the uniform-width "
                                               "network among them when it meets the budget); the best wins.")] = 2,
    validation_share: Annotated[float, typer.Option(help="Share of the training images held out of fine-tuning; "
                                                         "the candidate with the best top-1 on them wins.")] = 0.1,
    retrain_epochs: Annotated[int, typer.Option(help="Fine-tuning epochs per candidate.")] = 1,
    lr: Annotated[float, typer.Option(help="Fine-tuning learning rate (cosine).")] = 0.01,
    batch_size: Annotated[int, typer.Option(help="Fine-tuning minibatch size.")] = 128,
    eval_limit: Annotated[int | None, typer.Option(help="Test images for the accuracies (default: all).")] = None,
    cache: Annotated[Path | None, typer.Option(help="Latency-table directory [default: $EDGEPRUNE_CACHE/latency "
                                                    "or ~/.cache/edgeprune/latency].")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the calibration networks and the fine-tuning.")] = 0,
    teacher: Annotated[str | None, typer.Option(
        "--teacher", help="Fine-tune with knowledge distillation from 'dense' (MODEL itself) or a checkpoint.")] = None,
    kd_temp: KdTempOpt = None,
    kd_distill_wt: KdDistillWtOpt = None,
    kd_student_wt: KdStudentWtOpt = None,
    kd_start_epoch: KdStartOpt = None,
    queue: Annotated[str | None, typer.Option(
        help="Measure through this agents' queue (redis://HOST:6379/0 or sqlite:///PATH): a consumer at the device "
             "(edgeprune agent consumer --queue URL) times every file [default: measured on this machine].")] = None,
    artifacts: Annotated[str | None, typer.Option(
        "--artifacts", "--storage",
        help="The artifact store the consumer at the device fetches the files from, as `agent consumer "
             "--artifacts` takes it (--storage is the same option).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as one JSON object.")] = False,
) -> None:
    """Find the most accurate pruned MODEL whose latency, measured on the target, meets --latency."""
    from edgeprune.budget_search.run import SearchSettings
    from edgeprune.budget_search.run import search as run_search
    from edgeprune.measurement.target import Target
    from edgeprune.training.loop import TrainConfig

    distill = distill_config(teacher, switch="--teacher", temperature=kd_temp, distill_wt=kd_distill_wt,
                             student_wt=kd_student_wt, start_epoch=kd_start_epoch)
    target = Target(backend=backend, device=device, batch=batch, threads=threads, precision=precision)
    settings = SearchSettings(
        latency=latency, target=target, steps=width_steps, align=align, min_fraction=min_fraction,
        calibration=calibration, loss_images=loss_images, candidates=candidates,
        finetune=finetune, validation_share=validation_share, eval_limit=eval_limit,
        train=TrainConfig(epochs=retrain_epochs, lr=lr, batch_size=batch_size, seed=seed, progress=False),
        distill=distill, cache_dir=str(cache) if cache else None, seed=seed, queue=queue, artifacts=artifacts)
    result = run_search(model, data, output, settings, console=err)
    if as_json:
        print(json.dumps(result.to_dict()))
        return
    best = result.best
    out.print(f"best: {best.measured_ms:.4g} ms measured, {best.ratio:.3f}x the dense network timed paired with it "
              f"(budget {result.budget_ms:.4g} ms, dense {result.dense.measured_ms:.4g} ms), "
              f"top-1 {best.top1_finetuned:.2f} after fine-tuning "
              f"(dense {result.dense_top1:.2f}, {best.top1_pruned:.2f} after pruning; "
              f"{best.top1_validation:.2f} on the held-out training images that picked it)", highlight=False)
    out.print(f"schedule {output / 'best' / 'schedule.yaml'}  model {output / 'best' / 'model.pth'}  "
              f"report {output / 'report.html'}", highlight=False)
