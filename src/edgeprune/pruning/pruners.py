"""Pruners: each computes masks for the weights it owns, under Distiller's class names and YAML keys.

A pruner never applies a mask. ``PruningPolicy`` calls ``set_param_mask(param, name, zeros_mask_dict, meta)``
for every parameter of the model and decides when masks are applied (reference §1.5); a pruner ignores
parameters it does not own. Names are canonical (``module.`` removed, see ``edgeprune.models.naming``),
so a ``module.``-prefixed schedule prunes a plain model too (Distiller silently pruned nothing).

Deliberate differences from Distiller, all in the direction of refusing or fixing silent no-ops:
* every user mistake is a ``ConfigError`` naming the pruner, the weight and what was expected;
* everything runs on the parameter's device (Distiller's activation/random/gradient pruners needed CUDA);
* ``rounding_fn`` is honoured by the Lp-ranked pruners too (Distiller always used floor there; a
  Distiller YAML cannot name a rounding function, so no existing schedule changes);
* ``group_size`` ranks groups of adjacent structures consistently (Distiller mixed group and structure
  counts, which could not run);
* the activation statistics come from ``meta["activation_stats"]`` (see ``activations``), not from
  attributes a separate collector had to attach to modules;
* ``auto_group: true`` (L1/L2 ranked pruners, their ``_AGP`` variants, Taylor/FPGM/BN-scale) gives weights
  that are coupled in the model (e.g. every conv feeding one residual add) one map, ranked by the group's
  summed importance, so that the pruned model can be thinned (see ``RankedStructurePruner``).
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
import torch.fx
from torch import nn

from edgeprune.analysis.summary import input_shape_of
from edgeprune.errors import ConfigError
from edgeprune.models.naming import normalize_module_name
from edgeprune.pruning.activations import least_squares_refit, resolve_activation_module
from edgeprune.pruning.criteria import (
    NamedNorm,
    bn_scale_scores,
    create_mask_level_criterion,
    expand_binary_map,
    filters_norm,
    fpgm_filter_scores,
    gradient_filter_scores,
    group_threshold_mask,
    l1_norm,
    l2_norm,
    lamp_scores,
    norm_by_name,
    splicing_mask,
    taylor_fo_filter_scores,
    threshold_mask,
)
from edgeprune.pruning.dependency import channel_graph, coupled_weight_groups
from edgeprune.pruning.masks import MasksDict
from edgeprune.pruning.ranking import (
    RANKED_GROUP_TYPES,
    RoundingFn,
    block_count,
    expand_block_map,
    num_structs_to_prune,
    prune_count,
    rank_blocks,
    resolve_rounding_fn,
    select_global_elements,
    select_global_structures,
    select_structures,
    structure_count,
    structure_magnitudes,
)
from edgeprune.pruning.registry import register_pruner

Meta = Mapping[str, Any] | None
FILTER_GROUP_TYPES = ("3D", "Filters")
# The group types that zero whole filters or input channels, i.e. what thinning removes, by dimension.
STRUCTURE_DIMS = {"3D": "filters", "Filters": "filters", "Channels": "channels"}
# A ranked pruner's "Rows" of a Linear weight are its input columns (Distiller), i.e. channels to thinning.
RANKED_STRUCTURE_DIMS = {**STRUCTURE_DIMS, "Rows": "channels"}


# --------------------------------------------------------------------------------------------------------------
# Helpers shared by the pruners.


def find_param(model: nn.Module, name: str) -> nn.Parameter | None:
    """The parameter whose canonical name is ``name`` (works on DataParallel-wrapped models too)."""
    canonical = normalize_module_name(name)
    return next((p for n, p in model.named_parameters() if normalize_module_name(n) == canonical), None)


def find_module(model: nn.Module, name: str) -> nn.Module | None:
    canonical = normalize_module_name(name)
    return next((m for n, m in model.named_modules() if normalize_module_name(n) == canonical), None)


def check_fraction(owner: str, key: str, value: Any) -> float:
    """A sparsity fraction from YAML must be a number in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ConfigError(f"{owner}: {key} must be a number in [0, 1], got {value!r}.")
    return float(value)


def canonical_mapping(owner: str, key: str, mapping: Any) -> dict[str, Any]:
    """A ``{weight name or '*': value}`` YAML mapping with canonical weight names."""
    if not isinstance(mapping, Mapping) or not mapping:
        raise ConfigError(f"{owner}: {key} must be a non-empty mapping of weight names to values, got {mapping!r}.")
    return {k if k == "*" else normalize_module_name(str(k)): v for k, v in mapping.items()}


