"""A sweep's constraints: bounds on what each trial records (``constraints: [{name: latency_ms, max: 0.35}]``).

A trial is *feasible* when every bound holds. Infeasible trials stay in the study, the report and the live
view, marked with the bound they broke and by how much, but never make the Pareto front or a "best" list.

Each bound becomes one Optuna constraint value with Optuna's sign convention (<= 0 holds): ``metric - max``
for a ``max`` and ``min - metric`` for a ``min``. They are computed once, from the metrics a trial is told with
(:meth:`edgeprune.sweep.engine.SweepStudy.complete`, the one place every result passes: the embedded runner's
program trials and the consumer's measured pipeline trials alike), and stored with the trial before it is
told, as Optuna's ``Trial.set_constraint`` stores them: system attributes ``constraints:<metric>.max`` /
``constraints:<metric>.min``. That is where Optuna 5's samplers that model constraints (TPE, GP, NSGA-II) read
them, and where its ``best_trials`` looks; samplers' ``constraints_func`` is deprecated since Optuna 5.0 and
would be called only by the process that tells, with a trial object a remote consumer does not hold. Grid and
random samplers ignore them, and the values are recorded all the same. Everything that draws a front (the
report, ``edgeprune status``, the live view) reads the stored values back with :func:`violations`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError

from edgeprune.errors import EdgepruneError, closest
from edgeprune.schedule.config import KeyPath, ScheduleSource, check_keys, pydantic_error

PREFIX = "constraints:"  # Optuna's key of a named constraint value (Trial.set_constraint)
KEYS = ("name", "max", "min")
Bound = Literal["max", "min"]


class ConstraintSpec(BaseModel):
    """One entry of ``constraints``: the metric it bounds, and its upper and/or lower bound (inclusive)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    name: StrictStr
    max: float | None = Field(default=None, allow_inf_nan=False)
    min: float | None = Field(default=None, allow_inf_nan=False)

    def bounds(self) -> list[tuple[Bound, float]]:
        return [(kind, value) for kind, value in (("max", self.max), ("min", self.min)) if value is not None]

    def describe(self) -> str:
        """``latency_ms ≤ 0.35``, ``top1 ≥ 90``, ``90 ≤ top1 ≤ 99``."""
        if self.min is not None and self.max is not None:
            return f"{self.min:g} ≤ {self.name} ≤ {self.max:g}"
        return f"{self.name} ≤ {self.max:g}" if self.max is not None else f"{self.name} ≥ {self.min:g}"


def describe_all(specs: Sequence[ConstraintSpec]) -> str:
    return ", ".join(s.describe() for s in specs)


def specs_from_attr(raw: Any) -> list[ConstraintSpec]:
    """The constraints a study records (its ``constraints`` user attribute), none for a study without them."""
    return [ConstraintSpec.model_validate(c) for c in raw or []]


