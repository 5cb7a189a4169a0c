"""Residual coupling: structure pruning that thinning would refuse fails when the schedule is built, and
``auto_group: true`` gives coupled weights one map ranked by the group's summed importance (reference §2.4,
§3.5-3.6, issues #304/#474/#523)."""

from __future__ import annotations

import copy
import textwrap
import warnings
from typing import Any

import pytest
import torch
import yaml
from torch import nn

from edgeprune.errors import ConfigError
from edgeprune.models import create_model
from edgeprune.pruning.masks import create_model_masks_dict
from edgeprune.pruning.pruners import (
    BNScaleFilterPruner,
    FPGMFilterPruner,
    L1RankedStructureParameterPruner,
)
from edgeprune.pruning.thinning import remove_filters
from edgeprune.schedule.config import ScheduleError, ScheduleWarning, parse_schedule
from edgeprune.schedule.scheduler import CompressionScheduler

LAYER2 = ["layer2.0.conv1.weight", "layer2.0.conv2.weight", "layer2.0.downsample.0.weight", "layer2.1.conv2.weight",
          "layer2.2.conv2.weight", "layer2.1.conv1.weight", "layer2.2.conv1.weight"]
LAYER2_STREAM = ["layer2.0.conv2", "layer2.0.downsample.0", "layer2.1.conv2", "layer2.2.conv2"]
LAYER1_STREAM = ["conv1.weight", "layer1.0.conv2.weight", "layer1.1.conv2.weight", "layer1.2.conv2.weight"]

# Distiller's resnet20_filters.schedule_agp_4.yaml, its layer2 pruner and its thinning (module. names as there).
AGP4 = """\
version: 1
pruners:
  low_pruner:
    class: L1RankedStructureParameterPruner_AGP
    initial_sparsity : 0.10
    final_sparsity: 0.40
    group_type: Filters
    weights: [module.layer2.0.conv1.weight, module.layer2.0.conv2.weight,
              module.layer2.0.downsample.0.weight,
              module.layer2.1.conv2.weight, module.layer2.2.conv2.weight,
              module.layer2.1.conv1.weight, module.layer2.2.conv1.weight]
extensions:
  net_thinner:
      class: 'FilterRemover'
      thinning_func_str: remove_filters
      arch: 'resnet20_cifar'
      dataset: 'cifar10'
policies:
  - pruner:
      instance_name : low_pruner
    starting_epoch: 180
    ending_epoch: 210
    frequency: 2
  - extension:
      instance_name: net_thinner
    epochs: [212]
"""
THINNER = """\
extensions:
  thin:
    class: FilterRemover
    thinning_func_str: remove_filters
"""


def resnet20() -> nn.Module:
    torch.manual_seed(0)
    return create_model("resnet20_cifar")


def pruner(name: str, weights: list[str], options: str = "") -> str:
    """An L1 filter pruner at 50% on ``weights``; ``options`` are extra YAML lines of it."""
    return (f"  {name}:\n    class: L1RankedStructureParameterPruner\n    group_type: Filters\n"
            f"    desired_sparsity: 0.5\n{textwrap.indent(options, '    ')}    weights: [{', '.join(weights)}]\n")


def one_shot(weights: list[str], options: str = "", thin: bool = True, more: str = "") -> str:
    """Pruner p1 (plus the pruners in ``more``) at epochs: [0], then a FilterRemover at epoch 0 if ``thin``."""
    names = ["p1", *(line.strip(" :") for line in more.splitlines() if line.startswith("  ") and line[2] != " ")]
    text = f"pruners:\n{pruner('p1', weights, options)}{more}{THINNER if thin else ''}policies:\n"
    text += "".join(f"  - pruner:\n      instance_name: {name}\n    epochs: [0]\n" for name in names)
    return text + ("  - extension:\n      instance_name: thin\n    epochs: [0]\n" if thin else "")


