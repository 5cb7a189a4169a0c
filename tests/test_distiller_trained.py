"""Distiller's published schedules replayed on *trained* networks and thinned, against Distiller's tables.

On a freshly initialised network few weights are exactly zero and every filter of a layer looks alike; on a
trained one, fine-grained AGP pruning and the fc's ``Rows`` pruner leave zeros that only some of the layers
reading a residual stream have. Distiller's FilterRemover decided from conv filters only and left those zeros
in place; so must edgeprune, giving the shapes Distiller published in each schedule's header (transcribed
below: the rows of the published parameter table that differ from the dense network).
"""

from __future__ import annotations

import warnings

import pytest

from edgeprune.jobs.prune import prune_model
from edgeprune.models.checkpoint import load_checkpoint, model_from_checkpoint

from .conftest import REPO, run_cli, shared_file

pytestmark = pytest.mark.slow

AGP_DIR = REPO / "examples" / "cifar10_resnet20"
CHECKPOINTS = ["models/resnet20_cifar10_jpeg.pth", "models/distiller/checkpoint_trained_dense.pth.tar"]

# Published layer2 of agp, agp_3 and bn_fold: the stream and every block conv at 16 filters.
LAYER2_HALVED = {
    "layer2.0.conv1": (16, 16, 3, 3), "layer2.0.conv2": (16, 16, 3, 3), "layer2.0.downsample.0": (16, 16, 1, 1),
    "layer2.1.conv1": (16, 16, 3, 3), "layer2.1.conv2": (16, 16, 3, 3), "layer2.2.conv1": (16, 16, 3, 3),
    "layer2.2.conv2": (16, 16, 3, 3), "layer3.0.conv1": (64, 16, 3, 3), "layer3.0.downsample.0": (64, 16, 1, 1),
}
# schedule: (published rows that differ from dense, dense weight count of the table, Total MACs)
PUBLISHED = {
    "resnet20_filters.schedule_agp.yaml": (LAYER2_HALVED, 223_536, 30_655_104),
    # agp_3's header says 30,433,920 MACs, but its table has agp's shapes, which are 30,655,104 MACs.
    "resnet20_filters.schedule_agp_3.yaml": (LAYER2_HALVED, 223_536, 30_655_104),
    "resnet20_filters.bn_fold.schedule_agp.yaml": (LAYER2_HALVED, 223_536, 30_655_104),
    "resnet20_filters.schedule_agp_4.yaml": ({
        **LAYER2_HALVED, "layer3.0.conv2": (32, 64, 3, 3), "layer3.0.downsample.0": (32, 16, 1, 1),
        "layer3.1.conv1": (64, 32, 3, 3), "layer3.1.conv2": (32, 64, 3, 3), "layer3.2.conv1": (64, 32, 3, 3),
        "layer3.2.conv2": (32, 64, 3, 3), "fc": (10, 32)}, 130_544, 24_723_776),
    "resnet20_filters.schedule_agp_2.yaml": ({
        **{f"layer1.{i}.conv1": (10, 16, 3, 3) for i in range(3)}, **{f"layer1.{i}.conv2": (16, 10, 3, 3)
                                                                      for i in range(3)},
        "layer2.0.conv1": (20, 16, 3, 3), "layer2.0.conv2": (32, 20, 3, 3), "layer2.1.conv1": (20, 32, 3, 3),
        "layer2.1.conv2": (32, 20, 3, 3), "layer2.2.conv1": (20, 32, 3, 3), "layer2.2.conv2": (32, 20, 3, 3)},
        246_704, 30_638_720),
}
DENSE_RESNET20 = {  # Distiller's table for the dense network (conv1 (16,3,3,3), stages of 16/32/64, fc (10,64))
    "conv1": (16, 3, 3, 3),
    **{f"layer1.{b}.conv{c}": (16, 16, 3, 3) for b in range(3) for c in (1, 2)},
    "layer2.0.conv1": (32, 16, 3, 3), "layer2.0.downsample.0": (32, 16, 1, 1),
    **{f"layer2.{b}.conv{c}": (32, 32, 3, 3) for b in range(3) for c in (1, 2) if (b, c) != (0, 1)},
    "layer3.0.conv1": (64, 32, 3, 3), "layer3.0.downsample.0": (64, 32, 1, 1),
    **{f"layer3.{b}.conv{c}": (64, 64, 3, 3) for b in range(3) for c in (1, 2) if (b, c) != (0, 1)},
    "fc": (10, 64),
}


@pytest.mark.parametrize("checkpoint", CHECKPOINTS)
@pytest.mark.parametrize("schedule", list(PUBLISHED))
def test_distiller_schedule_on_trained_resnet20_thins_to_the_published_table(tmp_path, checkpoint: str,
                                                                             schedule: str) -> None:
    changed, dense_weights, macs = PUBLISHED[schedule]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the grouping notes; their text is tested elsewhere
        result = prune_model(str(shared_file(checkpoint)), AGP_DIR / schedule, tmp_path / "p.pth", thin=True,
                             arch="resnet20_cifar", epochs="all")
    shapes = {layer.name: tuple(layer.weight_shape) for layer in result.after.layers if layer.weight_shape}
    assert shapes == {**DENSE_RESNET20, **changed}
    assert (result.after.weight_params, result.after.macs) == (dense_weights, macs)
    model = model_from_checkpoint(load_checkpoint(result.out))  # the thinned checkpoint reloads at its shapes
    assert tuple(model.fc.weight.shape) == changed.get("fc", (10, 64))


def test_issue_command_thins_the_trained_checkpoint_and_says_what_stays_zero(tmp_path) -> None:
    """``prune TRAINED -s agp.yaml --epochs all --thin``: fc's Rows zeros stay in place, named, exit 0."""
    schedule = AGP_DIR / "resnet20_filters.schedule_agp.yaml"
    result = run_cli("prune", str(shared_file(CHECKPOINTS[0])), "-s", str(schedule), "--epochs", "all", "--thin",
                     "-o", str(tmp_path / "x.pth"))
    assert result.returncode == 0, result.stderr
    assert "pruners.fc_pruner" in result.stderr and "stay zeroed in place" in result.stderr
    assert "30,655,104" in result.stdout


def test_resnet56_filter_rank_on_the_trained_checkpoint_gives_distillers_counts(tmp_path) -> None:
    """§7: resnet56_cifar_filter_rank.yaml at epoch 0, thinned: 634,640 weights, 78,856,832 MACs."""
    result = prune_model(str(shared_file("models/resnet56_cifar10_jpeg.pth")),
                         REPO / "examples" / "schedules" / "resnet56_cifar_filter_rank.yaml", tmp_path / "p.pth",
                         thin=True)
    assert (result.after.weight_params, result.after.macs) == (634_640, 78_856_832)
    shapes = {layer.name: tuple(layer.weight_shape) for layer in result.after.layers}
    assert all(shapes[f"layer1.{i}.conv1"] == (7, 16, 3, 3) for i in range(9))
    assert all(shapes[f"layer2.{i}.conv1"] == (16, 32, 3, 3) for i in (1, 2, 3, 4, 6, 7))
    assert shapes["layer3.1.conv1"] == (58, 64, 3, 3)
    assert all(shapes[f"layer3.{i}.conv1"] == (45, 64, 3, 3) for i in (2, 3, 5, 6, 7, 8))
