"""The built-in pipeline for real: render, prune + thin, retrain, export (parity-checked), benchmark, tell."""

from __future__ import annotations

import shutil
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from rich.console import Console

from edgeprune.sweep.config import load_sweep
from edgeprune.sweep.job import ArtifactError, TrialJob
from edgeprune.sweep.runner import SweepRunner, preflight
from edgeprune.sweep.template import TemplateError
from tests.conftest import REPO, run_cli

pytest.importorskip("onnxruntime", reason="pipeline trials export and benchmark ONNX: pip install 'edgeprune[sweep]'")

EXAMPLE = REPO / "examples" / "sweeps" / "resnet20_digits.yaml"
ALL_METRICS = {"top1", "top5", "loss", "top1_pruned", "macs", "weight_params", "latency_ms", "e2e_latency_ms",
               "throughput_fps"}


def small_sweep(tmp_path: Path, **changes: str) -> Path:
    """The example, cut down to one untrained, quickly measured trial."""
    shutil.copy(EXAMPLE.with_name("resnet20_digits_template.yaml"), tmp_path)
    text = EXAMPLE.read_text()
    text = text.replace("pretrain: {epochs: 3, lr: 0.05, batch_size: 64}", "pretrain: {epochs: 0}")
    text = text.replace("benchmark: {backend: onnxruntime, threads: 1, niter: 200, warmup: 20, budget_s: 3}",
                        "benchmark: {backend: onnxruntime, threads: 1, niter: 20, warmup: 2, budget_s: 0.5}")
    for old, new in changes.items():
        text = text.replace(old, new)
    (tmp_path / "sweep.yaml").write_text(text)
    return tmp_path / "sweep.yaml"


def test_one_real_trial_records_every_metric_and_artifact(tmp_path: Path) -> None:
    cfg = load_sweep(small_sweep(tmp_path))
    runner = SweepRunner(cfg, tmp_path / "run", max_trials=1, console=Console(quiet=True))
    result = runner.run()
    assert result.counts["complete"] == 1, runner.study.trials()[0].user_attrs.get("error")
    [trial] = runner.study.trials(TrialState.COMPLETE)
    metrics = trial.user_attrs["metrics"]
    assert set(metrics) == ALL_METRICS and trial.values == [metrics["top1"], metrics["latency_ms"]]
    baseline = runner.study.study.user_attrs["baseline"]
    assert metrics["macs"] < baseline["macs"] and metrics["weight_params"] < baseline["weight_params"]  # thinned
    assert {"onnx", "checkpoint", "schedule", "bench", "job"} <= set(trial.user_attrs["artifacts"])
    assert all(Path(p).is_file() for p in trial.user_attrs["artifacts"].values())
    assert [h["epoch"] for h in trial.user_attrs["history"]] == [0]
    # The PRODUCE -> MEASURE message travels as JSON; a changed artifact is refused.
    job = TrialJob.read(trial.user_attrs["artifacts"]["job"])
    assert job.verified_artifact() == Path(job.artifact) and job.values == trial.user_attrs["config"]
    Path(job.artifact).write_bytes(b"tampered")
    with pytest.raises(ArtifactError, match="has changed since it was produced"):
        job.verified_artifact()


def test_schedules_must_prune_one_shot(tmp_path: Path) -> None:
    path = small_sweep(tmp_path)
    template = tmp_path / "resnet20_digits_template.yaml"
    template.write_text(template.read_text().replace("  - pruner: {instance_name: stage2}\n    epochs: [0]",
                                                     "  - pruner: {instance_name: stage2}\n    epochs: [0, 1]"))
    cfg = load_sweep(path)
    with pytest.raises(TemplateError, match=r"policies\[1\] \(stage2\) fires at epoch 1") as info:
        preflight(cfg, cfg.model)
    assert info.value.line == 32


@pytest.mark.slow
def test_example_sweep_gives_a_real_pareto_front(tmp_path: Path) -> None:
    """The README's example: 8 real trials on digits (2 cores: a few minutes), then its report."""
    run_dir = tmp_path / "run"
    result = run_cli("sweep", str(EXAMPLE), "-o", str(run_dir), timeout=1500)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "8 complete" in result.stdout and "grid exhausted" in result.stdout
    study = optuna.load_study(study_name="resnet20-digits-stage-sparsity", storage=f"sqlite:///{run_dir / 'study.db'}")
    done = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(done) == 8 and 1 <= len(study.best_trials) <= 8
    assert all(t.user_attrs["metrics"]["latency_ms"] > 0 for t in done)
    assert max(t.user_attrs["metrics"]["top1"] for t in done) > 90  # fine-tuned, not broken
    report = run_cli("report", str(run_dir), "-o", str(run_dir / "report.html"))
    assert report.returncode == 0
    assert "on the Pareto front" in (run_dir / "report.html").read_text()
    status = run_cli("sweep", "status", str(run_dir))
    assert "8 complete" in status.stdout