class BasePruner:
    """Name bookkeeping and error wording common to all pruners (``params_names``: the owned weights)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.params_names: list[str] = []

    @property
    def owner(self) -> str:
        return f"Pruner {self.name!r} ({type(self).__name__})"

    def owns(self, param_name: str) -> bool:
        return param_name in self.params_names

    def structure_dims(self) -> dict[str, str]:
        """``{weight: 'filters' | 'channels'}`` for the weights whose whole filters / input channels this zeroes.

        The schedule builder compares these with the model's coupling before training, because thinning
        refuses coupled weights whose zero structures differ. Pruners that zero no whole structure: ``{}``.
        """
        return {}

    @property
    def shares_coupled_maps(self) -> bool:
        """Whether coupled weights among ``structure_dims`` always get one map (Leader or auto_group)."""
        return False

    def group_coupled_weights(self) -> bool:
        """Give coupled weights one map from now on, as ``auto_group: true`` would; False if this pruner cannot.

        The schedule builder calls it for Distiller schedules that rank residual-coupled weights independently
        and thin them later (see :func:`edgeprune.schedule.build.check_structure_coupling`).
        """
        return False

    def _model(self, meta: Meta, why: str) -> nn.Module:
        model = meta.get("model") if meta else None
        if model is None:
            raise ConfigError(f"{self.owner} needs meta['model'] {why}.")
        return model

    def _owned_params(self, meta: Meta, why: str) -> dict[str, nn.Parameter]:
        model = self._model(meta, why)
        params = {name: find_param(model, name) for name in self.params_names}
        missing = [name for name, p in params.items() if p is None]
        if missing:
            raise ConfigError(f"{self.owner}: weight(s) {', '.join(map(repr, missing))} are not in the model.")
        return params  # type: ignore[return-value]


def canonical_weights(owner: str, weights: str | Iterable[str]) -> list[str]:
    """A ``weights`` list as canonical names; one string is one weight (as Distiller's Python API passed it)."""
    names = [weights] if isinstance(weights, str) else list(weights or [])
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ConfigError(f"{owner}: weights must be a non-empty list of parameter names, got {weights!r}.")
    return [normalize_module_name(n) for n in names]


class _WeightsPruner(BasePruner):
    """A pruner that owns an explicit ``weights`` list."""

    def __init__(self, name: str, weights: str | Iterable[str]) -> None:
        super().__init__(name)
        self.params_names = canonical_weights(self.owner, weights)


# --------------------------------------------------------------------------------------------------------------
# Ranked structure pruners (Distiller's _RankedStructureParameterPruner family).


class RankedStructurePruner(_WeightsPruner):
    """Ranks structures, prunes a fraction of them, optionally with one map for a group of weights.

    Subclasses provide either ``binary_map`` (the 0/1 map of one weight at a target fraction, or None for
    "nothing to prune"), or ``count_to_prune`` and ``structure_scores``, from which :meth:`group_binary_map`
    ranks one weight or several together. This class handles ownership, the groups and expanding maps to masks.

    Two ways to give several weights one map, so that coupled weights (feeding one residual add) lose the
    same filters and can be thinned:

    * ``group_dependency: Leader`` (Distiller, §2.4): every listed weight takes the map of the first one,
      ranked by that weight's magnitudes only, cached while the target sparsity stays the same.
    * ``auto_group: true`` (edgeprune): the model's channel graph says which listed weights are coupled;
      each coupled group is ranked by the SUM of its members' length-normalised importances (group-importance
      averaging, Distiller issue #523: every member votes, not only a leader) every round, and uncoupled
      weights are ranked alone as usual. The groups are derived from the model (cached until a parameter
      changes shape, e.g. after thinning), so there is nothing to save for a resume. Members are ranked by
      their stored weights (not BN-folded ones), as a Leader is.
    """

    group_types: tuple[str, ...] = RANKED_GROUP_TYPES
    group_size = 1  # adjacent structures ranked as one unit

    def __init__(self, name: str, group_type: str, desired_sparsity: float, weights: str | Iterable[str],
                 group_dependency: str | None = None, noise: float = 0.0, round_to: int | None = None,
                 auto_group: bool = False) -> None:
        super().__init__(name, weights)
        if group_type not in self.group_types:
            raise ConfigError(f"{self.owner}: group_type {group_type!r} is not supported; accepted: "
                              f"{', '.join(self.group_types)}.")
        if group_dependency not in (None, "Leader"):
            raise ConfigError(f"{self.owner}: group_dependency must be 'Leader' or absent, got {group_dependency!r}.")
        if round_to is not None and (isinstance(round_to, bool) or not isinstance(round_to, int) or round_to < 1):
            raise ConfigError(f"{self.owner}: round_to must be a positive integer, got {round_to!r}.")
        if not isinstance(auto_group, bool):
            raise ConfigError(f"{self.owner}: auto_group must be true or false, got {auto_group!r}.")
        if auto_group and group_dependency is not None:
            raise ConfigError(f"{self.owner}: auto_group and group_dependency: Leader both give a group one map; "
                              "use one of them.", hint="auto_group ranks a group by all its members, Leader by "
                              "the first weight only.")
        if auto_group and group_type not in STRUCTURE_DIMS:
            raise ConfigError(f"{self.owner}: auto_group groups coupled filters or channels; it needs group_type "
                              f"{', '.join(STRUCTURE_DIMS)}, got {group_type!r}.")
        self.group_type = group_type
        self.desired_sparsity = check_fraction(self.owner, "desired_sparsity", desired_sparsity)
        self.group_dependency = group_dependency
        self.noise = check_fraction(self.owner, "noise", noise)
        self.round_to = round_to
        self.auto_group = auto_group
        self.leader_binary_map: torch.Tensor | None = None
        self.last_target_sparsity: float | None = None
        self._pending: dict[str, torch.Tensor | None] = {}  # auto_group maps not yet taken in this round

    def structure_dims(self) -> dict[str, str]:
        dim = RANKED_STRUCTURE_DIMS.get(self.group_type)
        return dict.fromkeys(self.params_names, dim) if dim else {}

    @property
    def shares_coupled_maps(self) -> bool:
        return self.group_dependency == "Leader" or self.auto_group

    def group_coupled_weights(self) -> bool:
        if self.group_dependency is None and self.group_type in STRUCTURE_DIMS:
            self.auto_group = True
        return self.shares_coupled_maps

    def leader(self) -> str:
        """The first listed weight; its ranking decides the map of the whole group."""
        return self.params_names[0]

    def fraction_to_prune(self, param_name: str, meta: Meta) -> float:
        return self.desired_sparsity

    def set_param_mask(self, param: torch.Tensor, param_name: str, zeros_mask_dict: MasksDict, meta: Meta) -> None:
        param_name = normalize_module_name(param_name)
        if self.owns(param_name):
            self.prune_to_target_sparsity(param, param_name, zeros_mask_dict,
                                          self.fraction_to_prune(param_name, meta), meta)

    def prune_to_target_sparsity(self, param: torch.Tensor, param_name: str, zeros_mask_dict: MasksDict,
                                 target_sparsity: float, meta: Meta) -> None:
        """Set ``param_name``'s mask for ``target_sparsity``; a target of 0 leaves the mask as it is."""
        if not self.owns(param_name) or target_sparsity == 0:
            return
        if self.group_dependency == "Leader":
            cached = self.leader_binary_map
            stale = cached is not None and cached.numel() != self._checked(param_name, self.structure_count, param)
            if target_sparsity != self.last_target_sparsity or stale:  # stale: the group was thinned since
                self.leader_binary_map = self._leader_map(target_sparsity, meta)
                self.last_target_sparsity = target_sparsity
            binary_map = self.leader_binary_map
        elif self.auto_group:
            binary_map = self._auto_group_map(param, param_name, target_sparsity, meta)
        else:
            binary_map = self.binary_map(target_sparsity, param, param_name, meta)
        if binary_map is not None:
            zeros_mask_dict[param_name].mask = self.mask_for(param, param_name, binary_map, meta)

    def _auto_group_map(self, param: torch.Tensor, param_name: str, fraction: float,
                        meta: Meta) -> torch.Tensor | None:
        """The map of ``param_name``'s coupled group; an uncoupled weight is ranked alone.

        The policy offers every owned weight once per round: the first member offered ranks the whole group
        with every member's current weights, and the other members take that map in the same round.
        """
        if param_name in self._pending:
            return self._pending.pop(param_name)
        group = next(g for g in self.coupled_groups(meta) if param_name in g)
        if len(group) == 1:
            return self.binary_map(fraction, param, param_name, meta)
        params = self._owned_params(meta, "to rank an auto_group group")
        binary_map = self.group_binary_map(fraction, {name: params[name] for name in group}, meta)
        self._pending.update({name: binary_map for name in group if name != param_name})
        return binary_map

    def coupled_groups(self, meta: Meta) -> list[tuple[str, ...]]:
        """The owned weights grouped by coupling in the model (singletons for uncoupled weights)."""
        model = self._model(meta, "to find which of its weights are coupled (auto_group)")
        try:
            graph = channel_graph(model, input_shape_of(model, meta.get("input_shape") if meta else None))
            return coupled_weight_groups(graph, STRUCTURE_DIMS[self.group_type], self.params_names)
        except ConfigError as exc:
            raise ConfigError(f"{self.owner}: auto_group: {exc.message}", hint=exc.hint) from None

    def _leader_map(self, target_sparsity: float, meta: Meta) -> torch.Tensor | None:
        """Rank the leader only, after checking that every member has as many structures as the leader."""
        params = self._owned_params(meta, "to rank the leader of a group_dependency: Leader group")
        leader = self.leader()
        counts = {name: self._checked(name, self.structure_count, p) for name, p in params.items()}
        expected = counts[leader]
        for name, count in counts.items():
            if count != expected:
                raise ConfigError(
                    f"{self.owner}: group_dependency 'Leader' needs every weight to have as many {self.group_type} "
                    f"as the leader {leader!r} ({expected}), but {name!r} has {count}.",
                    hint="List only weights that feed the same channels (e.g. one residual stream) in one group.")
        return self.binary_map(target_sparsity, params[leader], leader, meta)

    def structure_count(self, param: torch.Tensor) -> int:
        return structure_count(param, self.group_type)

    def mask_for(self, param: torch.Tensor, param_name: str, binary_map: torch.Tensor, meta: Meta) -> torch.Tensor:
        return expand_binary_map(param, "Cols" if self.group_type == "Rows" else self.group_type, binary_map)

    def binary_map(self, fraction: float, param: torch.Tensor, param_name: str, meta: Meta) -> torch.Tensor | None:
        return self.group_binary_map(fraction, {param_name: param}, meta)

    def group_binary_map(self, fraction: float, params: Mapping[str, torch.Tensor],
                         meta: Meta) -> torch.Tensor | None:
        """One 0/1 map for weights whose structures correspond index by index, from their summed scores.

        Summing ranks exactly as averaging does, so every member counts equally (#523); a single weight is
        ranked exactly as on its own. None when nothing is to be pruned or a member has no score yet. The
        members have equal structure counts (``coupled_weight_groups`` checks that they are the same channels).
        """
        first_name, first = next(iter(params.items()))
        n_prune = self.count_to_prune(self._checked(first_name, self.structure_count, first), fraction)
        if n_prune == 0:
            return None
        scores = []
        for name, p in params.items():
            score = self._checked(name, self.structure_scores, p, name, meta)
            if score is None:
                return None
            scores.append(score.to(first.device))
        return select_structures(torch.stack(scores).sum(0), n_prune, self.group_size, self.noise,
                                 exact=self.round_to is not None)

    def count_to_prune(self, n: int, fraction: float) -> int:
        """How many of ``n`` structures a ``fraction`` prunes (subclasses that rank by scores)."""
        raise NotImplementedError

    def structure_scores(self, param: torch.Tensor, param_name: str, meta: Meta) -> torch.Tensor | None:
        """Importance per ranked unit of ``param``, lowest pruned first (None: cannot rank it yet)."""
        raise NotImplementedError

    def _checked(self, param_name: str, check: Any, *args: Any) -> Any:
        """Run a ranking helper, prefixing its ConfigError with this pruner and weight."""
        try:
            return check(*args)
        except ConfigError as exc:
            raise ConfigError(f"{self.owner}, weight {param_name!r}: {exc.message}", hint=exc.hint) from None


@register_pruner()
class LpRankedStructureParameterPruner(RankedStructurePruner):
    """Ranks filters/channels/columns/blocks by their length-normalised Lp norm and prunes the smallest.

    ``kwargs: {block_shape: [repetitions, depth, 1, 1]}`` is required for ``group_type: Blocks``.
    ``round_to: N`` (edgeprune) makes the kept count a multiple of N, selecting exactly that many.
    """

    def __init__(self, name: str, group_type: str, desired_sparsity: float, weights: str | Iterable[str],
                 group_dependency: str | None = None, kwargs: Mapping[str, Any] | None = None,
                 magnitude_fn: str | NamedNorm = l1_norm, noise: float = 0.0, group_size: int = 1,
                 rounding_fn: str | RoundingFn = math.floor, round_to: int | None = None,
                 auto_group: bool = False) -> None:
        super().__init__(name, group_type, desired_sparsity, weights, group_dependency, noise, round_to, auto_group)
        self.magnitude_fn = norm_by_name(magnitude_fn, owner=f"{self.owner}: magnitude_fn")
        self.rounding_fn = resolve_rounding_fn(rounding_fn)
        if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
            raise ConfigError(f"{self.owner}: group_size must be a positive integer, got {group_size!r}.")
        if group_size > 1 and round_to is not None:
            raise ConfigError(f"{self.owner}: use either group_size or round_to, not both.")
        self.group_size = group_size
        self.block_shape: list[int] | None = None
        if group_type == "Blocks":
            if round_to is not None:
                raise ConfigError(f"{self.owner}: round_to is not supported with group_type 'Blocks'.")
            if not kwargs or "block_shape" not in kwargs:
                raise ConfigError(f"{self.owner}: group_type 'Blocks' needs kwargs: "
                                  "{block_shape: [repetitions, depth, 1, 1]}.")
            self.block_shape = list(kwargs["block_shape"])

    def binary_map(self, fraction: float, param: torch.Tensor, param_name: str, meta: Meta) -> torch.Tensor | None:
        if self.block_shape is not None:
            return self._checked(param_name, rank_blocks, param, fraction, self.block_shape, self.magnitude_fn)
        return super().binary_map(fraction, param, param_name, meta)

    def count_to_prune(self, n: int, fraction: float) -> int:
        return prune_count(n, fraction, self.rounding_fn, self.group_size, self.round_to)

    def structure_scores(self, param: torch.Tensor, param_name: str, meta: Meta) -> torch.Tensor:
        return structure_magnitudes(param, self.group_type, self.magnitude_fn, self.group_size)

    def structure_count(self, param: torch.Tensor) -> int:
        if self.block_shape is not None:
            return block_count(param, self.block_shape)
        return super().structure_count(param)

    def mask_for(self, param: torch.Tensor, param_name: str, binary_map: torch.Tensor, meta: Meta) -> torch.Tensor:
        if self.block_shape is not None:
            return expand_block_map(param, self.block_shape, binary_map)
        return super().mask_for(param, param_name, binary_map, meta)


@register_pruner()
class L1RankedStructureParameterPruner(LpRankedStructureParameterPruner):
    """Mean-|w| (length-normalised L1) ranking: Li et al. 2017, "Pruning Filters for Efficient ConvNets"."""

    def __init__(self, name: str, group_type: str, desired_sparsity: float, weights: str | Iterable[str],
                 group_dependency: str | None = None, kwargs: Mapping[str, Any] | None = None, noise: float = 0.0,
                 group_size: int = 1, rounding_fn: str | RoundingFn = math.floor, round_to: int | None = None,
                 auto_group: bool = False) -> None:
        super().__init__(name, group_type, desired_sparsity, weights, group_dependency, kwargs, l1_norm, noise,
                         group_size, rounding_fn, round_to, auto_group)


@register_pruner()
class L2RankedStructureParameterPruner(LpRankedStructureParameterPruner):
    """L2/numel ranking; the same ranking rules as the L1 pruner."""

    def __init__(self, name: str, group_type: str, desired_sparsity: float, weights: str | Iterable[str],
                 group_dependency: str | None = None, kwargs: Mapping[str, Any] | None = None, noise: float = 0.0,
                 group_size: int = 1, rounding_fn: str | RoundingFn = math.floor, round_to: int | None = None,
                 auto_group: bool = False) -> None:
        super().__init__(name, group_type, desired_sparsity, weights, group_dependency, kwargs, l2_norm, noise,
                         group_size, rounding_fn, round_to, auto_group)


@register_pruner()
class RandomLevelStructureParameterPruner(L1RankedStructureParameterPruner):
    """L1 ranking at a sparsity drawn uniformly from ``sparsity_range`` (a DropFilter-like regimen).

    Distiller drew a new level per weight; in a Leader group that gave members different maps, so here a
    Leader group draws one level per epoch.
    """

    def __init__(self, name: str, group_type: str, sparsity_range: Sequence[float], weights: str | Iterable[str],
                 group_dependency: str | None = None, kwargs: Mapping[str, Any] | None = None) -> None:
        super().__init__(name, group_type, 0.0, weights, group_dependency, kwargs)
        if not isinstance(sparsity_range, Sequence) or len(sparsity_range) != 2:
            raise ConfigError(f"{self.owner}: sparsity_range must be [low, high], got {sparsity_range!r}.")
        low, high = (check_fraction(self.owner, "sparsity_range", v) for v in sparsity_range)
        if low > high:
            raise ConfigError(f"{self.owner}: sparsity_range [low, high] needs low <= high, got {sparsity_range!r}.")
        self.sparsity_range = (low, high)
        self._drawn: tuple[Any, float] | None = None

    def fraction_to_prune(self, param_name: str, meta: Meta) -> float:
        epoch = meta.get("current_epoch") if meta else None
        if self.group_dependency == "Leader" and self._drawn is not None and self._drawn[0] == epoch:
            return self._drawn[1]
        low, high = self.sparsity_range
        fraction = low + (high - low) * float(torch.rand(()))
        self._drawn = (epoch, fraction)
        return fraction


# --------------------------------------------------------------------------------------------------------------
# Filter pruners that prune int(fraction * n) filters by an order (Distiller: no keep-one guard).


class _FilterOrderPruner(RankedStructurePruner):
    """Prunes the ``int(fraction * n)`` filters with the highest ``removal_scores`` (None: skip the weight)."""

    group_types = FILTER_GROUP_TYPES

    def __init__(self, name: str, group_type: str, desired_sparsity: float, weights: str | Iterable[str],
                 group_dependency: str | None = None) -> None:
        super().__init__(name, group_type, desired_sparsity, weights, group_dependency)

    def group_coupled_weights(self) -> bool:
        """These rank each weight by its own statistic, which cannot be summed over a group."""
        return self.shares_coupled_maps

    def binary_map(self, fraction: float, param: torch.Tensor, param_name: str, meta: Meta) -> torch.Tensor | None:
        self._require_4d(param, param_name)
        n = param.size(0)
        k = int(fraction * n)
        if k == 0:
            return None
        scores = self.removal_scores(param, param_name, meta)
        if scores is None:
            return None
        kept = torch.argsort(scores, stable=True)[: n - k]
        binary_map = torch.zeros(n, dtype=param.dtype, device=param.device)
        binary_map[kept.to(param.device)] = 1
        return binary_map

    def _require_4d(self, param: torch.Tensor, param_name: str) -> None:
        if param.dim() != 4:
            raise ConfigError(f"{self.owner}: weight {param_name!r} has shape {tuple(param.shape)}; "
                              "this pruner ranks the filters of 4D (conv) weights only.")

    def removal_scores(self, param: torch.Tensor, param_name: str, meta: Meta) -> torch.Tensor | None:
        raise NotImplementedError


class ActivationRankedFilterPruner(_FilterOrderPruner):
    """Ranks filters by a statistic of their output channels, from ``meta["activation_stats"]``.

    The statistics module is the ReLU named by Distiller's rule (``layer1.0.conv1.weight`` → ``layer1.0.relu1``),
    or the conv itself when there is no such module; ``activations.needs_activation_stats`` lists them.
    """

    activation_rank_criterion = ""

    def removal_scores(self, param: torch.Tensor, param_name: str, meta: Meta) -> torch.Tensor:
        model = self._model(meta, "to find the module whose activations rank the filters")
        module = resolve_activation_module(model, param_name)
        stats = (meta.get("activation_stats") if meta else None) or {}
        if module not in stats:
            raise ConfigError(
                f"{self.owner}: no activation statistics for module {module!r} (which ranks {param_name!r}) "
                "in meta['activation_stats'].",
                hint="Collect them with edgeprune.pruning.activations.collect_activation_stats(model, batches, "
                     "needs_activation_stats(pruner, model)); the scheduler does this for activation pruners.")
        criterion = getattr(stats[module], self.activation_rank_criterion)
        if criterion.numel() != param.size(0):
            raise ConfigError(f"{self.owner}: module {module!r} has statistics for {criterion.numel()} channels but "
                              f"{param_name!r} has {param.size(0)} filters; collect the statistics again.")
        return criterion.to(param.device)


@register_pruner()
class ActivationAPoZRankedFilterPruner(ActivationRankedFilterPruner):
    """Prunes the filters whose output channels are most often zero (highest APoZ; Hu et al. 2016)."""

    activation_rank_criterion = "apoz"


@register_pruner()
class ActivationMeanRankedFilterPruner(ActivationRankedFilterPruner):
    """Prunes the filters with the HIGHEST mean activation — Distiller's behaviour, kept for compatibility.

    Molchanov et al. 2017 prune the lowest-mean channels; Distiller shares the APoZ code path
    (``argsort(criterion)[:-k]`` kept), which inverts the criterion here. Schedules relying on Distiller's
    results get the same masks; for the paper's criterion use ActivationAPoZ or TaylorFO pruning.
    """

    activation_rank_criterion = "mean"


@register_pruner()
class RandomRankedFilterPruner(_FilterOrderPruner):
    """Prunes ``int(fraction * n)`` random filters (a baseline for other criteria)."""

    def removal_scores(self, param: torch.Tensor, param_name: str, meta: Meta) -> torch.Tensor:
        return torch.randperm(param.size(0)).to(param.dtype)


@register_pruner()
class GradientRankedFilterPruner(_FilterOrderPruner):
    """Keeps the filters with the highest ``Σ w·∂L/∂w``; skips a weight that has no gradient yet."""

    def removal_scores(self, param: torch.Tensor, param_name: str, meta: Meta) -> torch.Tensor | None:
        return None if param.grad is None else -gradient_filter_scores(param, param.grad)


@register_pruner()
class BernoulliFilterPruner(_FilterOrderPruner):
    """Drops each filter with probability ``fraction`` and scales the kept ones by ``n / kept`` (DropFilter).

    The mask is therefore not 0/1; it is meant for regularisation, not for thinning.
    """

    def binary_map(self, fraction: float, param: torch.Tensor, param_name: str, meta: Meta) -> torch.Tensor:
        self._require_4d(param, param_name)
        keep_prob = torch.full((param.size(0),), 1.0 - fraction, dtype=param.dtype, device=param.device)
        return torch.bernoulli(keep_prob)

    def mask_for(self, param: torch.Tensor, param_name: str, binary_map: torch.Tensor, meta: Meta) -> torch.Tensor:
        mask = expand_binary_map(param, "Filters", binary_map)
        kept = float(binary_map.sum())
        return mask * (binary_map.numel() / kept) if kept else mask


# --------------------------------------------------------------------------------------------------------------
# Feature-map reconstruction.


@register_pruner()
class FMReconstructionChannelPruner(LpRankedStructureParameterPruner):
    """Channel pruning by Lp ranking, then a least-squares refit of the kept channels (He et al. 2017).

    The refit uses input/output samples of the layer from ``meta["feature_maps"]``
    (``activations.collect_feature_maps``, listed by ``activations.needs_feature_maps``) and writes the
    new weights into the parameter in place, as Distiller did.
    """

    group_types = ("Channels",)
    reconstructs_feature_maps = True

    def __init__(self, name: str, group_type: str, desired_sparsity: float, weights: str | Iterable[str],
                 group_dependency: str | None = None, kwargs: Mapping[str, Any] | None = None,
                 magnitude_fn: str | NamedNorm = l1_norm, group_size: int = 1,
                 rounding_fn: str | RoundingFn = math.floor, ranking_noise: float = 0.0) -> None:
        super().__init__(name, group_type, desired_sparsity, weights, group_dependency, kwargs, magnitude_fn,
                         ranking_noise, group_size, rounding_fn)

    def mask_for(self, param: torch.Tensor, param_name: str, binary_map: torch.Tensor, meta: Meta) -> torch.Tensor:
        layer_name = param_name[: -len(".weight")]
        samples = ((meta.get("feature_maps") if meta else None) or {}).get(layer_name)
        if samples is None:
            raise ConfigError(
                f"{self.owner}: no feature-map samples for layer {layer_name!r} in meta['feature_maps'].",
                hint="Collect them with edgeprune.pruning.activations.collect_feature_maps(model, batches, "
                     "needs_feature_maps(pruner)); the scheduler does this for reconstruction pruners.")
        layer = find_module(self._model(meta, "to find the layer to refit"), layer_name)
        keep = binary_map.bool()
        refit = least_squares_refit(samples, keep, getattr(layer, "bias", None))
        with torch.no_grad():
            kept_shape = (param.size(0), int(keep.sum()), *param.shape[2:])
            param[:, keep.to(param.device)] = refit.reshape(kept_shape).to(param.device, param.dtype)
        return super().mask_for(param, param_name, binary_map, meta)


# --------------------------------------------------------------------------------------------------------------
# edgeprune's scored filter pruners: §2.2 counts, Distiller's tie rule, Leader groups and round_to.


class _ScoredFilterPruner(RankedStructurePruner):
    """Prunes the filters with the lowest ``filter_scores`` (None: skip the weight this time)."""

    group_types = FILTER_GROUP_TYPES

    def __init__(self, name: str, desired_sparsity: float, weights: str | Iterable[str], group_type: str = "Filters",
                 group_dependency: str | None = None, noise: float = 0.0, round_to: int | None = None,
                 auto_group: bool = False) -> None:
        super().__init__(name, group_type, desired_sparsity, weights, group_dependency, noise, round_to, auto_group)

    def count_to_prune(self, n: int, fraction: float) -> int:
        return prune_count(n, fraction, round_to=self.round_to)

    def structure_scores(self, param: torch.Tensor, param_name: str, meta: Meta) -> torch.Tensor | None:
        return self.filter_scores(param, param_name, meta)

    def filter_scores(self, param: torch.Tensor, param_name: str, meta: Meta) -> torch.Tensor | None:
        raise NotImplementedError


@register_pruner()
class TaylorFOFilterPruner(_ScoredFilterPruner):
    """First-order Taylor importance ``Σ|w·∂L/∂w|`` per filter; skips a weight without a gradient yet."""

    def filter_scores(self, param: torch.Tensor, param_name: str, meta: Meta) -> torch.Tensor | None:
        return None if param.grad is None else taylor_fo_filter_scores(param, param.grad)


@register_pruner()
class FPGMFilterPruner(_ScoredFilterPruner):
    """Prunes the filters nearest the geometric median of the layer's filters (He et al. 2019)."""

    def filter_scores(self, param: torch.Tensor, param_name: str, meta: Meta) -> torch.Tensor:
        return fpgm_filter_scores(param)


_BN_FOLLOWERS: weakref.WeakKeyDictionary[nn.Module, dict[str, str] | None] = weakref.WeakKeyDictionary()


def _traced_batchnorm_followers(root: nn.Module) -> dict[str, str] | None:
    """``{module: BatchNorm2d that is the only consumer of its output}`` from a torch.fx trace (None: untraceable)."""
    try:
        graph = torch.fx.symbolic_trace(root).graph
    except Exception:  # tracing fails in arbitrary ways on data-dependent control flow
        return None
    modules = {normalize_module_name(n): m for n, m in root.named_modules()}
    followers = {}
    for node in graph.nodes:
        users = list(node.users)
        if node.op == "call_module" and len(users) == 1 and users[0].op == "call_module":
            user = normalize_module_name(str(users[0].target))
            if isinstance(modules.get(user), nn.BatchNorm2d):
                followers[normalize_module_name(str(node.target))] = user
    return followers


def following_batchnorm(model: nn.Module, conv_name: str) -> str | None:
    """Canonical name of the BatchNorm2d that directly consumes module ``conv_name``'s output, if any.

    torch.fx finds it whatever the naming (traced once per model); if the model cannot be traced, the
    naming convention (``...convN`` → ``...bnN``, ``Sequential`` index i → i+1) is tried and checked to
    name a BatchNorm2d.
    """
    root = model.module if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)) else model
    if root not in _BN_FOLLOWERS:
        _BN_FOLLOWERS[root] = _traced_batchnorm_followers(root)
    followers = _BN_FOLLOWERS[root]
    if followers is not None:
        return followers.get(conv_name)
    parent, _, leaf = conv_name.rpartition(".")
    guess = leaf.replace("conv", "bn") if "conv" in leaf else (str(int(leaf) + 1) if leaf.isdigit() else "")
    candidate = f"{parent}.{guess}" if parent else guess
    return candidate if isinstance(find_module(root, candidate), nn.BatchNorm2d) else None


