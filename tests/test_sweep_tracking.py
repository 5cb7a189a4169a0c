"""Trackers: local JSON lines always, WandB offline (never a server, off under CI), MLflow on a local SQLite store."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from edgeprune.sweep.config import MlflowSettings, WandbSettings, parse_sweep
from edgeprune.sweep.wandb_log import read_wandb_run
from edgeprune.tracking import LocalTracker, Tracker, Trackers, TrackerWarning, make_trackers

SWEEP = """\
method: grid
metric: {name: top1}
program: t.py
parameters: {x: {values: [1, 2]}}
tracking: {wandb: {project: p}}
"""


def exercise(tracker: Tracker, artifact: Path) -> None:
    tracker.start_trial(0, {"sparsity": {"layer1": 0.5}})
    for epoch in range(2):
        tracker.log_metrics(0, {"top1": 90.0 + epoch}, step=epoch)
    tracker.log_metrics(0, {"latency_ms": 0.25})
    tracker.log_artifact(0, artifact, "schedule")
    tracker.end_trial(0, "COMPLETE")
    tracker.close()


def test_local_tracker_writes_every_event(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text("x")
    exercise(LocalTracker(tmp_path), tmp_path / "s.yaml")
    events = [json.loads(line) for line in (tmp_path / "trials.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events] == ["start", "metrics", "metrics", "metrics", "artifact", "end"]
    assert events[0]["config"] == {"sparsity": {"layer1": 0.5}} and events[2]["step"] == 1


def test_wandb_tracker_runs_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("wandb", reason="wandb is not installed (pip install 'edgeprune[tracking]')")
    from edgeprune.tracking.wandb_tracker import WandbTracker

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    (tmp_path / "s.yaml").write_text("x")
    exercise(WandbTracker(WandbSettings(project="p"), tmp_path, "study"), tmp_path / "s.yaml")
    [run_file] = list(tmp_path.glob("wandb/offline-run-*/run-*.wandb"))
    deadline = time.monotonic() + 15  # wandb's service process may still be writing the file after finish()
    while not (run := read_wandb_run(run_file)).history and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [h["top1"] for h in run.history] == [90.0, 91.0]
    assert run.summary["latency_ms"] == 0.25 and run.summary["state"] == "COMPLETE"


def test_make_trackers_respects_ci(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("wandb", reason="wandb is not installed (pip install 'edgeprune[tracking]')")
    cfg = parse_sweep(SWEEP)
    monkeypatch.setenv("CI", "false")
    assert [t.name for t in make_trackers(cfg, tmp_path).trackers] == ["local", "wandb"]
    assert [t.name for t in make_trackers(cfg, tmp_path, program_trials=True).trackers] == ["local"]  # they log
    monkeypatch.setenv("CI", "true")
    assert [t.name for t in make_trackers(cfg, tmp_path).trackers] == ["local"]  # never WandB under CI


def test_mlflow_tracker_on_local_sqlite(tmp_path: Path) -> None:
    pytest.importorskip("mlflow", reason="mlflow is not installed (pip install 'edgeprune[tracking]')")
    from mlflow.tracking import MlflowClient

    from edgeprune.tracking.mlflow_tracker import MlflowTracker

    (tmp_path / "s.yaml").write_text("x")
    exercise(MlflowTracker(MlflowSettings(), tmp_path, "study"), tmp_path / "s.yaml")
    client = MlflowClient(f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}")
    [run] = client.search_runs([client.get_experiment_by_name("study").experiment_id])
    assert run.data.params == {"sparsity.layer1": "0.5"} and run.info.status == "FINISHED"
    assert [m.value for m in client.get_metric_history(run.info.run_id, "top1")] == [90.0, 91.0]
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["schedule"]


def test_a_failing_tracker_only_warns() -> None:
    class Broken(Tracker):
        name = "broken"

        def log_metrics(self, number: int, metrics: dict, step: int | None = None) -> None:
            raise RuntimeError("disk full")

    with pytest.warns(TrackerWarning, match="broken tracker: log_metrics failed: disk full"):
        Trackers([Broken()]).log_metrics(0, {"top1": 1.0})
