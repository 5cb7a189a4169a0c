"""Ranked structure pruners — THE extension point: a subclass scores structures, the base does the rest.

Distiller's ``_RankedStructureParameterPruner`` family (L1/L2 ranking of filters, channels, rows, blocks).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
import torch.fx

from edgeprune.errors import ConfigError
from edgeprune.models.naming import normalize_module_name
from edgeprune.models.summary import input_shape_of
from edgeprune.pruning.criteria import (
    NamedNorm,
    expand_binary_map,
    l1_norm,
    l2_norm,
    norm_by_name,
)
from edgeprune.pruning.dependency import channel_graph, coupled_weight_groups
from edgeprune.pruning.masks import MasksDict
from edgeprune.pruning.pruners.base import (
    RANKED_STRUCTURE_DIMS,
    STRUCTURE_DIMS,
    Meta,
    WeightsPruner,
    check_fraction,
)
from edgeprune.pruning.ranking import (
    RANKED_GROUP_TYPES,
    RoundingFn,
    block_count,
    expand_block_map,
    prune_count,
    rank_blocks,
    resolve_rounding_fn,
    select_structures,
    structure_count,
    structure_magnitudes,
)
from edgeprune.pruning.registry import register_pruner


class RankedStructurePruner(WeightsPruner):
    """Ranks structures, prunes a fraction of them, optionally with one map for a group of weights.

    **The extension point is** :meth:`structure_scores` — the importance of each structure of one weight
    (lowest pruned first). Everything else is done here: ownership of the listed weights, how many structures
    a fraction prunes (Distiller's §2.2 count with ``rounding_fn`` and ``round_to``), Distiller's tie rule,
    Leader and auto_group groups (a group is ranked by the sum of its members' scores), and expanding the
    0/1 map into the weight's mask. A new criterion is one decorated class::

        @register_pruner()
        class MyRankedFilterPruner(RankedStructurePruner):
            def structure_scores(self, param, param_name, meta):
                return param.detach().abs().amax(dim=(1, 2, 3))   # one score per filter

    and a schedule names it by its class name, or as ``package.module:MyRankedFilterPruner`` without
    registering. (A family with another selection rule overrides ``binary_map``, as the Lp blocks and the
    activation-order pruners do; the scores still come from ``structure_scores``.)

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
    rounding_fn: RoundingFn = staticmethod(math.floor)  # Distiller's §2.2 rounding of the pruned count

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
        """How many of ``n`` structures a ``fraction`` prunes: Distiller's count, then ``round_to``."""
        return prune_count(n, fraction, self.rounding_fn, self.group_size, self.round_to)

    def structure_scores(self, param: torch.Tensor, param_name: str, meta: Meta) -> torch.Tensor | None:
        """Importance per ranked unit of ``param``, lowest pruned first (None: cannot rank it yet).

        One value per structure of ``group_type`` (per ``group_size`` adjacent structures). Override this.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement structure_scores(param, param_name, meta)")

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
