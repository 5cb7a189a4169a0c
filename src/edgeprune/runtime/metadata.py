"""Provenance carried inside exported models: ONNX ``metadata_props`` and OpenVINO IR ``rt_info``.

Why inside the file: an exported model travels alone (to a device, an artifact store, a benchmark
consumer), and whoever runs or evaluates it needs the input normalisation and wants to know which
checkpoint, architecture, widths and compression schedule produced it. All keys start with
``edgeprune.``; structured values are JSON text, scalars are plain text, so any ONNX tool shows them.
Reading them needs no torch (a measuring host has none); what goes in is gathered by
:mod:`edgeprune.conversion.provenance`.
"""

from __future__ import annotations

import json
from typing import Any

PREFIX = "edgeprune."
#: Keys whose values are JSON (the others are plain strings).
JSON_KEYS = frozenset({"arch_kwargs", "widths", "input_shape", "normalize", "dataset", "provenance", "metrics", "seed"})


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
