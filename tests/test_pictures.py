"""``edgeprune show``: every picture is a valid PNG/SVG with the right content decisions; bad input explained."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from edgeprune.analysis.diagram import network_boxes, schedule_targets, show_graph
from edgeprune.analysis.pictures import (
    layer_weight,
    show_filters,
    show_kernels,
    show_macs,
    show_widths,
    structures,
)
from edgeprune.errors import ConfigError, UnknownNameError
from edgeprune.jobs.prune import prune_model
from edgeprune.models import create_model

from .conftest import run_cli

SCHEDULE = """version: 1
pruners:
  p:
    class: L1RankedStructureParameterPruner
    group_type: Filters
    desired_sparsity: 0.5
    weights: [layer1.0.conv1.weight, layer2.1.conv1.weight]
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


@pytest.fixture
def schedule(tmp_path: Path) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(SCHEDULE)
    return path


def _png(path: Path) -> tuple[int, int]:
    assert path.stat().st_size > 1000
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def test_filter_norms_mark_what_the_schedule_or_the_sparsity_prunes(tmp_path, schedule) -> None:
    torch.manual_seed(0)
    model = create_model("resnet20_cifar")
    by_schedule = structures(model, "layer1.0.conv1.weight", schedule=schedule)
    by_sparsity = structures(model, "layer1.0.conv1.weight", sparsity=0.5)
    assert int(by_schedule.pruned.sum()) == 8 and torch.equal(by_schedule.pruned, by_sparsity.pruned)
    assert by_schedule.scores[by_schedule.pruned].max() <= by_schedule.scores[~by_schedule.pruned].min()
    assert not structures(model, "layer1.1.conv1.weight", schedule=schedule).pruned.any()  # not in the schedule
    assert int(structures(model, "layer1.0.conv2.weight", channels=True, sparsity=0.25).pruned.sum()) == 4
    torch.manual_seed(0)
    assert _png(show_filters("resnet20_cifar", "layer1.0.conv1", tmp_path / "f.png", schedule=schedule))[0] > 400
    svg = show_filters("resnet20_cifar", "module.layer3.0.conv1.weight", tmp_path / "f.svg", sparsity=0.3)
    text = svg.read_text()
    assert text.startswith("<?xml") and "<svg" in text and "layer3.0.conv1.weight" in text


def test_kernels_widths_macs_and_graph_are_valid_pictures(tmp_path, schedule) -> None:
    _png(show_kernels("resnet20_cifar", tmp_path / "k.png", sparsity=0.5))
    _png(show_widths("resnet20_cifar", tmp_path / "w.png", schedule=schedule))
    _png(show_macs("resnet20_cifar", tmp_path / "m.png", schedule=schedule))
    width, height = _png(show_graph("resnet20_cifar", tmp_path / "g.png", schedule=schedule))
    assert height > 2 * width  # one row per layer: a tall picture


def test_thinned_checkpoint_is_compared_with_its_dense_architecture(tmp_path, schedule) -> None:
    prune_model("resnet20_cifar", schedule, tmp_path / "thin.pth")
    _png(show_widths(str(tmp_path / "thin.pth"), tmp_path / "w.png"))
    _png(show_macs(str(tmp_path / "thin.pth"), tmp_path / "m.png"))
    with pytest.raises(ConfigError, match="not a checkpoint"):
        show_widths("resnet20_cifar", tmp_path / "x.png")


def test_diagram_names_every_weight_and_puts_projection_shortcuts_beside_the_main_path(schedule) -> None:
    model = create_model("resnet20_cifar")
    boxes = network_boxes(model, model.input_shape)
    titles = [b.title for b in boxes]
    convs = [f"{n}.weight" for n, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert [t for t in titles if t.endswith(".weight")] == convs  # forward order, every name a schedule may use
    assert titles.count("add") == 9 and titles[0] == "input" and titles[-1] == "output"
    side = [b.title for b in boxes if b.col > 0]
    assert side == ["layer2.0.downsample.0.weight", "layer3.0.downsample.0.weight"]
    assert len({b.rank for b in boxes if b.col == 0}) == sum(b.col == 0 for b in boxes)  # no overlaps
    first = boxes[titles.index("conv1.weight")]
    assert "BN" in first.details and "ReLU" in first.details and first.shape == "16×32×32"
    targets = schedule_targets(model, schedule)
    assert set(targets) == {"layer1.0.conv1.weight", "layer2.1.conv1.weight"} and "Filters 0.5" in targets[
        "layer1.0.conv1.weight"]


def test_bad_picture_requests_are_explained(tmp_path, schedule) -> None:
    with pytest.raises(ConfigError, match=r"\.png or \.svg"):
        show_graph("resnet20_cifar", tmp_path / "g.jpg")
    with pytest.raises(UnknownNameError, match="layer1.0.conv1"):
        layer_weight(create_model("resnet20_cifar"), "layer1.0.conv")
    with pytest.raises(ConfigError, match="not both"):
        show_kernels("resnet20_cifar", tmp_path / "k.png", schedule=schedule, sparsity=0.5)
    result = run_cli("show", "filters", "resnet20_cifar", "--layer", "layer1.0.conv", "-o", str(tmp_path / "f.png"))
    assert result.returncode == 2 and "'layer1.0.conv1'" in result.stderr and "Did you mean" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "f.png").exists()
    ok = run_cli("show", "graph", "simplenet_cifar", "-o", str(tmp_path / "g.svg"))
    assert ok.returncode == 0, ok.stderr
    assert "fc3.weight" in (tmp_path / "g.svg").read_text()
