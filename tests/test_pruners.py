"""Pruner classes: Distiller's behaviours (reference §2, §8.1, §8.2) and edgeprune's additions, on CPU."""

from __future__ import annotations

import inspect
import math
from typing import Any

import pytest
import torch
from torch import nn

from edgeprune.errors import ConfigError, UnknownNameError
from edgeprune.models import create_model
from edgeprune.models.sparsity import sparsity, sparsity_3d, sparsity_ch, sparsity_rows
from edgeprune.pruning.activations import (
    collect_activation_stats,
    collect_feature_maps,
    needs_activation_stats,
    needs_feature_maps,
    resolve_activation_module,
)
from edgeprune.pruning.masks import ParameterMasker, create_model_masks_dict
from edgeprune.pruning.pruners import (
    ActivationAPoZRankedFilterPruner,
    ActivationMeanRankedFilterPruner,
    BernoulliFilterPruner,
    BNScaleFilterPruner,
    FMReconstructionChannelPruner,
    FPGMFilterPruner,
    GlobalL1FilterPruner,
    GradientRankedFilterPruner,
    L1RankedStructureParameterPruner,
    L2RankedStructureParameterPruner,
    LAMPPruner,
    MagnitudeParameterPruner,
    RandomLevelStructureParameterPruner,
    RandomRankedFilterPruner,
    SensitivityPruner,
    SparsityLevelParameterPruner,
    SplicingPruner,
    StructureParameterPruner,
    TaylorFOFilterPruner,
    following_batchnorm,
)
from edgeprune.pruning.pruners.agp import (
    ActivationAPoZRankedFilterPruner_AGP,
    AutomatedGradualPruner,
    BernoulliFilterPruner_AGP,
    L1RankedStructureParameterPruner_AGP,
    agp_target_sparsity,
)
from edgeprune.pruning.registry import PRUNERS


@pytest.fixture(scope="module")
def resnet20() -> nn.Module:
    torch.manual_seed(0)
    return create_model("resnet20_cifar")


@pytest.fixture
def model(resnet20: nn.Module) -> nn.Module:
    """A fresh copy per test (pruners may rewrite weights)."""
    return _copy(resnet20)


def _copy(model: nn.Module) -> nn.Module:
    clone = create_model("resnet20_cifar")
    clone.load_state_dict(model.state_dict())
    return clone


def meta_for(model: nn.Module, epoch: int = 0, start: int = 0, end: int = 1, freq: int | None = 1,
             **extra: Any) -> dict[str, Any]:
    return {"current_epoch": epoch, "starting_epoch": start, "ending_epoch": end, "frequency": freq,
            "model": model, **extra}


def param(model: nn.Module, name: str) -> nn.Parameter:
    return dict(model.named_parameters())[name]


def pruned_filters(mask: torch.Tensor) -> list[int]:
    return [i for i in range(mask.size(0)) if not mask[i].any()]


def run_policy(pruner: Any, model: nn.Module, masks: dict, meta: dict[str, Any] | None) -> None:
    """What PruningPolicy.on_epoch_begin does: offer every parameter to the pruner."""
    for name, p in model.named_parameters():
        pruner.set_param_mask(p, name, masks, meta)


# --------------------------------------------------------------------------------------------------------------
# §8.1 / §8.2 Distiller behaviours


@pytest.mark.parametrize("ratio", [0.1, 0.5])
@pytest.mark.parametrize("prefix", ["", "module."])
def test_ranked_filter_pruning(model: nn.Module, ratio: float, prefix: str) -> None:
    name = "layer1.0.conv1.weight"
    w = param(model, name)
    masks = create_model_masks_dict(model)
    assert sparsity_3d(w) == 0
    pruner = L1RankedStructureParameterPruner("filter_pruner", "Filters", ratio, weights=prefix + name)
    pruner.set_param_mask(w, name, masks, meta=None)
    expected = int(ratio * 16) / 16
    assert sparsity_3d(masks[name].mask) == expected
    masks[name].apply_mask(w)
    assert sparsity_3d(w) == expected


