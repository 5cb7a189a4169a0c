"""Phase 4a: turn the suggested schedule into a sweep file and its schedule template (plain files the user edits).

Why groups of convs and multiples of the suggestion: a grid over every conv's sparsity grows as 3^9 for
ResNet-20, and a sweep file can only substitute values, not compute them, so one sweep parameter per *group*
of the suggested convs (a ResNet stage; for other nets the first name component, or early/middle/late
thirds) takes the group's mean suggested sparsity times each multiplier (0.5x, 1x, 1.5x by default). The grid
then spans gentler to harsher pruning than the sensitivity analysis recommended, per stage — which is what
trades accuracy for latency — and parameter importance in the report says which stage matters.

Everything here is text in, text out (pure), so it is tested without training anything.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from edgeprune.errors import ConfigError
from edgeprune.schedule.config import parse_schedule

STEP = 0.05  # sparsities are written on this grid, like the analysis measured them
MIN_SPARSITY, MAX_SPARSITY = 0.05, 0.9  # 0.9: keep a tenth of a group's filters at least
POSITION_NAMES = {1: ("all",), 2: ("early", "late"), 3: ("early", "middle", "late")}
MAX_NAMED_GROUPS = 4
PRUNER = "L1RankedStructureParameterPruner"


@dataclass(frozen=True)
class Group:
    """Convs pruned to one swept sparsity; ``values`` are the grid's levels for it."""

    name: str
    weights: tuple[str, ...]
    suggested: float  # the mean suggested sparsity of its convs
    values: tuple[float, ...]


def _natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """``layer2.10.conv1`` after ``layer2.9.conv1``: model order for the usual numbered module names."""
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"[.]", name))


def suggested_levels(schedule_text: str) -> tuple[dict[str, float], dict[str, dict[str, Any]]]:
    """Per-weight filter sparsities of a one-shot filter-pruning schedule, and its extensions (the thinner)."""
    spec = parse_schedule(schedule_text, "<suggested schedule>")
    levels: dict[str, float] = {}
    for name, pruner in spec.pruners.items():
        kwargs = pruner.kwargs
        if pruner.class_name != PRUNER or kwargs.get("group_type") != "Filters":
            raise ConfigError(f"The suggested schedule's pruner {name!r} is a {pruner.class_name} "
                              f"({kwargs.get('group_type')}); the demo sweeps {PRUNER} filter pruning only.")
        for weight in kwargs.get("weights", []):
            levels[str(weight)] = float(kwargs["desired_sparsity"])
    extensions = {name: {"class": ext.class_name, **ext.kwargs} for name, ext in spec.extensions.items()}
    return levels, extensions


def group_weights(weights: Sequence[str]) -> dict[str, list[str]]:
    """Model-ordered weights grouped by their first name component (ResNet stages) when that gives 2-4 groups,
    else cut into up to three contiguous runs (early/middle/late)."""
    ordered = sorted(weights, key=_natural_key)
    by_prefix: dict[str, list[str]] = {}
    for w in ordered:
        by_prefix.setdefault(w.split(".")[0], []).append(w)
    if 2 <= len(by_prefix) <= MAX_NAMED_GROUPS:
        return by_prefix
    n = min(3, len(ordered))
    bounds = [round(i * len(ordered) / n) for i in range(n + 1)]
    return {POSITION_NAMES[n][i]: ordered[bounds[i]:bounds[i + 1]] for i in range(n)}


def grid_values(suggested: float, multipliers: Sequence[float]) -> tuple[float, ...]:
    """``suggested * m`` for each multiplier, on the 0.05 grid within [0.05, 0.9], without repeats."""
    values = {round(min(MAX_SPARSITY, max(MIN_SPARSITY, round(suggested * m / STEP) * STEP)), 2)
              for m in multipliers}
    return tuple(sorted(values))


def spread(multipliers: Sequence[float], groups: int, min_trials: int) -> tuple[float, ...]:
    """More multipliers, evenly spread over the same range, when the grid would have fewer than ``min_trials``
    points (a net with one or two prunable groups)."""
    k = len(multipliers)
    if k ** groups >= min_trials or groups == 0:
        return tuple(multipliers)
    k = math.ceil(min_trials ** (1 / groups) - 1e-9)
    lo, hi = min(multipliers), max(multipliers)
    return tuple(lo + (hi - lo) * i / (k - 1) for i in range(k))


