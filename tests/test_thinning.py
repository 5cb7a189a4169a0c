"""Thinning: Distiller's test cases (reference §8.1, §8.2, §3.5, §7) plus coupling, concat, depthwise and rollback."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from edgeprune.errors import ConfigError
from edgeprune.models import create_model
from edgeprune.models.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from edgeprune.models.summary import model_summary
from edgeprune.pruning.masks import MasksDict, create_model_masks_dict
from edgeprune.pruning.remover import ChannelRemover, FilterRemover, StructureRemover
from edgeprune.pruning.thinning import ThinningError, contract_model, remove_channels, remove_filters


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """These forwards are tiny; on a busy 2-core box extra OpenMP threads only add contention."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ----------------------------------------------------------------------------------------------- helpers
def modules(model: nn.Module) -> dict[str, nn.Module]:
    return dict(model.named_modules())


def zero_filters(model: nn.Module, masks: MasksDict, layer: str, indices: Sequence[int]) -> None:
    """Emulate a Filters pruner: a mask with zero filters, applied to the weight."""
    weight = modules(model)[layer].weight
    mask = torch.ones_like(weight)
    mask[list(indices)] = 0
    masks[f"{layer}.weight"].mask = mask
    masks[f"{layer}.weight"].apply_mask(weight)


def zero_channels(model: nn.Module, masks: MasksDict, layer: str, indices: Sequence[int]) -> None:
    """Emulate a Channels pruner: a mask with zero input channels, applied to the weight."""
    weight = modules(model)[layer].weight
    mask = torch.ones_like(weight)
    mask[:, list(indices)] = 0
    masks[f"{layer}.weight"].mask = mask
    masks[f"{layer}.weight"].apply_mask(weight)


def smallest_filters(model: nn.Module, layer: str, count: int) -> list[int]:
    """The ``count`` filters with the lowest L1 norm (what L1RankedStructureParameterPruner zeroes)."""
    weight = modules(model)[layer].weight.detach()
    return weight.flatten(1).abs().sum(1).argsort()[:count].tolist()


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, shape: Sequence[int], classes: int = 10) -> None:
    model.train()
    x = torch.randn(2, *shape)
    loss = F.cross_entropy(model(x), torch.randint(0, classes, (2,)))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def outputs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(x)


def sgd(model: nn.Module) -> torch.optim.SGD:
    return torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=0.1)


# ---------------------------------------------------------------------------------- filters (§8.1 1-3)
@pytest.mark.parametrize("ratio", [0.1, 0.5])
def test_resnet20_conv1_filters(ratio: float) -> None:
    torch.manual_seed(0)
    model = create_model("resnet20_cifar")
    masks = create_model_masks_dict(model)
    k = int(ratio * 16)
    zero_filters(model, masks, "layer1.0.conv1", smallest_filters(model, "layer1.0.conv1", k))

    record = remove_filters(model, masks)

    m = modules(model)
    assert m["layer1.0.conv1"].out_channels == m["layer1.0.conv2"].in_channels == 16 - k
    assert m["layer1.0.conv1"].weight.shape == (16 - k, 16, 3, 3)
    assert m["layer1.0.conv2"].weight.shape == (16, 16 - k, 3, 3)
    bn = m["layer1.0.bn1"]
    assert bn.num_features == bn.weight.numel() == bn.bias.numel() == bn.running_mean.numel() == 16 - k
    assert bn.running_var.numel() == 16 - k
    assert masks["layer1.0.conv1.weight"].mask.shape == (16 - k, 16, 3, 3)
    assert bool(masks["layer1.0.conv1.weight"].mask.eq(1).all())  # only the zero filters were cut
    assert [c.name for c in record.layers] == ["layer1.0.conv1", "layer1.0.bn1", "layer1.0.conv2"]
    assert record.layer("layer1.0.conv2").old_shape == (16, 16, 3, 3)
    assert record.layer("layer1.0.conv1").macs_after == 2_359_296 * (16 - k) // 16
    assert record.macs_after == model_summary(model).macs < record.macs_before == 40_813_184
    optimizer = sgd(model)
    train_step(model, optimizer, (3, 32, 32))
    train_step(model, optimizer, (3, 32, 32))


