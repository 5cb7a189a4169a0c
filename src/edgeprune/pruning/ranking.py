"""How many structures to prune and which ones: Distiller's ranking rules, as pure functions.

The counts and the tie rule decide the thinned shapes, so they follow reference §2.2/§2.3 bit for bit:
an IEEE ``fraction * n`` then ``floor``, a keep-one guard unless the fraction is exactly 1.0, and a
threshold selection (``mags > bottomk[-1]``) under which every structure tied at the threshold is pruned.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import torch

from edgeprune.errors import ConfigError
from edgeprune.pruning.criteria import (
    FILTER_GROUP_TYPES,
    NamedNorm,
    channels_norm,
    cols_norm,
    expand_binary_map,
    filters_norm,
    l1_norm,
)
from edgeprune.pruning.masks import MasksDict

RoundingFn = Callable[[float], float]
ROUNDING_FUNCTIONS: dict[str, RoundingFn] = {"floor": math.floor, "ceil": math.ceil}
RANKED_GROUP_TYPES = (*FILTER_GROUP_TYPES, "Channels", "Rows", "Blocks")


def resolve_rounding_fn(rounding_fn: str | RoundingFn) -> RoundingFn:
    """A rounding function from YAML (``floor``/``ceil``) or Python (any callable)."""
    if callable(rounding_fn):
        return rounding_fn
    try:
        return ROUNDING_FUNCTIONS[rounding_fn]
    except (KeyError, TypeError):
        raise ConfigError(f"rounding_fn must be 'floor', 'ceil' or a callable, got {rounding_fn!r}.") from None


def num_structs_to_prune(n: int, fraction: float, rounding_fn: RoundingFn = math.floor, group_len: int = 1) -> int:
    """Distiller's count of structures to prune out of ``n`` (reference §2.2).

    ``0.29 * 100`` is 28.999… in IEEE arithmetic, so it prunes 28: the float multiply is deliberate.
    """
    n_prune = rounding_fn(fraction * n)
    n_prune = int(rounding_fn(n_prune / group_len) * group_len)
    if n_prune == n and fraction != 1.0:
        n_prune = n - group_len
    return n_prune


def round_kept_to_multiple(n: int, n_prune: int, round_to: int | None) -> int:
    """Adjust ``n_prune`` so that the kept count is a multiple of ``round_to`` (for SIMD/tensor-core widths).

    The kept count goes to the nearest multiple (halves keep more), at least one multiple and at most the
    largest multiple that fits in ``n``. Nothing changes when nothing was to be pruned, or when ``n`` is
    smaller than ``round_to`` (no multiple fits, so every structure is kept).
    """
    if not round_to or round_to == 1 or n_prune == 0:
        return n_prune
    largest = (n // round_to) * round_to
    if largest == 0:
        return 0
    kept = round_to * max(1, math.floor((n - n_prune) / round_to + 0.5))
    return n - min(kept, largest)


def epsilon_greedy_noise(mags: torch.Tensor, noise: float) -> torch.Tensor:
    """With probability ``noise``, multiply the magnitudes by standard-normal noise (exploration)."""
    if noise and float(torch.rand(())) <= noise:
        return mags * torch.randn_like(mags)
    return mags


def bottomk_binary_map(mags: torch.Tensor, n_prune: int) -> torch.Tensor:
    """Distiller's selection: keep ``mags > k-th smallest``, so ties at the threshold are all pruned."""
    threshold = torch.topk(mags, n_prune, largest=False, sorted=True).values[-1]
    return mags.gt(threshold).to(mags.dtype)


def exact_bottomk_binary_map(mags: torch.Tensor, n_prune: int) -> torch.Tensor:
    """Prune exactly ``n_prune`` (the lowest, lower index first among ties); used where a count must hold."""
    binary_map = torch.ones_like(mags)
    binary_map[torch.argsort(mags, stable=True)[:n_prune]] = 0
    return binary_map


def prune_count(n: int, fraction: float, rounding_fn: RoundingFn = math.floor, group_len: int = 1,
                round_to: int | None = None) -> int:
    """Structures to prune: §2.2's count, then the optional ``round_to`` adjustment of the kept count."""
    return round_kept_to_multiple(n, num_structs_to_prune(n, fraction, rounding_fn, group_len), round_to)


