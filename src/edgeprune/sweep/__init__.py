"""Sweeps over pruning parameters: WandB's sweep grammar run on an Optuna study.

``edgeprune.sweep.report(...)`` is light (a trial program imports it); everything else is loaded on first
use, so importing this package does not pull in Optuna or torch.

The flow: :func:`load_sweep` checks the file; :class:`SweepStudy` asks and tells; each pipeline trial is
PRODUCEd (:func:`edgeprune.sweep.produce.produce`, giving a :class:`TrialJob`) and MEASUREd
(:func:`edgeprune.sweep.measure.measure_and_tell`) by the agents (:mod:`edgeprune.agents`; on one machine
:func:`edgeprune.agents.local.run_local`); :class:`SweepRunner` runs program sweeps (``wandb agent``
scripts) embedded.
"""

from __future__ import annotations

import importlib
from typing import Any

from edgeprune.sweep.channel import report

_EXPORTS = {
    "load_sweep": "edgeprune.sweep.config",
    "parse_sweep": "edgeprune.sweep.config",
    "SweepConfig": "edgeprune.sweep.config",
    "SweepError": "edgeprune.sweep.config",
    "SweepStudy": "edgeprune.sweep.engine",
    "TrialJob": "edgeprune.sweep.job",
    "TrialRequest": "edgeprune.sweep.job",
    "produce": "edgeprune.sweep.produce",
    "measure_and_tell": "edgeprune.sweep.measure",
    "SweepRunner": "edgeprune.sweep.runner",
}

__all__ = ["report", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'edgeprune.sweep' has no attribute {name!r}")