def test_simplenet_conv1_filters_with_bias() -> None:
    model = create_model("simplenet_cifar")
    masks = create_model_masks_dict(model)
    zero_filters(model, masks, "conv1", smallest_filters(model, "conv1", 3))

    remove_filters(model, masks)

    assert model.conv1.weight.shape == (3, 3, 5, 5) and model.conv1.bias.shape == (3,)
    assert model.conv2.in_channels == 3 and model.conv2.weight.shape == (16, 3, 5, 5)
    train_step(model, sgd(model), (3, 32, 32))


@pytest.mark.parametrize(("first", "second"), [("features.0", "features.3"), ("features.30", "features.34"),
                                               ("features.37", "features.40")])
def test_vgg16_conv_pairs(first: str, second: str) -> None:
    model = create_model("vgg16_bn_cifar")
    masks = create_model_masks_dict(model)
    channels = modules(model)[first].out_channels
    k = int(0.1 * channels)
    zero_filters(model, masks, first, smallest_filters(model, first, k))

    remove_filters(model, masks)

    m = modules(model)
    assert m[first].out_channels == m[second].in_channels == channels - k
    assert m[second].weight.shape[1] == channels - k
    train_step(model, sgd(model), (3, 32, 32))


@pytest.mark.parametrize("make_optimizer", [sgd, lambda model: torch.optim.Adam(model.parameters(), lr=1e-3)],
                         ids=["sgd-momentum", "adam"])
def test_vgg16_conv_to_linear_with_grads_and_optimizer_state(make_optimizer) -> None:
    torch.manual_seed(0)
    model = create_model("vgg16_bn_cifar")
    masks = create_model_masks_dict(model)
    optimizer = make_optimizer(model)
    train_step(model, optimizer, (3, 32, 32))  # grads and momentum / Adam moments exist before thinning
    zero_filters(model, masks, "features.40", smallest_filters(model, "features.40", 51))

    remove_filters(model, masks, optimizer)

    conv, fc = modules(model)["features.40"], model.classifier
    assert conv.out_channels == 461 and fc.in_features == 461
    assert conv.weight.grad.shape == (461, 512, 3, 3) and fc.weight.grad.shape == (10, 461)
    for param in (conv.weight, conv.bias, fc.weight):
        tensors = [v for v in optimizer.state[param].values() if v.dim() > 0]  # momentum / exp_avg(_sq)
        assert tensors and all(v.shape == param.shape for v in tensors)
    train_step(model, optimizer, (3, 32, 32))
    train_step(model, optimizer, (3, 32, 32))


def test_conv_to_linear_with_spatial_features_is_exact() -> None:
    """simplenet: conv2 (16 maps of 5x5) -> fc1 (400). A removed map takes its 25 real features with it."""
    torch.manual_seed(0)
    model = create_model("simplenet_cifar")
    masks = create_model_masks_dict(model)
    removed = [1, 4, 9, 15]
    zero_filters(model, masks, "conv2", removed)
    model.conv2.bias.data[removed] = 0  # the removed maps output exactly zero, so thinning changes nothing
    x = torch.randn(3, 3, 32, 32)
    expected = outputs(model, x)

    record = remove_filters(model, masks)

    assert model.fc1.in_features == 12 * 25 and model.fc1.weight.shape == (120, 300)
    assert record.layer("fc1").removed_in == [f for c in removed for f in range(25 * c, 25 * c + 25)]
    assert torch.allclose(outputs(model, x), expected, atol=1e-6)