@pytest.mark.parametrize(("cls", "pruned"), [(L1RankedStructureParameterPruner, [0, 2, 3]),
                                             (L2RankedStructureParameterPruner, [1, 2, 3])])
def test_ranked_filter_pruning_prunes_the_weakest_and_only_owned(cls: type, pruned: list[int]) -> None:
    """Filters [3,0], [2,2], [1,1], [2.5,0]: by L1 (3, 4, 2, 2.5) f1 is strongest, by L2 (3, 2.83, 1.41, 2.5)
    f0 is; 4 @0.75 -> 3 pruned (worked out by hand)."""
    net = nn.Sequential(nn.Conv2d(1, 4, (2, 1), bias=False), nn.Conv2d(4, 2, 1, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[3.0, 0.0], [2.0, 2.0], [1.0, 1.0], [2.5, 0.0]]).view(4, 1, 2, 1))
    masks = create_model_masks_dict(net)
    run_policy(cls("p", "Filters", 0.75, ["0.weight"]), net, masks, meta_for(net))
    assert pruned_filters(masks["0.weight"].mask) == pruned
    assert [n for n, m in masks.items() if m.mask is not None] == ["0.weight"]


def test_too_small_fraction_leaves_the_mask_alone(model: nn.Module) -> None:
    masks = create_model_masks_dict(model)
    L1RankedStructureParameterPruner("p", "Filters", 0.05, ["conv1.weight"]).set_param_mask(
        param(model, "conv1.weight"), "conv1.weight", masks, None)
    assert masks["conv1.weight"].mask is None  # 16 @0.05 -> 0: no-op


def test_ties_at_the_threshold_are_all_pruned(model: nn.Module) -> None:
    w = param(model, "layer1.0.conv1.weight")
    with torch.no_grad():
        w[:3] = 1e-3  # three tied weakest filters
    masks = create_model_masks_dict(model)
    L1RankedStructureParameterPruner("p", "Filters", 0.1, ["layer1.0.conv1.weight"]).set_param_mask(
        w, "layer1.0.conv1.weight", masks, None)
    assert pruned_filters(masks["layer1.0.conv1.weight"].mask) == [0, 1, 2]  # asked 1, ties take 3


def test_ranked_channel_pruning(model: nn.Module) -> None:
    # §8.2 item 2
    name = "layer1.0.conv1.weight"
    w = param(model, name)
    masks = create_model_masks_dict(model)
    L1RankedStructureParameterPruner("channel_pruner", "Channels", 0.1, name).set_param_mask(w, name, masks, None)
    assert sparsity_ch(masks[name].mask) == 1 / 16
    masks[name].apply_mask(w)
    assert sparsity_ch(w) == 1 / 16


def test_linear_rows_are_input_columns() -> None:
    torch.manual_seed(0)
    net = create_model("simplenet_cifar")
    masks = create_model_masks_dict(net)
    w = param(net, "fc1.weight")  # (120, 400)
    L1RankedStructureParameterPruner("rows", "Rows", 0.5, ["fc1.weight"]).set_param_mask(w, "fc1.weight", masks, None)
    mask = masks["fc1.weight"].mask
    assert sparsity_rows(mask) == 0.5 and mask.shape == w.shape
    assert torch.equal(mask, mask[:1].expand_as(mask))  # whole columns


def test_magnitude_pruning() -> None:
    # §8.1 item 7
    with pytest.raises(ConfigError, match="'\\*'"):
        MagnitudeParameterPruner("test", None)
    with pytest.raises(ConfigError, match="'\\*'"):
        MagnitudeParameterPruner("test", {"a": 0.1})
    a = torch.ones(3, 64, 32, 32)
    a[1, 4, 17, 31] = 0.2
    masks = {"a": ParameterMasker("a")}
    pruner = MagnitudeParameterPruner("test", {"*": 0.4})
    assert sparsity(a) == 0
    pruner.set_param_mask(a, "a", masks, None)
    assert math.isclose(sparsity(masks["a"].mask), 1 / a.numel())
    masks["a"].apply_mask(a)
    assert math.isclose(sparsity(a), 1 / a.numel())
    b = torch.full((3, 64, 32, 32), 0.3)
    masks["a"].apply_mask(b)
    assert int((b == 0).sum()) == 1


