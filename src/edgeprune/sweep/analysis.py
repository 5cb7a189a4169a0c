"""What a sweep has learnt so far: parameter importance, correlation, the Pareto front and its hypervolume.

Importance is WandB's (a random forest from parameters to the metric, read as mean decrease in
impurity: Optuna's ``MeanDecreaseImpurityImportanceEvaluator``) next to Optuna's PED-ANOVA (its default
since v5, which asks how the parameter's distribution differs among the best trials). Both see Optuna's
values of a parameter, which for quantile-sampled laws is a monotone transform of the real value; tree
splits and quantiles do not change under it. Correlation is WandB's linear (Pearson) correlation of each
parameter's *real* value with the metric.

The Pareto and hypervolume functions are pure, so they are tested exactly and used by the report and
the benchmark alike.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.importance import MeanDecreaseImpurityImportanceEvaluator, PedAnovaImportanceEvaluator
from optuna.trial import FrozenTrial, TrialState

from edgeprune.sweep.constraints import feasible

EVALUATORS: dict[str, Callable[[], optuna.importance.BaseImportanceEvaluator]] = {
    "random_forest": lambda: MeanDecreaseImpurityImportanceEvaluator(seed=0),
    "ped_anova": PedAnovaImportanceEvaluator,
}


def pareto_mask(values: np.ndarray, maximize: Sequence[bool]) -> np.ndarray:
    """True for the rows no other row beats: at least as good on every objective and better on one."""
    v = np.where(np.asarray(maximize), -np.asarray(values, float), np.asarray(values, float))  # all minimised
    n = len(v)
    mask = np.ones(n, bool)
    for i in range(n):
        dominated_by = np.all(v <= v[i], axis=1) & np.any(v < v[i], axis=1)
        mask[i] = not dominated_by.any()
    return mask


def hypervolume_2d(values: np.ndarray, maximize: Sequence[bool], reference: Sequence[float]) -> float:
    """The area dominated by the points and bounded by ``reference`` (two objectives, in their own units)."""
    if np.asarray(values).ndim != 2 or np.asarray(values).shape[1] != 2 or len(reference) != 2:
        raise ValueError("hypervolume_2d needs points with exactly two objectives")
    sign = np.where(np.asarray(maximize), -1.0, 1.0)
    pts = np.asarray(values, float) * sign
    ref = np.asarray(reference, float) * sign
    pts = pts[np.all(pts < ref, axis=1)]
    if not len(pts):
        return 0.0
    pts = pts[pareto_mask(pts, [False, False])]
    pts = pts[np.argsort(pts[:, 0])]
    xs = np.append(pts[1:, 0], ref[0])
    return float(np.sum((xs - pts[:, 0]) * (ref[1] - pts[:, 1])))


def pearson(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Pearson's r, or None when either side is constant or there are fewer than 3 pairs."""
    xa, ya = np.asarray(x, float), np.asarray(y, float)
    if len(xa) < 3 or np.std(xa) == 0 or np.std(ya) == 0:
        return None
    return float(np.corrcoef(xa, ya)[0, 1])


def _numeric(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None


def correlations(trials: Sequence[FrozenTrial], params: Sequence[str], metric: str) -> dict[str, float | None]:
    """Per parameter, Pearson's r between its real value (``config`` attr) and ``metric`` over the trials."""
    out: dict[str, float | None] = {}
    for name in params:
        pairs = [(_numeric(t.user_attrs.get("config", {}).get(name)), _numeric(t.user_attrs["metrics"].get(metric)))
                 for t in trials]
        pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
        out[name] = pearson([a for a, _ in pairs], [b for _, b in pairs]) if pairs else None
    return out


def importances(study: optuna.Study, metric: str, params: Sequence[str]) -> dict[str, dict[str, float]]:
    """Each evaluator's normalised importances for ``metric``; an evaluator that cannot judge yet is left out."""
    target = lambda t: float(t.user_attrs["metrics"][metric])  # noqa: E731 - Optuna wants a callable
    out: dict[str, dict[str, float]] = {}
    for name, make in EVALUATORS.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # experimental-API and too-few-trials warnings: we report the gap
                scores = optuna.importance.get_param_importances(study, evaluator=make(), params=list(params),
                                                                 target=target)
        except (ValueError, RuntimeError, ZeroDivisionError, KeyError):  # too few trials, one value, metric missing
            continue
        out[name] = {k: float(v) for k, v in scores.items()}
    return out


def analyse(study: optuna.Study, metrics: Sequence[str], params: Sequence[str]) -> dict[str, Any]:
    """Importance and correlation for every metric in ``metrics``, over the completed trials that measured it."""
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if "metrics" in t.user_attrs]
    varied = [p for p in params if len({repr(t.params.get(p)) for t in done}) > 1]
    result: dict[str, Any] = {"trials": len(done), "metrics": {}}
    for metric in metrics:
        measured = [t for t in done if _numeric(t.user_attrs["metrics"].get(metric)) is not None]
        result["metrics"][metric] = {
            "importance": importances(study, metric, varied) if len(measured) >= 2 and varied else {},
            "correlation": correlations(measured, params, metric),
        }
    return result


def front(trials: Sequence[FrozenTrial], objectives: Mapping[str, str]) -> list[FrozenTrial]:
    """The completed, feasible trials on the Pareto front of ``objectives`` (name -> 'maximize'/'minimize'):
    a trial that breaks a constraint is never on it, whatever its objectives."""
    names = list(objectives)
    done = [t for t in trials if t.state == TrialState.COMPLETE and feasible(t)
            and all(_numeric(t.user_attrs.get("metrics", {}).get(n)) is not None for n in names)]
    if not done:
        return []
    values = np.array([[t.user_attrs["metrics"][n] for n in names] for t in done], float)
    mask = pareto_mask(values, [objectives[n] == "maximize" for n in names])
    return [t for t, keep in zip(done, mask, strict=True) if keep]