def select_structures(scores: torch.Tensor, n_prune: int, group_len: int = 1, noise: float = 0.0,
                      exact: bool = False) -> torch.Tensor:
    """Per-structure 0/1 map from per-group scores (one per ``group_len`` adjacent structures).

    ``exact`` selects exactly ``n_prune`` instead of Distiller's threshold rule, so that a ``round_to``
    kept count is not broken by ties.
    """
    scores = epsilon_greedy_noise(scores, noise)
    k = n_prune // group_len
    group_map = exact_bottomk_binary_map(scores, k) if exact else bottomk_binary_map(scores, k)
    return group_map.repeat_interleave(group_len)


def structure_count(param: torch.Tensor, group_type: str) -> int:
    """How many structures of ``group_type`` the weight has (filters, input channels or input columns)."""
    if group_type in FILTER_GROUP_TYPES:
        if param.dim() not in (3, 4):
            raise ConfigError(f"group_type {group_type!r} needs a 3D/4D (conv) weight, got shape {tuple(param.shape)}.")
        return param.size(0)
    if group_type == "Channels" and param.dim() in (2, 4):
        return param.size(1)
    if group_type == "Rows" and param.dim() == 2:
        return param.size(1)
    needs = "a 2D or 4D" if group_type == "Channels" else "a 2D (Linear)"
    raise ConfigError(f"group_type {group_type!r} needs {needs} weight, got shape {tuple(param.shape)}.")


def structure_magnitudes(param: torch.Tensor, group_type: str, magnitude_fn: NamedNorm = l1_norm,
                         group_len: int = 1) -> torch.Tensor:
    """Length-normalised magnitude per structure group (§2.3); Linear "Rows"/"Channels" are input columns."""
    structure_count(param, group_type)
    if group_type in FILTER_GROUP_TYPES:
        return filters_norm(param.detach(), magnitude_fn, group_len, length_normalized=True)
    if group_type == "Channels":
        return channels_norm(param.detach(), magnitude_fn, group_len, length_normalized=True)
    return cols_norm(param.detach(), magnitude_fn, group_len, length_normalized=True)


def rank_structures(param: torch.Tensor, group_type: str, fraction: float, magnitude_fn: NamedNorm = l1_norm,
                    noise: float = 0.0, group_size: int = 1, rounding_fn: RoundingFn = math.floor,
                    round_to: int | None = None) -> torch.Tensor | None:
    """The per-structure 0/1 map of Lp ranking, or None when the count to prune rounds to 0."""
    n = structure_count(param, group_type)
    n_prune = prune_count(n, fraction, rounding_fn, group_size, round_to)
    if n_prune == 0:
        return None
    mags = structure_magnitudes(param, group_type, magnitude_fn, group_size)
    return select_structures(mags, n_prune, group_size, noise, exact=round_to is not None)


# --------------------------------------------------------------------------------------------------------------
# Blocks: [block_repetitions, block_depth, 1, 1] super-blocks, with Distiller's exact view of the weight.


def block_view_dims(param: torch.Tensor, block_shape: Sequence[int]) -> tuple[int, int, int]:
    """The 3D view whose dim 1 spans one block (Distiller's ``rank_and_prune_blocks`` layout)."""
    if len(block_shape) != 4:
        raise ConfigError(f"block_shape must have 4 elements [repetitions, depth, 1, 1], got {list(block_shape)}.")
    reps, depth, height, width = (int(v) for v in block_shape)
    if not height == width == 1:
        raise ConfigError(f"Only block shapes [repetitions, depth, 1, 1] are supported, got {list(block_shape)}.")
    if param.dim() != 4:
        raise ConfigError(f"Block pruning needs a 4D (conv) weight, got shape {tuple(param.shape)}.")
    filters, channels = param.size(0), param.size(1)
    kernel = param.size(2) * param.size(3)
    if depth > 1:
        if (filters * channels) % (reps * depth):
            raise ConfigError(f"Block shape {list(block_shape)} does not divide weight shape {tuple(param.shape)}.")
        return filters * channels // (reps * depth), reps * depth, kernel
    if filters % reps:
        raise ConfigError(f"Block shape {list(block_shape)} does not divide weight shape {tuple(param.shape)}.")
    return filters // reps, reps, channels * kernel