# --------------------------------------------------------------------------------------------------------------
# Validation: every mistake is a ConfigError naming the pruner and what was expected.


@pytest.mark.parametrize("build", [
    lambda: L1RankedStructureParameterPruner("p", "Filters", 1.5, ["w"]),
    lambda: L1RankedStructureParameterPruner("p", "Filters", -0.1, ["w"]),
    lambda: L1RankedStructureParameterPruner_AGP("p", 0.1, 1.2, "Filters", ["w"]),
    lambda: AutomatedGradualPruner("p", 0.5, 0.5, ["w"]),
    lambda: SparsityLevelParameterPruner("p", {"*": 2}),
    lambda: RandomLevelStructureParameterPruner("p", "Filters", [0.5, 0.1], ["w"]),
    lambda: L1RankedStructureParameterPruner("p", "Filters", 0.5, []),
    lambda: L1RankedStructureParameterPruner("p", "Filters", 0.5, ["w"], group_dependency="Follower"),
    lambda: L1RankedStructureParameterPruner("p", "Blocks", 0.5, ["w"]),
    lambda: L1RankedStructureParameterPruner("p", "Filters", 0.5, ["w"], round_to=0),
    lambda: ActivationAPoZRankedFilterPruner_AGP("p", 0.1, 0.5, "Channels", ["w"]),
    lambda: StructureParameterPruner("p", None, {"w": [0.1, "3D"]}, "L2"),
])
def test_bad_configuration_is_a_config_error(build: Any) -> None:
    with pytest.raises(ConfigError, match="'p'"):
        build()


def test_unknown_group_type_lists_the_accepted_ones() -> None:
    with pytest.raises(ConfigError, match="accepted: 3D, Filters, Channels, Rows, Blocks"):
        L1RankedStructureParameterPruner("p", "Kernels", 0.5, ["w"])


def test_wrong_weight_shape_names_pruner_and_weight(model: nn.Module) -> None:
    masks = create_model_masks_dict(model)
    pruner = L1RankedStructureParameterPruner("p", "Rows", 0.5, ["conv1.weight"])
    with pytest.raises(ConfigError, match="'p'.*'conv1.weight'.*2D"):
        pruner.set_param_mask(param(model, "conv1.weight"), "conv1.weight", masks, None)


def test_rounding_fn_strings(model: nn.Module) -> None:
    masks = create_model_masks_dict(model)
    w = param(model, "conv1.weight")
    L1RankedStructureParameterPruner("p", "Filters", 0.1, ["conv1.weight"], rounding_fn="ceil").set_param_mask(
        w, "conv1.weight", masks, None)
    assert sparsity_3d(masks["conv1.weight"].mask) == 2 / 16  # ceil(1.6)


def test_registry_names_and_keywords() -> None:
    expected = {
        "L1RankedStructureParameterPruner": ["name", "group_type", "desired_sparsity", "weights", "group_dependency",
                                             "kwargs", "noise", "group_size", "rounding_fn", "round_to",
                                             "auto_group"],
        "L1RankedStructureParameterPruner_AGP": ["name", "initial_sparsity", "final_sparsity", "group_type",
                                                 "weights", "group_dependency", "kwargs", "round_to", "auto_group"],
        "ActivationAPoZRankedFilterPruner": ["name", "group_type", "desired_sparsity", "weights",
                                             "group_dependency"],
        "BernoulliFilterPruner_AGP": ["name", "initial_sparsity", "final_sparsity", "group_type", "weights",
                                      "group_dependency"],
        "FMReconstructionChannelPruner": ["name", "group_type", "desired_sparsity", "weights", "group_dependency",
                                          "kwargs", "magnitude_fn", "group_size", "rounding_fn", "ranking_noise"],
        "RandomLevelStructureParameterPruner": ["name", "group_type", "sparsity_range", "weights",
                                                "group_dependency", "kwargs"],
        "AutomatedGradualPruner": ["name", "initial_sparsity", "final_sparsity", "weights"],
        "SplicingPruner": ["name", "sensitivities", "low_thresh_mult", "hi_thresh_mult", "sensitivity_multiplier"],
        "StructureParameterPruner": ["name", "model", "reg_regims", "threshold_criteria"],
        "MagnitudeParameterPruner": ["name", "thresholds"],
    }
    for cls_name, keywords in expected.items():
        assert list(inspect.signature(PRUNERS.get(cls_name)).parameters) == keywords
    with pytest.raises(UnknownNameError, match="L1RankedStructureParameterPruner"):
        PRUNERS.get("L1RankedStructureParameterPrunr")


