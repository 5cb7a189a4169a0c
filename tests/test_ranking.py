"""Ranking, norms, thresholding and scoring maths (reference §2.2, §2.3, §8.2, §8.3, §8.4), hand-computed."""

from __future__ import annotations

import math

import pytest
import torch

from edgeprune.errors import ConfigError
from edgeprune.models.sparsity import sparsity, sparsity_rows
from edgeprune.pruning.activations import (
    activation_channels_apoz,
    activation_channels_l1,
    activation_channels_means,
)
from edgeprune.pruning.criteria import (
    bn_scale_scores,
    create_mask_level_criterion,
    create_mask_sensitivity_criterion,
    expand_binary_map,
    fpgm_filter_scores,
    gradient_filter_scores,
    group_threshold_mask,
    l1_norm,
    l2_norm,
    lamp_scores,
    max_norm,
    splicing_mask,
    taylor_fo_filter_scores,
    threshold_mask,
)
from edgeprune.pruning.masks import ParameterMasker
from edgeprune.pruning.ranking import (
    bottomk_binary_map,
    epsilon_greedy_noise,
    exact_bottomk_binary_map,
    expand_block_map,
    num_structs_to_prune,
    rank_and_prune_channels,
    rank_and_prune_filters,
    rank_and_prune_rows,
    rank_blocks,
    rank_structures,
    resolve_rounding_fn,
    round_kept_to_multiple,
    select_global_elements,
    select_global_structures,
)

# --------------------------------------------------------------------------------------------------------------
# §2.2 rounding


@pytest.mark.parametrize(("n", "fraction", "pruned"), [
    (16, 0.6, 9), (16, 0.7, 11), (16, 0.4, 6), (16, 0.1, 1), (32, 0.5, 16), (32, 0.6, 19), (32, 0.4, 12),
    (64, 0.1, 6), (64, 0.2, 12), (64, 0.3, 19), (64, 0.4, 25), (64, 0.5, 32), (16, 0.05, 0), (16, 0.25, 4),
    (16, 0.30, 4), (100, 0.29, 28), (16, 1.0, 16),
])
def test_num_structs_to_prune_matches_distiller_table(n: int, fraction: float, pruned: int) -> None:
    assert num_structs_to_prune(n, fraction) == pruned


def test_keep_one_guard_and_group_len() -> None:
    assert num_structs_to_prune(16, 0.95, math.ceil) == 15  # ceil(15.2) = 16 would remove all: keep one
    assert num_structs_to_prune(16, 1.0, math.ceil) == 16  # exactly 1.0 may remove all
    assert num_structs_to_prune(16, 0.4, math.floor, group_len=4) == 4  # floor(6 / 4) * 4
    assert num_structs_to_prune(16, 0.95, math.ceil, group_len=4) == 12  # the guard keeps one whole group
    assert resolve_rounding_fn("ceil") is math.ceil and resolve_rounding_fn("floor") is math.floor
    with pytest.raises(ConfigError, match="rounding_fn"):
        resolve_rounding_fn("round")


@pytest.mark.parametrize(("n", "n_prune", "round_to", "expected"), [
    (64, 25, 8, 24),  # kept 39 -> 40
    (16, 9, 8, 8),    # kept 7 -> 8
    (16, 15, 8, 8),   # kept 1 -> 8: never zero kept
    (16, 16, 4, 12),  # fraction 1.0 -> one multiple kept
    (20, 2, 8, 4),    # kept 18 -> 16 (24 does not fit)
    (24, 4, 8, 0),    # kept 20 -> 24 (halves keep more)
    (20, 0, 8, 0),    # nothing asked, nothing pruned
    (6, 3, 8, 0),     # fewer structures than one multiple: keep all
])
def test_round_kept_to_multiple(n: int, n_prune: int, round_to: int, expected: int) -> None:
    assert round_kept_to_multiple(n, n_prune, round_to) == expected
    if expected:
        assert (n - expected) % round_to == 0 and n - expected > 0
    assert round_kept_to_multiple(n, n_prune, None) == n_prune


# --------------------------------------------------------------------------------------------------------------
# §2.3 selection


def test_ties_at_threshold_are_all_pruned() -> None:
    mags = torch.tensor([3.0, 1.0, 2.0, 2.0, 4.0])
    assert bottomk_binary_map(mags, 2).tolist() == [1.0, 0.0, 0.0, 0.0, 1.0]  # 3 go for n_prune=2
    assert exact_bottomk_binary_map(mags, 2).tolist() == [1.0, 0.0, 0.0, 1.0, 1.0]  # lower index first


