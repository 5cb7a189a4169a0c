"""Thinning is exact on networks whose BatchNorm channels all differ (trained, or randomised statistics).

On a freshly initialised network every BatchNorm channel is the same function (gamma 1, beta 0, mean 0,
var 1), so a thinning that kept the wrong BN channels would still give the right outputs. Here every BN
gets random gamma, beta, running mean and running variance (or trained ones), and the oracle is the masked
network itself, with one change Distiller's thinning implies (reference §3.10): a removed filter's BN output
is the constant beta - gamma*mean/sqrt(var+eps), which thinning drops, so the oracle sets gamma and beta of
the removed BN channels (and the bias of removed filters) to zero. The thinned network must then give the
oracle's outputs; one misplaced BN index makes it differ by far more than rounding.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import pytest
import torch
from torch import nn

from edgeprune.models import create_model
from edgeprune.models.checkpoint import load_checkpoint, model_from_checkpoint
from edgeprune.pruning.masks import MasksDict, create_model_masks_dict
from edgeprune.pruning.thinning import ThinningRecord, contract_model, remove_channels, remove_filters
from edgeprune.schedule.config import parse_schedule
from edgeprune.schedule.scheduler import CompressionScheduler

from .conftest import shared_file
from .test_thinning import _one_thread  # noqa: F401  (autouse: these forwards are tiny)

STREAM1_PRODUCERS = ["conv1", "layer1.0.conv2", "layer1.1.conv2", "layer1.2.conv2"]
STREAM1_READERS = ["layer1.0.conv1", "layer1.1.conv1", "layer1.2.conv1", "layer2.0.conv1", "layer2.0.downsample.0"]
STREAM2_PRODUCERS = ["layer2.0.conv2", "layer2.0.downsample.0", "layer2.1.conv2", "layer2.2.conv2"]
STREAM3_PRODUCERS = ["layer3.0.conv2", "layer3.0.downsample.0", "layer3.1.conv2", "layer3.2.conv2"]


# ----------------------------------------------------------------------------------------------- helpers
def randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random BN gamma/beta/mean/var and conv/Linear biases: every channel is a different function."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.5)
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.5)
                m.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.5)
            elif isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
    return model.eval()


def zero_structures(model: nn.Module, masks: MasksDict, layer: str, indices: Sequence[int], dim: int) -> None:
    """What a structure pruner leaves: a mask zeroing ``indices`` along ``dim`` (0 filters, 1 channels)."""
    weight = dict(model.named_modules())[layer].weight
    mask = torch.ones_like(weight)
    mask.index_fill_(dim, torch.tensor(list(indices)), 0)
    masks[f"{layer}.weight"].mask = mask
    masks[f"{layer}.weight"].apply_mask(weight)


def oracle(masked: nn.Module, record: ThinningRecord) -> nn.Module:
    """The masked network with every removed filter's bias and every removed BN channel's output zeroed."""
    reference = copy.deepcopy(masked)
    layers = dict(reference.named_modules())
    with torch.no_grad():
        for change in record.layers:
            m, gone = layers[change.name], torch.tensor(change.removed_out, dtype=torch.long)
            if not change.removed_out:
                continue
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight[gone] = 0
                m.bias[gone] = 0
            elif getattr(m, "bias", None) is not None:
                m.bias[gone] = 0
    return reference.eval()


def assert_thinning_exact(model: nn.Module, thin, shape: Sequence[int] = (3, 32, 32), *,
                          filters: bool = True) -> ThinningRecord:
    """Thin ``model`` with ``thin(model)``; its outputs must equal the oracle's on random inputs.

    When filters go, the dropped BN constants change the outputs (checked, so the oracle is not vacuous); when
    only channels go, every reader of them has zero weights there and the oracle is the masked network.
    """
    x = torch.randn(4, *shape, generator=torch.Generator().manual_seed(1))
    masked = copy.deepcopy(model).eval()
    record = thin(model)
    assert record.changed
    reference = oracle(masked, record)
    with torch.no_grad():
        expected, got, untouched = reference(x), model.eval()(x), masked(x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    # the oracle is not the masked net itself: the dropped BN constants matter (else this test could not fail)
    if filters:
        assert (untouched - expected).abs().max() > 1e-2
    return record


def modules(model: nn.Module) -> dict[str, nn.Module]:
    return dict(model.named_modules())


# ------------------------------------------------------------------------------------------ the cases
def test_filters_of_a_residual_stream_and_block_convs() -> None:
    model = randomise(create_model("resnet20_cifar"))
    masks = create_model_masks_dict(model)
    for layer in STREAM1_PRODUCERS:
        zero_structures(model, masks, layer, [1, 5, 11], 0)
    zero_structures(model, masks, "layer1.1.conv1", [0, 2, 3], 0)
    zero_structures(model, masks, "layer3.2.conv1", list(range(0, 64, 3)), 0)
    record = assert_thinning_exact(model, lambda m: remove_filters(m, masks))
    assert all(modules(model)[n].in_channels == 13 for n in STREAM1_READERS)
    assert record.layer("layer1.0.bn2").removed_out == [1, 5, 11]
    assert model.layer3[2].conv2.in_channels == 64 - 22


def test_channels_of_a_residual_stream() -> None:
    model = randomise(create_model("resnet20_cifar"), seed=1)
    masks = create_model_masks_dict(model)
    for layer in STREAM1_READERS:
        zero_structures(model, masks, layer, [0, 7], 1)
    zero_structures(model, masks, "layer2.1.conv2", [4, 9, 30], 1)  # block-internal: conv1 + bn1 lose them
    record = assert_thinning_exact(model, lambda m: remove_channels(m, masks), filters=False)
    assert all(modules(model)[n].out_channels == 14 for n in STREAM1_PRODUCERS)
    assert record.layer("layer2.1.bn1").removed_out == [4, 9, 30]


def test_downsample_shortcut_stream_and_linear_after_the_pool() -> None:
    model = randomise(create_model("resnet20_cifar"), seed=2)
    masks = create_model_masks_dict(model)
    for layer in STREAM2_PRODUCERS:
        zero_structures(model, masks, layer, [2, 3, 17, 31], 0)
    for layer in STREAM3_PRODUCERS:  # the layer3 stream feeds fc through avgpool + flatten
        zero_structures(model, masks, layer, list(range(0, 64, 4)), 0)
    assert_thinning_exact(model, lambda m: remove_filters(m, masks))
    assert model.layer2[0].downsample[0].weight.shape == (28, 16, 1, 1)
    assert model.layer3[0].downsample[0].weight.shape == (48, 28, 1, 1)
    assert model.fc.weight.shape == (10, 48)


LEADER_SCHEDULE = """
version: 1
pruners:
  stream3:
    class: L1RankedStructureParameterPruner
    group_type: Filters
    desired_sparsity: 0.25
    group_dependency: Leader
    weights: [layer3.0.conv2.weight, layer3.0.downsample.0.weight, layer3.1.conv2.weight, layer3.2.conv2.weight]
  readers1:
    class: L1RankedStructureParameterPruner
    group_type: Channels
    desired_sparsity: 0.5
    auto_group: true
    weights: [layer1.0.conv1.weight, layer1.1.conv1.weight, layer1.2.conv1.weight, layer2.0.conv1.weight,
              layer2.0.downsample.0.weight]
  internal:
    class: L2RankedStructureParameterPruner
    group_type: Filters
    desired_sparsity: 0.4
    weights: [layer2.2.conv1.weight, layer3.1.conv1.weight]