# --------------------------------------------------------------------------------------------------------------
# AGP (§2.6)


def test_agp_cubic_targets() -> None:
    targets = {e: agp_target_sparsity(0.1, 0.5, 0, 30, 2, e) for e in (0, 2, 4, 14, 28)}
    assert {e: round(t, 3) for e, t in targets.items()} == {0: 0.1, 2: 0.18, 4: 0.248, 14: 0.45, 28: 0.5}
    assert targets[28] == 0.5


def test_structured_agp_prunes_floor_of_target(model: nn.Module) -> None:
    name = "layer2.0.conv1.weight"  # 32 filters
    pruner = L1RankedStructureParameterPruner_AGP("agp", 0.1, 0.5, "Filters", [name])
    for epoch in (0, 2, 4, 14, 28):
        masks = create_model_masks_dict(model)
        run_policy(pruner, model, masks, meta_for(model, epoch, 0, 30, 2))
        target = agp_target_sparsity(0.1, 0.5, 0, 30, 2, epoch)
        assert sparsity_3d(masks[name].mask) == math.floor(target * 32) / 32


def test_agp_needs_the_range_form(model: nn.Module) -> None:
    pruner = L1RankedStructureParameterPruner_AGP("agp", 0.1, 0.5, "Filters", ["conv1.weight"])
    masks = create_model_masks_dict(model)
    with pytest.raises(ConfigError, match="AGP pruners need starting_epoch/ending_epoch/frequency"):
        run_policy(pruner, model, masks, meta_for(model, 1, 1, 4, None))  # epochs: [1, 2, 3]
    with pytest.raises(ConfigError, match="two scheduled epochs"):
        run_policy(pruner, model, masks, meta_for(model, 0, 0, 1, 1))


def test_agp_zero_target_is_a_no_op_and_fine_grained_agp(model: nn.Module) -> None:
    masks = create_model_masks_dict(model)
    run_policy(L1RankedStructureParameterPruner_AGP("agp", 0.0, 0.5, "Filters", ["conv1.weight"]), model, masks,
               meta_for(model, 0, 0, 10, 1))
    assert masks["conv1.weight"].mask is None
    fine = AutomatedGradualPruner("fine", 0.1, 0.7, ["layer3.0.conv2.weight"])
    run_policy(fine, model, masks, meta_for(model, 9, 0, 10, 1))
    assert sparsity(masks["layer3.0.conv2.weight"].mask) == int(0.7 * 36864) / 36864  # 25804 zeros


def test_round_to_on_ranked_and_agp_pruners(model: nn.Module) -> None:
    name = "layer3.0.conv1.weight"  # 64 filters
    masks = create_model_masks_dict(model)
    run_policy(L1RankedStructureParameterPruner("p", "Filters", 0.4, [name], round_to=8), model, masks, None)
    assert sparsity_3d(masks[name].mask) == 24 / 64  # 25 asked -> 39 kept -> 40 kept
    agp = L1RankedStructureParameterPruner_AGP("agp", 0.1, 0.5, "Filters", [name], round_to=16)
    run_policy(agp, model, masks, meta_for(model, 28, 0, 30, 2))
    assert sparsity_3d(masks[name].mask) == 32 / 64


# --------------------------------------------------------------------------------------------------------------
# Leader groups (§2.4)