def test_rank_structures_filters_with_ties_and_round_to() -> None:
    w = torch.ones(8, 2, 1, 1)
    w[:4] *= 0.5  # four tied weakest filters
    assert rank_structures(w, "Filters", 0.25).tolist() == [0.0] * 4 + [1.0] * 4  # asked 2, ties take 4
    exact = rank_structures(w, "Filters", 0.25, round_to=2)  # kept 6 is a multiple of 2: exactly 2 go
    assert exact.tolist() == [0.0, 0.0] + [1.0] * 6
    assert rank_structures(w, "Filters", 0.05) is None  # floor(0.4) = 0: no-op


def test_length_normalised_magnitudes_rank_channels_and_linear_columns() -> None:
    # §8.2 item 1: 3x2x2x2 tensor whose channel-0 values are smaller.
    param = torch.tensor([[[[11., 12], [13, 14]], [[15., 16], [17, 18]]],
                          [[[21., 22], [23, 24]], [[25., 26], [27, 28]]],
                          [[[31., 32], [33, 34]], [[35., 36], [37, 38]]]])
    assert rank_and_prune_channels(0.5, param).tolist() == [0.0, 1.0]
    # L2 ranking of filters: means are not sums; normalisation by 8 elements does not change the order.
    assert rank_structures(param, "Filters", 0.34, l2_norm).tolist() == [0.0, 1.0, 1.0]


# Four 2-element filters whose order differs between L1 and L2 (by hand):
#   f0 = [3, 0]    L1 3.0  L2 3.000
#   f1 = [2, 2]    L1 4.0  L2 2.828
#   f2 = [1, 1]    L1 2.0  L2 1.414
#   f3 = [2.5, 0]  L1 2.5  L2 2.500
# L1 ascending: f2 < f3 < f0 < f1; L2 ascending: f2 < f3 < f1 < f0. Pruning 3 of 4 keeps f1 (L1), f0 (L2).
L1_L2_FILTERS = torch.tensor([[3.0, 0.0], [2.0, 2.0], [1.0, 1.0], [2.5, 0.0]]).view(4, 1, 2, 1)


@pytest.mark.parametrize(("norm", "kept"), [(l1_norm, 1), (l2_norm, 0)])
def test_l1_and_l2_rank_filters_differently_as_computed_by_hand(norm, kept: int) -> None:
    expected = [0.0] * 4
    expected[kept] = 1.0
    assert rank_structures(L1_L2_FILTERS, "Filters", 0.75, norm).tolist() == expected
    # at 50 % both prune f2 and f3, the two weakest in either norm
    assert rank_structures(L1_L2_FILTERS, "Filters", 0.5, norm).tolist() == [1.0, 1.0, 0.0, 0.0]


def test_row_pruning_zeroes_input_columns() -> None:
    # §8.1 item 8: Distiller's "Rows" of a Linear weight are its input columns.
    param = torch.tensor([[1., 2., 3.], [4., 5., 6.], [7., 8., 9.]])
    masks = {"some name": ParameterMasker("some name")}
    binary_map = rank_and_prune_channels(0.5, param, "some name", masks)
    assert binary_map.tolist() == [0.0, 1.0, 1.0]
    assert torch.equal(masks["some name"].mask, torch.tensor([[0., 1., 1.]] * 3))
    assert math.isclose(sparsity_rows(masks["some name"].mask), 1 / 3)
    rows = {"w": ParameterMasker("w")}
    assert rank_and_prune_rows(0.5, param, "w", rows).tolist() == [0.0, 1.0, 1.0]
    assert torch.equal(rows["w"].mask, masks["some name"].mask)


def test_rank_and_prune_filters_sets_the_mask() -> None:
    w = torch.arange(1.0, 5.0).view(4, 1, 1, 1).repeat(1, 2, 1, 1)
    masks = {"w": ParameterMasker("w")}
    assert rank_and_prune_filters(0.5, w, "w", masks).tolist() == [0.0, 0.0, 1.0, 1.0]
    assert torch.equal(masks["w"].mask[:, :, 0, 0], torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0], [1.0, 1.0]]))


def test_epsilon_greedy_noise() -> None:
    mags = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert epsilon_greedy_noise(mags, 0.0) is mags
    torch.manual_seed(3)
    noisy = epsilon_greedy_noise(mags, 1.0)
    torch.manual_seed(3)
    torch.rand(())  # the coin
    assert torch.equal(noisy, mags * torch.randn_like(mags))


def test_noise_changes_which_filters_are_pruned() -> None:
    w = torch.arange(1.0, 9.0).view(8, 1, 1, 1)
    torch.manual_seed(0)
    plain = {tuple(rank_structures(w, "Filters", 0.25).tolist()) for _ in range(20)}
    noisy = {tuple(rank_structures(w, "Filters", 0.25, noise=1.0).tolist()) for _ in range(20)}
    assert plain == {(0.0, 0.0) + (1.0,) * 6}
    assert len(noisy) > 1


