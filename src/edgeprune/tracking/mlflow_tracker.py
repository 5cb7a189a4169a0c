"""The MLflow tracker: one MLflow run per trial in an experiment named after the study.

Uses ``MlflowClient`` (explicit run ids) rather than ``mlflow.start_run`` (one global active run),
because a sweep with several workers has several trials running at once. The default store is a
SQLite file in the run directory, with artifacts beside it, so nothing needs a server.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeprune.tracking.base import Tracker
from edgeprune.tracking.settings import MlflowSettings

STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}


def _flat(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


class MlflowTracker(Tracker):
    name = "mlflow"

    def __init__(self, settings: MlflowSettings, run_dir: str | Path, study_name: str) -> None:
        from mlflow.tracking import MlflowClient

        run_dir = Path(run_dir).resolve()
        self.client = MlflowClient(settings.tracking_uri or f"sqlite:///{run_dir / 'mlflow.db'}")
        name = settings.experiment or study_name
        found = self.client.get_experiment_by_name(name)
        self.experiment_id = found.experiment_id if found else self.client.create_experiment(
            name, artifact_location=(run_dir / "mlartifacts").as_uri())
        self.study_name = study_name
        self.runs: dict[int, str] = {}

    def start_trial(self, number: int, config: dict[str, Any]) -> None:
        run = self.client.create_run(self.experiment_id, run_name=f"trial-{number}",
                                     tags={"edgeprune.study": self.study_name, "edgeprune.trial": str(number)})
        self.runs[number] = run.info.run_id
        for key, value in _flat(config).items():
            self.client.log_param(run.info.run_id, key, value)

    def log_metrics(self, number: int, metrics: dict[str, float], step: int | None = None) -> None:
        run_id = self.runs.get(number)
        if run_id is None:
            return
        for key, value in metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.client.log_metric(run_id, key, float(value), step=step or 0)

    def log_artifact(self, number: int, path: Path, kind: str) -> None:
        run_id = self.runs.get(number)
        if run_id is not None and Path(path).is_file():
            self.client.log_artifact(run_id, str(path), artifact_path=kind)

    def end_trial(self, number: int, state: str, error: str | None = None) -> None:
        run_id = self.runs.pop(number, None)
        if run_id is not None:
            if error:
                self.client.set_tag(run_id, "error", error[-5000:])
            self.client.set_terminated(run_id, status=STATUS.get(state, "FAILED"))

    def close(self) -> None:
        for number in list(self.runs):
            self.end_trial(number, "FAIL", "sweep interrupted")