def build(text: str, model: nn.Module | None = None) -> CompressionScheduler:
    """Build with ScheduleWarnings as errors, so a test that expects none fails on one."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", ScheduleWarning)
        return CompressionScheduler(model if model is not None else resnet20(), parse_schedule(text, "schedule.yaml"))


def snippets(hint: str) -> list[dict[str, Any]]:
    """The YAML blocks of a fix hint: the lines after each '* ' bullet, up to the next bullet or note."""
    blocks: list[list[str]] = []
    for line in hint.splitlines()[1:]:
        if line.startswith(("* ", "(")):
            blocks.append([])
        else:
            blocks[-1].append(line)
    return [yaml.safe_load("\n".join(block)) for block in blocks if block]


def zero_filters(weight: torch.Tensor) -> list[int]:
    return (weight.detach().flatten(1).abs().sum(1) == 0).nonzero().flatten().tolist()


# ---------------------------------------------------------------------------------------- build-time refusal
def test_agp4_layer2_pruner_with_a_thinning_extension_is_grouped_with_a_located_warning() -> None:
    """Distiller's schedule runs unchanged: the coupled convs it ranks independently are ranked as one group,
    exactly as with ``auto_group: true``, and the warning says so at the pruner's key."""
    with pytest.warns(ScheduleWarning) as record:
        sched = CompressionScheduler(resnet20(), parse_schedule(AGP4, "schedule.yaml"))
    message = str(record[0].message)
    assert message.startswith("schedule.yaml:3:3: pruners.low_pruner: [layer2.0.conv2.weight, "
                              "layer2.0.downsample.0.weight, layer2.1.conv2.weight, layer2.2.conv2.weight] feed")
    assert "ranks them independently" in message and "extension 'net_thinner' (epoch 212)" in message
    assert "Set auto_group: true on this pruner" in message
    assert sched.policies[0].pruner.shares_coupled_maps
    explicit = build(AGP4.replace("group_type: Filters", "group_type: Filters\n    auto_group: true"))
    for scheduler in (sched, explicit):
        scheduler.replay(213)
    grouped, expected = sched.model.state_dict(), explicit.model.state_dict()
    assert grouped.keys() == expected.keys() and all(torch.equal(grouped[k], expected[k]) for k in expected)
    assert sched.model.layer2[0].downsample[0].out_channels == 20


def test_a_pruner_that_cannot_group_coupled_weights_is_refused_with_the_fix() -> None:
    """An activation-ranked pruner ranks each weight by its own statistic: it cannot be given one map."""
    text = one_shot(LAYER1_STREAM).replace("class: L1RankedStructureParameterPruner",
                                           "class: ActivationMeanRankedFilterPruner")
    with pytest.raises(ScheduleError) as info:
        build(text)
    message = str(info.value)
    assert message.startswith("schedule.yaml:2:3: pruners.p1: the filters of coupled weights")
    assert "ranks them independently" in message and "extension 'thin' (epoch 0)" in message
    assert "group_dependency: Leader" in info.value.hint


def test_agp4_with_auto_group_prunes_and_thins_at_epoch_212() -> None:
    model = resnet20()
    sched = build(AGP4.replace("group_type: Filters", "group_type: Filters\n    auto_group: true"), model)
    for epoch in range(180, 213):
        sched.on_epoch_begin(epoch, model, None)
        sched.on_minibatch_begin(epoch, 0, 1, None)
        sched.on_minibatch_end(epoch, 0, 1, None)
        sched.on_epoch_end(epoch, None, {})
    modules = dict(model.named_modules())
    assert {modules[layer].out_channels for layer in LAYER2_STREAM} == {20}  # floor(0.4 * 32) = 12 pruned
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize(("text", "phrase"), [
    (AGP4.split("extensions:")[0] + "policies:" + AGP4.split("policies:")[1].split("  - extension")[0],
     "fine for this masks-only schedule"),
    (AGP4.replace("epochs: [212]", "epochs: [100]"), "fine for this masks-only schedule"),  # thins before pruning
    (AGP4.replace("dataset: 'cifar10'", "dataset: 'cifar10'\n      auto_group: true"), "that pruning is lost"),
])
def test_without_refusing_thinning_it_is_a_located_warning(text: str, phrase: str) -> None:
    with pytest.warns(ScheduleWarning, match=r"schedule.yaml:3:3: pruners.low_pruner: .*ranks them independently"
                                             rf".*{phrase}.*set auto_group: true on this pruner"):
        CompressionScheduler(resnet20(), parse_schedule(text, "schedule.yaml"))


