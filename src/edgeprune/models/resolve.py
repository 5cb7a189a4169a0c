"""Turn a user's MODEL argument into a model: zoo name, ``module:factory`` or checkpoint file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from edgeprune.errors import CheckpointError, UnknownNameError
from edgeprune.models import MODELS, create_model
from edgeprune.models.checkpoint import Checkpoint, load_checkpoint, model_from_checkpoint

_CHECKPOINT_SUFFIXES = (".pth", ".pt", ".tar", ".ckpt", ".bin")


@dataclass
class LoadedModel:
    model: nn.Module
    arch: str
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    checkpoint: Checkpoint | None = None

    @property
    def normalize(self) -> dict[str, list[float]] | None:
        return self.checkpoint.normalize if self.checkpoint else None


def resolve_model(spec: str, *, arch: str | None = None, **arch_kwargs: Any) -> LoadedModel:
    """``spec`` is a checkpoint path, a ``package.module:factory`` path, or a zoo name.

    For a checkpoint, ``arch`` overrides (or supplies) the architecture it was made from;
    ``arch_kwargs`` are passed to the factory (e.g. ``num_classes``, ``in_channels``).
    """
    path = Path(spec)
    if path.is_file():
        ckpt = load_checkpoint(path)
        model = model_from_checkpoint(ckpt, arch, **arch_kwargs)
        return LoadedModel(model, arch or ckpt.arch or "?", {**ckpt.arch_kwargs, **arch_kwargs}, ckpt)
    if ":" in spec or spec in MODELS:
        return LoadedModel(create_model(spec, **arch_kwargs), spec, dict(arch_kwargs))
    if path.is_dir():
        raise CheckpointError(f"{spec!r} is a folder, not a checkpoint file.",
                              hint="Give the .pth file inside it (a training run keeps checkpoint.pth), or a zoo name.")
    if "/" in spec or spec.endswith(_CHECKPOINT_SUFFIXES):
        raise CheckpointError(f"Checkpoint {spec!r} does not exist.",
                              hint="Check the path, or give a zoo name (`edgeprune models`).")
    raise UnknownNameError("architecture", spec, MODELS,
                           hint="MODEL is a zoo name (`edgeprune models`), package.module:factory, or a checkpoint.")