STREAM = ["conv1.weight", "layer1.0.conv2.weight", "layer1.1.conv2.weight", "layer1.2.conv2.weight"]


def test_leader_group_shares_the_leaders_map(model: nn.Module) -> None:
    masks = create_model_masks_dict(model)
    pruner = L1RankedStructureParameterPruner("group", "Filters", 0.5, [f"module.{n}" for n in STREAM],
                                              group_dependency="Leader")
    order = [5, 12, 0, 9, 14, 3, 7, 1, 10, 15, 2, 8, 4, 13, 11, 6]  # filter order[k] gets the k-th smallest norm
    with torch.no_grad():
        leader = param(model, STREAM[0])
        leader[order] = leader[order].sign() * torch.arange(1.0, 17.0).view(-1, 1, 1, 1)  # |w| = rank everywhere
    run_policy(pruner, model, masks, meta_for(model))
    expected = sorted(order[:8])
    for name in STREAM:
        assert pruned_filters(masks[name].mask) == expected
    # The map is cached per target (Distiller): new weights with the same target do not re-rank.
    with torch.no_grad():
        param(model, STREAM[0]).mul_(torch.linspace(2, 1, 16).view(-1, 1, 1, 1))
    run_policy(pruner, model, masks, meta_for(model))
    assert pruned_filters(masks[STREAM[3]].mask) == expected
    # After thinning to 12 filters the cached 16-filter map no longer fits: the leader is ranked again.
    for name in STREAM:
        param(model, name).data = param(model, name).data[:12].clone()
    masks = create_model_masks_dict(model)
    run_policy(pruner, model, masks, meta_for(model))
    assert all(masks[n].mask.shape[0] == 12 and len(pruned_filters(masks[n].mask)) == 6 for n in STREAM)


def test_leader_group_size_mismatch_names_both_weights(model: nn.Module) -> None:
    pruner = L1RankedStructureParameterPruner("group", "Filters", 0.5,
                                              ["layer1.0.conv1.weight", "layer2.0.conv1.weight"],
                                              group_dependency="Leader")
    with pytest.raises(ConfigError, match=r"'layer1.0.conv1.weight' \(16\).*'layer2.0.conv1.weight' has 32"):
        run_policy(pruner, model, create_model_masks_dict(model), meta_for(model))


def test_leader_needs_the_model(model: nn.Module) -> None:
    pruner = L1RankedStructureParameterPruner("group", "Filters", 0.5, STREAM, group_dependency="Leader")
    with pytest.raises(ConfigError, match="meta\\['model'\\]"):
        pruner.set_param_mask(param(model, STREAM[0]), STREAM[0], create_model_masks_dict(model), None)


# --------------------------------------------------------------------------------------------------------------
# Activation-, gradient- and randomly ranked filter pruners, on CPU.


def _batches(n: int = 2) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(1)
    return [(torch.randn(4, 3, 32, 32, generator=gen), torch.zeros(4, dtype=torch.long)) for _ in range(n)]


@pytest.mark.parametrize(("cls", "field"), [(ActivationAPoZRankedFilterPruner, "apoz"),
                                            (ActivationMeanRankedFilterPruner, "mean")])
def test_activation_pruners_use_collected_statistics(model: nn.Module, cls: type, field: str) -> None:
    name = "layer1.0.conv1.weight"
    pruner = cls("act", "Filters", 0.25, [name])
    modules = needs_activation_stats(pruner, model)
    assert modules == ["layer1.0.relu1"]
    stats = collect_activation_stats(model, _batches(), modules)
    criterion = getattr(stats["layer1.0.relu1"], field)
    assert criterion.shape == (16,) and stats["layer1.0.relu1"].samples == 8
    masks = create_model_masks_dict(model)
    run_policy(pruner, model, masks, meta_for(model, activation_stats=stats))
    # Distiller keeps argsort(criterion)[:-k]: the 4 HIGHEST values go (for "mean" that is the quirk).
    assert pruned_filters(masks[name].mask) == sorted(torch.argsort(criterion, stable=True)[-4:].tolist())