def test_issue_304_pruning_one_conv_of_a_residual_stream_names_the_missing_weights() -> None:
    with pytest.raises(ScheduleError) as info:
        build(one_shot(["layer1.0.conv2.weight"]))
    message = str(info.value)
    assert message.startswith("schedule.yaml:2:3: pruners.p1:")
    assert (f"[{', '.join(LAYER1_STREAM)}] feed the same channels (e.g. one residual add), but this pruner prunes "
            "only layer1.0.conv2.weight") in message
    auto, leader = snippets(info.value.hint)
    assert auto["pruners"]["p1"]["weights"] == ["layer1.0.conv2.weight", "conv1.weight", "layer1.1.conv2.weight",
                                                "layer1.2.conv2.weight"]
    assert leader["pruners"]["p1"]["weights"] == LAYER1_STREAM and "policies" not in leader
    # thin_all (prune --thin) sweeps up what is zero after a schedule that does not thin itself: those filters
    # cannot go without cutting the live filters of conv1 and the other conv2s, so they stay, and it says so.
    model = resnet20()
    with pytest.warns(ScheduleWarning, match="prunes only layer1.0.conv2.weight"):
        sched = CompressionScheduler(model, parse_schedule(one_shot(["layer1.0.conv2.weight"], thin=False),
                                                           "schedule.yaml"))
    sched.apply_epoch_zero()
    with pytest.warns(ScheduleWarning, match=r"schedule.yaml:2:3: pruners.p1: .*these filters stay zeroed in place"):
        record = sched.thin_all()
    assert not record.changed and model.layer1[0].conv2.out_channels == 16
    assert not model.layer1[0].conv2.weight[:, :, 0, 0].abs().sum(1).all()  # its zero filters are still there


def test_coupled_weights_pruned_by_two_pruners_are_refused_even_as_leader_groups() -> None:
    leader = "group_dependency: Leader\n"
    text = one_shot(LAYER1_STREAM[:2], leader, more=pruner("p2", LAYER1_STREAM[2:], leader))
    with pytest.raises(ScheduleError, match=r"pruners.p1: .*prunes only conv1.weight, layer1.0.conv2.weight; "
                                            r"layer1.1.conv2.weight, layer1.2.conv2.weight are also pruned by "
                                            r"pruner 'p2', with its own mask") as info:
        build(text)
    assert "remove layer1.1.conv2.weight, layer1.2.conv2.weight from pruner 'p2'" in info.value.hint


def test_consistent_structure_pruning_builds_without_a_warning() -> None:
    build(one_shot(["layer1.0.conv1.weight", "layer2.1.conv1.weight"]))  # conv1s are never coupled
    build(one_shot(LAYER1_STREAM, "group_dependency: Leader\n"))
    build(one_shot(LAYER1_STREAM, "auto_group: true\n"))


# ---------------------------------------------------------------------------------------------- auto_group
def test_auto_group_one_shot_on_resnet20_thins_to_a_consistent_model() -> None:
    model = resnet20()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    sched = build(one_shot(LAYER2, "auto_group: true\n"), model)
    sched.apply_epoch_zero(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))
    modules = dict(model.named_modules())
    assert {modules[layer].out_channels for layer in LAYER2_STREAM} == {16}
    assert all(modules[f"layer2.{i}.conv1"].out_channels == 16 for i in range(3))
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    # The stream kept the 16 filters with the largest summed mean |w| of its four convs (the downsample reads
    # the layer1 stream, which is not thinned, so its weight is exactly those filters).
    summed = sum(before[f"{layer}.weight"].abs().flatten(1).mean(1) for layer in LAYER2_STREAM)
    kept = sorted(torch.argsort(summed, descending=True)[:16].tolist())
    assert torch.equal(model.layer2[0].downsample[0].weight.detach(), before["layer2.0.downsample.0.weight"][kept])