def plan_groups(levels: Mapping[str, float], multipliers: Sequence[float], min_trials: int) -> list[Group]:
    if not levels:
        raise ConfigError("The suggested schedule prunes no conv, so there is nothing to sweep.",
                          hint="Raise the drop budget (max_drop) or train the baseline longer.")
    grouped = group_weights(list(levels))
    multipliers = spread(multipliers, len(grouped), min_trials)
    groups = []
    for name, weights in grouped.items():
        mean = sum(levels[w] for w in weights) / len(weights)
        groups.append(Group(name, tuple(weights), round(mean, 4), grid_values(mean, multipliers)))
    return groups


def template_text(groups: Sequence[Group], extensions: Mapping[str, Mapping[str, Any]], source: str) -> str:
    """The Distiller schedule template: one filter pruner per group with ``${sparsity.GROUP}``, then thinning."""
    lines = [f"# Schedule template of sweep.yaml, written by `edgeprune demo` from {source}: one L1-ranked filter",
             "# pruner per group of the convs the suggestion prunes; ${sparsity.GROUP} takes each trial's value.",
             "# Edit it (weights, pruner class, ...) and rerun `edgeprune demo` or `edgeprune sweep sweep.yaml`.",
             "version: 1", "pruners:"]
    for g in groups:
        lines += [f"  {g.name}:", f"    class: {PRUNER}", "    group_type: Filters",
                  f"    desired_sparsity: ${{sparsity.{g.name}}}", f"    weights: [{', '.join(g.weights)}]"]
    lines.append("extensions:")
    for name, kwargs in extensions.items():
        lines.append(f"  {name}:")
        lines += [f"    {key}: {json.dumps(value)}" for key, value in kwargs.items()]
    lines.append("policies:")
    for g in groups:
        lines += [f"  - pruner: {{instance_name: {g.name}}}", "    epochs: [0]"]
    for name in extensions:
        lines += [f"  - extension: {{instance_name: {name}}}", "    epochs: [0]"]
    return "\n".join(lines) + "\n"


def sweep_document(name: str, groups: Sequence[Group], *, model: str, data: str, template: str,
                   retrain: Mapping[str, Any], bench: Mapping[str, Any], max_trials: int, seed: int) -> dict[str, Any]:
    """The sweep file's content: a grid over the groups' values, top-1 up and measured latency down."""
    size = math.prod(len(g.values) for g in groups)
    doc: dict[str, Any] = {
        "name": name,
        "description": "Per-group filter sparsity around the suggested schedule ("
                       + ", ".join(f"{g.name} {g.suggested:.2f}" for g in groups)
                       + "); accuracy vs measured latency.",
        "method": "grid",
        "metric": {"name": "top1", "goal": "maximize"},
        "objectives": [{"name": "top1", "goal": "maximize"}, {"name": "latency_ms", "goal": "minimize"}],
        "parameters": {"sparsity": {"parameters": {g.name: {"values": list(g.values)} for g in groups}}},
    }
    if size > max_trials:
        doc["run_cap"] = max_trials  # a grid walked in random order: a spread-out sample of it
    doc.update({"model": model, "data": data, "schedule_template": template, "retrain": dict(retrain),
                "export": {"exporter": "torchscript"}, "benchmark": dict(bench), "seed": seed})
    return doc


def sweep_text(doc: Mapping[str, Any], groups: Sequence[Group]) -> str:
    header = ["# Written by `edgeprune demo`: a grid over each group's sparsity, at multiples of the suggested one.",
              "# Groups (convs pruned together):"]
    header += [f"#   {g.name}: {', '.join(g.weights)} (suggested {g.suggested:.2f})" for g in groups]
    header += ["# Rerun or edit, then: edgeprune sweep sweep.yaml -o RUN_DIR; edgeprune report RUN_DIR", ""]
    body = yaml.safe_dump(dict(doc), sort_keys=False, default_flow_style=None, width=120)
    return "\n".join(header) + body
