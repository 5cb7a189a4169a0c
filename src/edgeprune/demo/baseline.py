"""Phase 1: the dense baseline every later phase prunes — trained here from a zoo name, or a given checkpoint.

Why train into ``baseline/`` with resume on: the trainer checkpoints every epoch, so a rerun after Ctrl-C
continues the epochs and a rerun after a finished training reuses it for the cost of loading it. The sweep
prunes the *last* epoch's checkpoint, not ``best.pth``, which was picked on the very test split the trials are
scored on.

A checkpoint given as MODEL is the baseline as it is (no training); it is checked against the data first, so
a model for other classes or input channels fails here, in words, not inside a trial.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from edgeprune.data import load_dataset
from edgeprune.demo.rundir import RunDir
from edgeprune.demo.settings import DemoSettings
from edgeprune.errors import ConfigError
from edgeprune.jobs.inputs import load_model_for_data
from edgeprune.jobs.train import evaluate_model, train_model
from edgeprune.models.summary import model_summary
from edgeprune.training.loop import TrainConfig


@dataclass(frozen=True)
class Baseline:
    checkpoint: Path
    arch: str
    top1: float
    top5: float
    macs: int
    weight_params: int
    input_shape: tuple[int, ...]
    epochs: int | None  # None: a given checkpoint, not trained here


def is_checkpoint(model: str) -> bool:
    return Path(model).is_file()


def check_inputs(model: str, data: str) -> None:
    """Fail on a wrong MODEL or DATA (missing, unknown, other classes or channels) before anything is written."""
    test = load_dataset(data, "test")
    shape = tuple(getattr(load_model_for_data(model, test).model, "input_shape", None) or test.input_shape)
    if shape != tuple(test.input_shape):
        raise ConfigError(f"The checkpoint {model} takes inputs of shape {shape} (channels, height, width), but the "
                          f"images of {data!r} are {tuple(test.input_shape)}.",
                          hint="Give the data the checkpoint was trained on, or a zoo name so the model is built "
                               "for this data.")


def prepare_baseline(rd: RunDir, model: str, data: str, settings: DemoSettings, console: Console) -> Baseline:
    """Train MODEL on DATA into ``rd.baseline_dir`` (resuming), or take the checkpoint MODEL as it is."""
    if is_checkpoint(model):
        checkpoint = Path(model).resolve()
        loaded = load_model_for_data(str(checkpoint), load_dataset(data, "test"))  # classes/channels checked
        metrics = evaluate_model(str(checkpoint), data).metrics
        epochs = None
        console.print(f"baseline: the given checkpoint {checkpoint} (not retrained)")
    else:
        cfg = TrainConfig(epochs=settings.epochs, batch_size=settings.batch_size, lr=settings.lr, seed=settings.seed)
        console.print(f"baseline: training {model} on {data} for {settings.epochs} epochs -> {rd.baseline_dir}")
        result, loaded = train_model(model, data, rd.baseline_dir, cfg, resume=True, console=console)
        checkpoint, metrics, epochs = rd.baseline_dir / "checkpoint.pth", result.final, settings.epochs
    summary = model_summary(loaded.model, arch=loaded.arch)
    return Baseline(checkpoint, summary.arch, float(metrics["top1"]), float(metrics["top5"]), summary.macs,
                    summary.weight_params, tuple(summary.input_shape), epochs)
