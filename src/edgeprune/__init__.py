"""edgeprune: structured pruning, thinning, export and measurement of CNNs for edge devices.

The top-level names are resolved lazily so that ``import edgeprune`` (and every CLI start) stays
fast and does not drag in plotting or data code a command does not use.
"""

from __future__ import annotations

import importlib
from typing import Any

from edgeprune.version import __version__

_EXPORTS = {
    "create_model": "edgeprune.models",
    "list_models": "edgeprune.models",
    "register_model": "edgeprune.models",
    "load_checkpoint": "edgeprune.models.checkpoint",
    "save_checkpoint": "edgeprune.models.checkpoint",
    "model_from_checkpoint": "edgeprune.models.checkpoint",
    "load_dataset": "edgeprune.data",
    "model_summary": "edgeprune.models.summary",
    "Trainer": "edgeprune.train",
    "TrainConfig": "edgeprune.train",
    "evaluate": "edgeprune.train",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'edgeprune' has no attribute {name!r}")