def test_auto_group_channels_thin_the_whole_residual_stream() -> None:
    readers = ["layer1.0.conv1.weight", "layer1.1.conv1.weight", "layer1.2.conv1.weight", "layer2.0.conv1.weight",
               "layer2.0.downsample.0.weight"]
    text = one_shot(readers, "auto_group: true\n").replace("Filters", "Channels")
    model = resnet20()
    build(text.replace("remove_filters", "remove_channels"), model).apply_epoch_zero()
    assert model.conv1.out_channels == 8 and model.layer1[2].conv2.out_channels == 8
    assert model.layer2[0].downsample[0].in_channels == 8
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_auto_group_groups_are_recomputed_after_thinning_and_need_no_saved_state() -> None:
    text = one_shot(LAYER2, "auto_group: true\n").replace(
        "    epochs: [0]\n  - extension", "    epochs: [0, 1]\n  - extension")
    model = resnet20()
    sched = build(text, model)
    sched.apply_epoch_zero()
    state = copy.deepcopy(sched.state_dict())
    resumed_model = copy.deepcopy(model)
    resumed = build(text, resumed_model)
    resumed.load_state_dict(state)
    for s, m in ((sched, model), (resumed, resumed_model)):
        s.on_epoch_begin(1, m, None)
        s.on_minibatch_begin(1, 0, 1, None)
    assert zero_filters(model.layer2[0].conv2.weight) == zero_filters(resumed_model.layer2[0].conv2.weight)
    stream = [zero_filters(dict(model.named_parameters())[f"{layer}.weight"]) for layer in LAYER2_STREAM]
    assert len(stream[0]) == 8 and all(zeros == stream[0] for zeros in stream)  # 50% of the 16 left, one map
    assert set(state["policies"][0]["pruner"]["attrs"]) >= {"auto_group", "_pending"}
    assert state["policies"][0]["pruner"]["attrs"]["_pending"] == {}


class Residual(nn.Module):
    """Two 1x1 convs added together, then a head: ``a`` and ``b`` must lose the same filters."""

    def __init__(self) -> None:
        super().__init__()
        self.input_shape = (3, 4, 4)
        self.a = nn.Conv2d(3, 3, 1, bias=False)
        self.b = nn.Conv2d(3, 3, 1, bias=False)
        self.head = nn.Conv2d(3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.a(x) + self.b(x))


def toy() -> Residual:
    model = Residual()
    with torch.no_grad():  # per-filter mean |w|: a ranks filter 0 lowest, b filter 1, their sum filter 2
        model.a.weight.copy_(torch.tensor([0.1, 1.0, 0.3]).view(3, 1, 1, 1).expand(3, 3, 1, 1))
        model.b.weight.copy_(torch.tensor([1.0, 0.1, 0.3]).view(3, 1, 1, 1).expand(3, 3, 1, 1))
    return model


def pruned_by(pruner: L1RankedStructureParameterPruner, model: nn.Module) -> dict[str, list[int]]:
    masks = create_model_masks_dict(model)
    for name, p in model.named_parameters():
        pruner.set_param_mask(p, name, masks, {"model": model})
    return {name: zero_filters(masks[name].mask) for name in ("a.weight", "b.weight")}