def rank_blocks(param: torch.Tensor, fraction: float, block_shape: Sequence[int],
                magnitude_fn: NamedNorm = l1_norm) -> torch.Tensor | None:
    """0/1 map over blocks; Distiller counts ``int(fraction * n_blocks)`` here, without the keep-one guard."""
    dims = block_view_dims(param, block_shape)
    with torch.no_grad():
        mags = (magnitude_fn(param.detach().reshape(dims), 1) / dims[1]).flatten()
    k = int(fraction * mags.numel())
    return bottomk_binary_map(mags, k) if k else None


def expand_block_map(param: torch.Tensor, block_shape: Sequence[int], binary_map: torch.Tensor) -> torch.Tensor:
    """Full-shape mask from a block map."""
    dims = block_view_dims(param, block_shape)
    per_block = binary_map.to(device=param.device, dtype=param.dtype).view(dims[0], 1, dims[2])
    return per_block.expand(dims).reshape(param.shape).contiguous()


def block_count(param: torch.Tensor, block_shape: Sequence[int]) -> int:
    dims = block_view_dims(param, block_shape)
    return dims[0] * dims[2]


# --------------------------------------------------------------------------------------------------------------
# Distiller's public ranking entry points (used by its tests and by sensitivity analysis).


def rank_and_prune(group_type: str, fraction: float, param: torch.Tensor, param_name: str | None = None,
                   zeros_mask_dict: MasksDict | None = None, magnitude_fn: NamedNorm = l1_norm, noise: float = 0.0,
                   group_size: int = 1, rounding_fn: RoundingFn = math.floor) -> torch.Tensor | None:
    """Rank ``group_type`` structures of ``param`` and, given a masks dict, set ``param_name``'s mask; returns
    the binary map (None: nothing to prune). Distiller's "Rows" of a Linear weight are its input *columns*
    (rows of Wᵀ); see reference §2.3."""
    binary_map = rank_structures(param, group_type, fraction, magnitude_fn, noise, group_size, rounding_fn)
    if binary_map is not None and zeros_mask_dict is not None and param_name is not None:
        expand_as = "Cols" if group_type == "Rows" else group_type
        zeros_mask_dict[param_name].mask = expand_binary_map(param, expand_as, binary_map)
    return binary_map


# Distiller's names: rank_and_prune_filters(fraction, param, param_name=None, zeros_mask_dict=None, ...).
rank_and_prune_filters = functools.partial(rank_and_prune, "Filters")
rank_and_prune_channels = functools.partial(rank_and_prune, "Channels")
rank_and_prune_rows = functools.partial(rank_and_prune, "Rows")


# --------------------------------------------------------------------------------------------------------------
# Global selection across several weights (GlobalL1FilterPruner, LAMPPruner).


def select_global_structures(scores: Sequence[torch.Tensor], n_prune: int) -> list[torch.Tensor]:
    """Per-layer 0/1 maps pruning the ``n_prune`` lowest scores of all layers together (ties all pruned).

    Each layer's best structure is protected, so no layer is emptied (its thinning would be refused);
    ``n_prune`` is capped accordingly.
    """
    protected = []
    for layer_scores in scores:
        guarded = layer_scores.detach().clone().double()
        guarded[torch.argmax(guarded)] = math.inf
        protected.append(guarded)
    joined = torch.cat(protected)
    n_prune = min(n_prune, joined.numel() - len(scores))
    if n_prune <= 0:
        return [torch.ones_like(s) for s in scores]
    flat_map = bottomk_binary_map(joined, n_prune)
    return [m.to(s.dtype) for m, s in zip(flat_map.split([s.numel() for s in scores]), scores, strict=True)]


def select_global_elements(scores: Sequence[torch.Tensor], fraction: float) -> list[torch.Tensor]:
    """Fine-grained masks pruning ``int(fraction * total)`` lowest scores over all tensors (ties all pruned)."""
    joined = torch.cat([s.detach().flatten().double() for s in scores])
    k = int(fraction * joined.numel())
    if k == 0:
        return [torch.ones_like(s) for s in scores]
    threshold = torch.kthvalue(joined, k).values
    return [s.detach().double().gt(threshold).to(s.dtype) for s in scores]
