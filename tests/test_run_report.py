"""The run report of ``train --schedule``: numbers measured at the right moments, consistent, resumable, printed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from edgeprune.analysis.run_report import report_rows
from edgeprune.jobs.prune import prune_model
from edgeprune.jobs.train import evaluate_model, train_model
from edgeprune.training import TrainConfig

from .conftest import REPO, run_cli

SCHEDULE = """version: 1
pruners:
  p:
    class: L1RankedStructureParameterPruner
    group_type: Filters
    desired_sparsity: 0.5
    weights: [block.conv_a.weight, conv2.weight]
extensions:
  t:
    class: FilterRemover
    thinning_func_str: remove_filters
policies:
  - pruner:
      instance_name: p
    epochs: [0]
  - extension:
      instance_name: t
    epochs: [0]
"""


def _cfg(epochs: int) -> TrainConfig:
    return TrainConfig(epochs=epochs, batch_size=64, lr=0.05, device="cpu", progress=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny ResNet trained for two epochs on digits: the model a pruning run starts from."""
    out = tmp_path_factory.mktemp("base")
    train_model("tests.tiny_nets:tiny_resnet", "digits", out, _cfg(2))
    return out / "checkpoint.pth"


def test_report_has_before_after_pruning_and_every_epoch(tmp_path, trained) -> None:
    schedule = tmp_path / "s.yaml"
    schedule.write_text(SCHEDULE)
    run = tmp_path / "run"
    result, _ = train_model(str(trained), "digits", run, _cfg(2), schedule=schedule)
    report = json.loads((run / "report.json").read_text())

    before = evaluate_model(str(trained), "digits")  # the checkpoint as it came in
    assert report["before_pruning"]["top1"] == before.metrics["top1"]
    assert report["before_pruning"]["loss"] == pytest.approx(before.metrics["loss"], rel=1e-5)

    pruned = prune_model(str(trained), schedule, tmp_path / "pruned.pth")  # the same epoch 0, no training
    after = evaluate_model(str(tmp_path / "pruned.pth"), "digits")
    assert report["after_pruning"]["epoch"] == 0
    assert report["after_pruning"]["top1"] == after.metrics["top1"]
    assert report["after_pruning"]["macs"] == pruned.after.macs < report["before_pruning"]["macs"]
    assert report["after_pruning"]["weight_params"] == pruned.after.weight_params

    assert [e["top1"] for e in report["epochs"]] == [h["top1"] for h in result.history]
    assert [e["epoch"] for e in report["epochs"]] == [0, 1]
    assert report["final"]["top1"] == result.final["top1"] and report["final"]["macs"] == pruned.after.macs
    assert report["events"] == [{"epoch": 0, "kind": "prune", "name": "p"}, {"epoch": 0, "kind": "thin", "name": "t"}]

    md = (run / "report.md").read_text()
    for stage in ("before pruning", "after pruning + thinning, before retraining", "after epoch 0", "after epoch 1",
                  "final"):
        assert f"| {stage} |" in md
    assert f"| {before.metrics['top1']:.2f} |" in md and "epoch 0: prune p, thin t" in md
    with Image.open(run / "accuracy.png") as image:
        image.verify()

    printed = run_cli("report", str(run), cwd=REPO)
    assert printed.returncode == 0, printed.stderr
    assert "before pruning" in printed.stdout and f"{after.metrics['top1']:.2f}" in printed.stdout
    assert json.loads(run_cli("report", str(run), "--json").stdout) == report


def test_resumed_run_keeps_its_before_and_after_numbers(tmp_path, trained) -> None:
    schedule = tmp_path / "s.yaml"
    schedule.write_text(SCHEDULE)
    run = tmp_path / "run"
    train_model(str(trained), "digits", run, _cfg(1), schedule=schedule)
    first = json.loads((run / "report.json").read_text())
    train_model(str(trained), "digits", run, _cfg(2), schedule=schedule)  # resumes after epoch 0
    second = json.loads((run / "report.json").read_text())
    assert second["before_pruning"] == first["before_pruning"]
    assert second["after_pruning"] == first["after_pruning"]
    assert [e["epoch"] for e in second["epochs"]] == [0, 1] and second["epochs"][0] == first["epochs"][0]


def test_no_report_without_a_schedule_and_a_clear_error_for_other_directories(tmp_path) -> None:
    train_model("tests.tiny_nets:tiny_resnet", "digits", tmp_path / "plain", _cfg(1))
    assert not (tmp_path / "plain" / "report.json").exists()
    result = run_cli("report", str(tmp_path / "plain"))
    assert result.returncode == 2 and "report.json" in result.stderr and "--schedule" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_gradual_schedule_labels_its_first_pruning_step_as_such() -> None:
    metrics = {"top1": 80.0, "top5": 99.0, "loss": 0.5}
    report = {"before_pruning": metrics, "after_pruning": {"epoch": 0, **metrics}, "epochs": [],
              "events": [{"epoch": e, "kind": "prune", "name": "p"} for e in (0, 2, 4)]
              + [{"epoch": 4, "kind": "thin", "name": "t"}]}
    stages = [r[0] for r in report_rows(report)]
    assert stages[1] == "after the first pruning step, before retraining (more at epochs 2, 4)"
    report["events"] = report["events"][:1]
    assert report_rows(report)[1][0] == "after pruning + thinning, before retraining"
