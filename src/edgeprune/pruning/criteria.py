"""Structure magnitudes, importance scores and thresholding masks, as pure functions.

This is Distiller's ``norms`` and ``thresholding`` plus the scores of the pruners edgeprune adds. The maths
is what the compatibility contract pins down (reference §2.3, §2.7, §8.3), so it is kept free of pruner
state and each function can be checked on a hand-computed tensor.

Deliberate difference: length normalisation ("Mean" criteria) always divides by the number of elements in
the group. Distiller's row/column norms divided by the number of rows/columns instead, which only matters
for thresholding non-square matrices with a ``Mean_*`` criterion (ranking is unaffected).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from edgeprune.errors import ConfigError


class NamedNorm:
    """A norm ``f(t, dim)`` over one dimension, printable under Distiller's name ("L1", "L2", "Max").

    The name is what logs, schedules (``magnitude_fn: L2``) and Distiller's tests refer to.
    """

    def __init__(self, fn: Callable[[torch.Tensor, int], torch.Tensor], name: str) -> None:
        self.fn = fn
        self.name = name

    def __call__(self, t: torch.Tensor, dim: int = 1) -> torch.Tensor:
        return self.fn(t, dim)

    def __str__(self) -> str:
        return self.name

    __repr__ = __str__


l1_norm = NamedNorm(lambda t, dim: torch.linalg.vector_norm(t, ord=1, dim=dim), "L1")
l2_norm = NamedNorm(lambda t, dim: torch.linalg.vector_norm(t, ord=2, dim=dim), "L2")
max_norm = NamedNorm(lambda t, dim: t.abs().amax(dim=dim), "Max")
NORMS: dict[str, NamedNorm] = {n.name: n for n in (l1_norm, l2_norm, max_norm)}

# Distiller's threshold_criteria names: the norm, and whether it is length-normalised ("Mean" in the name).
THRESHOLD_CRITERIA: dict[str, tuple[NamedNorm, bool]] = {
    "L1": (l1_norm, False), "Mean_L1": (l1_norm, True), "Mean_Abs": (l1_norm, True),
    "L2": (l2_norm, False), "Mean_L2": (l2_norm, True), "Max": (max_norm, False),
}
#: The two spellings Distiller accepts for whole-filter structures.
FILTER_GROUP_TYPES = ("3D", "Filters")
THRESHOLD_GROUPS = ("2D", "Rows", "Cols", *FILTER_GROUP_TYPES, "Channels")


def norm_by_name(norm: str | NamedNorm, *, owner: str = "magnitude_fn") -> NamedNorm:
    """Resolve a YAML norm name (``L1``/``L2``/``Max``) or pass a norm through."""
    if isinstance(norm, NamedNorm):
        return norm
    try:
        return NORMS[norm]
    except KeyError:
        raise ConfigError(f"{owner}: unknown norm {norm!r}; expected one of {', '.join(NORMS)}.") from None


# --------------------------------------------------------------------------------------------------------------
# Group magnitudes. Each returns one value per group of `group_len` adjacent structures.


def _grouped_norm(rows: torch.Tensor, norm: NamedNorm, group_len: int, length_normalized: bool) -> torch.Tensor:
    """Norm of each group of ``group_len`` adjacent rows of a 2D view (rows = structures)."""
    if rows.size(0) % group_len:
        raise ConfigError(f"group_size {group_len} does not divide the {rows.size(0)} structures of the weight.")
    grouped = rows.reshape(rows.size(0) // group_len, -1)
    with torch.no_grad():
        mags = norm(grouped, 1)
        return mags / grouped.size(1) if length_normalized else mags


def filters_norm(param: torch.Tensor, norm: NamedNorm = l1_norm, group_len: int = 1,
                 length_normalized: bool = False) -> torch.Tensor:
    """One value per output filter (dim 0) of a 3D/4D weight."""
    return _grouped_norm(param.reshape(param.size(0), -1), norm, group_len, length_normalized)


def channels_norm(param: torch.Tensor, norm: NamedNorm = l1_norm, group_len: int = 1,
                  length_normalized: bool = False) -> torch.Tensor:
    """One value per input channel: dim 1 of a 4D weight, a column (input feature) of a 2D weight."""
    if param.dim() == 2:
        return cols_norm(param, norm, group_len, length_normalized)
    return _grouped_norm(param.transpose(0, 1).reshape(param.size(1), -1), norm, group_len, length_normalized)


def cols_norm(param: torch.Tensor, norm: NamedNorm = l1_norm, group_len: int = 1,
              length_normalized: bool = False) -> torch.Tensor:
    """One value per column of a 2D (out, in) weight, i.e. per input feature of a Linear layer."""
    return _grouped_norm(param.t(), norm, group_len, length_normalized)


def rows_norm(param: torch.Tensor, norm: NamedNorm = l1_norm, group_len: int = 1,
              length_normalized: bool = False) -> torch.Tensor:
    """One value per row of a 2D weight."""
    return _grouped_norm(param, norm, group_len, length_normalized)


def kernels_norm(param: torch.Tensor, norm: NamedNorm = l1_norm, group_len: int = 1,
                 length_normalized: bool = False) -> torch.Tensor:
    """One value per k×k kernel of a 4D weight, in (filter, channel) order."""
    return _grouped_norm(param.reshape(-1, param.size(2) * param.size(3)), norm, group_len, length_normalized)


# --------------------------------------------------------------------------------------------------------------
# Binary maps → full-shape masks.


def expand_binary_map(param: torch.Tensor, group_type: str, binary_map: torch.Tensor) -> torch.Tensor:
    """Expand a per-structure 0/1 map to a mask of ``param``'s shape (Distiller's ``expand_binary_map``).

    "Channels" of a 2D weight are its columns, as in Distiller. The result is a dense tensor (not a
    broadcast view) because masks are later multiplied in place and index-selected by thinning.
    """
    binary_map = binary_map.to(device=param.device, dtype=param.dtype)
    if group_type == "Channels" and param.dim() == 2:
        group_type = "Cols"
    if group_type in FILTER_GROUP_TYPES:
        view = binary_map.view(-1, *([1] * (param.dim() - 1)))
    elif group_type == "Channels":
        view = binary_map.view(1, -1, *([1] * (param.dim() - 2)))
    elif group_type == "Cols":
        view = binary_map.view(1, -1)
    elif group_type == "Rows":
        view = binary_map.view(-1, 1)
    elif group_type == "2D":
        view = binary_map.view(param.size(0), param.size(1), 1, 1)
    else:
        raise ConfigError(f"Cannot expand a binary map for group type {group_type!r}.")
    return view.expand_as(param).contiguous()


def threshold_mask(param: torch.Tensor, threshold: float | torch.Tensor) -> torch.Tensor:
    """Fine-grained magnitude mask: 1 where ``|w| > threshold``."""
    return torch.gt(param.detach().abs(), threshold).to(param.dtype)


def group_threshold_binary_map(param: torch.Tensor, group_type: str, threshold: float,
                               threshold_criteria: str) -> torch.Tensor:
    """1 for each group whose norm (per ``threshold_criteria``) is strictly above ``threshold``."""
    try:
        norm, length_normalized = THRESHOLD_CRITERIA[threshold_criteria]
    except KeyError:
        raise ConfigError(f"Unknown threshold_criteria {threshold_criteria!r}; expected one of "
                          f"{', '.join(THRESHOLD_CRITERIA)}.") from None
    if isinstance(threshold, torch.Tensor):
        threshold = threshold.item()
    expected_dims = {"2D": (4,), "Rows": (2,), "Cols": (2,), "3D": (3, 4), "Filters": (3, 4), "Channels": (4,)}
    if group_type not in expected_dims:
        raise ConfigError(f"Unknown thresholding group {group_type!r}; expected one of {', '.join(THRESHOLD_GROUPS)}.")
    if param.dim() not in expected_dims[group_type]:
        raise ConfigError(f"Group {group_type!r} thresholding needs a {'/'.join(map(str, expected_dims[group_type]))}D "
                          f"weight, got shape {tuple(param.shape)}.")
    group_norms = {"2D": kernels_norm, "Rows": rows_norm, "Cols": cols_norm, "3D": filters_norm,
                   "Filters": filters_norm, "Channels": channels_norm}[group_type]
    norms = group_norms(param.detach(), norm, 1, length_normalized)
    return norms.gt(threshold).to(param.dtype)


def group_threshold_mask(param: torch.Tensor, group_type: str, threshold: float,
                         threshold_criteria: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mask, binary_map)`` of group thresholding, as Distiller's ``thresholding.group_threshold_mask``."""
    binary_map = group_threshold_binary_map(param, group_type, threshold, threshold_criteria)
    return expand_binary_map(param, group_type, binary_map), binary_map