@register_pruner()
class BNScaleFilterPruner(_ScoredFilterPruner):
    """Network slimming (Liu et al. 2017): prunes the filters whose following BatchNorm has the smallest |γ|."""

    def filter_scores(self, param: torch.Tensor, param_name: str, meta: Meta) -> torch.Tensor:
        model = self._model(meta, "to find the BatchNorm that follows each conv")
        conv_name = param_name[: -len(".weight")]
        bn_name = following_batchnorm(model, conv_name)
        bn = find_module(model, bn_name) if bn_name else None
        if not isinstance(bn, nn.BatchNorm2d) or bn.weight is None:
            raise ConfigError(f"{self.owner}: no affine BatchNorm2d directly follows {conv_name!r}, so "
                              f"{param_name!r} has no BN scale to rank its filters by.")
        if bn.num_features != param.size(0):
            raise ConfigError(f"{self.owner}: BatchNorm {bn_name!r} has {bn.num_features} channels but "
                              f"{param_name!r} has {param.size(0)} filters.")
        return bn_scale_scores(bn.weight)


# --------------------------------------------------------------------------------------------------------------
# Global pruners: one decision across all listed weights.


class _GlobalPruner(_WeightsPruner):
    """Computes every owned weight's mask together; each call consumes one, the next round recomputes.

    The first owned weight visited in a round (in whatever order the policy iterates) triggers the global
    computation, so the decision always uses the current weights of every layer.
    """

    def __init__(self, name: str, desired_sparsity: float, weights: str | Iterable[str]) -> None:
        super().__init__(name, weights)
        self.desired_sparsity = check_fraction(self.owner, "desired_sparsity", desired_sparsity)
        self._pending: dict[str, torch.Tensor] = {}

    def set_param_mask(self, param: torch.Tensor, param_name: str, zeros_mask_dict: MasksDict, meta: Meta) -> None:
        param_name = normalize_module_name(param_name)
        if not self.owns(param_name) or self.desired_sparsity == 0:
            return
        if param_name not in self._pending:
            self._pending = self.global_masks(self._owned_params(meta, "to rank the listed weights together"))
        zeros_mask_dict[param_name].mask = self._pending.pop(param_name)

    def global_masks(self, params: dict[str, nn.Parameter]) -> dict[str, torch.Tensor]:
        raise NotImplementedError


