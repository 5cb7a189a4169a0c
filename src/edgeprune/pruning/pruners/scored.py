"""edgeprune's scored filter pruners (Taylor, FPGM, BN scale): §2.2 counts, Leader groups, auto_group, round_to."""

from __future__ import annotations

import weakref
from collections.abc import Iterable

import torch
import torch.fx
from torch import nn

from edgeprune.errors import ConfigError
from edgeprune.models.naming import normalize_module_name
from edgeprune.pruning.criteria import (
    FILTER_GROUP_TYPES,
    bn_scale_scores,
    fpgm_filter_scores,
    taylor_fo_filter_scores,
)
from edgeprune.pruning.pruners.base import (
    Meta,
    find_module,
)
from edgeprune.pruning.pruners.ranked import RankedStructurePruner
from edgeprune.pruning.registry import register_pruner


class ScoredFilterPruner(RankedStructurePruner):
    """Filter pruners with edgeprune's keyword set (``group_type`` defaults to Filters); they score filters."""

    group_types = FILTER_GROUP_TYPES

    def __init__(self, name: str, desired_sparsity: float, weights: str | Iterable[str], group_type: str = "Filters",
                 group_dependency: str | None = None, noise: float = 0.0, round_to: int | None = None,
                 auto_group: bool = False) -> None:
        super().__init__(name, group_type, desired_sparsity, weights, group_dependency, noise, round_to, auto_group)


@register_pruner()
class TaylorFOFilterPruner(ScoredFilterPruner):
    """First-order Taylor importance ``Σ|w·∂L/∂w|`` per filter; skips a weight without a gradient yet."""

    def structure_scores(self, param: torch.Tensor, param_name: str, meta: Meta) -> torch.Tensor | None:
        return None if param.grad is None else taylor_fo_filter_scores(param, param.grad)


@register_pruner()
class FPGMFilterPruner(ScoredFilterPruner):
    """Prunes the filters nearest the geometric median of the layer's filters (He et al. 2019)."""

    def structure_scores(self, param: torch.Tensor, param_name: str, meta: Meta) -> torch.Tensor:
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
class BNScaleFilterPruner(ScoredFilterPruner):
    """Network slimming (Liu et al. 2017): prunes the filters whose following BatchNorm has the smallest |γ|."""

    def structure_scores(self, param: torch.Tensor, param_name: str, meta: Meta) -> torch.Tensor:
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
