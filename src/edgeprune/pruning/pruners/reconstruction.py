"""Channel pruning with a least-squares refit of the kept channels (He et al. 2017)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch
import torch.fx

from edgeprune.errors import ConfigError
from edgeprune.pruning.activations import least_squares_refit
from edgeprune.pruning.criteria import (
    NamedNorm,
    l1_norm,
)
from edgeprune.pruning.pruners.base import (
    Meta,
    find_module,
)
from edgeprune.pruning.pruners.ranked import LpRankedStructureParameterPruner
from edgeprune.pruning.ranking import (
    RoundingFn,
)
from edgeprune.pruning.registry import register_pruner


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
