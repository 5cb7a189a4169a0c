"""The train / evaluate jobs behind the CLI: resolve model and data, check they fit, run.

Kept apart from ``cli.py`` so the same jobs are one call from Python, from the demo and from
the sweep's trial pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console
from torch import nn

from edgeprune.data import BatchLoader, ImageDataset, channel_stats, load_dataset
from edgeprune.errors import ConfigError
from edgeprune.models import MODELS
from edgeprune.models.resolve import LoadedModel, resolve_model
from edgeprune.schedule import CompressionScheduler, load_schedule
from edgeprune.train.distill import (
    Distillation,
    DistillConfig,
    config_from_record,
    cost_line,
    load_teacher,
    recorded_distillation,
    total_cost,
)
from edgeprune.train.hooks import TrainingHooks
from edgeprune.train.loop import LAST, TrainConfig, Trainer, TrainResult, resolve_device
from edgeprune.train.metrics import evaluate
from edgeprune.train.seeding import seed_everything


@dataclass
class EvalResult:
    metrics: dict[str, float]
    images: int
    normalize: dict[str, list[float]]


def load_model_for_data(spec: str, data: ImageDataset, arch: str | None = None) -> LoadedModel:
    """Resolve MODEL; a zoo model is built for the data's channels and classes, a checkpoint is checked."""
    if Path(spec).is_file():
        loaded = resolve_model(spec, arch=arch)
    elif spec in MODELS:
        loaded = resolve_model(spec, num_classes=data.num_classes, in_channels=data.input_shape[0])
        loaded.model.input_shape = data.input_shape  # summaries and exports use the data's real size
    else:
        loaded = resolve_model(spec)
    check_fits(loaded.model, data, spec)
    return loaded


def check_fits(model: nn.Module, data: ImageDataset, spec: str) -> None:
    """Fail early, in words, when the model's output classes do not match the data's."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if linears and linears[-1].out_features != data.num_classes:
        raise ConfigError(
            f"Model {spec!r} predicts {linears[-1].out_features} classes but data {data.source!r} "
            f"({data.split}) has {data.num_classes}.",
            hint="Use a checkpoint trained on this data, or a zoo name so the model is built for it.",
        )


def normalization_for(loaded: LoadedModel, train_data: ImageDataset) -> dict[str, list[float]]:
    """The checkpoint's recorded normalisation, else the training split's channel statistics."""
    if loaded.normalize:
        return {"mean": list(loaded.normalize["mean"]), "std": list(loaded.normalize["std"])}
    mean, std = channel_stats(train_data)
    return {"mean": list(mean), "std": list(std)}


def train_model(
    spec: str, data: str, out_dir: str | Path, config: TrainConfig, *, arch: str | None = None,
    schedule: str | Path | None = None, hooks: list[TrainingHooks] | None = None, resume: bool = True,
    console: Console | None = None, distill: DistillConfig | None = None,
) -> tuple[TrainResult, LoadedModel]:
    """Train (or fine-tune) MODEL on DATA into ``out_dir``, under a compression ``schedule`` if given,
    learning from a teacher too if ``distill`` is given.

    Resumes from ``out_dir`` when it holds a checkpoint (schedule and distillation state included; a
    distilled run resumes distilled from the same teacher without being told again).
    """
    spec_schedule = load_schedule(schedule) if schedule is not None else None  # bad YAML fails first
    train_data = load_dataset(data, "train")
    val_data = load_dataset(data, "test")
    seed_everything(config.seed)  # a fresh model's initial weights come from the recorded seed too
    loaded = load_model_for_data(spec, train_data, arch)
    trainer = Trainer(
        loaded.model, train_data, val_data, config, out_dir, arch=loaded.arch, arch_kwargs=loaded.arch_kwargs,
        normalize=normalization_for(loaded, train_data), hooks=hooks or [], console=console,
        provenance={"model": spec, "data": str(data), "schedule": str(schedule) if schedule else None,
                    "parent": loaded.checkpoint.path if loaded.checkpoint else None},
    )
    report = None
    if spec_schedule is not None:
        from edgeprune.report.run_report import RunReport  # matplotlib only when there is a report to draw

        scheduler = CompressionScheduler(trainer.model, spec_schedule, trainer.optimizer, batches=trainer.train_loader)
        trainer.add_hook(scheduler)
        report = RunReport(trainer, scheduler)  # after the scheduler: it measures right after pruning
        trainer.add_hook(report)
    distillation = _distillation(spec, trainer, train_data, out_dir, distill, resume)
    if resume and trainer.resume():
        (console or trainer.console).print(f"resuming {out_dir} after epoch {trainer.start_epoch - 1}")
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
    device: str = "auto", limit: int | None = None,
) -> EvalResult:
    """Top-1/top-5/loss of MODEL on a split of DATA, with the checkpoint's normalisation.

    An exported model (.onnx, OpenVINO .xml) runs in its runtime, normalised as its metadata says.
    """
    if Path(spec).suffix.lower() in (".onnx", ".xml"):
        from edgeprune.export.evaluate import evaluate_exported

        return EvalResult(*evaluate_exported(spec, data, split=split, batch_size=batch_size, limit=limit))
    test_data = load_dataset(data, split)
    if limit:
        test_data = test_data.subset(limit)
    loaded = load_model_for_data(spec, test_data, arch)
    normalize = loaded.normalize or normalization_for(loaded, load_dataset(data, "train"))
    loader = BatchLoader(test_data, batch_size, shuffle=False, augment=False, mean=normalize["mean"],
                         std=normalize["std"])
    dev = resolve_device(device)
    metrics = evaluate(loaded.model.to(dev), loader, dev)
    return EvalResult(metrics, len(test_data), {k: list(v) for k, v in normalize.items()})
