"""What an export records about where its model came from (the values :mod:`edgeprune.runtime.metadata` encodes).

Apart from the encoding because gathering needs the loaded torch model and checkpoint, while reading the
metadata back happens on measuring hosts that have no torch.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from pathlib import Path
from typing import Any

import torch

from edgeprune.models.resolve import LoadedModel
from edgeprune.models.widths import layer_widths
from edgeprune.version import __version__


def provenance_metadata(loaded: LoadedModel, input_shape: tuple[int, ...], *, exporter: str,
                        opset: int | None) -> dict[str, Any]:
    """Everything needed to trust, evaluate and reproduce an export, as plain data (keys without prefix)."""
    ckpt = loaded.checkpoint
    meta: dict[str, Any] = {
        "version": __version__,
        "arch": loaded.arch,
        "arch_kwargs": loaded.arch_kwargs,
        "widths": layer_widths(loaded.model),
        "input_shape": list(input_shape),
        "exporter": exporter,
        "opset": "default" if opset is None else str(opset),
        "torch": str(torch.__version__),
        "exported": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if loaded.normalize:
        meta["normalize"] = {"mean": list(loaded.normalize["mean"]), "std": list(loaded.normalize["std"])}
    if ckpt is not None:
        meta["checkpoint"] = str(Path(ckpt.path).resolve())
        meta["checkpoint_sha256"] = hashlib.sha256(Path(ckpt.path).read_bytes()).hexdigest()
        meta["dataset"] = ckpt.dataset
        meta["provenance"] = ckpt.provenance  # parent, schedule path + SHA-256, thin, train config ...
        meta["metrics"] = ckpt.metrics
        if ckpt.seed is not None:
            meta["seed"] = ckpt.seed
    return meta
