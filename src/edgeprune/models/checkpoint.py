"""Checkpoint I/O: edgeprune's own format, plain state_dicts, and Distiller checkpoints.

edgeprune's format is a dict of tensors and plain values only, so it loads with
``torch.load(weights_only=True)``. It records everything needed to rebuild and to trust a model:
architecture name + constructor args + per-layer widths (a thinned model rebuilds from them),
state_dict, optimizer / LR / compression-schedule state, epoch, RNG state, metrics, dataset and
normalisation, seed and provenance.

Distiller checkpoints (``module.``-prefixed names, ``compression_sched``, ``thinning_recipes``)
load through :mod:`edgeprune.models.safe_load`; a thinned one gets its thin shapes by resizing
the dense architecture to the tensor shapes, which is what replaying its recipes would produce.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgeprune.errors import CheckpointError, ConfigError
from edgeprune.fileio import atomic_path
from edgeprune.models import MODELS, create_model
from edgeprune.models.naming import normalize_state_dict_keys
from edgeprune.models.safe_load import OpaqueObject, safe_torch_load
from edgeprune.models.widths import Widths, apply_widths, layer_widths, widths_from_state_dict
from edgeprune.version import __version__

FORMAT = "edgeprune.checkpoint"
FORMAT_VERSION = 1
# Architectures edgeprune once saved under another name: old name -> (new name, a key only the old network had).
# edgeprune's first ``vgg16_cifar`` had BatchNorm; Distiller's (and now edgeprune's) has none.
RENAMED_ARCHS = {"vgg16_cifar": ("vgg16_bn_cifar", "features.1.running_mean")}
# Distiller's CIFAR-10 loader normalised with mean = std = 0.5 per channel and did not store it.
DISTILLER_NORMALIZE = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}


@dataclass
class Checkpoint:
    """What a checkpoint file holds, whatever format it came in (names canonical, no ``module.``)."""

    kind: str  # "edgeprune" | "distiller" | "state_dict" (dict with a state_dict) | "plain"
    path: str
    state_dict: dict[str, torch.Tensor]
    arch: str | None = None
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    widths: Widths | None = None
    epoch: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    normalize: dict[str, list[float]] | None = None
    optimizer: dict[str, Any] | None = None
    lr_scheduler: dict[str, Any] | None = None
    schedule: dict[str, Any] | None = None
    rng: dict[str, Any] | None = None
    seed: int | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    *,
    arch: str,
    arch_kwargs: dict[str, Any] | None = None,
    epoch: int | None = None,
    metrics: dict[str, float] | None = None,
    dataset: dict[str, Any] | None = None,
    normalize: dict[str, list[float]] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    lr_scheduler: Any = None,
    schedule: dict[str, Any] | None = None,
    rng: dict[str, Any] | None = None,
    seed: int | None = None,
    provenance: dict[str, Any] | None = None,
) -> Path:
    """Write an edgeprune checkpoint atomically (temp file + rename)."""
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arch": arch,
        "arch_kwargs": dict(arch_kwargs or {}),
        "widths": layer_widths(model),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "epoch": epoch,
        "metrics": dict(metrics or {}),
        "dataset": dict(dataset or {}),
        "normalize": normalize,
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "lr_scheduler": lr_scheduler.state_dict() if lr_scheduler is not None else None,
        "schedule": schedule,
        "rng": rng,
        "seed": seed,
        "provenance": {
            "edgeprune": __version__,
            "torch": str(torch.__version__),
            "python": platform.python_version(),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            **(provenance or {}),
        },
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read any supported checkpoint file safely (no code from the file is executed)."""
    raw = safe_torch_load(path)
    path = str(path)
    if not isinstance(raw, dict):
        raise CheckpointError(f"Checkpoint {path!r} holds a {type(raw).__name__}, not a dict of tensors.",
                              hint="Save checkpoints with torch.save(model.state_dict(), path) or edgeprune.")
    if raw.get("format") == FORMAT:
        return _from_edgeprune(path, raw)
    if "state_dict" in raw and isinstance(raw["state_dict"], dict):
        if any(k in raw for k in ("compression_sched", "thinning_recipes", "best_top1", "optimizer_type")):
            return _from_distiller(path, raw)
        return _from_wrapped_state_dict(path, raw)
    if raw and all(isinstance(v, torch.Tensor) for v in raw.values()):
        return Checkpoint(kind="plain", path=path, state_dict=normalize_state_dict_keys(raw))
    raise CheckpointError(
        f"Checkpoint {path!r} is a dict with keys {sorted(map(str, raw))[:8]} but no 'state_dict'.",
        hint="Expected an edgeprune checkpoint, a Distiller checkpoint, {'state_dict': ...} or a bare state_dict.",
    )


