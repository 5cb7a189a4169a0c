"""Experiment trackers behind one small interface: local JSON lines (always), WandB and MLflow (when configured)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

from edgeprune.errors import ConfigError
from edgeprune.tracking.base import Tracker, Trackers, TrackerWarning
from edgeprune.tracking.local import LocalTracker
from edgeprune.tracking.mlflow_tracker import MlflowTracker
from edgeprune.tracking.settings import TrackingSettings
from edgeprune.tracking.wandb_tracker import WandbTracker

__all__ = ["LocalTracker", "TrackedStudy", "Tracker", "TrackerWarning", "Trackers", "make_trackers"]


class TrackedStudy(Protocol):
    """What the trackers need of a sweep: its ``tracking:`` section and the names runs are filed under."""

    tracking: TrackingSettings
    study_name: str
    project: str | None
    entity: str | None


def make_trackers(cfg: TrackedStudy, run_dir: str | Path, *, program_trials: bool = False) -> Trackers:
    """The trackers a sweep configures. No WandB under CI, nor for program trials (they log their own runs)."""
    trackers: list[Tracker] = [LocalTracker(run_dir)]
    t = cfg.tracking
    try:
        if t.wandb is not None and os.environ.get("CI", "").lower() != "true" and not program_trials:
            trackers.append(WandbTracker(t.wandb, run_dir, cfg.study_name, cfg.project, cfg.entity))
        if t.mlflow is not None:
            trackers.append(MlflowTracker(t.mlflow, run_dir, cfg.study_name))
    except ImportError as exc:
        raise ConfigError(f"The sweep configures a tracker whose package is not installed: {exc}.",
                          hint="pip install 'edgeprune[tracking]'.") from None
    return Trackers(trackers)