def test_group_importance_sums_the_members_where_leader_and_independent_ranking_do_not() -> None:
    model = toy()
    weights = ["a.weight", "b.weight"]
    assert pruned_by(L1RankedStructureParameterPruner("p", "Filters", 0.4, weights), model) == {
        "a.weight": [0], "b.weight": [1]}
    assert pruned_by(L1RankedStructureParameterPruner("p", "Filters", 0.4, weights, group_dependency="Leader"),
                     model) == {"a.weight": [0], "b.weight": [0]}
    grouped = L1RankedStructureParameterPruner("p", "Filters", 0.4, weights, auto_group=True)
    assert pruned_by(grouped, model) == {"a.weight": [2], "b.weight": [2]}
    masks = create_model_masks_dict(model)
    for name, p in model.named_parameters():
        grouped.set_param_mask(p, name, masks, {"model": model})
        p.data.mul_(masks[name].mask if masks[name].mask is not None else 1)
    remove_filters(model, masks)
    assert model.a.out_channels == model.b.out_channels == model.head.in_channels == 2
    assert model(torch.randn(1, 3, 4, 4)).shape == (1, 2, 4, 4)


class Concat(nn.Module):
    """``cat(a, b) + c``: ``c``'s 4 filters are coupled with ``a``'s 2 and ``b``'s 2, not index by index."""

    def __init__(self) -> None:
        super().__init__()
        self.input_shape = (3, 4, 4)
        self.a, self.b, self.c = nn.Conv2d(3, 2, 1), nn.Conv2d(3, 2, 1), nn.Conv2d(3, 4, 1)
        self.head = nn.Conv2d(4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.a(x), self.b(x)], 1) + self.c(x))


def test_auto_group_refuses_members_coupled_in_another_order_or_size() -> None:
    model = Concat()
    pruner = L1RankedStructureParameterPruner("p", "Filters", 0.5, ["a.weight", "c.weight"], auto_group=True)
    masks = create_model_masks_dict(model)
    with pytest.raises(ConfigError, match=r"'p'.*auto_group: 'a.weight' and 'c.weight' are coupled, but their "
                                          r"filters do not correspond index by index"):
        pruner.set_param_mask(model.a.weight, "a.weight", masks, {"model": model})


@pytest.mark.parametrize("cls", [FPGMFilterPruner, BNScaleFilterPruner])
def test_scored_filter_pruners_take_auto_group(cls: type) -> None:
    model = resnet20()
    with torch.no_grad():
        for i, bn in enumerate((model.bn1, model.layer1[0].bn2, model.layer1[1].bn2, model.layer1[2].bn2)):
            bn.weight.copy_(torch.rand(16, generator=torch.Generator().manual_seed(i)))
    pruner = cls("p", 0.5, LAYER1_STREAM, auto_group=True)
    masks = create_model_masks_dict(model)
    for name, p in model.named_parameters():
        pruner.set_param_mask(p, name, masks, {"model": model})
    zeros = [zero_filters(masks[name].mask) for name in LAYER1_STREAM]
    assert len(zeros[0]) == 8 and all(z == zeros[0] for z in zeros)


@pytest.mark.parametrize(("kwargs", "phrase"), [
    ({"group_dependency": "Leader", "auto_group": True}, "use one of them"),
    ({"group_type": "Blocks", "auto_group": True, "kwargs": {"block_shape": [1, 1, 1, 1]}}, "needs group_type"),
    ({"auto_group": "yes"}, "true or false"),
])
def test_auto_group_configuration_errors(kwargs: dict[str, Any], phrase: str) -> None:
    settings = {"name": "p", "group_type": "Filters", "desired_sparsity": 0.5, "weights": ["conv1.weight"], **kwargs}
    with pytest.raises(ConfigError, match=phrase):
        L1RankedStructureParameterPruner(**settings)


def test_auto_group_in_yaml_is_located_and_typed() -> None:
    with pytest.raises(ScheduleError, match=r"schedule.yaml:6:5: pruners.p1.auto_group: .*boolean"):
        build(one_shot(["conv1.weight"], "auto_group: 'yes'\n", thin=False))