class CheckpointNotice(UserWarning):
    """Something about a checkpoint the user should know, though it loaded (e.g. a renamed architecture)."""


def _current_arch(path: str, arch: str, state_dict: dict[str, torch.Tensor]) -> str:
    """The architecture's name today, with a one-line notice when the checkpoint used a former name."""
    new, marker = RENAMED_ARCHS.get(arch, (arch, ""))
    if new != arch and marker in state_dict:
        warnings.warn(f"{path}: architecture {arch!r} (with BatchNorm) is called {new!r} now; loading it as that.",
                      CheckpointNotice, stacklevel=3)
        return new
    return arch


def _from_edgeprune(path: str, raw: dict[str, Any]) -> Checkpoint:
    return Checkpoint(
        kind="edgeprune", path=path, state_dict=raw["state_dict"],
        arch=_current_arch(path, raw["arch"], raw["state_dict"]),
        arch_kwargs=raw.get("arch_kwargs") or {}, widths=raw.get("widths"), epoch=raw.get("epoch"),
        metrics=raw.get("metrics") or {}, dataset=raw.get("dataset") or {}, normalize=raw.get("normalize"),
        optimizer=raw.get("optimizer"), lr_scheduler=raw.get("lr_scheduler"), schedule=raw.get("schedule"),
        rng=raw.get("rng"), seed=raw.get("seed"), provenance=raw.get("provenance") or {},
    )


def _from_distiller(path: str, raw: dict[str, Any]) -> Checkpoint:
    recipes = raw.get("thinning_recipes") or []
    metrics = {"top1": float(raw["best_top1"])} if isinstance(raw.get("best_top1"), (int, float)) else {}
    optimizer_type = raw.get("optimizer_type")
    extra = {
        "thinning_recipes": len(recipes),
        "optimizer_type": getattr(optimizer_type, "qualname", optimizer_type) if optimizer_type else None,
        "compression_sched": sorted(raw["compression_sched"]) if isinstance(raw.get("compression_sched"), dict)
        else None,
    }
    return Checkpoint(
        kind="distiller", path=path, state_dict=normalize_state_dict_keys(raw["state_dict"]),
        arch=raw.get("arch"), epoch=raw.get("epoch"), metrics=metrics,
        dataset={"name": raw.get("dataset", "cifar10")}, normalize=DISTILLER_NORMALIZE,
        optimizer=_plain(raw.get("optimizer") or raw.get("optimizer_state_dict")),
        provenance={"source": "distiller"}, extra=extra,
    )


def _from_wrapped_state_dict(path: str, raw: dict[str, Any]) -> Checkpoint:
    metrics = {k: float(raw[k]) for k in ("top1", "top5", "loss") if isinstance(raw.get(k), (int, float))}
    dataset = raw["dataset"] if isinstance(raw.get("dataset"), dict) else (
        {"name": raw["dataset"]} if isinstance(raw.get("dataset"), str) else {})
    normalize = raw.get("normalize") if isinstance(raw.get("normalize"), dict) else None
    return Checkpoint(
        kind="state_dict", path=path, state_dict=normalize_state_dict_keys(raw["state_dict"]),
        arch=raw.get("arch") if isinstance(raw.get("arch"), str) else None, epoch=raw.get("epoch"),
        metrics=metrics, dataset=dataset, normalize=normalize,
        extra={k: v for k, v in raw.items() if k in ("train", "log")},
    )


def _plain(obj: Any) -> Any:
    """Drop inert placeholders so what we keep is plain data."""
    if isinstance(obj, OpaqueObject):
        return None
    return obj