def create_mask_level_criterion(tensor: torch.Tensor, desired_sparsity: float) -> torch.Tensor:
    """Mask pruning the ``int(desired_sparsity * numel)`` smallest magnitudes; ties at the threshold all go.

    An all-ones mask when that count is 0 (Distiller would fail on an empty ``topk``).
    """
    k = int(desired_sparsity * tensor.numel())
    if k == 0:
        return torch.ones_like(tensor)
    threshold = torch.kthvalue(tensor.detach().abs().flatten(), k).values
    return threshold_mask(tensor, threshold)


def create_mask_sensitivity_criterion(tensor: torch.Tensor, sensitivity: float) -> torch.Tensor:
    """Han et al.'s criterion: prune ``|w| <= std(w) * sensitivity``."""
    return threshold_mask(tensor, float(tensor.detach().std()) * sensitivity)


# --------------------------------------------------------------------------------------------------------------
# Importance scores of the criteria edgeprune adds (and Distiller's gradient score).


def gradient_filter_scores(weight: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """Distiller's GradientRankedFilterPruner score: ``Σ w·∂L/∂w`` per filter (signed)."""
    return (weight.detach() * grad).reshape(weight.size(0), -1).sum(dim=1)


def taylor_fo_filter_scores(weight: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """First-order Taylor importance ``Σ |w·∂L/∂w|`` per filter (Molchanov et al. 2019).

    The absolute value per element (unlike Distiller's signed sum) keeps opposite-signed contributions
    from cancelling, so a filter that matters is never ranked as unimportant.
    """
    return (weight.detach() * grad).abs().reshape(weight.size(0), -1).sum(dim=1)


def bn_scale_scores(gamma: torch.Tensor) -> torch.Tensor:
    """Network-slimming importance of each channel: ``|γ|`` of the BatchNorm after the conv (Liu et al. 2017)."""
    return gamma.detach().abs()


def fpgm_filter_scores(weight: torch.Tensor) -> torch.Tensor:
    """Sum of Euclidean distances from each filter to all others (He et al. 2019, FPGM).

    Filters with the smallest sum lie nearest the geometric median: the others can represent them, so
    they are the ones pruned, whatever their norm.
    """
    flat = weight.detach().reshape(weight.size(0), -1).double()
    return torch.cdist(flat, flat).sum(dim=1).to(weight.dtype)


def lamp_scores(weight: torch.Tensor) -> torch.Tensor:
    """Layer-adaptive magnitude scores (Lee et al. 2021), one per element.

    With the squared magnitudes sorted ascending, ``score(u_i) = u_i / Σ_{j>=i} u_j``. The scores are
    comparable across layers, so one global threshold gives each layer its own sparsity, and each layer's
    largest weight scores 1 (a layer is never emptied below the global cut).
    """
    squared = weight.detach().flatten().double() ** 2
    ordered, order = torch.sort(squared, stable=True)
    suffix = ordered.flip(0).cumsum(0).flip(0)
    sorted_scores = torch.where(suffix > 0, ordered / suffix.clamp_min(torch.finfo(torch.float64).tiny), 0.0)
    scores = torch.empty_like(sorted_scores)
    scores[order] = sorted_scores
    return scores.view_as(weight).to(weight.dtype)


def splicing_mask(weights_abs: torch.Tensor, current_mask: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Dynamic Network Surgery's h(W) (Guo et al. 2016): 0 below ``low``, 1 at/above ``high``, else unchanged.

    Keeping the previous mask in between is what lets pruned connections be spliced back when they grow.
    """
    new_mask = torch.where(weights_abs < low, torch.zeros_like(current_mask), current_mask)
    return torch.where(weights_abs >= high, torch.ones_like(current_mask), new_mask)
