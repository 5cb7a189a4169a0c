"""Global pruners: one decision across all listed weights (global L1 filters, LAMP)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.fx
from torch import nn

from edgeprune.errors import ConfigError
from edgeprune.models.naming import normalize_module_name
from edgeprune.pruning.criteria import (
    FILTER_GROUP_TYPES,
    expand_binary_map,
    filters_norm,
    l1_norm,
    lamp_scores,
)
from edgeprune.pruning.masks import MasksDict
from edgeprune.pruning.pruners.base import (
    Meta,
    WeightsPruner,
    check_fraction,
)
from edgeprune.pruning.ranking import (
    num_structs_to_prune,
    select_global_elements,
    select_global_structures,
)
from edgeprune.pruning.registry import register_pruner


class GlobalPruner(WeightsPruner):
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
class GlobalL1FilterPruner(GlobalPruner):
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
class LAMPPruner(GlobalPruner):
    """Fine-grained pruning by LAMP scores (Lee et al. 2021) with one global threshold over the listed weights.

    ``int(desired_sparsity * total elements)`` weights go; LAMP's normalisation picks each layer's sparsity.
    """

    def global_masks(self, params: dict[str, nn.Parameter]) -> dict[str, torch.Tensor]:
        masks = select_global_elements([lamp_scores(p) for p in params.values()], self.desired_sparsity)
        return dict(zip(params, masks, strict=True))