def test_activation_pruner_without_statistics_names_the_module(model: nn.Module) -> None:
    pruner = ActivationAPoZRankedFilterPruner_AGP("act", 0.1, 0.5, "Filters", ["layer1.0.conv1.weight"])
    assert needs_activation_stats(pruner) == ["layer1.0.relu1"]
    with pytest.raises(ConfigError, match="'layer1.0.relu1'"):
        run_policy(pruner, model, create_model_masks_dict(model), meta_for(model, 4, 0, 10, 1))


def test_activation_module_falls_back_to_the_conv() -> None:
    net = nn.Sequential()
    net.add_module("features", nn.Sequential())
    net.features.add_module("conv", nn.Conv2d(3, 4, 3))
    net.features.add_module("act", nn.ReLU())
    assert resolve_activation_module(net, "features.conv.weight") == "features.conv"
    stats = collect_activation_stats(net, [torch.randn(2, 3, 8, 8)], ["features.conv"])
    assert stats["features.conv"].apoz.shape == (4,)
    with pytest.raises(UnknownNameError, match="features.relu"):
        collect_activation_stats(net, [torch.randn(2, 3, 8, 8)], ["features.relu"])


def test_gradient_pruner_skips_without_grad_then_keeps_highest_scores(model: nn.Module) -> None:
    name = "layer1.0.conv1.weight"
    masks = create_model_masks_dict(model)
    pruner = GradientRankedFilterPruner("grad", "Filters", 0.5, [name])
    run_policy(pruner, model, masks, meta_for(model))
    assert masks[name].mask is None
    x, y = _batches(1)[0]
    nn.functional.cross_entropy(model(x), y).backward()
    run_policy(pruner, model, masks, meta_for(model))
    w = param(model, name)
    scores = (w.detach() * w.grad).flatten(1).sum(1)
    assert pruned_filters(masks[name].mask) == sorted(torch.argsort(scores)[:8].tolist())


def test_random_and_bernoulli_pruners(model: nn.Module) -> None:
    name = "layer1.0.conv1.weight"
    torch.manual_seed(0)
    masks = create_model_masks_dict(model)
    run_policy(RandomRankedFilterPruner("rnd", "Filters", 0.3, [name]), model, masks, None)
    assert sparsity_3d(masks[name].mask) == 4 / 16  # int(0.3 * 16), no keep-one guard
    run_policy(BernoulliFilterPruner("bern", "Filters", 0.5, [name]), model, masks, None)
    mask = masks[name].mask
    kept = 16 - len(pruned_filters(mask))
    assert 0 < kept < 16 and set(mask.unique().tolist()) == {0.0, 16 / kept}  # inverted-dropout scaling
    agp = BernoulliFilterPruner_AGP("bern", 0.1, 0.5, "3D", [name])
    run_policy(agp, model, masks, meta_for(model, 9, 0, 10, 1))
    assert masks[name].mask.max() > 1.0


def test_random_level_pruner_stays_in_range(model: nn.Module) -> None:
    name = "layer2.0.conv1.weight"
    pruner = RandomLevelStructureParameterPruner("drop", "Filters", [0.2, 0.4], [name])
    torch.manual_seed(0)
    seen = set()
    for _ in range(5):
        masks = create_model_masks_dict(model)
        run_policy(pruner, model, masks, None)
        seen.add(len(pruned_filters(masks[name].mask)))
    assert seen <= set(range(6, 13)) and len(seen) > 1


# --------------------------------------------------------------------------------------------------------------
# Feature-map reconstruction