@register_pruner()
class GlobalL1FilterPruner(_GlobalPruner):
    """Ranks the filters of all listed layers together by mean |w| and prunes the globally smallest.

    ``floor(desired_sparsity * total filters)`` go, with ties at the threshold (§2.3); each layer keeps at
    least its strongest filter.
    """

    def __init__(self, name: str, desired_sparsity: float, weights: str | Iterable[str],
                 group_type: str = "Filters") -> None:
        super().__init__(name, desired_sparsity, weights)
        if group_type not in FILTER_GROUP_TYPES:
            raise ConfigError(f"{self.owner}: group_type {group_type!r} is not supported; accepted: "
                              f"{', '.join(FILTER_GROUP_TYPES)}.")

    def structure_dims(self) -> dict[str, str]:
        return dict.fromkeys(self.params_names, "filters")

    def global_masks(self, params: dict[str, nn.Parameter]) -> dict[str, torch.Tensor]:
        for name, p in params.items():
            if p.dim() not in (3, 4):
                raise ConfigError(f"{self.owner}: weight {name!r} has shape {tuple(p.shape)}; "
                                  "global filter ranking needs 3D/4D (conv) weights.")
        mags = [filters_norm(p.detach(), l1_norm, length_normalized=True) for p in params.values()]
        n_prune = num_structs_to_prune(sum(m.numel() for m in mags), self.desired_sparsity)
        maps = select_global_structures(mags, n_prune)
        return {name: expand_binary_map(p, "Filters", m) for (name, p), m in zip(params.items(), maps, strict=True)}


