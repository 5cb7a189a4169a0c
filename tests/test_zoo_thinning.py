"""Pruning and thinning the ImageNet-class and new CIFAR zoo: bottlenecks, downsample shortcuts, depthwise and
inverted-residual blocks, parameter-free padded shortcuts, BN-free VGG.

Thinning removes exactly the channels that carry zeros, so the outputs must not change. The comparison runs
BatchNorm on batch statistics (train mode, dropout off): a zeroed channel stays zero (BN bias is 0 at
initialisation) while every other channel is rescaled to unit variance, so the outputs depend on the input
(in eval mode a freshly initialised MobileNet's outputs hardly do, which would make the comparison vacuous).
64x64 inputs keep the ImageNet networks fast (their pooling is adaptive)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from edgeprune.models import create_model
from edgeprune.models.summary import model_summary
from edgeprune.schedule.config import load_schedule
from edgeprune.schedule.scheduler import CompressionScheduler

from .conftest import REPO

SCHEDULES = REPO / "examples" / "schedules"


def _l1_filters(tmp_path: Path, weights: list[str]) -> Path:
    """A one-shot 50 % L1 filter prune of ``weights`` at epoch 0, without a thinner (the test thins)."""
    path = tmp_path / "prune.yaml"
    path.write_text("version: 1\npruners:\n  p:\n    class: L1RankedStructureParameterPruner\n    group_type: Filters\n"
                    f"    desired_sparsity: 0.5\n    weights: [{', '.join(weights)}]\n"
                    "policies:\n  - pruner: {instance_name: p}\n    epochs: [0]\n")
    return path


def _batch_statistics(model: nn.Module) -> nn.Module:
    model.train()
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.eval()
    return model


def _prune_then_thin(model: nn.Module, schedule: Path, side: int) -> tuple[torch.Tensor, torch.Tensor]:
    model.input_shape = (3, side, side)
    sched = CompressionScheduler(model, load_schedule(schedule))
    sched.apply_epoch_zero()
    x = torch.randn(4, 3, side, side)
    with torch.no_grad():
        masked = _batch_statistics(model)(x)
        sched.thin_all()
        return masked, _batch_statistics(model)(x)


@pytest.mark.parametrize(("arch", "weights", "side"), [
    ("resnet18", [f"layer{s}.{b}.conv1.weight" for s in range(1, 5) for b in range(2)], 64),
    ("resnet50", [f"layer{s}.0.conv{c}.weight" for s in range(1, 5) for c in (1, 2)], 64),
    ("mobilenet", [f"model.{n}.3.weight" for n in range(1, 13)], 64),  # pointwise -> next depthwise
    ("mobilenet_v2", [f"features.{n}.conv.0.0.weight" for n in range(2, 18)], 64),  # expansion -> depthwise
    ("preact_resnet20_cifar", [f"layer{s}.{b}.conv1.weight" for s in range(1, 4) for b in range(3)], 32),
    ("vgg16_cifar", ["features.0.weight", "features.21.weight", "features.28.weight"], 32),  # last: -> Linear
])
def test_thinning_keeps_the_outputs_and_halves_the_pruned_layers(tmp_path, arch: str, weights: list[str],
                                                                 side: int) -> None:
    torch.manual_seed(0)
    model = create_model(arch)
    dense = {n: p.shape for n, p in model.named_parameters()}
    masked, thinned = _prune_then_thin(model, _l1_filters(tmp_path, weights), side)
    assert (masked - masked.mean(0)).abs().max() > 1e-2 * masked.abs().max() > 0  # outputs depend on the input
    torch.testing.assert_close(thinned, masked, rtol=1e-4, atol=1e-4 * float(masked.abs().max()))  # float sums
    params = dict(model.named_parameters())
    for w in weights:
        assert params[w].shape[0] == dense[w][0] // 2, w
    if arch == "mobilenet_v2":  # the depthwise conv after each expansion lost the same channels, and its groups
        block = model.features[5].conv
        assert block[1][0].groups == block[1][0].out_channels == block[0][0].out_channels == 96
        assert block[2].in_channels == 96 and block[2].out_channels == 32  # the residual stream keeps its width
    if arch == "mobilenet":
        assert model.model[2][0].groups == model.model[2][0].in_channels == 32 and model.model[2][3].in_channels == 32
    if arch == "resnet50":
        assert model.layer2[0].downsample[0].out_channels == model.layer2[0].conv3.out_channels == 512
    if arch == "vgg16_cifar":
        assert model.classifier.in_features == 256


def test_resnet18_uniform50_example_gives_the_hand_counted_weights() -> None:
    """Per block: conv1 keeps p/2 filters, conv2 reads p/2 channels; stem, shortcuts and fc are untouched."""
    model = create_model("resnet18")
    sched = CompressionScheduler(model, load_schedule(SCHEDULES / "resnet18_uniform50.yaml"))
    sched.apply_epoch_zero()
    expected = 64 * 3 * 49 + 512 * 1000
    cin = 64
    for planes in (64, 128, 256, 512):
        for block in range(2):
            expected += (planes // 2) * cin * 9 + planes * (planes // 2) * 9
            if block == 0 and cin != planes:
                expected += planes * cin
            cin = planes
    assert model_summary(model).weight_params == expected == 6_186_176