def test_mobilenet_depthwise_chain(tmp_path) -> None:
    model = create_model("mobilenet_cifar")
    masks = create_model_masks_dict(model)
    zero_filters(model, masks, "conv1", [0, 5, 9, 31])
    zero_filters(model, masks, "layers.0.pw", [2, 3, 40, 41, 42, 63])
    zero_filters(model, masks, "layers.12.pw", list(range(0, 1024, 10)))

    remove_filters(model, masks)

    m = modules(model)
    assert m["conv1"].weight.shape == (28, 3, 3, 3) and m["bn1"].num_features == 28
    dw0 = m["layers.0.dw"]
    assert dw0.weight.shape == (28, 1, 3, 3) and dw0.groups == dw0.in_channels == dw0.out_channels == 28
    assert m["layers.0.bn1"].num_features == 28 and m["layers.0.pw"].weight.shape == (58, 28, 1, 1)
    dw1 = m["layers.1.dw"]
    assert dw1.weight.shape == (58, 1, 3, 3) and dw1.groups == 58 and m["layers.1.bn1"].num_features == 58
    assert m["layers.1.pw"].weight.shape == (128, 58, 1, 1)
    assert m["layers.12.pw"].out_channels == m["layers.12.bn2"].num_features == model.fc.in_features == 1024 - 103
    train_step(model, sgd(model), (3, 32, 32))
    x = torch.randn(2, 3, 32, 32)
    loaded = model_from_checkpoint(load_checkpoint(save_checkpoint(tmp_path / "m.pth", model, arch="mobilenet_cifar")))
    assert modules(loaded)["layers.1.dw"].groups == 58 and torch.equal(outputs(loaded, x), outputs(model, x))


@pytest.mark.parametrize("ratio", [1.0, 0.999])
def test_prune_all_filters_raises(ratio: float) -> None:
    model = create_model("resnet20_cifar")
    masks = create_model_masks_dict(model)
    zero_filters(model, masks, "layer1.0.conv1", range(round(ratio * 16)))
    with pytest.raises(ThinningError, match=r"all 16 filters of layer 'layer1.0.conv1'") as info:
        remove_filters(model, masks)
    assert isinstance(info.value, ValueError) and isinstance(info.value, ConfigError)
    assert model.layer1[0].conv1.weight.shape == (16, 16, 3, 3)


# ----------------------------------------------------------------------------------- channels (§8.1 4-6)
@pytest.mark.parametrize(("arch", "producer", "bn", "consumer"), [
    ("resnet20_cifar", "layer1.0.conv1", "layer1.0.bn1", "layer1.0.conv2"),
    ("simplenet_cifar", "conv1", None, "conv2"),
    ("vgg16_bn_cifar", "features.0", "features.1", "features.3"),
])
def test_arbitrary_channel_pruning_and_checkpoint_round_trips(tmp_path, arch, producer, bn, consumer) -> None:
    torch.manual_seed(0)
    model = create_model(arch)
    masks = create_model_masks_dict(model)
    channels = modules(model)[consumer].in_channels
    zero_channels(model, masks, consumer, [0, 2])
    density = masks[f"{consumer}.weight"].mask.transpose(0, 1).flatten(1).ne(0).any(1).float().mean()
    assert float(density) == pytest.approx((channels - 2) / channels)

    remove_channels(model, masks)

    m = modules(model)
    assert m[producer].out_channels == m[consumer].in_channels == channels - 2
    assert m[producer].weight.shape[0] == m[consumer].weight.shape[1] == channels - 2
    if bn is not None:
        b = m[bn]
        assert b.num_features == b.running_mean.numel() == b.running_var.numel() == channels - 2
        assert b.weight.numel() == b.bias.numel() == channels - 2
    train_step(model, sgd(model), (3, 32, 32))

    x = torch.randn(2, 3, 32, 32)
    expected = outputs(model, x)
    current = model
    for i in range(2):  # the second round re-saves a model that was itself loaded thin
        path = save_checkpoint(tmp_path / f"thin{i}.pth", current, arch=arch)
        current = model_from_checkpoint(load_checkpoint(path))
        assert modules(current)[consumer].weight.shape == m[consumer].weight.shape
        assert torch.equal(outputs(current, x), expected)


def test_channel_pruning_thins_predecessor_bias_exactly() -> None:
    """Zero input channels contribute nothing, so removing them and their filters (with bias) is exact."""
    torch.manual_seed(0)
    model = create_model("simplenet_cifar")
    masks = create_model_masks_dict(model)
    zero_channels(model, masks, "conv2", [0, 1])
    x = torch.randn(2, 3, 32, 32)
    expected = outputs(model, x)

    record = remove_channels(model, masks)

    assert model.conv1.weight.shape == (4, 3, 5, 5) and model.conv1.bias.shape == (4,)
    assert record.layer("conv1").removed_out == [0, 1] and record.layer("conv2").removed_in == [0, 1]
    assert masks["conv2.weight"].mask.shape == (16, 4, 5, 5)
    assert torch.allclose(outputs(model, x), expected, atol=1e-6)