def test_blocks_follow_distillers_view() -> None:
    # block_shape [2, 1, 1, 1]: pairs of adjacent filters at each (channel, position).
    w = torch.tensor([[1.0, 10.0], [1.0, 10.0], [5.0, 0.1], [5.0, 0.1]]).view(4, 2, 1, 1)
    binary_map = rank_blocks(w, 0.5, [2, 1, 1, 1])
    assert binary_map.tolist() == [0.0, 1.0, 1.0, 0.0]
    expected = torch.tensor([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]]).view(4, 2, 1, 1)
    assert torch.equal(expand_block_map(w, [2, 1, 1, 1], binary_map), expected)
    with pytest.raises(ConfigError, match="does not divide"):
        rank_blocks(w, 0.5, [3, 1, 1, 1])


# --------------------------------------------------------------------------------------------------------------
# §8.3 thresholding

FOUR_D = torch.tensor([
    [[[-1.2982, 0.7574, 0.7962], [-0.6695, 1.5907, 0.2659], [0.1423, 0.3165, -0.7629]],
     [[-0.5480, -1.2718, 0.8286], [-0.6427, 0.3814, -0.7988], [1.0346, 1.3023, -0.9674]],
     [[-0.7951, 1.8784, -0.5654], [0.0456, -0.2849, -0.3332], [-0.2367, 0.7467, 0.9212]]],
    [[[1.3672, 0.2993, -0.0619], [1.8156, 0.7599, 0.1815], [0.4136, 1.8316, 1.7214]],
     [[0.5125, -1.5329, 0.9257], [0.9200, 0.4376, 0.5743], [-0.0097, 0.9473, -0.0899]],
     [[0.2372, 2.4369, -0.3410], [-1.0595, 0.8056, -0.0357], [-1.0105, -0.1451, -0.4194]]]])
TWO_D = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0], [10., 11., 12.]])
K1 = [[1.0] * 3] * 3
K0 = [[0.0] * 3] * 3


@pytest.mark.parametrize(("group", "threshold", "criterion", "binary_map", "mask"), [
    ("2D", 6, "L1", [1, 1, 0, 1, 0, 1], [[K1, K1, K0], [K1, K0, K1]]),
    ("3D", 4.7, "L2", [0, 1], [[K0, K0, K0], [K1, K1, K1]]),
    ("Channels", 3.7, "L2", [1, 0, 1], [[K1, K0, K1], [K1, K0, K1]]),
    ("Channels", 0.7, "Mean_L1", [1, 1, 0], [[K1, K1, K0], [K1, K1, K0]]),
])
def test_group_thresholding_4d(group: str, threshold: float, criterion: str, binary_map: list[int],
                               mask: list) -> None:
    got_mask, got_map = group_threshold_mask(FOUR_D, group, threshold, criterion)
    assert got_map.tolist() == [float(v) for v in binary_map]
    assert torch.equal(got_mask, torch.tensor(mask))


def test_group_thresholding_rows_and_cols() -> None:
    mask, binary_map = group_threshold_mask(TWO_D, "Rows", 7, "Max")
    assert binary_map.tolist() == [0.0, 0.0, 1.0, 1.0]
    assert torch.equal(mask, torch.tensor([[0., 0., 0.], [0., 0., 0.], [1., 1., 1.], [1., 1., 1.]]))
    mask, binary_map = group_threshold_mask(TWO_D, "Cols", 11, "Max")
    assert binary_map.tolist() == [0.0, 0.0, 1.0]
    assert torch.equal(mask, torch.tensor([[0., 0., 1.]] * 4))
    with pytest.raises(ConfigError, match="threshold_criteria"):
        group_threshold_mask(TWO_D, "Rows", 7, "Median")
    with pytest.raises(ConfigError, match="4D"):
        group_threshold_mask(TWO_D, "Channels", 7, "Max")


def test_threshold_level_and_sensitivity_masks() -> None:
    a = torch.ones(3, 64, 32, 32)
    a[1, 4, 17, 31] = 0.2
    mask = threshold_mask(a, 0.3)
    assert mask.sum() == a.numel() - 1 and mask[1, 4, 17, 31] == 0
    assert math.isclose(sparsity(mask), 1 / a.numel())
    torch.manual_seed(0)
    assert abs(sparsity(create_mask_level_criterion(torch.rand(100, 100), 0.3)) - 0.3) < 1e-4
    assert torch.equal(create_mask_level_criterion(torch.rand(3), 0.1), torch.ones(3))  # int(0.3) = 0
    assert abs(sparsity(create_mask_sensitivity_criterion(torch.randn(1000, 1000), 1.0)) - 0.6827) < 0.005


