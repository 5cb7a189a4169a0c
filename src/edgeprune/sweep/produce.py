"""The PRODUCE half of a pipeline trial: render the schedule, prune + thin, retrain, export a parity-checked ONNX.

A producer agent (:mod:`edgeprune.agents.producer`) runs it in its own process, so a crash or an
out-of-memory kill ends one producer and its trial, never the sweep. The result is a
:class:`~edgeprune.sweep.job.TrialJob` (``job.json`` in the trial directory) for the MEASURE half, which
may run on another machine. ``hooks`` see every retraining epoch's validation metrics: the producer records
them with the trial as they come and stops a hopeless trial there (hyperband).

Pruning is one-shot: every policy of the rendered schedule that fires at epoch 0 is applied, all zeroed
filters/channels are removed (thinning), and the thin network is fine-tuned for ``retrain.epochs`` — or,
with ``epochs: 0``, exported as it is, which measures what pruning alone costs.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from pathlib import Path

import optuna
import torch
from rich.console import Console

from edgeprune.fileio import write_text
from edgeprune.jobs.export import export_model
from edgeprune.jobs.prune import prune_model
from edgeprune.jobs.train import evaluate_model, train_model
from edgeprune.sweep.engine import AskedTrial, SweepStudy
from edgeprune.sweep.hyperband import metric_series
from edgeprune.sweep.job import JOB_FILE, ArtifactFormat, TrialJob, TrialRequest, sha256_file
from edgeprune.sweep.prepare import train_config
from edgeprune.sweep.template import render
from edgeprune.training.hooks import TrainingHooks


class EpochRecorder(TrainingHooks):
    """Records each retraining epoch's validation metrics with the trial, and stops it if hyperband says so."""

    def __init__(self, study: SweepStudy, asked: AskedTrial) -> None:
        self.study, self.asked = study, asked
        self.rows: list[dict[str, float]] = []

    def on_epoch_end(self, epoch: int, optimizer: torch.optim.Optimizer, metrics: dict[str, float]) -> None:
        self.rows.append({"epoch": float(epoch), **{k: float(v) for k, v in metrics.items()}})
        m = self.study.cfg.metric
        self.study.report_history(self.asked, self.rows, metric_series(self.rows, m.name) if m else [])
        reason = self.study.hyperband_stop(self.rows)
        if reason is not None:
            raise optuna.TrialPruned(reason)


def produce(request: TrialRequest, hooks: Sequence[TrainingHooks] = ()) -> TrialJob:
    """Run the PRODUCE half for ``request``; writes everything into ``request.out_dir``."""
    torch.set_num_threads(request.threads)
    out = Path(request.out_dir)
    schedule = out / "schedule.yaml"
    text, _ = render(request.template, request.values, str(schedule), label=f"trial {request.trial_number}")
    write_text(schedule, text)
    pruned = prune_model(request.model, schedule, out / "pruned.pth", thin=True, data=request.data,
                         seed=request.seed)
    final = evaluate_model(str(pruned.out), request.data).metrics
    top1_pruned, history, checkpoint = final["top1"], [], pruned.out
    r = request.retrain
    if r.epochs > 0:
        result, _ = train_model(str(pruned.out), request.data, out / "retrain", train_config(r, request.seed),
                                hooks=list(hooks), resume=False, console=Console(stderr=True),
                                distill=r.distill())  # dense: request.model
        final, history = result.final, result.history
        checkpoint = out / "retrain" / "checkpoint.pth"  # the last epoch, not the best on the test split
    summary = pruned.after  # thinned: retraining keeps the shapes
    e = request.export
    exported = export_model(str(checkpoint), out / "model.onnx", opset=e.opset, batch=request.benchmark.batch,
                            data=request.data, exporter=e.exporter, samples=e.parity_images)
    metrics = {"top1": final["top1"], "top5": final["top5"], "loss": final["loss"], "top1_pruned": top1_pruned,
               "macs": float(summary.macs), "weight_params": float(summary.weight_params)}
    job = TrialJob(
        study_name=request.study_name, trial_number=request.trial_number, values=request.values,
        artifact=str(exported.onnx.resolve()), artifact_sha256=sha256_file(exported.onnx),
        checkpoint=str(Path(checkpoint).resolve()), schedule=str(schedule.resolve()),
        input_shape=list(summary.input_shape), metrics=metrics,
        history=[{k: float(v) for k, v in h.items()} for h in history], benchmark=request.benchmark,
        host=socket.gethostname(), artifact_format=ArtifactFormat(opset=exported.opset, exporter=e.exporter),
    )
    job.write(out / JOB_FILE)
    return job