def model_from_checkpoint(
    ckpt: Checkpoint, arch: str | None = None, **arch_kwargs: Any,
) -> nn.Module:
    """Build the architecture, give it the checkpoint's (possibly thinned) widths, load weights."""
    arch = arch or ckpt.arch
    if not arch:
        raise ConfigError(
            f"Checkpoint {ckpt.path!r} does not say which architecture it is.",
            hint="Name it: e.g. `--arch resnet20_cifar` (CLI) or model_from_checkpoint(ckpt, arch='resnet20_cifar').",
        )
    kwargs = {**ckpt.arch_kwargs, **arch_kwargs}
    if arch in MODELS:  # zoo factories all take these; user factories may not
        for key, value in _infer_io(ckpt.state_dict).items():
            kwargs.setdefault(key, value)
    model = create_model(arch, **kwargs)
    apply_widths(model, ckpt.widths or widths_from_state_dict(model, ckpt.state_dict))
    load_state_dict_checked(model, ckpt.state_dict, source=ckpt.path, arch=arch)
    if ckpt.dataset.get("input_shape"):  # the size it was trained on, e.g. 1x8x8 digits
        model.input_shape = tuple(ckpt.dataset["input_shape"])
    check_forward(model, source=ckpt.path, arch=arch)
    return model


def check_forward(model: nn.Module, *, source: str, arch: str) -> None:
    """One batch-1 forward pass; a failure names the layer whose input does not fit its weights.

    Resizing layers to the checkpoint's tensor shapes accepts every consistently thinned network,
    so a checkpoint made for a different architecture shows up here, as an inconsistent layer.
    """
    shape = getattr(model, "input_shape", None)
    if shape is None:
        return
    current: list[tuple[str, nn.Module, tuple[int, ...]]] = []

    def remember(name: str) -> Any:
        def hook(module: nn.Module, inputs: tuple[Any, ...]) -> None:
            first = inputs[0] if inputs and isinstance(inputs[0], torch.Tensor) else None
            current.append((name, module, tuple(first.shape) if first is not None else ()))
        return hook

    handles = [m.register_forward_pre_hook(remember(n)) for n, m in model.named_modules() if not list(m.children())]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *shape))
    except RuntimeError as exc:
        name, module, got = current[-1] if current else ("?", model, ())
        weight = getattr(module, "weight", None)
        expected = f" its weight is {tuple(weight.shape)}" if isinstance(weight, torch.Tensor) else ""
        raise CheckpointError(
            f"Checkpoint {source!r} does not fit architecture {arch!r}: layer {name!r} receives input of shape "
            f"{got} but{expected or ' it fails'} ({str(exc).splitlines()[0]}).",
            hint="Pass the architecture the checkpoint was trained with (--arch), or its constructor args.",
        ) from None
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()


def _infer_io(state_dict: dict[str, torch.Tensor]) -> dict[str, int]:
    """Input channels (first conv) and classes (last 2D weight), so e.g. 100-class files load too."""
    convs = [v for v in state_dict.values() if v.dim() == 4]
    linears = [v for k, v in state_dict.items() if k.endswith("weight") and v.dim() == 2]
    inferred = {}
    if convs:
        inferred["in_channels"] = int(convs[0].shape[1])
    if linears:
        inferred["num_classes"] = int(linears[-1].shape[0])
    return inferred


def load_state_dict_checked(model: nn.Module, state_dict: dict[str, torch.Tensor], *, source: str,
                            arch: str) -> None:
    """``load_state_dict`` whose errors name the layer and both shapes, in one paragraph."""
    own = model.state_dict()
    state_dict = normalize_state_dict_keys(state_dict)
    mismatched = [(k, tuple(own[k].shape), tuple(v.shape)) for k, v in state_dict.items()
                  if k in own and own[k].shape != v.shape]
    if mismatched:
        k, mine, theirs = mismatched[0]
        more = f" (and {len(mismatched) - 1} more)" if len(mismatched) > 1 else ""
        raise CheckpointError(
            f"Checkpoint {source!r} does not fit architecture {arch!r}: {k} has shape {theirs} in the "
            f"checkpoint but {mine} in the model{more}.",
            hint="Pass the architecture the checkpoint was trained with (--arch), or its constructor args.",
        )
    missing = [k for k in own if k not in state_dict and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state_dict if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensors (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"has {len(unexpected)} unknown tensors (e.g. {', '.join(unexpected[:3])})")
        raise CheckpointError(
            f"Checkpoint {source!r} does not fit architecture {arch!r}: it " + " and ".join(parts) + ".",
            hint="Pass the architecture the checkpoint was trained with (--arch).",
        )
    model.load_state_dict(state_dict, strict=False)