@register_pruner()
class LAMPPruner(_GlobalPruner):
    """Fine-grained pruning by LAMP scores (Lee et al. 2021) with one global threshold over the listed weights.

    ``int(desired_sparsity * total elements)`` weights go; LAMP's normalisation picks each layer's sparsity.
    """

    def global_masks(self, params: dict[str, nn.Parameter]) -> dict[str, torch.Tensor]:
        masks = select_global_elements([lamp_scores(p) for p in params.values()], self.desired_sparsity)
        return dict(zip(params, masks, strict=True))


# --------------------------------------------------------------------------------------------------------------
# Distiller's fine-grained and thresholding pruners (keyed by {weight or '*': value} mappings).


class _MappingPruner(BasePruner):
    """A pruner configured per weight with a '*' default; it owns the explicitly named weights."""

    def __init__(self, name: str, key: str, mapping: Any) -> None:
        super().__init__(name)
        self.mapping = canonical_mapping(self.owner, key, mapping)
        self.params_names = [k for k in self.mapping if k != "*"]

    def value_for(self, param_name: str) -> Any:
        """The weight's own value, else the '*' default, else None (the weight is not pruned)."""
        return self.mapping.get(param_name, self.mapping.get("*"))


@register_pruner()
class MagnitudeParameterPruner(_MappingPruner):
    """Fine-grained ``|w| > threshold``; ``thresholds`` must contain a '*' default (as Distiller asserted)."""

    def __init__(self, name: str, thresholds: Mapping[str, float]) -> None:
        if not isinstance(thresholds, Mapping) or "*" not in thresholds:
            raise ConfigError(f"Pruner {name!r} (MagnitudeParameterPruner): thresholds must be a mapping with a "
                              f"default '*' entry, got {thresholds!r}.", hint="For example: thresholds: {'*': 0.01}.")
        super().__init__(name, "thresholds", thresholds)

    def set_param_mask(self, param: torch.Tensor, param_name: str, zeros_mask_dict: MasksDict, meta: Meta) -> None:
        param_name = normalize_module_name(param_name)
        zeros_mask_dict[param_name].mask = threshold_mask(param, self.value_for(param_name))


