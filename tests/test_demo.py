"""``edgeprune demo``: the sweep file it derives from a suggestion, its run directory's guards, its front maths,
and one real end-to-end run on digits (small settings, the same code) whose artifacts must hold real numbers."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from edgeprune.demo.rundir import open_run_dir
from edgeprune.demo.summary import trade_offs
from edgeprune.demo.sweepfile import (
    grid_values,
    group_weights,
    plan_groups,
    suggested_levels,
    sweep_document,
    sweep_text,
    template_text,
)
from edgeprune.errors import ConfigError

from .conftest import run_cli

SUGGESTED = """\
version: 1
pruners:
  filter_pruner_30:
    class: L1RankedStructureParameterPruner
    group_type: Filters
    desired_sparsity: 0.3
    weights: [layer2.0.conv1.weight, layer1.0.conv1.weight]
  filter_pruner_60:
    class: L1RankedStructureParameterPruner
    group_type: Filters
    desired_sparsity: 0.6
    weights: [layer1.1.conv1.weight, layer3.0.conv1.weight]
extensions:
  net_thinner: {class: FilterRemover, thinning_func_str: remove_filters, arch: resnet20_cifar}
policies:
  - pruner: {instance_name: filter_pruner_30}
    epochs: [0]
  - pruner: {instance_name: filter_pruner_60}
    epochs: [0]
  - extension: {instance_name: net_thinner}
    epochs: [0]
