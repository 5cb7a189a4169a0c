"""Provenance carried inside exported models: ONNX ``metadata_props`` and OpenVINO IR ``rt_info``.

Why inside the file: an exported model travels alone (to a device, an artifact store, a benchmark
consumer), and whoever runs or evaluates it needs the input normalisation and wants to know which
checkpoint, architecture, widths and compression schedule produced it. All keys start with
``edgeprune.``; structured values are JSON text, scalars are plain text, so any ONNX tool shows them.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from edgeprune.models.resolve import LoadedModel
from edgeprune.models.widths import layer_widths
from edgeprune.version import __version__

PREFIX = "edgeprune."
#: Keys whose values are JSON (the others are plain strings).
JSON_KEYS = frozenset({"arch_kwargs", "widths", "input_shape", "normalize", "dataset", "provenance", "metrics", "seed"})


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


def encode(meta: dict[str, Any]) -> dict[str, str]:
    """Prefixed string key/values, as ONNX ``metadata_props`` and IR ``rt_info`` store them."""
    return {PREFIX + k: json.dumps(v, default=str) if k in JSON_KEYS else str(v) for k, v in meta.items()}


def decode(props: dict[str, str]) -> dict[str, Any]:
    """The inverse of :func:`encode`; keys of other producers are ignored."""
    out: dict[str, Any] = {}
    for key, value in props.items():
        if not key.startswith(PREFIX):
            continue
        name = key[len(PREFIX):]
        out[name] = json.loads(value) if name in JSON_KEYS else value
    return out