@register_pruner()
class SensitivityPruner(_MappingPruner):
    """Han et al. 2015: prune ``|w| <= std(w) * sensitivity``; the std is taken once and cached.

    Caching the first std (rather than recomputing it) is what lets the threshold "trap" more weights as
    training pulls them towards zero.
    """

    def __init__(self, name: str, sensitivities: Mapping[str, float]) -> None:
        super().__init__(name, "sensitivities", sensitivities)
        self._stddev: dict[str, float] = {}

    def set_param_mask(self, param: torch.Tensor, param_name: str, zeros_mask_dict: MasksDict, meta: Meta) -> None:
        param_name = normalize_module_name(param_name)
        sensitivity = self.value_for(param_name)
        if sensitivity is None:
            return
        if param_name not in self._stddev:
            self._stddev[param_name] = float(param.detach().std())
        zeros_mask_dict[param_name].mask = threshold_mask(param, self._stddev[param_name] * sensitivity)


@register_pruner()
class SparsityLevelParameterPruner(_MappingPruner):
    """Prunes each weight to an exact fine-grained level; a level of 0 leaves the weight alone.

    ``PruningPolicy`` may replace ``levels`` per policy (``args: {levels: ...}``), hence the setter.
    """

    def __init__(self, name: str, levels: Mapping[str, float]) -> None:
        super().__init__(name, "levels", levels)
        self.levels = levels

    @property
    def levels(self) -> dict[str, float]:
        return self.mapping

    @levels.setter
    def levels(self, levels: Mapping[str, float]) -> None:
        mapping = canonical_mapping(self.owner, "levels", levels)
        self.mapping = {k: check_fraction(self.owner, f"levels[{k!r}]", v) for k, v in mapping.items()}
        self.params_names = [k for k in self.mapping if k != "*"]

    def set_param_mask(self, param: torch.Tensor, param_name: str, zeros_mask_dict: MasksDict, meta: Meta) -> None:
        param_name = normalize_module_name(param_name)
        level = self.value_for(param_name) or 0.0
        if level:
            zeros_mask_dict[param_name].mask = create_mask_level_criterion(param, level)