def test_linear_columns_remove_rows_of_the_previous_linear() -> None:
    torch.manual_seed(0)
    model = create_model("simplenet_cifar")
    masks = create_model_masks_dict(model)
    zero_channels(model, masks, "fc2", [3, 50, 100])
    x = torch.randn(2, 3, 32, 32)
    expected = outputs(model, x)

    remove_channels(model, masks)

    assert model.fc1.weight.shape == (117, 400) and model.fc1.bias.shape == (117,)
    assert model.fc2.in_features == 117
    assert torch.allclose(outputs(model, x), expected, atol=1e-6)


def test_prune_all_channels_raises() -> None:
    model = create_model("resnet20_cifar")
    masks = create_model_masks_dict(model)
    zero_channels(model, masks, "layer1.0.conv2", range(16))
    with pytest.raises(ValueError, match=r"all 16 input channels of layer 'layer1.0.conv2'"):
        remove_channels(model, masks)


# ------------------------------------------------------------------------------------- residual coupling
STREAM1_PRODUCERS = ["conv1", "layer1.0.conv2", "layer1.1.conv2", "layer1.2.conv2"]
STREAM1_CONSUMERS = ["layer1.0.conv1", "layer1.1.conv1", "layer1.2.conv1", "layer2.0.conv1", "layer2.0.downsample.0"]


def test_residual_filters_pruned_apart_raise_and_suggest_leader() -> None:
    """Every conv feeding layer1's stream lost two filters, not the same ones: Distiller removed each set and
    misaligned the residual add; edgeprune refuses and names the Leader group."""
    model = create_model("resnet20_cifar")
    masks = create_model_masks_dict(model)
    for i, layer in enumerate(STREAM1_PRODUCERS):
        zero_filters(model, masks, layer, [1, 2 + i])

    with pytest.raises(ThinningError) as info:
        remove_filters(model, masks)

    text = str(info.value)
    assert "conv1 (14 of 16 kept)" in text and "layer1.0.conv2 (14 of 16 kept)" in text
    assert "group_dependency: Leader" in text
    assert "weights: [conv1.weight, layer1.0.conv2.weight, layer1.1.conv2.weight, layer1.2.conv2.weight]" in text
    assert model.layer1[0].conv2.weight.shape == (16, 16, 3, 3)

    record = remove_filters(model, masks, auto_group=True)  # only filter 1 is zero in all four
    assert "auto_group" in record.notes[0]
    assert all(modules(model)[name].out_channels == 15 for name in STREAM1_PRODUCERS)
    assert all(modules(model)[name].in_channels == 15 for name in STREAM1_CONSUMERS)


def test_zero_filters_of_one_residual_producer_stay_in_place_with_a_note() -> None:
    """Distiller issue #304: only layer1.0.conv2 has zero filters. Removing them would cut the same channels
    of conv1, layer1.1.conv2 and layer1.2.conv2, which are live (Distiller broke the add): they stay zero."""
    model = create_model("resnet20_cifar")
    masks = create_model_masks_dict(model)
    zero_filters(model, masks, "layer1.0.conv2", [1, 2])
    x = torch.randn(2, 3, 32, 32)
    before = outputs(model, x)

    record = remove_filters(model, masks)

    assert not record.changed and model.layer1[0].conv2.weight.shape == (16, 16, 3, 3)
    assert "kept 2 zero filters in place" in record.notes[0] and "layer1.0.conv2 (14 of 16 kept)" in record.notes[0]
    torch.testing.assert_close(outputs(model, x), before, rtol=0, atol=0)

    for layer in STREAM1_PRODUCERS:  # what a Leader group produces: the same zero filters everywhere
        zero_filters(model, masks, layer, [1, 2])
    remove_filters(model, masks)
    assert all(modules(model)[name].out_channels == 14 for name in STREAM1_PRODUCERS)
    assert all(modules(model)[name].in_channels == 14 for name in STREAM1_CONSUMERS)


