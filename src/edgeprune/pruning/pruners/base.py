"""What every pruner shares: weight ownership, canonical names, the error wording, the coupling hooks."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from torch import nn

from edgeprune.errors import ConfigError
from edgeprune.models.naming import normalize_module_name

Meta = Mapping[str, Any] | None
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


class WeightsPruner(BasePruner):
    """A pruner that owns an explicit ``weights`` list."""

    def __init__(self, name: str, weights: str | Iterable[str]) -> None:
        super().__init__(name)
        self.params_names = canonical_weights(self.owner, weights)