@register_pruner()
class SplicingPruner(_MappingPruner):
    """Dynamic Network Surgery: prune below a low threshold, splice back at/above a high one.

    Thresholds are ``(mean|w| + std|w| * s) * multiplier`` with the mean/std taken once per weight; with
    ``sensitivity_multiplier > 0`` the sensitivity s grows linearly with the epochs since the start.
    """

    def __init__(self, name: str, sensitivities: Mapping[str, float], low_thresh_mult: float, hi_thresh_mult: float,
                 sensitivity_multiplier: float = 0) -> None:
        super().__init__(name, "sensitivities", sensitivities)
        self.low_thresh_mult = low_thresh_mult
        self.hi_thresh_mult = hi_thresh_mult
        self.sensitivity_multiplier = sensitivity_multiplier
        self._abs_stats: dict[str, tuple[float, float]] = {}

    def set_param_mask(self, param: torch.Tensor, param_name: str, zeros_mask_dict: MasksDict, meta: Meta) -> None:
        param_name = normalize_module_name(param_name)
        sensitivity = self.value_for(param_name)
        if sensitivity is None:
            return
        if self.sensitivity_multiplier > 0:
            if not meta or "starting_epoch" not in meta or "current_epoch" not in meta:
                raise ConfigError(f"{self.owner}: sensitivity_multiplier needs meta starting_epoch/current_epoch.")
            sensitivity *= (meta["current_epoch"] - meta["starting_epoch"]) * self.sensitivity_multiplier + 1
        weights_abs = param.detach().abs()
        if param_name not in self._abs_stats:
            self._abs_stats[param_name] = (float(weights_abs.mean()), float(weights_abs.std()))
        mean, std = self._abs_stats[param_name]
        masker = zeros_mask_dict[param_name]
        current = masker.mask if masker.mask is not None else torch.ones_like(param)
        base = mean + std * sensitivity
        masker.mask = splicing_mask(weights_abs, current, base * self.low_thresh_mult, base * self.hi_thresh_mult)


