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

# Importing a family registers its classes under Distiller's names; this package imports every family, so
# ``import edgeprune.pruning.pruners`` is all a schedule needs. A new family is one module imported here.
from edgeprune.pruning.criteria import FILTER_GROUP_TYPES
from edgeprune.pruning.pruners import agp
from edgeprune.pruning.pruners.base import (
    STRUCTURE_DIMS,
    BasePruner,
    Meta,
    WeightsPruner,
    canonical_mapping,
    canonical_weights,
    check_fraction,
    find_module,
    find_param,
)
from edgeprune.pruning.pruners.global_ranking import GlobalL1FilterPruner, GlobalPruner, LAMPPruner
from edgeprune.pruning.pruners.order import (
    ActivationAPoZRankedFilterPruner,
    ActivationMeanRankedFilterPruner,
    ActivationRankedFilterPruner,
    BernoulliFilterPruner,
    FilterOrderPruner,
    GradientRankedFilterPruner,
    RandomRankedFilterPruner,
)
from edgeprune.pruning.pruners.ranked import (
    L1RankedStructureParameterPruner,
    L2RankedStructureParameterPruner,
    LpRankedStructureParameterPruner,
    RandomLevelStructureParameterPruner,
    RankedStructurePruner,
)
from edgeprune.pruning.pruners.reconstruction import FMReconstructionChannelPruner
from edgeprune.pruning.pruners.scored import (
    BNScaleFilterPruner,
    FPGMFilterPruner,
    TaylorFOFilterPruner,
    following_batchnorm,
)
from edgeprune.pruning.pruners.thresholds import (
    MagnitudeParameterPruner,
    MappingPruner,
    SensitivityPruner,
    SparsityLevelParameterPruner,
    SplicingPruner,
    StructureParameterPruner,
)

__all__ = [
    "FILTER_GROUP_TYPES",
    "STRUCTURE_DIMS",
    "ActivationAPoZRankedFilterPruner",
    "ActivationMeanRankedFilterPruner",
    "ActivationRankedFilterPruner",
    "BNScaleFilterPruner",
    "BasePruner",
    "BernoulliFilterPruner",
    "FMReconstructionChannelPruner",
    "FPGMFilterPruner",
    "FilterOrderPruner",
    "GlobalL1FilterPruner",
    "GlobalPruner",
    "GradientRankedFilterPruner",
    "L1RankedStructureParameterPruner",
    "L2RankedStructureParameterPruner",
    "LAMPPruner",
    "LpRankedStructureParameterPruner",
    "MagnitudeParameterPruner",
    "MappingPruner",
    "Meta",
    "RandomLevelStructureParameterPruner",
    "RandomRankedFilterPruner",
    "RankedStructurePruner",
    "SensitivityPruner",
    "SparsityLevelParameterPruner",
    "SplicingPruner",
    "StructureParameterPruner",
    "TaylorFOFilterPruner",
    "WeightsPruner",
    "agp",
    "canonical_mapping",
    "canonical_weights",
    "check_fraction",
    "find_module",
    "find_param",
    "following_batchnorm",
]