# -------------------------------------------------------------------------------------------- sweep files
def parse_constraints(raw: Any, source: ScheduleSource, measured: Sequence[str] | None,
                      path: KeyPath = ("constraints",)) -> list[ConstraintSpec]:
    """Check a sweep file's ``constraints`` list; ``measured`` are the metrics a trial records, when known
    beforehand (the built-in pipeline's; a program logs whatever it logs)."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise source.error(path, f"'constraints' is a list of bounds such as [{{name: latency_ms, max: 0.35}}], got "
                           f"{raw!r}")
    specs: list[ConstraintSpec] = []
    for i, entry in enumerate(raw):
        at = (*path, i)
        if not isinstance(entry, Mapping):
            raise source.error(at, f"a constraint is a mapping such as {{name: latency_ms, max: 0.35}}, got {entry!r}")
        check_keys(entry, KEYS, at, source, "constraint")
        if "name" not in entry:
            raise source.error(at, "a constraint needs 'name': the metric it bounds",
                               hint="e.g. '{name: latency_ms, max: 0.35}'.")
        try:
            spec = ConstraintSpec.model_validate(entry)
        except ValidationError as exc:
            raise pydantic_error(exc, at, source) from None
        if not spec.bounds():
            raise source.error(at, f"the constraint on {spec.name!r} has neither 'max' nor 'min'",
                               hint="Add 'max' (e.g. a latency budget), 'min' (e.g. an accuracy floor), or both.")
        if spec.min is not None and spec.max is not None and spec.min > spec.max:
            raise source.error((*at, "min"), f"min {spec.min:g} is greater than max {spec.max:g}: no {spec.name} "
                               "can satisfy both", hint="min is the lower bound, max the upper one.")
        first = next((j for j, s in enumerate(specs) if s.name == spec.name), None)
        if first is not None:
            raise source.error((*at, "name"), f"{spec.name!r} is constrained twice (also constraints[{first}])",
                               hint="Give one entry both 'max' and 'min'.")
        if measured is not None and spec.name not in measured:
            close = closest(spec.name, measured)
            raise source.error((*at, "name"), f"the pipeline does not measure {spec.name!r}"
                               + (f"; did you mean {' or '.join(map(repr, close))}?" if close else ""),
                               hint=f"Measured per trial: {', '.join(measured)}.")
        specs.append(spec)
    return specs


# ------------------------------------------------------------------------------------------------ a trial
def _finite(value: Any) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def unmeasured(specs: Sequence[ConstraintSpec], metrics: Mapping[str, Any]) -> list[str]:
    """The constrained metrics missing from ``metrics`` (or not a finite number): the trial cannot be judged."""
    return [s.name for s in specs if _finite(metrics.get(s.name)) is None]


def constraint_values(specs: Sequence[ConstraintSpec], metrics: Mapping[str, Any]) -> dict[str, float]:
    """Optuna's constraint values of a trial's metrics, by ``<metric>.<max|min>``: > 0 where a bound is broken."""
    missing = unmeasured(specs, metrics)
    if missing:
        raise EdgepruneError(f"The trial recorded no value of {', '.join(missing)}, which the sweep's constraints "
                             "bound, so its feasibility cannot be told.",
                             hint="A constrained metric must be recorded by every trial (a program logs it).")
    values = {}
    for spec in specs:
        metric = float(metrics[spec.name])
        for kind, bound in spec.bounds():
            values[f"{spec.name}.{kind}"] = metric - bound if kind == "max" else bound - metric
    return values


def as_system_attrs(values: Mapping[str, float]) -> dict[str, float]:
    """The values under Optuna's keys, as ``Trial.set_constraint`` stores them."""
    return {PREFIX + key: value for key, value in values.items()}


def stored(trial: Any) -> dict[str, float]:
    """The constraint values stored with a trial (a FrozenTrial), by ``<metric>.<max|min>``."""
    return {key[len(PREFIX):]: float(value) for key, value in trial.system_attrs.items()
            if key.startswith(PREFIX) and isinstance(value, (int, float))}


@dataclass(frozen=True)
class Violation:
    """A broken bound: the metric, which bound, the value the trial recorded and how far past the bound it is."""

    name: str
    kind: Bound
    by: float
    value: float | None

    @property
    def bound(self) -> float | None:
        if self.value is None:
            return None
        return self.value - self.by if self.kind == "max" else self.value + self.by

    def as_dict(self) -> dict[str, Any]:
        return {"metric": self.name, "bound": self.kind, "limit": self.bound, "value": self.value, "by": self.by,
                "text": str(self)}

    def __str__(self) -> str:
        sign = ">" if self.kind == "max" else "<"
        if self.value is None:
            return f"{self.name} {self.kind} broken by {self.by:.4g}"
        return f"{self.name} {self.value:.4g} {sign} {self.kind} {self.bound:.4g} (by {self.by:.4g})"


def violations(trial: Any) -> list[Violation]:
    """The bounds a completed trial breaks, read from the values stored when it was told; none if feasible."""
    metrics = trial.user_attrs.get("metrics", {})
    found = []
    for key, value in stored(trial).items():
        name, _, kind = key.rpartition(".")
        if value > 0 and kind in ("max", "min"):
            found.append(Violation(name, kind, value, _finite(metrics.get(name))))  # type: ignore[arg-type]
    return found


def feasible(trial: Any) -> bool:
    return not violations(trial)


def explain(trial: Any) -> str:
    """``latency_ms 0.41 > max 0.35 (by 0.06)``, one clause per broken bound; empty for a feasible trial."""
    return "; ".join(str(v) for v in violations(trial))
