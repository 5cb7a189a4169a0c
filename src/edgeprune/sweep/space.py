"""WandB's parameter grammar, mapped onto Optuna distributions without changing what is sampled.

Each WandB distribution becomes the Optuna distribution that samples the same law, plus a pure
transform from Optuna's value to the WandB value:

* native: ``int_uniform`` -> ``IntDistribution``; ``uniform`` -> ``FloatDistribution``; the log family
  (``log_uniform`` takes natural-log *exponents* as bounds, ``log_uniform_values`` the values;
  ``inv_log_uniform[_values]``, where log(1/X) is uniform, is log-uniform too) -> ``FloatDistribution(log=True)``;
  ``categorical`` -> ``CategoricalDistribution`` (non-scalar values travel as JSON text).
* quantised ``q_*``: the underlying value is sampled natively and rounded as WandB does,
  ``round(x / q) * q`` (an int when ``q`` is written as an int). Optuna's own ``step`` would sample
  ``min + k*q`` uniformly, which gives the end points a different weight.
* laws Optuna lacks (``normal``, ``log_normal``, ``beta`` and their ``q_`` forms, ``categorical`` with
  ``probabilities``): Optuna samples the quantile u ~ U(0, 1) and the value is the law's inverse CDF at
  u. This is WandB's own construction (its ``sample()`` is ``ppf(random.uniform(0, 1))`` and its
  Bayesian search models parameters through their CDF), so a random search draws exactly WandB's law
  and a model-based sampler searches the prior's natural coordinates.

Constants are not part of the search space (as in WandB); they are merged into every trial's config.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from edgeprune.schedule.config import KeyPath

# The quantile never reaches 0 or 1, where the inverse CDF of an unbounded law is infinite (±6 sigma).
QUANTILE_EPS = 1e-9

LOG_NATIVE = ("log_uniform", "log_uniform_values", "inv_log_uniform", "inv_log_uniform_values")
QUANTISED = ("q_uniform", "q_log_uniform", "q_log_uniform_values", "q_normal", "q_log_normal", "q_beta")
BY_QUANTILE = ("normal", "q_normal", "log_normal", "q_log_normal", "beta", "q_beta", "categorical_w_probabilities")
BOUNDED = ("int_uniform", "uniform", "q_uniform", *LOG_NATIVE, "q_log_uniform", "q_log_uniform_values")
KINDS = ("constant", "categorical", "categorical_w_probabilities", *BOUNDED, "normal", "q_normal", "log_normal",
         "q_log_normal", "beta", "q_beta")
GRID_KINDS = ("constant", "categorical", "int_uniform", "q_uniform")  # WandB's grid search allows these only


def _clean(value: float) -> float:
    """Drop binary noise such as 0.30000000000000004 from a quantised value (12 significant digits)."""
    return float(f"{value:.12g}")


def map_clean(values: Sequence[float]) -> list[float]:
    return [_clean(float(v)) for v in values]


def quantise(value: float, q: float) -> float | int:
    """WandB's ``round(x / q) * q``; an int when ``q`` is an int (Python and NumPy both round half to even)."""
    result = round(value / q) * q
    return int(result) if isinstance(q, int) else _clean(result)


def _encode(value: Any) -> Any:
    """Optuna stores only None/bool/int/float/str choices: other values travel as JSON text."""
    return value if value is None or isinstance(value, (bool, int, float, str)) else json.dumps(value, sort_keys=True)