def test_fm_reconstruction_refits_kept_channels() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3, padding=1)
    with torch.no_grad():
        conv.weight[:, 1] *= 0.01  # channel 1 is the weakest, so it is pruned
    net = nn.Sequential(conv)
    original = conv.weight.detach().clone()
    batches = [torch.randn(4, 1, 6, 6).repeat(1, 2, 1, 1) for _ in range(2)]  # channel 1 duplicates channel 0
    pruner = FMReconstructionChannelPruner("fm", "Channels", 0.5, ["0.weight"])
    assert needs_feature_maps(pruner) == ["0"]
    masks = create_model_masks_dict(net)
    with pytest.raises(ConfigError, match="feature-map samples for layer '0'"):
        run_policy(pruner, net, masks, meta_for(net))
    fms = collect_feature_maps(net, batches, needs_feature_maps(pruner), n_points_per_fm=8)
    dense_out = net(batches[0]).detach()
    run_policy(pruner, net, masks, meta_for(net, feature_maps=fms))
    assert sparsity_ch(masks["0.weight"].mask) == 0.5 and masks["0.weight"].mask[:, 1].sum() == 0
    # With x1 == x0 the best weights on channel 0 alone are w0 + w1, reproducing the dense output.
    assert torch.allclose(conv.weight[:, 0], original[:, 0] + original[:, 1], atol=1e-5)
    masks["0.weight"].apply_mask(conv.weight)
    assert torch.allclose(net(batches[0]), dense_out, atol=1e-4)


# --------------------------------------------------------------------------------------------------------------
# edgeprune's criteria


def test_taylor_fo_pruner(model: nn.Module) -> None:
    name = "layer1.0.conv1.weight"
    w = param(model, name)
    masks = create_model_masks_dict(model)
    pruner = TaylorFOFilterPruner("taylor", 0.25, [name])
    pruner.set_param_mask(w, name, masks, meta_for(model))
    assert masks[name].mask is None  # no gradient yet
    w.grad = torch.ones_like(w)
    w.grad[:4] = 0.0  # filters 0-3 have zero importance
    pruner.set_param_mask(w, name, masks, meta_for(model))
    assert pruned_filters(masks[name].mask) == [0, 1, 2, 3]


def test_fpgm_pruner_prunes_the_median_filter() -> None:
    conv = nn.Conv2d(1, 3, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([0.0, 1.0, 3.0]).view(3, 1, 1, 1) + 10)
    net = nn.Sequential(conv)
    masks = create_model_masks_dict(net)
    FPGMFilterPruner("fpgm", 0.34, ["0.weight"]).set_param_mask(conv.weight, "0.weight", masks, meta_for(net))
    assert pruned_filters(masks["0.weight"].mask) == [1]  # not the smallest norm: the most replaceable


def test_bn_scale_pruner_finds_the_following_batchnorm(model: nn.Module) -> None:
    assert following_batchnorm(model, "layer1.0.conv1") == "layer1.0.bn1"
    assert following_batchnorm(model, "layer2.0.downsample.0") == "layer2.0.downsample.1"
    name = "layer1.0.conv1.weight"
    with torch.no_grad():
        model.layer1[0].bn1.weight.copy_(torch.linspace(1.0, 2.0, 16))
        model.layer1[0].bn1.weight[[3, 7]] = -0.01  # |gamma| smallest
    masks = create_model_masks_dict(model)
    run_policy(BNScaleFilterPruner("slim", 0.125, [name], round_to=2), model, masks, meta_for(model))
    assert pruned_filters(masks[name].mask) == [3, 7]
    net = create_model("simplenet_cifar")
    with pytest.raises(ConfigError, match="no affine BatchNorm2d directly follows 'conv1'"):
        run_policy(BNScaleFilterPruner("slim", 0.5, ["conv1.weight"]), net, create_model_masks_dict(net),
                   meta_for(net))