policies:
  - pruner: {instance_name: stream3}
    epochs: [0]
  - pruner: {instance_name: readers1}
    epochs: [0]
  - pruner: {instance_name: internal}
    epochs: [0]
"""


def test_leader_group_auto_group_channels_and_contract_model() -> None:
    """A schedule: a Leader group over layer3's stream (with its downsample), auto_group over the channels of
    every reader of layer1's stream, block-internal filters; thin_all = remove_filters then remove_channels."""
    model = randomise(create_model("resnet20_cifar"), seed=3)
    sched = CompressionScheduler(model, parse_schedule(LEADER_SCHEDULE, "leader.yaml"))
    sched.apply_epoch_zero()
    record = assert_thinning_exact(model, lambda m: sched.thin_all())
    assert model.layer3[0].downsample[0].out_channels == model.fc.in_features == 48
    assert model.conv1.out_channels == model.layer1[2].conv2.out_channels == model.layer2[0].conv1.in_channels == 8
    assert model.layer2[2].conv1.out_channels == 20 and model.layer3[1].conv1.out_channels == 39
    assert record.function == "contract_model"


class FlattenNet(nn.Module):
    """conv -> BN -> ReLU -> (N, C*4*4) flatten -> Linear: each channel is 16 input features of fc."""

    def __init__(self) -> None:
        super().__init__()
        self.input_shape = (3, 8, 8)
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(6 * 4 * 4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(torch.relu(self.bn(self.conv(x)))), 1))


