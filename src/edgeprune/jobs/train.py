"""The train and evaluate verbs: resolve model and data, check they fit, run.

One call from Python (``edgeprune.training``/``edgeprune.evaluate``), from the CLI, the demo and the sweep's
trial pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console

from edgeprune.analysis.run_report import RunReport
from edgeprune.data import BatchLoader, ImageDataset, evenly_spaced, hold_out, load_dataset
from edgeprune.errors import ConfigError
from edgeprune.jobs.evaluate import evaluate_exported
from edgeprune.jobs.inputs import load_model_for_data, normalization_for
from edgeprune.models.resolve import LoadedModel
from edgeprune.schedule import CompressionScheduler, load_schedule
from edgeprune.schedule.resume import check_resumed_schedule
from edgeprune.training.distill import (
    Distillation,
    DistillConfig,
    config_from_record,
    cost_line,
    load_teacher,
    recorded_distillation,
    total_cost,
)
from edgeprune.training.hooks import TrainingHooks
from edgeprune.training.loop import LAST, TrainConfig, Trainer, TrainResult, resolve_device
from edgeprune.training.metrics import evaluate
from edgeprune.training.seeding import seed_everything


@dataclass
class EvalResult:
    metrics: dict[str, float]
    images: int
    normalize: dict[str, list[float]]


def train_model(
    spec: str, data: str, out_dir: str | Path, config: TrainConfig, *, arch: str | None = None,
    schedule: str | Path | None = None, hooks: list[TrainingHooks] | None = None, resume: bool = True,
    console: Console | None = None, schedule_changed: str = "refuse", distill: DistillConfig | None = None,
) -> tuple[TrainResult, LoadedModel]:
    """Train (or fine-tune) MODEL on DATA into ``out_dir``, under a compression ``schedule`` if given,
    learning from a teacher too if ``distill`` is given.

    Resumes from ``out_dir`` when it holds a checkpoint (schedule and distillation state included; a
    distilled run resumes distilled from the same teacher without being told again). A schedule file edited
    since the checkpoint is never ignored: ``schedule_changed`` is ``refuse`` (a ScheduleChangedError
    listing the changes) or ``continue`` (under the edited schedule from the next epoch, changes printed).
    """
    spec_schedule = load_schedule(schedule) if schedule is not None else None  # bad YAML fails first
    train_data = load_dataset(data, "train")
    seed_everything(config.seed)  # a fresh model's initial weights come from the recorded seed too
    loaded = load_model_for_data(spec, train_data, arch)
    normalize = normalization_for(loaded, train_data)  # of the whole split, as the model was first trained
    if config.holdout:
        train_data, val_data = hold_out(train_data, config.holdout)
    else:
        val_data = load_dataset(data, "test")
    trainer = Trainer(
        loaded.model, train_data, val_data, config, out_dir, arch=loaded.arch, arch_kwargs=loaded.arch_kwargs,
        normalize=normalize, hooks=hooks or [], console=console,
        provenance={"model": spec, "data": str(data), "schedule": str(schedule) if schedule else None,
                    "parent": loaded.checkpoint.path if loaded.checkpoint else None},
    )
    report = scheduler = None
    if spec_schedule is not None:
        scheduler = CompressionScheduler(trainer.model, spec_schedule, trainer.optimizer, batches=trainer.train_loader,
                                         on_change=schedule_changed)
        trainer.add_hook(scheduler)
        report = RunReport(trainer, scheduler)  # after the scheduler: it measures right after pruning
        trainer.add_hook(report)
    distillation = _distillation(spec, trainer, train_data, out_dir, distill, resume)
    if resume and trainer.resume():
        notices = check_resumed_schedule(trainer.resumed_hook_states, scheduler, schedule_changed,
                                         trainer.start_epoch, str(out_dir))
        for line in [f"resuming {out_dir} after epoch {trainer.start_epoch - 1}", *notices]:
            (console or trainer.console).print(line, markup=False, highlight=False, soft_wrap=True)
    elif report is not None:
        report.measure_start()
    result = trainer.fit()
    if report is not None:
        report.write()
    if distillation is not None and (cost := total_cost(distillation.cost)):
        trainer.console.print(cost_line(cost, f"distillation over {cost['epochs']} epochs"), highlight=False)
    return result, loaded


def _distillation(spec: str, trainer: Trainer, train_data: ImageDataset, out_dir: str | Path,
                  requested: DistillConfig | None, resume: bool) -> Distillation | None:
    """The distillation hook of this run, the last hook as Distiller orders it; a resumed run keeps its own."""
    recorded = recorded_distillation(Path(out_dir) / LAST) if resume else None
    if requested is None and recorded is not None:
        requested = config_from_record(recorded)
    elif requested is not None and resume and recorded is None and (Path(out_dir) / LAST).is_file():
        raise ConfigError(f"{out_dir} holds a run trained without distillation; it cannot resume with a teacher.",
                          hint="Start the distilled run in another output directory (or pass --no-resume).")
    if requested is None:
        return None
    teacher = load_teacher(requested.teacher, spec, train_data, trainer.normalize, trainer.device)
    if trainer.cfg.channels_last:
        teacher.model.to(memory_format=torch.channels_last)
    hook = Distillation(teacher, requested, console=trainer.console)
    if recorded is not None:
        hook.check_resumes(recorded)
    trainer.add_hook(hook)
    trainer.provenance["distillation"] = hook.describe()
    return hook


def evaluate_model(
    spec: str, data: str, *, split: str = "test", arch: str | None = None, batch_size: int = 512,
    device: str = "auto", limit: int | None = None, spread: bool = False,
) -> EvalResult:
    """Top-1/top-5/loss of MODEL on a split of DATA, with the checkpoint's normalisation.

    ``limit`` evaluates the first ``limit`` images, or with ``spread`` that many spaced evenly over the split
    (an image folder is sorted by class, so its first images are all of one class).

    An exported model (.onnx, OpenVINO .xml) runs in its runtime, normalised as its metadata says.
    """
    if Path(spec).suffix.lower() in (".onnx", ".xml"):
        return EvalResult(*evaluate_exported(spec, data, split=split, batch_size=batch_size, limit=limit))
    test_data = load_dataset(data, split)
    if limit:
        test_data = evenly_spaced(test_data, limit) if spread else test_data.subset(limit)
    loaded = load_model_for_data(spec, test_data, arch)
    normalize = loaded.normalize or normalization_for(loaded, load_dataset(data, "train"))
    loader = BatchLoader(test_data, batch_size, shuffle=False, augment=False, mean=normalize["mean"],
                         std=normalize["std"])
    dev = resolve_device(device)
    metrics = evaluate(loaded.model.to(dev), loader, dev)
    return EvalResult(metrics, len(test_data), {k: list(v) for k, v in normalize.items()})