@dataclass(frozen=True)
class ParamSpec:
    """One searchable (or constant) parameter: its dotted name, WandB distribution and filled-in settings."""

    path: tuple[str, ...]
    kind: str
    config: Mapping[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return ".".join(self.path)

    @property
    def is_constant(self) -> bool:
        return self.kind == "constant"

    def distribution(self, method: str) -> BaseDistribution | None:
        """The Optuna distribution Optuna samples for ``method``; None for a constant."""
        c = self.config
        if self.is_constant:
            return None
        if method == "grid":
            return CategoricalDistribution([_encode(v) for v in self.grid_values()])
        if self.kind == "categorical":
            return CategoricalDistribution([_encode(v) for v in c["values"]])
        if self.kind in BY_QUANTILE:
            return FloatDistribution(0.0, 1.0)
        if self.kind == "int_uniform":
            return IntDistribution(c["min"], c["max"])
        low, high = self._native_bounds()
        return FloatDistribution(low, high, log=self.kind in (*LOG_NATIVE, "q_log_uniform", "q_log_uniform_values"))

    def _native_bounds(self) -> tuple[float, float]:
        lo, hi = float(self.config["min"]), float(self.config["max"])
        if self.kind in ("log_uniform", "q_log_uniform"):
            return math.exp(lo), math.exp(hi)
        if self.kind == "inv_log_uniform":  # log(1/X) ~ U(min, max)  <=>  X log-uniform on [e^-max, e^-min]
            return math.exp(-hi), math.exp(-lo)
        return lo, hi

    def grid_values(self) -> list[Any]:
        """The values WandB's grid search walks: the list, ``range(min, max + 1)``, or ``arange(min, max, q)``."""
        c = self.config
        if self.kind == "categorical":
            return list(c["values"])
        if self.kind == "int_uniform":
            return list(range(c["min"], c["max"] + 1))
        if self.kind == "q_uniform":
            q, count = c["q"], math.ceil((c["max"] - c["min"]) / c["q"])  # numpy.arange: max is excluded
            values = [c["min"] + i * q for i in range(count)]
            return [int(v) for v in values] if all(isinstance(x, int) for x in (c["min"], q)) else map_clean(values)
        if self.kind == "constant":
            return [c["value"]]
        raise ValueError(f"{self.kind} has no grid")  # the config check rejects this before any study exists

    def to_value(self, internal: Any, method: str) -> Any:
        """The WandB value for Optuna's value ``internal`` of this parameter."""
        c = self.config
        if self.is_constant:
            return c["value"]
        if method == "grid":
            values = self.grid_values()
            return values[[_encode(v) for v in values].index(internal)]
        if self.kind == "categorical":
            return c["values"][[_encode(v) for v in c["values"]].index(internal)]
        if self.kind in BY_QUANTILE:
            return self.ppf(float(internal))
        if self.kind in QUANTISED:
            return quantise(float(internal), c["q"])
        return internal

    def ppf(self, u: float) -> Any:
        """WandB's inverse CDF of the quantile-sampled laws (u is kept inside (0, 1))."""
        from scipy.special import betaincinv, ndtri  # scipy comes with scikit-learn; imported only when needed

        c = self.config
        u = min(max(u, QUANTILE_EPS), 1.0 - QUANTILE_EPS)
        if self.kind == "categorical_w_probabilities":
            total = 0.0
            for value, p in zip(c["values"], c["probabilities"], strict=True):
                total += p
                if u < total:
                    return value
            return c["values"][-1]
        if self.kind in ("normal", "q_normal"):
            x = c["mu"] + c["sigma"] * float(ndtri(u))
        elif self.kind in ("log_normal", "q_log_normal"):
            x = math.exp(c["mu"] + c["sigma"] * float(ndtri(u)))
        else:  # beta, q_beta
            x = float(betaincinv(c["a"], c["b"], u))
        return quantise(x, c["q"]) if self.kind in QUANTISED else x

    def preview_value(self) -> Any:
        """A representative value (the median, or the first choice) to check a template before any trial."""
        c = self.config
        if self.is_constant:
            return c["value"]
        if self.kind in ("categorical", "categorical_w_probabilities"):
            return c["values"][0]
        if self.kind in BY_QUANTILE:
            return self.ppf(0.5)
        dist = self.distribution("random")
        assert isinstance(dist, (FloatDistribution, IntDistribution))
        mid = math.sqrt(dist.low * dist.high) if dist.log else (dist.low + dist.high) / 2
        return self.to_value(int(mid) if isinstance(dist, IntDistribution) else mid, "random")


@dataclass(frozen=True)
class SearchSpace:
    """All parameters of a sweep, flattened to dotted names, plus how to nest a trial's values again."""

    params: tuple[ParamSpec, ...]
    method: str

    def __post_init__(self) -> None:
        names = [p.name for p in self.params]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate parameter names after flattening: {dupes}")

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    @property
    def searchable(self) -> list[ParamSpec]:
        return [p for p in self.params if not p.is_constant]

    def distributions(self) -> dict[str, BaseDistribution]:
        """Optuna's ``fixed_distributions`` for ``study.ask``: every searchable parameter."""
        return {p.name: d for p in self.params if (d := p.distribution(self.method)) is not None}

    def grid(self) -> dict[str, list[Any]]:
        """GridSampler's search space (Optuna-encoded values)."""
        return {p.name: [_encode(v) for v in p.grid_values()] for p in self.searchable}

    def grid_size(self) -> int:
        return math.prod(len(p.grid_values()) for p in self.searchable)

    def values(self, internal: Mapping[str, Any]) -> dict[str, Any]:
        """Flat WandB values (dotted names, constants included) from Optuna's trial params."""
        return {p.name: p.to_value(internal[p.name], self.method) if not p.is_constant else p.config["value"]
                for p in self.params}

    def nest(self, flat: Mapping[str, Any]) -> dict[str, Any]:
        """The nested config a WandB run sees (``wandb.config``), from flat dotted values."""
        out: dict[str, Any] = {}
        for p in self.params:
            node = out
            for key in p.path[:-1]:
                node = node.setdefault(key, {})
            node[p.path[-1]] = flat[p.name]
        return out

    def preview(self) -> dict[str, Any]:
        return {p.name: p.preview_value() for p in self.params}


def param_key_path(p: ParamSpec) -> KeyPath:
    """Where a (possibly nested) parameter is written: ``parameters.a.parameters.b``."""
    return tuple(part for key in p.path for part in ("parameters", key))
