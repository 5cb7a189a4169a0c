"""What a pipeline sweep prepares once, before any trial: the dense base model, a preflight, the dense reference.

* :func:`prepare_base` — the checkpoint every trial prunes: the given one, or a zoo model built for the
  data and pre-trained once per study (resumable).
* :func:`preflight` — the schedule template rendered with representative values and built on that model,
  so a typo fails once, now, instead of in every trial.
* :func:`dense_reference` — the dense model's accuracy and size, and its ONNX file. Its *latency* is
  measured where the trials' latencies are (the consumer, on the target device, with the same settings),
  so speed-ups compare like with like: see :mod:`edgeprune.agents.baseline`.
"""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from edgeprune.data import load_dataset
from edgeprune.fileio import write_json
from edgeprune.jobs.export import export_model
from edgeprune.jobs.inputs import load_model_for_data, normalization_for
from edgeprune.jobs.train import evaluate_model, train_model
from edgeprune.models.checkpoint import save_checkpoint
from edgeprune.models.summary import model_summary
from edgeprune.schedule.timeline import timeline
from edgeprune.sweep.config import SweepConfig, TrainSettings
from edgeprune.sweep.template import TemplateError, render
from edgeprune.training.loop import TrainConfig
from edgeprune.training.seeding import seed_everything


def train_config(settings: TrainSettings, seed: int) -> TrainConfig:
    """The trainer's own config from a sweep's ``pretrain:``/``retrain:`` section: every field of the section is a
    field of :class:`~edgeprune.training.loop.TrainConfig` under the same name (tested), so nothing is copied by
    hand and nothing a sweep file says is dropped; the seed is the study's or the trial's."""
    return TrainConfig(**{name: getattr(settings, name) for name in TrainSettings.model_fields}, seed=seed,
                       progress=False)


def prepare_base(cfg: SweepConfig, run_dir: Path, console: Console) -> str:
    """The dense checkpoint every trial prunes: the given one, or a zoo model built for the data and pre-trained
    once (``pretrain.epochs``, resumable; 0 keeps its seeded initial weights). Not safe to call twice at once on
    one ``run_dir``: callers that may (producers) take turns under a lock."""

    assert cfg.model is not None
    p, out = cfg.pretrain, run_dir / "base" / "checkpoint.pth"
    if Path(cfg.model).is_file():
        return cfg.model
    if p.epochs == 0:
        if not out.is_file():
            train = load_dataset(cfg.data, "train")
            seed_everything(cfg.seed)
            loaded = load_model_for_data(cfg.model, train)
            save_checkpoint(out, loaded.model, arch=loaded.arch, arch_kwargs=loaded.arch_kwargs, seed=cfg.seed,
                            dataset={"name": train.name, "source": train.source, "num_classes": train.num_classes,
                                     "classes": list(train.classes), "input_shape": list(train.input_shape)},
                            normalize=normalization_for(loaded, train), provenance={"model": cfg.model})
        return str(out)
    done = out.parent / "pretrained.json"  # written once training finished: later callers take the checkpoint
    finished = {"model": cfg.model, "data": cfg.data, "pretrain": p.model_dump(mode="json"), "seed": cfg.seed}
    if out.is_file() and done.is_file() and json.loads(done.read_text(encoding="utf-8")) == finished:
        return str(out)
    console.print(f"pre-training {cfg.model} on {cfg.data} for {p.epochs} epochs -> {out.parent}")
    train_model(cfg.model, cfg.data, out.parent, train_config(p, cfg.seed), resume=True, console=console)
    write_json(done, finished)
    return str(out)


def preflight(cfg: SweepConfig, base: str) -> None:
    """Render the template with representative values and build it on the model: a typo fails now, not N times."""
    assert cfg.template_text is not None and cfg.schedule_template is not None
    _, spec = render(cfg.template_text, cfg.space.preview(), cfg.schedule_template, label="the preview values")
    model = load_model_for_data(base, load_dataset(cfg.data, "train")).model
    for row in timeline(spec, model):
        if row.epoch > 0 and row.kind != "lr_scheduler":
            line, column = spec.source.locate(("policies", row.policy)) or (None, None)
            raise TemplateError(
                f"policies[{row.policy}] ({row.instance}) fires at epoch {row.epoch}; a sweep prunes one-shot at "
                "epoch 0, thins, and fine-tunes for retrain.epochs", file=cfg.schedule_template, line=line,
                column=column, hint="Let pruning, regularization and thinning policies fire at 'epochs: [0]' only.")


def dense_reference(cfg: SweepConfig, model: str, out_dir: Path) -> tuple[dict[str, float], Path]:
    """The dense model's top-1/top-5/loss, MACs and weights, and its parity-checked ONNX file (for its latency)."""
    scores = evaluate_model(model, cfg.data).metrics
    loaded = load_model_for_data(model, load_dataset(cfg.data, "test"))
    summary = model_summary(loaded.model, arch=loaded.arch)
    exported = export_model(model, out_dir / "model.onnx", batch=cfg.benchmark.batch, data=cfg.data,
                            exporter=cfg.export.exporter, opset=cfg.export.opset, samples=cfg.export.parity_images)
    metrics = {**{k: float(v) for k, v in scores.items()}, "macs": float(summary.macs),
               "weight_params": float(summary.weight_params)}
    return metrics, exported.onnx