def test_global_l1_ranks_across_layers() -> None:
    net = nn.Sequential(nn.Conv2d(1, 4, 1, bias=False), nn.Conv2d(4, 4, 1, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(0.01 * torch.arange(1.0, 5.0).view(4, 1, 1, 1))
        net[1].weight.copy_(torch.arange(1.0, 5.0).view(4, 1, 1, 1).expand(4, 4, 1, 1))
    masks = create_model_masks_dict(net)
    run_policy(GlobalL1FilterPruner("global", 0.5, ["0.weight", "1.weight"]), net, masks, meta_for(net))
    assert pruned_filters(masks["0.weight"].mask) == [0, 1, 2]  # the weak layer keeps its best filter
    assert pruned_filters(masks["1.weight"].mask) == [0]


def test_lamp_pruner_global_threshold() -> None:
    net = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(3, 1, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
        net[1].weight.copy_(torch.tensor([[0.5, 0.6, 0.7]]))
    masks = create_model_masks_dict(net)
    run_policy(LAMPPruner("lamp", 0.5, ["0.weight", "1.weight"]), net, masks, meta_for(net))
    # LAMP scores: layer 0 [1/30, 4/29, 9/25, 1], layer 1 [.25/1.1, .36/.85, 1]; the 3 lowest go.
    # (Global magnitude would have emptied layer 1 instead.)
    assert masks["0.weight"].mask.tolist() == [[0.0, 0.0], [1.0, 1.0]]
    assert masks["1.weight"].mask.tolist() == [[0.0, 1.0, 1.0]]


# --------------------------------------------------------------------------------------------------------------
# Distiller's fine-grained and threshold pruners


def test_sensitivity_pruner_caches_the_std(model: nn.Module) -> None:
    name = "layer1.0.conv1.weight"
    w = param(model, name)
    std = float(w.detach().std())
    masks = create_model_masks_dict(model)
    pruner = SensitivityPruner("sens", {f"module.{name}": 1.0})
    assert pruner.params_names == [name]
    run_policy(pruner, model, masks, None)
    assert torch.equal(masks[name].mask, (w.detach().abs() > std).float())
    with torch.no_grad():
        w.mul_(3.0)
    run_policy(pruner, model, masks, None)
    assert torch.equal(masks[name].mask, (w.detach().abs() > std).float())  # the first std, not 3x


def test_sparsity_level_pruner(model: nn.Module) -> None:
    masks = create_model_masks_dict(model)
    pruner = SparsityLevelParameterPruner("lvl", {"*": 0.5, "conv1.weight": 0})
    run_policy(pruner, model, masks, None)
    assert masks["conv1.weight"].mask is None  # level 0: skipped
    assert sparsity(masks["layer1.0.conv1.weight"].mask) == 0.5
    pruner.levels = {"module.fc.weight": 0.3}  # what PruningPolicy's `levels` arg does
    assert pruner.params_names == ["fc.weight"]
    masks = create_model_masks_dict(model)
    run_policy(pruner, model, masks, None)
    assert int((masks["fc.weight"].mask == 0).sum()) == int(0.3 * 640)
    assert masks["layer1.0.conv1.weight"].mask is None


def test_splicing_pruner(model: nn.Module) -> None:
    name = "fc.weight"
    w = param(model, name)
    masks = create_model_masks_dict(model)
    run_policy(SplicingPruner("dns", {name: 0.0}, 0.9, 1.1), model, masks, None)
    mean = float(w.detach().abs().mean())
    mask = masks[name].mask
    assert torch.equal(mask[w.detach().abs() < 0.9 * mean], torch.zeros_like(mask[w.detach().abs() < 0.9 * mean]))
    assert bool(mask[w.detach().abs() >= 0.9 * mean].eq(1).all())  # between: previous mask (ones) kept


def test_structure_parameter_pruner(model: nn.Module) -> None:
    name = "layer1.0.conv1.weight"
    w = param(model, name)
    with torch.no_grad():
        w[5] = 0.0
    masks = create_model_masks_dict(model)
    run_policy(StructureParameterPruner("s", model, {name: [1e-6, "3D"]}, "Max"), model, masks, None)
    assert pruned_filters(masks[name].mask) == [5]


def test_bn_lookup_falls_back_to_names_when_the_model_cannot_be_traced() -> None:
    class Gated(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, 4, 3)
            self.bn1 = nn.BatchNorm2d(4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.bn1(self.conv1(x)) if x.sum() > 0 else x  # data-dependent: fx cannot trace it

    block = nn.Sequential()
    block.add_module("block", Gated())
    assert following_batchnorm(block, "block.conv1") == "block.bn1"
    assert following_batchnorm(block, "block.bn1") is None