def test_linear_after_flatten_loses_whole_feature_blocks() -> None:
    model = randomise(FlattenNet(), seed=4)
    masks = create_model_masks_dict(model)
    zero_structures(model, masks, "conv", [1, 4], 0)
    record = assert_thinning_exact(model, lambda m: remove_filters(m, masks), (3, 8, 8))
    assert model.fc.weight.shape == (5, 64)
    assert record.layer("fc").removed_in == [*range(16, 32), *range(64, 80)]


class DepthwiseNet(nn.Module):
    """conv -> BN -> depthwise -> BN -> pointwise -> BN -> pool -> Linear (MobileNet's block)."""

    def __init__(self) -> None:
        super().__init__()
        self.input_shape = (3, 8, 8)
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=True)
        self.dw_bn = nn.BatchNorm2d(8)
        self.pw = nn.Conv2d(8, 12, 1, bias=False)
        self.pw_bn = nn.BatchNorm2d(12)
        self.fc = nn.Linear(12, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.dw_bn(self.dw(torch.relu(self.bn(self.conv(x))))))
        x = torch.relu(self.pw_bn(self.pw(x)))
        return self.fc(x.mean((2, 3)))


@pytest.mark.parametrize("dim", [0, 1])
def test_depthwise_conv_follows_its_channels(dim: int) -> None:
    model = randomise(DepthwiseNet(), seed=5)
    masks = create_model_masks_dict(model)
    layer, thin = ("conv", remove_filters) if dim == 0 else ("pw", remove_channels)
    zero_structures(model, masks, layer, [0, 3, 6], dim)
    record = assert_thinning_exact(model, lambda m: thin(m, masks), (3, 8, 8), filters=dim == 0)
    assert model.dw.weight.shape == (5, 1, 3, 3) and model.dw.groups == 5
    assert record.layer("dw_bn").removed_out == [0, 3, 6]


# ------------------------------------------------------------------------------------- trained weights
@pytest.mark.slow
def test_trained_resnet20_filters_and_channels_thin_exactly() -> None:
    """The shared trained ResNet-20: BN statistics as training left them."""
    model = model_from_checkpoint(load_checkpoint(shared_file("models/resnet20_cifar10_jpeg.pth"))).eval()
    masks = create_model_masks_dict(model)
    for layer in STREAM2_PRODUCERS:
        zero_structures(model, masks, layer, [0, 8, 9, 20], 0)
    for layer in ("layer1.2.conv1", "layer3.1.conv1"):
        zero_structures(model, masks, layer, [1, 2, 3], 0)
    zero_structures(model, masks, "layer3.2.conv2", [5, 6], 1)
    record = assert_thinning_exact(model, lambda m: contract_model(m, masks))
    assert model.layer2[1].conv1.in_channels == 28 and model.layer3[2].conv1.out_channels == 62
    assert record.layer("layer3.2.bn1").removed_out == [5, 6]