def test_residual_filters_auto_group_removes_the_intersection() -> None:
    model = create_model("resnet20_cifar")
    masks = create_model_masks_dict(model)
    for layer in STREAM1_PRODUCERS:
        zero_filters(model, masks, layer, [1, 2, 7] if layer == "layer1.1.conv2" else [1, 2])

    record = remove_filters(model, masks, auto_group=True)

    m = modules(model)
    assert all(m[name].out_channels == 14 for name in STREAM1_PRODUCERS)
    assert all(m[name].in_channels == 14 for name in STREAM1_CONSUMERS)
    assert all(m[name].num_features == 14 for name in ["bn1", "layer1.0.bn2", "layer1.1.bn2", "layer1.2.bn2"])
    assert record.layer("conv1").removed_out == [1, 2]
    assert "layer1.1.conv2 (13 of 16 kept)" in record.notes[0]
    train_step(model, sgd(model), (3, 32, 32))


def test_resnet20_channels_of_one_residual_reader_stay_but_all_readers_thin() -> None:
    """§8.2 item 2: Distiller thinned the stem to 15 and broke the residual add; edgeprune keeps the channel."""
    model = create_model("resnet20_cifar")
    masks = create_model_masks_dict(model)
    zero_channels(model, masks, "layer1.0.conv1", [3])
    record = remove_channels(model, masks)
    assert not record.changed and "layer1.0.conv1 (15 of 16 kept)" in record.notes[0]

    for layer in STREAM1_CONSUMERS[1:]:
        zero_channels(model, masks, layer, [3])
    remove_channels(model, masks)

    m = modules(model)
    assert m["conv1"].out_channels == 15 and all(m[n].out_channels == 15 for n in STREAM1_PRODUCERS)
    assert all(m[n].in_channels == 15 for n in STREAM1_CONSUMERS)
    train_step(model, sgd(model), (3, 32, 32))


def test_resnet20_channels_pruned_apart_in_every_reader_raise() -> None:
    model = create_model("resnet20_cifar")
    masks = create_model_masks_dict(model)
    for i, layer in enumerate(STREAM1_CONSUMERS):
        zero_channels(model, masks, layer, [3 + i])
    with pytest.raises(ThinningError) as info:
        remove_channels(model, masks)
    text = str(info.value)
    assert "layer1.0.conv1 (15 of 16 kept)" in text
    assert f"weights: [{', '.join(f'{n}.weight' for n in STREAM1_CONSUMERS)}]" in text
    assert not remove_channels(model, masks, auto_group=True).changed


def test_resnet56_leader_channel_example() -> None:
    """§3.5: one Leader group over the channels of every reader of the layer1 stream."""
    model = create_model("resnet56_cifar")
    masks = create_model_masks_dict(model)
    removed = [0, 1, 2, 4, 5, 7, 8, 10, 11, 13, 15]
    for layer in [f"layer1.{i}.conv1" for i in range(9)] + ["layer2.0.conv1", "layer2.0.downsample.0"]:
        zero_channels(model, masks, layer, removed)

    remove_channels(model, masks)

    m = modules(model)
    assert m["conv1"].weight.shape == (5, 3, 3, 3)
    assert all(m[f"layer1.{i}.conv2"].weight.shape == (5, 16, 3, 3) for i in range(9))
    assert all(m[f"layer1.{i}.conv1"].weight.shape == (16, 5, 3, 3) for i in range(9))
    assert m["layer2.0.conv1"].weight.shape == (32, 5, 3, 3)
    assert m["layer2.0.downsample.0"].weight.shape == (32, 5, 1, 1)
    assert m["bn1"].num_features == 5 and all(m[f"layer1.{i}.bn2"].num_features == 5 for i in range(9))


def test_resnet56_filter_rank_example_counts() -> None:
    """§7: Distiller's resnet56_cifar_filter_rank.yaml result, 634,640 weights and 78,856,832 MACs."""
    torch.manual_seed(0)
    model = create_model("resnet56_cifar")
    masks = create_model_masks_dict(model)
    kept = {**{f"layer1.{i}.conv1": 7 for i in range(9)}, **{f"layer2.{i}.conv1": 16 for i in (1, 2, 3, 4, 6, 7)},
            "layer3.1.conv1": 58, **{f"layer3.{i}.conv1": 45 for i in (2, 3, 5, 6, 7, 8)}}
    for layer, keep in kept.items():
        out = modules(model)[layer].out_channels
        zero_filters(model, masks, layer, smallest_filters(model, layer, out - keep))

    record = remove_filters(model, masks)

    summary = model_summary(model)
    assert (summary.weight_params, summary.macs) == (634_640, 78_856_832)
    assert (record.weight_params_before, record.macs_before) == (851_504, 125_747_840)
    assert (record.weight_params_after, record.macs_after) == (634_640, 78_856_832)
    assert modules(model)["layer3.1.conv1"].weight.shape == (58, 64, 3, 3)


