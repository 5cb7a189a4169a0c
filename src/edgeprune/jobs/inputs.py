"""Model + data resolution shared by every verb: a zoo name built for the data, a checkpoint checked against it."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from edgeprune.data import ImageDataset, channel_stats
from edgeprune.errors import ConfigError
from edgeprune.models import MODELS
from edgeprune.models.resolve import LoadedModel, resolve_model


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
