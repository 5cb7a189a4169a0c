"""The built-in pipeline for real, as `edgeprune sweep` runs it: a producer process renders, prunes + thins, retrains
and exports (parity-checked), a consumer process benchmarks and tells the study, the parent watches.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from edgeprune.sweep.config import load_sweep
from edgeprune.sweep.job import ArtifactError, TrialJob
from edgeprune.sweep.prepare import preflight
from edgeprune.sweep.template import TemplateError
from tests.conftest import REPO, run_cli

pytest.importorskip("onnxruntime", reason="pipeline trials export and benchmark ONNX: pip install 'edgeprune[sweep]'")

EXAMPLE = REPO / "examples" / "sweeps" / "resnet20_digits.yaml"
ALL_METRICS = {"top1", "top5", "loss", "top1_pruned", "macs", "weight_params", "latency_ms", "e2e_latency_ms",
               "throughput_fps"}
STUDY = "resnet20-digits-stage-sparsity"


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


def trials_of(run_dir: Path) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=STUDY, storage=f"sqlite:///{run_dir / 'study.db'}").get_trials()


def test_one_real_trial_records_every_metric_and_artifact(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = run_cli("sweep", str(small_sweep(tmp_path)), "-o", str(run_dir), "--trials", "1", timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"{STUDY}: 1 complete (this run's limit of 1 trials reached)" in result.stdout
    assert f"status: edgeprune status {run_dir}" in result.stdout
    assert f"live view: edgeprune dashboard {run_dir}\n" in result.stderr  # printed before the agents start
    assert "trial 0 started: sparsity.layer1=" in result.stderr and "trial 0 done: top1 " in result.stderr
    [trial] = [t for t in trials_of(run_dir) if t.state == TrialState.COMPLETE]
    metrics = trial.user_attrs["metrics"]
    assert set(metrics) == ALL_METRICS and trial.values == [metrics["top1"], metrics["latency_ms"]]
    study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{run_dir / 'study.db'}")
    baseline = study.user_attrs["baseline"]  # the dense model, measured by the consumer like the trials
    assert metrics["macs"] < baseline["macs"] and metrics["weight_params"] < baseline["weight_params"]  # thinned
    assert baseline["latency_ms"] > 0 and (run_dir / "measured" / STUDY / "dense" / "bench.json").is_file()
    assert {"onnx", "checkpoint", "schedule", "bench", "job"} <= set(trial.user_attrs["artifacts"])
    assert all(Path(p).is_file() for p in trial.user_attrs["artifacts"].values())
    assert [h["epoch"] for h in trial.user_attrs["history"]] == [0]
    events = [json.loads(line) for line in (run_dir / "trials.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events if e["event"] != "metrics"] == ["start", *["artifact"] * 5, "end"]
    assert [e["step"] for e in events if e["event"] == "metrics"] == [0, None]  # the epoch, then the results
    # The PRODUCE -> MEASURE message travels as JSON; a changed artifact is refused.
    job = TrialJob.read(trial.user_attrs["artifacts"]["job"])
    assert job.verified_artifact() == Path(job.artifact) and job.values == trial.user_attrs["config"]
    Path(job.artifact).write_bytes(b"tampered")
    with pytest.raises(ArtifactError, match="has changed since it was produced"):
        job.verified_artifact()


def test_two_producers_stop_at_run_cap_and_epochs_0_skips_fine_tuning(tmp_path: Path) -> None:
    """Two producer processes on a grid of 8 with run_cap 3: exactly 3 trials run, none beyond the cap; with
    `retrain: {epochs: 0}` each exports its pruned, thinned network as it is."""
    path = small_sweep(tmp_path, **{"retrain: {epochs: 1, lr: 0.01, batch_size: 64}": "retrain: {epochs: 0}",
                                    "method: grid": "method: grid\nrun_cap: 3"})
    run_dir = tmp_path / "run"
    result = run_cli("sweep", str(path), "-o", str(run_dir), "--producers", "2", timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "(run_cap 3 reached)" in result.stdout
    trials = trials_of(run_dir)
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(done) == 3 and all(t.state in (TrialState.COMPLETE, TrialState.WAITING) for t in trials)
    assert len({json.dumps(t.user_attrs["config"], sort_keys=True) for t in done}) == 3  # three grid points
    for t in done:
        m = t.user_attrs["metrics"]
        assert m["top1"] == m["top1_pruned"] and t.user_attrs["history"] == []
        assert Path(t.user_attrs["artifacts"]["checkpoint"]).name == "pruned.pth"
    assert {p.name for p in (run_dir / "logs").iterdir()} == {"producer-0.log", "producer-1.log", "consumer.log"}


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


def test_the_embedded_runner_is_for_programs_only(tmp_path: Path) -> None:
    from edgeprune.errors import ConfigError
    from edgeprune.sweep.runner import SweepRunner

    with pytest.raises(ConfigError, match="runs through the agents"):
        SweepRunner(load_sweep(small_sweep(tmp_path)), tmp_path / "run")