def test_norm_names() -> None:
    assert (str(l1_norm), str(l2_norm), str(max_norm)) == ("L1", "L2", "Max")


def test_expand_binary_map_shapes() -> None:
    w = torch.zeros(2, 3, 1, 1)
    assert torch.equal(expand_binary_map(w, "Filters", torch.tensor([0.0, 1.0]))[:, :, 0, 0],
                       torch.tensor([[0.0] * 3, [1.0] * 3]))
    assert torch.equal(expand_binary_map(w, "Channels", torch.tensor([1.0, 0.0, 1.0]))[:, :, 0, 0],
                       torch.tensor([[1.0, 0.0, 1.0]] * 2))
    assert torch.equal(expand_binary_map(torch.zeros(2, 3), "Channels", torch.tensor([1.0, 0.0, 1.0])),
                       torch.tensor([[1.0, 0.0, 1.0]] * 2))


# --------------------------------------------------------------------------------------------------------------
# §8.4 activation statistics


def test_activation_channel_statistics() -> None:
    x = torch.tensor([[[[1., 0., 0.], [0., 2., 0.], [0., 0., 3.]],
                       [[1., 0., 2.], [0., 3., 0.], [4., 0., 5.]]],
                      [[[4., 0., 0.], [0., 5., 0.], [0., 0., 6.]],
                       [[0., 6., 0.], [7., 0., 8.], [0., 9., 0.]]]])
    assert torch.allclose(activation_channels_l1(x), torch.tensor([21 / 2, 45 / 2], dtype=torch.float64))
    assert torch.allclose(activation_channels_apoz(x),
                          torch.tensor([100 * (6 + 6) / (9 + 9), 100 * (4 + 5) / (9 + 9)], dtype=torch.float64))
    assert torch.allclose(activation_channels_means(x), torch.tensor([21 / 18, 45 / 18], dtype=torch.float64))
    # 2D activations: each feature is a channel.
    fc = torch.tensor([[0.0, 2.0], [1.0, -4.0]])
    assert activation_channels_apoz(fc).tolist() == [50.0, 0.0]
    assert activation_channels_l1(fc).tolist() == [0.5, 3.0]


# --------------------------------------------------------------------------------------------------------------
# Scores of the criteria edgeprune adds, each on a hand-computed example.


def test_taylor_and_gradient_scores() -> None:
    w = torch.tensor([[1.0, -2.0], [3.0, 0.0]]).view(2, 2, 1, 1)
    g = torch.tensor([[2.0, 1.0], [-1.0, 5.0]]).view(2, 2, 1, 1)
    assert taylor_fo_filter_scores(w, g).tolist() == [4.0, 3.0]  # |2| + |-2|, |-3| + 0
    assert gradient_filter_scores(w, g).tolist() == [0.0, -3.0]  # the signed sum cancels in filter 0


def test_fpgm_scores() -> None:
    w = torch.tensor([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0]]).view(3, 2, 1, 1)
    assert fpgm_filter_scores(w).tolist() == [4.0, 3.0, 5.0]  # filter 1 is nearest the others


def test_lamp_scores() -> None:
    scores = lamp_scores(torch.tensor([3.0, -1.0, 2.0]))  # u sorted: 1, 4, 9; suffix sums 14, 13, 9
    assert torch.allclose(scores, torch.tensor([1.0, 1 / 14, 4 / 13]))
    assert lamp_scores(torch.zeros(2)).tolist() == [0.0, 0.0]


def test_bn_scale_and_splicing() -> None:
    assert bn_scale_scores(torch.tensor([-0.5, 0.25, 2.0])).tolist() == [0.5, 0.25, 2.0]
    mask = splicing_mask(torch.tensor([0.1, 0.5, 0.5, 0.9]), torch.tensor([1.0, 0.0, 1.0, 0.0]), 0.2, 0.8)
    assert mask.tolist() == [0.0, 0.0, 1.0, 1.0]  # below low: 0; between: unchanged; at/above high: 1


def test_global_selection() -> None:
    scores = [torch.tensor([1.0, 5.0]), torch.tensor([2.0, 3.0, 0.5])]
    assert [m.tolist() for m in select_global_structures(scores, 2)] == [[0.0, 1.0], [1.0, 1.0, 0.0]]
    # Asking for 4 is capped at 3 so that each layer keeps its best structure.
    assert [m.tolist() for m in select_global_structures(scores, 4)] == [[0.0, 1.0], [0.0, 1.0, 0.0]]
    masks = select_global_elements([torch.tensor([[0.1, 0.5]]), torch.tensor([0.3, 0.2])], 0.5)
    assert [m.tolist() for m in masks] == [[[0.0, 1.0]], [1.0, 0.0]]
