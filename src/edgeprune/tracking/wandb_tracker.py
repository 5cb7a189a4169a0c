"""The WandB tracker: one WandB run per trial, grouped by study, with params, per-epoch metrics and artifacts.

Never needs a server unless asked: the mode is ``WANDB_MODE`` when set, else the sweep's
``tracking.wandb.mode``, else ``offline`` (runs are written under ``RUN_DIR/wandb`` and can be uploaded
later with ``wandb sync``). Under CI (``CI=true``) the tracker is not created at all.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from edgeprune.tracking.base import Tracker
from edgeprune.tracking.settings import WandbSettings


def wandb_mode(settings: WandbSettings) -> str | None:
    """None when ``WANDB_MODE`` decides (WandB reads it itself), else the configured mode or offline."""
    return None if os.environ.get("WANDB_MODE") else (settings.mode or "offline")


class WandbTracker(Tracker):
    name = "wandb"

    def __init__(self, settings: WandbSettings, run_dir: str | Path, study_name: str, project: str | None = None,
                 entity: str | None = None) -> None:
        import wandb

        self._wandb = wandb
        self.settings = settings
        self.run_dir = Path(run_dir)
        self.study_name = study_name
        self.project = settings.project or project or "edgeprune"
        self.entity = settings.entity or entity
        self.runs: dict[int, Any] = {}

    def start_trial(self, number: int, config: dict[str, Any]) -> None:
        wandb = self._wandb
        self.runs[number] = wandb.init(
            project=self.project, entity=self.entity, group=self.study_name, name=f"trial-{number}",
            job_type="sweep-trial", config=config, dir=str(self.run_dir), mode=wandb_mode(self.settings),
            reinit="create_new", settings=wandb.Settings(silent=True, console="off"))

    def log_metrics(self, number: int, metrics: dict[str, float], step: int | None = None) -> None:
        run = self.runs.get(number)
        if run is None:
            return
        if step is None:
            run.summary.update(metrics)
        else:
            run.log(metrics, step=step)

    def log_artifact(self, number: int, path: Path, kind: str) -> None:
        run = self.runs.get(number)
        if run is None or not Path(path).is_file():
            return
        name = re.sub(r"[^A-Za-z0-9._-]", "-", f"{self.study_name}-trial{number}-{kind}")
        artifact = self._wandb.Artifact(name, type=kind)
        artifact.add_file(str(path))
        run.log_artifact(artifact)

    def end_trial(self, number: int, state: str, error: str | None = None) -> None:
        run = self.runs.pop(number, None)
        if run is not None:
            run.summary.update({"state": state, **({"error": error} if error else {})})
            run.finish(exit_code=0 if state == "COMPLETE" else 1)

    def close(self) -> None:
        for number in list(self.runs):
            self.end_trial(number, "FAIL", "sweep interrupted")