@register_pruner()
class StructureParameterPruner(_MappingPruner):
    """Group thresholding: ``reg_regims: {weight: [threshold, group_type]}``, criterion Max or Mean_Abs.

    ``model`` is accepted for Distiller's signature (the builder injects it) and is not needed.
    """

    def __init__(self, name: str, model: nn.Module | None, reg_regims: Mapping[str, Sequence[Any]],
                 threshold_criteria: str) -> None:
        super().__init__(name, "reg_regims", reg_regims)
        if "*" in self.mapping:
            raise ConfigError(f"{self.owner}: reg_regims needs explicit weight names; '*' is not supported.")
        if threshold_criteria not in ("Max", "Mean_Abs"):
            raise ConfigError(f"{self.owner}: threshold_criteria must be 'Max' or 'Mean_Abs', "
                              f"got {threshold_criteria!r}.")
        for weight, regime in self.mapping.items():
            if not isinstance(regime, Sequence) or isinstance(regime, str) or len(regime) != 2:
                raise ConfigError(f"{self.owner}: reg_regims[{weight!r}] must be [threshold, group_type], "
                                  f"got {regime!r}.")
        self.threshold_criteria = threshold_criteria

    def structure_dims(self) -> dict[str, str]:
        return {weight: STRUCTURE_DIMS[group_type] for weight, (_, group_type) in self.mapping.items()
                if isinstance(group_type, str) and group_type in STRUCTURE_DIMS}

    def set_param_mask(self, param: torch.Tensor, param_name: str, zeros_mask_dict: MasksDict, meta: Meta) -> None:
        param_name = normalize_module_name(param_name)
        if not self.owns(param_name):
            return
        threshold, group_type = self.mapping[param_name]
        try:
            mask, _ = group_threshold_mask(param, group_type, threshold, self.threshold_criteria)
        except ConfigError as exc:
            raise ConfigError(f"{self.owner}, weight {param_name!r}: {exc.message}") from None
        zeros_mask_dict[param_name].mask = mask
