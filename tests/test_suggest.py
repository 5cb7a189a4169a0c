"""``schedule suggest``: budgets met, coupling respected, exact MACs, the YAML runs with prune/train, bad input."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from edgeprune.analysis.sensitivity import parse_sparsities, write_sensitivity_csv
from edgeprune.analysis.suggest import (
    LayerPlan,
    Level,
    cheapest,
    count_after,
    macs_per_filter,
    prunable_filters,
    suggest_schedule,
)
from edgeprune.errors import ConfigError, UnknownNameError
from edgeprune.jobs.prune import prune_model
from edgeprune.jobs.train import train_model
from edgeprune.models import create_model
from edgeprune.models.checkpoint import load_checkpoint, model_from_checkpoint
from edgeprune.models.summary import model_summary
from edgeprune.pruning.dependency import channel_graph
from edgeprune.schedule.config import parse_schedule
from edgeprune.training import TrainConfig

from .conftest import REPO, run_cli

SPARSITIES = parse_sparsities("0:0.6:0.1")  # 0.0 ... 0.5
BASE = 90.0
R20_CONVS = ["conv1.weight"] + [f"layer{s}.{b}.conv{c}.weight" for s in (1, 2, 3) for b in range(3) for c in (1, 2)] \
    + ["layer2.0.downsample.0.weight", "layer3.0.downsample.0.weight"]
R20_FREE = [f"layer{s}.{b}.conv1.weight" for s in (1, 2, 3) for b in range(3)]  # block-internal: independent


def _csv(path: Path, drops: dict[str, list[float]], module_prefix: bool = False) -> Path:
    """A sensitivity CSV whose top-1 at SPARSITIES[i] is BASE - drops[weight][i]."""
    results = {w: {s: {"top1": BASE - d, "top5": 99.0, "loss": 0.5 + d / 100} for s, d in zip(SPARSITIES, ds,
                                                                                               strict=True)}
               for w, ds in drops.items()}
    return write_sensitivity_csv(path, results, module_prefix=module_prefix)


def _linear(slope: float) -> list[float]:
    return [slope * s for s in SPARSITIES]


def _r20_drops() -> dict[str, list[float]]:
    drops = {w: _linear(2.0 + i) for i, w in enumerate(R20_CONVS)}  # steeper for later layers
    drops["layer1.0.conv1.weight"] = [0.0, 3.0, 1.0, 1.0, 1.0, 1.0]  # a noisy first step: not safe at all
    return drops


def test_drop_budget_takes_the_largest_safe_prefix_level_and_leaves_coupled_convs(tmp_path) -> None:
    drops = _r20_drops()
    s = suggest_schedule(_csv(tmp_path / "s.csv", drops, module_prefix=True), "resnet20_cifar", max_drop=1.0)
    assert set(s.excluded) == set(R20_CONVS) - set(R20_FREE)  # stem, conv2s, downsamples feed residual adds
    assert all("residual-coupled" in reason for reason in s.excluded.values())
    chosen = {p.weight: p.chosen for p in s.layers}
    assert chosen["layer1.0.conv1.weight"] is None  # 0.1 costs 3 points, so 0.2..0.5 (1 point) are not safe
    for weight in R20_FREE[1:]:
        slope = 2.0 + R20_CONVS.index(weight)
        safe = [sp for sp in SPARSITIES[1:] if slope * sp <= 1.0]
        assert (chosen[weight].sparsity if chosen[weight] else None) == (max(safe) if safe else None), weight
    assert chosen["layer2.0.conv1.weight"].sparsity == 0.1 and chosen["layer3.2.conv1.weight"] is None
    assert all(level.drop <= 1.0 for level in chosen.values() if level is not None)
    yaml_path = tmp_path / "schedule.yaml"
    yaml_path.write_text(s.yaml)
    spec = parse_schedule(s.yaml)
    assert {p.target.instance_name for p in spec.policies} >= {"net_thinner"}
    assert all(p.epoch_list == [0] for p in spec.policies)
    result = prune_model("resnet20_cifar", yaml_path, tmp_path / "p.pth")
    assert result.after.macs == s.after.macs < s.before.macs
    model = model_from_checkpoint(load_checkpoint(tmp_path / "p.pth"))
    assert model.layer1[1].conv1.out_channels == 16 - int(16 * chosen["layer1.1.conv1.weight"].sparsity) == 13


def test_mac_target_is_met_by_the_cheapest_set(tmp_path) -> None:
    weights = ["layer1.1.conv1.weight", "layer2.1.conv1.weight", "layer3.1.conv1.weight"]
    drops = {"layer1.1.conv1.weight": [0, 0.2, 0.5, 0.9, 1.4, 2.0],
             "layer2.1.conv1.weight": [0, 0.1, 0.3, 0.4, 1.5, 1.9],
             "layer3.1.conv1.weight": [0, 0.6, 0.7, 0.8, 0.9, 1.0]}
    csv = _csv(tmp_path / "s.csv", drops)
    s = suggest_schedule(csv, "resnet20_cifar", max_drop=3.0, target_macs=0.93)
    assert s.after.macs <= 0.93 * s.before.macs
    # brute force over every combination of measured levels: nothing cheaper reaches the target
    model = create_model("resnet20_cifar")
    units = {p.weight: p.macs_per_filter for p in s.layers}
    options = [[(0, 0.0)] + [(int(n * sp), d) for sp, d in zip(SPARSITIES[1:], drops[w][1:], strict=True)]
               for w, n in zip(weights, (16, 32, 64), strict=True)]
    feasible = [sum(d for _, d in combo) for combo in itertools.product(*options)
                if s.before.macs - sum(k * units[w] for (k, _), w in zip(combo, weights, strict=True))
                <= 0.93 * s.before.macs]
    assert s.summed_drop == pytest.approx(min(feasible))
    (tmp_path / "t.yaml").write_text(s.yaml)
    assert prune_model("resnet20_cifar", tmp_path / "t.yaml", tmp_path / "t.pth").after.macs == s.after.macs
    assert count_after(model, s.yaml).macs == s.after.macs


def test_mac_target_is_met_when_pruned_layers_feed_each_other(tmp_path) -> None:
    # simplenet: conv1 -> conv2 -> flatten -> fc1; pruning both convs saves less than the sum of their savings,
    # so the first knapsack answer misses 0.45 and is re-solved with the shortfall
    csv = _csv(tmp_path / "s.csv", {"conv1.weight": _linear(1), "conv2.weight": _linear(1)})
    s = suggest_schedule(csv, "simplenet_cifar", max_drop=1.0, target_macs=0.45)
    assert s.after.macs <= 0.45 * s.before.macs
    assert [(p.weight, p.chosen.pruned) for p in s.chosen] == [("conv1.weight", 3), ("conv2.weight", 6)]  # 4 misses
    (tmp_path / "t.yaml").write_text(s.yaml)
    assert prune_model("simplenet_cifar", tmp_path / "t.yaml", tmp_path / "t.pth").after.macs == s.after.macs


def test_unreachable_mac_target_names_the_best_reachable(tmp_path) -> None:
    csv = _csv(tmp_path / "s.csv", _r20_drops())
    best = suggest_schedule(csv, "resnet20_cifar", max_drop=1.0)
    with pytest.raises(ConfigError, match="cannot be reached") as info:
        suggest_schedule(csv, "resnet20_cifar", max_drop=1.0, target_macs=0.5)
    assert f"{best.after.macs:,}" in info.value.message and "--max-drop" in info.value.hint


def test_mac_target_alone_lets_every_measured_level_compete(tmp_path) -> None:
    csv = _csv(tmp_path / "s.csv", _r20_drops())
    with pytest.raises(ConfigError, match="cannot be reached"):
        suggest_schedule(csv, "resnet20_cifar", max_drop=1.0, target_macs=0.8)
    s = suggest_schedule(csv, "resnet20_cifar", target_macs=0.8)
    assert s.after.macs <= 0.8 * s.before.macs and max(p.chosen.drop for p in s.chosen) > 1.0
    assert "no per-weight drop cap" in s.yaml
    (tmp_path / "t.yaml").write_text(s.yaml)
    assert prune_model("resnet20_cifar", tmp_path / "t.yaml", tmp_path / "t.pth", thin=True).after.macs == s.after.macs
    with pytest.raises(ConfigError, match="Give --max-drop"):
        suggest_schedule(csv, "resnet20_cifar")


def test_round_to_keeps_multiples_and_costs_the_covering_measurement(tmp_path) -> None:
    drops = {w: _linear(1.0) for w in R20_CONVS}
    s = suggest_schedule(_csv(tmp_path / "s.csv", drops), "resnet20_cifar", max_drop=1.0, round_to=8)
    assert "round_to: 8" in s.yaml
    (tmp_path / "r.yaml").write_text(s.yaml)
    prune_model("resnet20_cifar", tmp_path / "r.yaml", tmp_path / "r.pth")
    model = model_from_checkpoint(load_checkpoint(tmp_path / "r.pth"))
    kept = {f"layer{st}.{b}.conv1.weight": getattr(model, f"layer{st}")[b].conv1.out_channels
            for st in (1, 2, 3) for b in range(3)}
    assert all(k % 8 == 0 for k in kept.values()) and min(kept.values()) < 64
    for plan in s.chosen:  # the drop charged is the one measured at the first sparsity pruning as many filters
        covering = min(sp for sp in SPARSITIES if int(plan.filters * sp) >= plan.chosen.pruned)
        assert plan.chosen.drop == pytest.approx(covering)
    sixteen = next(p for p in s.chosen if p.filters == 16).chosen
    assert (sixteen.sparsity, sixteen.pruned, sixteen.drop) == (0.4, 8, pytest.approx(0.5))  # 0.4 rounds to 8 pruned


def test_macs_per_filter_is_exact_for_convs_linears_and_flatten(tmp_path) -> None:
    for arch in ("resnet20_cifar", "simplenet_cifar", "vgg16_bn_cifar"):
        model = create_model(arch)
        graph = channel_graph(model, model.input_shape)
        weights = [n for n, p in model.named_parameters() if p.dim() == 4]
        eligible, _ = prunable_filters(graph, model, weights)
        dense = model_summary(model)
        for weight in eligible[:4]:
            plan = LayerPlan(weight, dict(model.named_parameters())[weight].shape[0],
                             macs_per_filter(graph, dense, weight.removesuffix(".weight")), [])
            k = plan.filters // 2
            assert dense.macs - count_after(model, _one_pruner_yaml([weight], 0.5)).macs == k * plan.macs_per_filter


def _one_pruner_yaml(weights: list[str], sparsity: float) -> str:
    return ("version: 1\npruners:\n  p:\n    class: L1RankedStructureParameterPruner\n    group_type: Filters\n"
            f"    desired_sparsity: {sparsity}\n    weights: [{', '.join(weights)}]\n"
            "extensions:\n  t:\n    class: FilterRemover\n    thinning_func_str: remove_filters\n"
            "policies:\n  - pruner:\n      instance_name: p\n    epochs: [0]\n"
            "  - extension:\n      instance_name: t\n    epochs: [0]\n")


def test_knapsack_prefers_many_cheap_levels_over_one_dear_one() -> None:
    plans = [LayerPlan("a", 10, 100, [Level(0.1, 1, 0.5), Level(0.5, 5, 4.0)]),
             LayerPlan("b", 10, 100, [Level(0.2, 2, 0.2), Level(0.3, 3, 0.3)]),
             LayerPlan("c", 10, 100, [Level(0.1, 1, 0.1)])]
    picked = cheapest(plans, 500)
    assert [lv.pruned if lv else 0 for lv in picked] == [1, 3, 1]  # 0.9 points instead of 4.0
    assert cheapest(plans, 10_000) is None


def test_suggested_schedule_trains_unchanged_and_writes_the_report(tmp_path) -> None:
    drops = {"conv1.weight": _linear(1), "block.conv_a.weight": _linear(2), "block.conv_b.weight": _linear(1),
             "conv2.weight": _linear(4)}
    csv = _csv(tmp_path / "s.csv", drops)
    result = run_cli("schedule", "suggest", str(csv), "--model", "tests.tiny_nets:tiny_resnet", "--max-drop", "1",
                     "-o", str(tmp_path / "s.yaml"), cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "block.conv_a.weight" in result.stdout and "conv2.weight" in result.stdout
    as_json = json.loads(run_cli("schedule", "suggest", str(csv), "--model", "tests.tiny_nets:tiny_resnet",
                                 "--max-drop", "1", "-o", str(tmp_path / "j.yaml"), "--json", cwd=REPO).stdout)
    chosen = {c["weight"]: c for c in as_json["chosen"]}
    assert (chosen["block.conv_a.weight"]["pruned"], chosen["conv2.weight"]["pruned"]) == (4, 2)
    assert as_json["summed_drop"] == pytest.approx(sum(max(c["top1_drop"], 0) for c in chosen.values()))
    assert as_json["schedule"] == str(tmp_path / "j.yaml") and (tmp_path / "j.yaml").is_file()
    cfg = TrainConfig(epochs=1, batch_size=64, lr=0.05, device="cpu", progress=False)
    _, loaded = train_model("tests.tiny_nets:tiny_resnet", "digits", tmp_path / "run", cfg,
                            schedule=tmp_path / "s.yaml")
    assert loaded.model.block.conv_a.out_channels == 8 - int(8 * 0.5)  # 2 points/unit: 0.5 costs 1.0
    assert loaded.model.conv2.out_channels == 12 - int(12 * 0.2)
    assert json.loads((tmp_path / "run" / "report.json").read_text())["after_pruning"]["epoch"] == 0


def test_bad_inputs_are_explained(tmp_path) -> None:
    (tmp_path / "bad.csv").write_text("parameter,sparsity,top1,loss\nconv1.weight,0.0,90,0.3\n")
    with pytest.raises(ConfigError, match="column.s. top5 missing"):
        suggest_schedule(tmp_path / "bad.csv", "resnet20_cifar", max_drop=1)
    (tmp_path / "odd.csv").write_text("parameter,sparsity,top1,top5,loss\r\nconv1.weight,zero,90,99,0.3\r\n")
    with pytest.raises(ConfigError, match="odd.csv:2"):
        suggest_schedule(tmp_path / "odd.csv", "resnet20_cifar", max_drop=1)
    other = _csv(tmp_path / "o.csv", {"features.0.weight": _linear(1)})
    with pytest.raises(UnknownNameError, match="features.0.weight"):
        suggest_schedule(other, "resnet20_cifar", max_drop=1)
    steep = _csv(tmp_path / "steep.csv", {w: _linear(50) for w in R20_CONVS})
    with pytest.raises(ConfigError, match="No weight can lose a filter"):
        suggest_schedule(steep, "resnet20_cifar", max_drop=1)
    with pytest.raises(ConfigError, match="fraction of the dense MACs"):
        suggest_schedule(steep, "resnet20_cifar", max_drop=1, target_macs=1.5)
    sub = tmp_path / "channel"
    sub.mkdir()
    _csv(sub / "sensitivity.csv", {"layer1.0.conv1.weight": _linear(1)})
    (sub / "sensitivity.json").write_text(json.dumps({"format": "edgeprune.sensitivity",
                                                      "settings": {"group": "channel"}}))
    with pytest.raises(ConfigError, match="channel-wise"):
        suggest_schedule(sub / "sensitivity.csv", "resnet20_cifar", max_drop=1)
    result = run_cli("schedule", "suggest", str(tmp_path / "bad.csv"), "--model", "resnet20_cifar", "--max-drop", "1",
                     "-o", str(tmp_path / "x.yaml"))
    assert result.returncode == 2 and "top5" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "x.yaml").exists()
