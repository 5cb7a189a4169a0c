"""edgeprune: structured pruning, thinning, export and measurement of CNNs for edge devices.

The verbs, one call each (like Optuna's ``create_study``), are what the CLI, the demo and sweeps run:

- :func:`prune` — a Distiller schedule's epoch-0 (or replayed) pruning + thinning -> ``PruneResult``
- :func:`train` — training / fine-tuning under a schedule, exact resume -> ``(TrainResult, LoadedModel)``
- :func:`evaluate_model` — top-1/top-5/loss of a checkpoint, zoo model or exported file -> ``EvalResult``
- :func:`export` — parity-checked ONNX (+ OpenVINO IR) -> ``ExportResult``
- :func:`bench` — latency / throughput by the benchmark protocol -> the JSON object of docs/benchmark-json.md
- :func:`sensitivity` — per-weight pruning sensitivity into a directory -> ``SensitivityOutput``

The names are resolved lazily so that ``import edgeprune`` (and every CLI start) stays fast and does not
drag in torch, plotting or data code a caller does not use.
"""

from __future__ import annotations

import importlib
from typing import Any

from edgeprune.version import __version__

# public name -> (module, attribute)
_EXPORTS = {
    "prune": ("edgeprune.jobs.prune", "prune_model"),
    "train": ("edgeprune.jobs.train", "train_model"),
    "evaluate_model": ("edgeprune.jobs.train", "evaluate_model"),
    "export": ("edgeprune.jobs.export", "export_model"),
    "bench": ("edgeprune.jobs.bench", "bench_model"),
    "sensitivity": ("edgeprune.jobs.sensitivity", "run_sensitivity"),
    "search": ("edgeprune.budget_search.run", "search"),
    "SearchSettings": ("edgeprune.budget_search.run", "SearchSettings"),
    "Target": ("edgeprune.measurement.target", "Target"),
    "create_model": ("edgeprune.models", "create_model"),
    "list_models": ("edgeprune.models", "list_models"),
    "register_model": ("edgeprune.models", "register_model"),
    "load_checkpoint": ("edgeprune.models.checkpoint", "load_checkpoint"),
    "save_checkpoint": ("edgeprune.models.checkpoint", "save_checkpoint"),
    "model_from_checkpoint": ("edgeprune.models.checkpoint", "model_from_checkpoint"),
    "load_dataset": ("edgeprune.data", "load_dataset"),
    "model_summary": ("edgeprune.models.summary", "model_summary"),
    "Trainer": ("edgeprune.training", "Trainer"),
    "TrainConfig": ("edgeprune.training", "TrainConfig"),
    "evaluate": ("edgeprune.training", "evaluate"),
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module, attribute = _EXPORTS[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'edgeprune' has no attribute {name!r}")