"""


# ------------------------------------------------------------------------------------------- sweep file
def test_groups_are_stages_or_thirds_in_model_order() -> None:
    assert group_weights(["layer2.0.conv1.weight", "layer1.10.conv1.weight", "layer1.9.conv1.weight"]) == {
        "layer1": ["layer1.9.conv1.weight", "layer1.10.conv1.weight"], "layer2": ["layer2.0.conv1.weight"]}
    vgg = group_weights([f"features.{i}.weight" for i in (10, 0, 3, 7, 5, 1)])
    assert vgg == {"early": ["features.0.weight", "features.1.weight"],
                   "middle": ["features.3.weight", "features.5.weight"],
                   "late": ["features.7.weight", "features.10.weight"]}
    assert group_weights(["conv1.weight"]) == {"all": ["conv1.weight"]}


def test_grid_values_round_clip_and_dedupe() -> None:
    assert grid_values(0.4333, (0.5, 1.0, 1.5)) == (0.2, 0.45, 0.65)
    assert grid_values(0.8, (0.5, 1.0, 1.5)) == (0.4, 0.8, 0.9)  # 1.2 clipped to 0.9
    assert grid_values(0.88, (1.0, 1.5)) == (0.9,)  # both clip to 0.9: one value
    assert grid_values(0.02, (0.5,)) == (0.05,)


def test_few_groups_get_more_levels_for_enough_trials() -> None:
    (only,) = plan_groups({"conv1.weight": 0.5}, (0.5, 1.0, 1.5), min_trials=6)
    assert len(only.values) == 6 and only.values[0] == 0.25 and only.values[-1] == 0.75
    groups = plan_groups({"layer1.0.conv1.weight": 0.2, "layer1.1.conv1.weight": 0.4, "layer2.0.conv1.weight": 0.6},
                         (0.5, 1.0, 1.5), min_trials=6)
    assert [(g.name, g.suggested, g.values) for g in groups] == [("layer1", 0.3, (0.15, 0.3, 0.45)),
                                                                 ("layer2", 0.6, (0.3, 0.6, 0.9))]
    with pytest.raises(ConfigError, match="prunes no conv"):
        plan_groups({}, (1.0,), min_trials=1)


def test_sweep_file_and_template_load_and_render(tmp_path: Path) -> None:
    from edgeprune.schedule.config import parse_schedule
    from edgeprune.sweep.config import load_sweep
    from edgeprune.sweep.template import render_text

    levels, extensions = suggested_levels(SUGGESTED)
    assert levels == {"layer2.0.conv1.weight": 0.3, "layer1.0.conv1.weight": 0.3, "layer1.1.conv1.weight": 0.6,
                      "layer3.0.conv1.weight": 0.6}
    groups = plan_groups(levels, (0.5, 1.0), min_trials=6)
    (tmp_path / "t.yaml").write_text(template_text(groups, extensions, "suggested.yaml"))
    doc = sweep_document("demo-test", groups, model="resnet20_cifar", data="digits", template="t.yaml",
                         retrain={"epochs": 1}, bench={"backend": "openvino", "niter": 10}, max_trials=5, seed=0)
    (tmp_path / "sweep.yaml").write_text(sweep_text(doc, groups))
    cfg = load_sweep(tmp_path / "sweep.yaml")  # the sweep grammar's own checks, template placeholders included
    assert cfg.space.names == ["sparsity.layer1", "sparsity.layer2", "sparsity.layer3"]
    assert cfg.space.grid_size() == 8 and cfg.run_cap == 5  # 2 x 2 x 2 grid, capped
    assert cfg.benchmark.backend == "openvino" and [o.name for o in cfg.directions] == ["top1", "latency_ms"]
    spec = parse_schedule(render_text(cfg.template_text, {"sparsity.layer1": 0.45, "sparsity.layer2": 0.3,
                                                          "sparsity.layer3": 0.6}))
    assert spec.pruners["layer1"].kwargs == {"group_type": "Filters", "desired_sparsity": 0.45,
                                             "weights": ["layer1.0.conv1.weight", "layer1.1.conv1.weight"]}
    assert spec.extensions["net_thinner"].kwargs["arch"] == "resnet20_cifar"


def test_suggestions_of_other_pruners_are_refused() -> None:
    with pytest.raises(ConfigError, match="filter pruning only"):
        suggested_levels(SUGGESTED.replace("group_type: Filters", "group_type: Channels", 1))


# ---------------------------------------------------------------------------------------------- summary
def _trial(number: int, top1: float, latency: float, state: str = "COMPLETE") -> SimpleNamespace:
    return SimpleNamespace(number=number, state=SimpleNamespace(name=state), params={"s": number / 10},
                           user_attrs={"metrics": {"top1": top1, "latency_ms": latency, "macs": 1e6},
                                       "artifacts": {"onnx": f"/x/{number}/model.onnx"}})


def test_front_is_non_dominated_fastest_first_with_speedups() -> None:
    trials = [_trial(0, 98.0, 0.05), _trial(1, 97.0, 0.04), _trial(2, 96.0, 0.045),  # 2: slower and worse than 1
              _trial(3, 99.0, 0.06), _trial(4, 99.5, 0.01, state="FAIL"), _trial(5, 97.0, 0.04)]  # 5 ties 1
    front = trade_offs(trials, None, 0.08)
    assert [p.number for p in front] == [1, 5, 0, 3]
    assert [p.speedup for p in front] == pytest.approx([2.0, 2.0, 1.6, 0.08 / 0.06])
    # the dense model is an option too: a trial it beats on both counts is no trade-off
    assert [p.number for p in trade_offs(trials, 99.0, 0.055)] == [1, 5, 0]
    assert trade_offs(trials, None, None)[0].speedup is None and trade_offs([], 99.0, 0.1) == []


# --------------------------------------------------------------------------------------------- run dir
def test_run_dir_continues_only_the_same_inputs_and_fresh_deletes_only_demo_dirs(tmp_path: Path) -> None:
    rd, continued = open_run_dir(tmp_path / "demo", {"model": "m", "epochs": 1})
    assert not continued and rd.state_file.is_file()
    (rd.root / "keep.txt").write_text("x")
    assert open_run_dir(tmp_path / "demo", {"model": "m", "epochs": 1}) == (rd, True)
    with pytest.raises(ConfigError, match=r"other inputs \(epochs differ\)"):
        open_run_dir(tmp_path / "demo", {"model": "m", "epochs": 2})
    rd2, continued = open_run_dir(tmp_path / "demo", {"model": "m", "epochs": 2}, fresh=True)
    assert not continued and not (rd2.root / "keep.txt").exists()
    other = tmp_path / "other"
    other.mkdir()
    (other / "precious.txt").write_text("x")
    for fresh in (False, True):
        with pytest.raises(ConfigError, match="not an edgeprune demo directory"):
            open_run_dir(other, {"model": "m"}, fresh=fresh)
    assert (other / "precious.txt").is_file()


def test_cli_bad_data_is_one_clear_error_and_writes_nothing(tmp_path: Path) -> None:
    r = run_cli("demo", "--data", str(tmp_path / "missing"), "-o", str(tmp_path / "demo"))
    assert r.returncode == 2, r.stderr
    assert "does not exist" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "demo").exists()


# ---------------------------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_demo_end_to_end_on_digits(tmp_path: Path) -> None:
    """The real pipeline with small settings: train, analyse, suggest, sweep with 2 producers + 1 consumer on
    OpenVINO, report; then a rerun reuses everything."""
    from edgeprune.demo import DemoSettings, run_demo
    from edgeprune.sweep.config import load_sweep
    from edgeprune.sweep.results import load_study_data

    settings = DemoSettings(epochs=3, sensitivity_range="0:0.9:0.15", max_drop=5.0, multipliers=(0.5, 1.0),
                            min_trials=6, max_trials=6, retrain_epochs=1, search="0.8x",
                            bench={"backend": "openvino", "device": "CPU", "threads": 1, "batch": 1, "niter": 100,
                                   "warmup": 10, "budget_s": 0.5})
    result = run_demo(tmp_path / "demo", settings=settings)
    root = result.run_dir
    summary = json.loads((root / "summary.json").read_text())

    # every artifact is there and holds real numbers
    assert (root / "baseline" / "checkpoint.pth").is_file() and summary["baseline"]["epochs"] == 3
    assert 80 < summary["baseline"]["top1"] <= 100 and summary["baseline"]["macs"] == 2_532_992
    csv = (root / "sensitivity" / "sensitivity.csv").read_text().splitlines()
    assert csv[0] == "parameter,sparsity,top1,top5,loss" and len(csv) == 1 + 21 * 6
    assert (root / "sensitivity" / "sensitivity_heatmap.png").stat().st_size > 1000
    assert "L1RankedStructureParameterPruner" in (root / "suggested.yaml").read_text()
    cfg = load_sweep(root / "sweep.yaml")
    assert cfg.model == str(root / "baseline" / "checkpoint.pth") and cfg.benchmark.backend == "openvino"
    expected = min(6, cfg.space.grid_size())

    study = load_study_data(str(root))
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(complete) == expected == summary["trials"]["complete"]
    for t in complete:
        m = t.user_attrs["metrics"]
        assert 0 < m["latency_ms"] < 10 and 0 < m["top1"] <= 100 and 0 < m["macs"] < 2_532_992
    dense_latency = study.attrs["baseline"]["latency_ms"]
    assert summary["baseline"]["latency_ms"] == dense_latency > 0

    # the front: non-dominated, speed-ups from the measured latencies, ONNX + IR files beside each other
    front = summary["front"]
    assert front and [p["latency_ms"] for p in front] == sorted(p["latency_ms"] for p in front)
    for p in front:
        measured = study.trials[p["number"]].user_attrs["metrics"]
        assert p["latency_ms"] == measured["latency_ms"] and p["top1"] == measured["top1"]
        assert math.isclose(p["speedup"], dense_latency / p["latency_ms"])
        assert Path(p["onnx"]).is_file() and Path(p["ir"]).is_file() and Path(p["ir"]).with_suffix(".bin").is_file()
        rivals = [(t.user_attrs["metrics"]["top1"], t.user_attrs["metrics"]["latency_ms"]) for t in complete]
        rivals.append((study.attrs["baseline"]["top1"], dense_latency))  # not pruning is an option too
        assert not any(top1 >= p["top1"] and latency < p["latency_ms"] for top1, latency in rivals)

    html = (root / "report.html").read_text()
    assert "Pareto front" in html and "Sensitivity" in html and f"latency_ms {dense_latency:.4g}" in html
    assert all(f"<tr><td>{t.number}</td>" in html for t in complete)

    # the search phase: a network measured under 0.8x of the dense one, with the schedule that makes it
    found = summary["search"]
    assert found["measured_ms"] <= found["budget_ms"] == pytest.approx(0.8 * found["dense_ms"])
    assert 0 < found["top1"] <= 100 and 0 < found["macs"] < 2_532_992 and Path(found["schedule"]).is_file()
    assert "Latency-budget search" in Path(found["report"]).read_text()

    # a rerun reuses every phase: no training, no new trial, the same front, the same search result
    mtime = (root / "baseline" / "checkpoint.pth").stat().st_mtime
    again = run_demo(tmp_path / "demo", settings=settings)
    assert (root / "baseline" / "checkpoint.pth").stat().st_mtime == mtime
    assert again.counts == {"complete": expected} and [p.number for p in again.front] == [p["number"] for p in front]
    assert again.search == found
    with pytest.raises(ConfigError, match="other inputs"):
        run_demo(tmp_path / "demo", settings=DemoSettings(epochs=4))


def test_a_sweep_at_its_run_cap_is_finished_though_a_deferred_trial_waits(tmp_path: Path) -> None:
    """A trial asked over run_cap waits (kept for a larger cap); the demo must not restart the agents for it."""
    from optuna.trial import TrialState

    from edgeprune.demo.sweep import is_finished
    from edgeprune.sweep.config import parse_sweep
    from edgeprune.sweep.engine import SweepStudy

    text = ("name: capped\nmethod: random\nprogram: t.py\nrun_cap: 2\nmetric: {name: top1, goal: maximize}\n"
            "parameters:\n  s: {min: 0.0, max: 0.9}\n")
    study = SweepStudy(parse_sweep(text, "capped.yaml"), f"sqlite:///{tmp_path / 'study.db'}")
    asked = [study.ask(), study.ask()]
    assert study.ask() is None  # the third is over the cap: deferred to WAITING
    assert study.trials(TrialState.WAITING) and not is_finished(study)  # two still running
    for a in asked:
        study.complete(a.trial, {"top1": 90.0})
    assert study.trials(TrialState.WAITING) and is_finished(study)
