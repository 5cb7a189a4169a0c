"""Sensitivity analysis: Distiller's CSV byte for byte, equivalence with fresh pruning, resume, errors, CLI."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from PIL import Image

from edgeprune.analysis.sensitivity import (
    SensitivityRun,
    SensitivitySettings,
    analyse_to_dir,
    check_group,
    parse_sparsities,
    read_sensitivity_csv,
    sensitivity_csv,
    sensitivity_weights,
)
from edgeprune.errors import ConfigError, UnknownNameError
from edgeprune.jobs.sensitivity import run_sensitivity
from edgeprune.jobs.train import evaluate_model
from edgeprune.pruning.masks import ParameterMasker
from edgeprune.pruning.pruners import L1RankedStructureParameterPruner
from edgeprune.training.metrics import evaluate

from .conftest import REPO, run_cli, shared_file
from .tiny_nets import tiny_resnet

TINY = "tests.tiny_nets:tiny_resnet"


@pytest.fixture
def net() -> tuple[torch.nn.Module, list[tuple[torch.Tensor, torch.Tensor]]]:
    """A random tiny ResNet and 96 inputs labelled with its own predictions (dense top-1 is 100 %)."""
    torch.manual_seed(0)
    model = tiny_resnet().eval()
    x = torch.randn(96, 1, 8, 8)
    with torch.no_grad():
        y = model(x).argmax(dim=1)
    return model, [(x[i : i + 32], y[i : i + 32]) for i in range(0, 96, 32)]


def _analyse(model, batches, out_dir, sparsities="0:0.2:0.05", group="filter", evaluate_fn=None, **kwargs):
    values = parse_sparsities(sparsities)
    settings = SensitivitySettings.of(model, sensitivity_weights(model, group), values, group, batches)
    return analyse_to_dir(model, out_dir, settings, evaluate_fn or (lambda m: evaluate(m, batches)),
                          progress=False, **kwargs)


def test_csv_is_distillers_format_byte_for_byte(tmp_path, net) -> None:
    model, batches = net
    out = _analyse(model, batches, tmp_path)
    assert [repr(s) for s in out.settings.sparsities] == ["0.0", "0.05", "0.1", "0.15000000000000002"]
    # filter analysis: every 4D weight in named_parameters order, the Linear absent (as in Distiller)
    assert list(out.results) == ["conv1.weight", "block.conv_a.weight", "block.conv_b.weight", "conv2.weight"]
    expected = "parameter,sparsity,top1,top5,loss\r\n" + "".join(
        f"{w},{s!r},{m['top1']!r},{m['top5']!r},{m['loss']!r}\r\n"
        for w, points in out.results.items() for s, m in points.items())
    assert out.csv.read_bytes() == expected.encode()
    lines = out.csv.read_bytes().split(b"\r\n")
    assert len(lines) == 1 + 4 * 4 + 1 and lines[4].startswith(b"conv1.weight,0.15000000000000002,")
    assert out.results["conv1.weight"][0.0]["top1"] == 100.0  # labels are the dense model's predictions
    assert sensitivity_csv(out.results, module_prefix=True).splitlines()[1].startswith("module.conv1.weight,0.0,")
    assert read_sensitivity_csv(out.csv) == out.results
    for name in ("sensitivity.png", "sensitivity_top1.png", "sensitivity_heatmap.png"):
        with Image.open(tmp_path / name) as image:
            image.verify()
    state = json.loads((tmp_path / "sensitivity.json").read_text())
    assert state["complete"] and len(state["results"]) == 16 and state["baseline"]["top1"] == 100.0


def test_element_analysis_includes_linear_weights(net) -> None:
    model, _ = net
    assert sensitivity_weights(model, "element")[-1] == "fc.weight"
    assert "fc.weight" not in sensitivity_weights(model, "channel")


def test_every_point_equals_pruning_a_fresh_copy_and_the_model_comes_back_intact(net) -> None:
    model, batches = net
    dense = copy.deepcopy(model.state_dict())
    weights, sparsities = ["block.conv_a.weight", "conv2.weight"], [0.0, 0.25, 0.3, 0.5]
    run = SensitivityRun(model, weights, sparsities, "filter", lambda m: evaluate(m, batches))
    results = run.run()
    for weight in weights:
        for sparsity in sparsities:
            fresh = copy.deepcopy(model)
            param = dict(fresh.named_parameters())[weight]
            masker = ParameterMasker(weight)
            L1RankedStructureParameterPruner("p", "Filters", sparsity, [weight]).set_param_mask(
                param, weight, {weight: masker}, None)
            masker.apply_mask(param)
            assert results[weight][sparsity] == evaluate(fresh, batches), (weight, sparsity)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, dense[name]), name
    # 8 and 12 filters: 0.0 prunes nothing (the dense model, measured once), 0.3 prunes as many as 0.25
    assert run.evaluations == 1 + 2 + 2
    assert results["conv2.weight"][0.3] == results["conv2.weight"][0.25]


class _Interrupted(Exception):
    pass


def test_an_interrupted_run_resumes_where_it_stopped_with_an_identical_csv(tmp_path, net) -> None:
    model, batches = net
    calls: list[int] = []

    def counting(limit: int | None = None):
        def evaluate_fn(m):
            if limit is not None and len(calls) >= limit:
                raise _Interrupted
            calls.append(1)
            return evaluate(m, batches)
        return evaluate_fn

    straight = _analyse(model, batches, tmp_path / "a", "0:0.6:0.1", evaluate_fn=counting())
    total, calls[:] = len(calls), []
    with pytest.raises(_Interrupted):
        _analyse(model, batches, tmp_path / "b", "0:0.6:0.1", evaluate_fn=counting(limit=6))
    assert len(calls) == 6 and not (tmp_path / "b" / "sensitivity.csv").exists()
    state = json.loads((tmp_path / "b" / "sensitivity.json").read_text())
    assert not state["complete"] and 6 <= len(state["results"]) < 24
    calls[:] = []
    resumed = _analyse(model, batches, tmp_path / "b", "0:0.6:0.1", evaluate_fn=counting())
    assert resumed.resumed == len(state["results"])
    assert 6 + len(calls) == total  # nothing measured twice
    assert (tmp_path / "b" / "sensitivity.csv").read_bytes() == straight.csv.read_bytes()
    again = _analyse(model, batches, tmp_path / "b", "0:0.6:0.1", evaluate_fn=counting())
    assert again.evaluations == 0 and again.resumed == 24


def test_other_settings_refuse_to_resume_unless_restarted(tmp_path, net) -> None:
    model, batches = net
    _analyse(model, batches, tmp_path, "0:0.2:0.1")
    with pytest.raises(ConfigError, match="other settings.*sparsities") as info:
        _analyse(model, batches, tmp_path, "0:0.3:0.1")
    assert "--restart" in info.value.hint
    fresh = _analyse(model, batches, tmp_path, "0:0.3:0.1", restart=True)
    assert fresh.resumed == 0 and list(fresh.results["conv1.weight"]) == [0.0, 0.1, 0.2]


@pytest.mark.parametrize(("text", "message"), [
    ("0:0.5", "START:STOP:STEP"),
    ("a:b:c", "START:STOP:STEP"),
    ("0.5:0.2:0.1", "is empty"),
    ("0:0.5:0", "STEP must be positive"),
    ("0:1.2:0.1", r"outside \[0, 1\)"),
    ("-0.1:0.2:0.1", r"outside \[0, 1\)"),
])
def test_bad_sparsity_ranges_are_refused(text, message) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_sparsities(text)


def test_layer_globs_and_group_names(net) -> None:
    model, _ = net
    assert sensitivity_weights(model, "filter", "block.*") == ["block.conv_a.weight", "block.conv_b.weight"]
    assert sensitivity_weights(model, "filter", "*conv2, conv1") == ["conv1.weight", "conv2.weight"]
    with pytest.raises(ConfigError, match="matches none") as info:
        sensitivity_weights(model, "filter", "layer9.*")
    assert "conv1.weight" in info.value.hint and "block.conv_a.weight" in info.value.hint
    assert check_group("Filter") == "filter"
    with pytest.raises(UnknownNameError, match="Did you mean 'filter'"):
        check_group("filters")


def test_cli_writes_distiller_names_and_explains_bad_input(tmp_path) -> None:
    first = run_cli("sensitivity", TINY, "--data", "digits", "--sparsities", "0:0.3:0.1", "--eval-batches", "2",
                    "--batch-size", "64", "--module-prefix", "-o", str(tmp_path), cwd=REPO)
    assert first.returncode == 0, first.stderr
    rows = (tmp_path / "sensitivity.csv").read_text().splitlines()
    assert rows[0] == "parameter,sparsity,top1,top5,loss" and rows[1].startswith("module.conv1.weight,0.0,")
    assert len(rows) == 1 + 4 * 3 and "on 128 images" in first.stdout and "points" in first.stderr  # progress bar
    bad = run_cli("sensitivity", TINY, "--data", "digits", "--layers", "stem*", "-o", str(tmp_path / "x"), cwd=REPO)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "block.conv_a.weight" in bad.stderr
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_real_resnet20_filter_sensitivity_on_a_cifar10_subset(tmp_path) -> None:
    ckpt = str(shared_file("models/resnet20_cifar10_jpeg.pth"))
    data = str(shared_file("data/cifar10-jpeg.tar.gz"))
    out = run_sensitivity(ckpt, data, tmp_path, group="filter", sparsities="0:0.7:0.3",
                          layers="layer1.0.conv1,layer2.0.conv1,layer3.0.conv1", eval_batches=4, batch_size=250,
                          device="cpu", progress=False)
    reference = evaluate_model(ckpt, data, limit=1000, batch_size=250, device="cpu", spread=True)
    assert out.settings.images == 1000 and list(out.results) == [
        "layer1.0.conv1.weight", "layer2.0.conv1.weight", "layer3.0.conv1.weight"]
    for weight, points in out.results.items():
        assert points[0.0]["top1"] == reference.metrics["top1"], weight
        assert points[0.6]["top1"] <= points[0.0]["top1"], weight
    assert out.evaluations == 1 + 3 * 2  # the dense model once, then two pruned points per layer
