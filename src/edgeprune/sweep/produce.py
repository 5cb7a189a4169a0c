"""The PRODUCE half of a pipeline trial: render the schedule, prune + thin, retrain, export a parity-checked ONNX.

Runs as its own process (``python -m edgeprune.sweep.produce REQUEST.json``), like any trial program: a
crash, an out-of-memory kill or a hyperband stop ends one trial, never the sweep, and the same entry
point serves a remote producer. Retraining reports every epoch's validation metrics through
:func:`edgeprune.sweep.report`, so the sweep can stop a hopeless trial early. The result is a
:class:`~edgeprune.sweep.job.TrialJob` (``job.json`` in the trial directory) for the MEASURE half.

Pruning is one-shot: every policy of the rendered schedule that fires at epoch 0 is applied, all zeroed
filters/channels are removed (thinning), and the thin network is fine-tuned for ``retrain.epochs``.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from pathlib import Path

import torch
from rich.console import Console

from edgeprune.errors import EdgepruneError
from edgeprune.fileio import write_text
from edgeprune.sweep.channel import report
from edgeprune.sweep.job import TrialJob, TrialRequest, sha256_file
from edgeprune.sweep.template import render
from edgeprune.train.hooks import TrainingHooks

JOB_FILE = "job.json"


class EpochReporter(TrainingHooks):
    """Sends each epoch's validation metrics to the sweep (hyperband and the trackers read them live)."""

    def on_epoch_end(self, epoch: int, optimizer: torch.optim.Optimizer, metrics: dict[str, float]) -> None:
        report(step=epoch, **{k: float(v) for k, v in metrics.items()})


def produce(request: TrialRequest) -> TrialJob:
    """Run the PRODUCE half for ``request``; writes everything into ``request.out_dir``."""
    from edgeprune.analysis.summary import model_summary
    from edgeprune.export.job import export_model
    from edgeprune.schedule.oneshot import prune_model
    from edgeprune.train.loop import TrainConfig
    from edgeprune.train.run import evaluate_model, train_model

    torch.set_num_threads(request.threads)
    out = Path(request.out_dir)
    schedule = out / "schedule.yaml"
    text, _ = render(request.template, request.values, str(schedule), label=f"trial {request.trial_number}")
    write_text(schedule, text)
    pruned = prune_model(request.model, schedule, out / "pruned.pth", thin=True, data=request.data,
                         seed=request.seed)
    top1_pruned = evaluate_model(str(pruned.out), request.data).metrics["top1"]
    report(top1_pruned=top1_pruned)
    r = request.retrain
    cfg = TrainConfig(epochs=r.epochs, batch_size=r.batch_size, lr=r.lr, optimizer=r.optimizer, momentum=r.momentum,
                      weight_decay=r.weight_decay, lr_schedule=r.lr_schedule, seed=request.seed, progress=False)
    result, loaded = train_model(str(pruned.out), request.data, out / "retrain", cfg, hooks=[EpochReporter()],
                                 resume=False, console=Console(stderr=True))
    checkpoint = out / "retrain" / "checkpoint.pth"  # the last epoch, not the best on the test split
    summary = model_summary(loaded.model, arch=loaded.arch)
    e = request.export
    exported = export_model(str(checkpoint), out / "model.onnx", opset=e.opset, batch=request.benchmark.batch,
                            data=request.data, exporter=e.exporter, samples=e.parity_images)
    metrics = {"top1": result.final["top1"], "top5": result.final["top5"], "loss": result.final["loss"],
               "top1_pruned": top1_pruned, "macs": float(summary.macs), "weight_params": float(summary.weight_params)}
    job = TrialJob(
        study_name=request.study_name, trial_number=request.trial_number, values=request.values,
        artifact=str(exported.onnx.resolve()), artifact_sha256=sha256_file(exported.onnx),
        checkpoint=str(checkpoint.resolve()), schedule=str(schedule.resolve()), input_shape=list(summary.input_shape),
        metrics=metrics, history=[{k: float(v) for k, v in h.items()} for h in result.history],
        benchmark=request.benchmark, host=socket.gethostname(),
    )
    job.write(out / JOB_FILE)
    return job


def exit_with_parent() -> None:
    """Stop when the runner that started us dies (SIGKILL leaves no chance to stop us), not train for nobody."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(3)

    threading.Thread(target=watch, daemon=True, name="edgeprune-parent-watch").start()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    exit_with_parent()
    if len(args) != 1:
        print("usage: python -m edgeprune.sweep.produce REQUEST.json", file=sys.stderr)
        return 2
    try:
        produce(TrialRequest.read(args[0]))
    except EdgepruneError as exc:
        print(f"error: {exc.message}" + (f"\n{exc.hint}" if exc.hint else ""), file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