# ------------------------------------------------------------------------------------ arbitrary models
class CatDepthwiseNet(nn.Module):
    """Two branches concatenated, a depthwise conv over the concat, a pointwise conv, flatten to Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.input_shape = (3, 16, 16)
        self.a = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.b = nn.Conv2d(3, 6, 1, bias=False)
        self.dw = nn.Conv2d(14, 14, 3, padding=1, groups=14, bias=False)
        self.pw = nn.Conv2d(14, 10, 1, bias=False)
        self.head = nn.Linear(10 * 4 * 4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.cat([F.relu(self.a(x)), self.b(x)], dim=1)
        y = F.relu(self.pw(self.dw(y)))
        y = F.adaptive_avg_pool2d(y, 4)
        return self.head(y.view(y.size(0), -1))


def test_concat_and_depthwise_user_model_is_exact_with_adam_state() -> None:
    torch.manual_seed(0)
    model = CatDepthwiseNet()
    masks = create_model_masks_dict(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    train_step(model, optimizer, model.input_shape, classes=5)
    zero_filters(model, masks, "a", [1, 5])
    zero_filters(model, masks, "b", [0, 3])
    zero_filters(model, masks, "pw", [2, 7, 9])
    x = torch.randn(3, *model.input_shape)
    expected = outputs(model, x)

    record = remove_filters(model, masks, optimizer)

    assert model.a.weight.shape == (6, 3, 3, 3) and model.b.weight.shape == (4, 3, 1, 1)
    assert model.dw.weight.shape == (10, 1, 3, 3) and model.dw.groups == model.dw.in_channels == 10
    assert record.layer("dw").removed_out == [1, 5, 8, 11]  # b's filters sit at offset 8 of the concat
    assert model.pw.weight.shape == (7, 10, 1, 1) and model.head.weight.shape == (5, 7 * 16)
    assert optimizer.state[model.dw.weight]["exp_avg"].shape == (10, 1, 3, 3)
    assert optimizer.state[model.head.weight]["exp_avg_sq"].shape == (5, 112)
    assert torch.allclose(outputs(model, x), expected, atol=1e-6)
    train_step(model, optimizer, model.input_shape, classes=5)


def subsets(size: int) -> st.SearchStrategy[list[int]]:
    """Any set of filter indices that leaves at least one filter."""
    return st.lists(st.integers(0, size - 1), unique=True, max_size=size - 1)


@settings(max_examples=20, deadline=None)
@given(a=subsets(8), b=subsets(6), pw=subsets(10))
def test_removing_zero_filters_without_bn_or_bias_preserves_outputs(a: list[int], b: list[int],
                                                                   pw: list[int]) -> None:
    torch.manual_seed(0)
    model = CatDepthwiseNet()
    masks = create_model_masks_dict(model)
    for layer, indices in (("a", a), ("b", b), ("pw", pw)):
        zero_filters(model, masks, layer, indices)
    x = torch.randn(2, *model.input_shape)
    expected = outputs(model, x)

    remove_filters(model, masks)

    assert model.dw.groups == 14 - len(a) - len(b) and model.head.in_features == (10 - len(pw)) * 16
    assert torch.allclose(outputs(model, x), expected, atol=1e-6)


class GroupedNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.input_shape = (3, 8, 8)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.grouped = nn.Conv2d(8, 8, 3, padding=1, groups=2)
        self.fc = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.grouped(F.relu(self.conv(x))).mean((2, 3)))


def test_grouped_conv_is_refused_with_its_name() -> None:
    model = GroupedNet()
    masks = create_model_masks_dict(model)
    zero_filters(model, masks, "conv", [0])
    with pytest.raises(ThinningError, match=r"grouped conv 'grouped' \(groups=2"):
        remove_filters(model, masks)
    assert remove_filters(model, masks, auto_group=True).notes  # auto_group keeps them and says why


class FullyConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.input_shape = (3, 8, 8)
        self.conv1 = nn.Conv2d(3, 4, 3)
        self.conv2 = nn.Conv2d(4, 6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.relu(self.conv1(x)))


def test_filters_that_reach_the_model_output_are_refused() -> None:
    model = FullyConvNet()
    masks = create_model_masks_dict(model)
    zero_filters(model, masks, "conv2", [1])
    with pytest.raises(ThinningError, match="the model output"):
        remove_filters(model, masks)


class HardcodedViewNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.input_shape = (3, 8, 8)
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4 * 36, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).view(-1, 144))


def test_failed_verification_undoes_everything() -> None:
    model = HardcodedViewNet()
    masks = create_model_masks_dict(model)
    optimizer = sgd(model)
    train_step(model, optimizer, model.input_shape, classes=2)
    zero_filters(model, masks, "conv", [1])
    momentum = optimizer.state[model.fc.weight]["momentum_buffer"]
    weight = model.conv.weight

    with pytest.raises(ThinningError, match="every change was undone"):
        remove_filters(model, masks, optimizer)

    assert model.conv.weight is weight and weight.shape == (4, 3, 3, 3) and weight.grad.shape == (4, 3, 3, 3)
    assert model.conv.out_channels == 4 and model.fc.in_features == 144
    assert optimizer.state[model.fc.weight]["momentum_buffer"] is momentum
    assert masks["conv.weight"].mask.shape == (4, 3, 3, 3)
    train_step(model, optimizer, model.input_shape, classes=2)


class DataDependentNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.input_shape = (3, 8, 8)
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) if x.sum() > 0 else x


def test_untraceable_model_is_a_clear_error() -> None:
    with pytest.raises(ThinningError, match="Cannot trace DataDependentNet with torch.fx"):
        remove_filters(DataDependentNet(), None)


def test_data_parallel_wrapper_is_thinned_with_canonical_names() -> None:
    inner = create_model("resnet20_cifar")
    masks = create_model_masks_dict(inner)
    zero_filters(inner, masks, "layer2.1.conv1", [0, 1, 2])
    remove_filters(nn.DataParallel(inner), masks)
    assert inner.layer2[1].conv1.out_channels == 29 and masks["layer2.1.conv1.weight"].mask.shape[0] == 29


# ---------------------------------------------------------------------------------- contract & remover
def test_contract_model_merges_both_passes() -> None:
    torch.manual_seed(0)
    model = create_model("simplenet_cifar")
    masks = create_model_masks_dict(model)
    zero_filters(model, masks, "conv2", [0, 5])
    zero_channels(model, masks, "conv2", [1])  # removes conv1's filter 1

    record = contract_model(model, masks)

    assert record.function == "contract_model"
    assert model.conv1.weight.shape == (5, 3, 5, 5) and model.conv2.weight.shape == (14, 5, 5, 5)
    assert model.fc1.in_features == 14 * 25
    change = record.layer("conv2")
    assert change.old_shape == (16, 6, 5, 5) and change.new_shape == (14, 5, 5, 5)
    assert change.removed_out == [0, 5] and change.removed_in == [1]
    assert record.macs_before == 651_720 and record.macs_after == model_summary(model).macs
    assert "conv2 (Conv2d): (16, 6, 5, 5) -> (14, 5, 5, 5)" in str(record)


def test_structure_remover_functions_aliases_and_dataset_shape() -> None:
    assert FilterRemover is ChannelRemover is StructureRemover
    with pytest.raises(ConfigError, match="did you mean 'remove_filters'") as info:
        StructureRemover("remove_filter")
    assert "remove_filters, remove_channels, contract_model" in str(info.value)

    model = CatDepthwiseNet()
    del model.input_shape
    masks = create_model_masks_dict(model)
    zero_filters(model, masks, "pw", [0])
    with pytest.raises(ConfigError, match="dataset 'svhn'"):
        StructureRemover("remove_filters", arch="catnet", dataset="svhn").thin(model, masks)
    record = StructureRemover("remove_filters", arch="catnet", dataset="cifar10").thin(model, masks)
    assert record.input_shape == (3, 32, 32) and model.pw.out_channels == 9
