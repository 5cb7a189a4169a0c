"""``edgeprune schedule suggest``: a one-shot filter-pruning schedule chosen from a sensitivity analysis.

Two rules, both working only with what the analysis measured (a sparsity is never extrapolated):

* **drop budget** (``max_drop``): per weight, the largest measured sparsity whose top-1 drop — and the drop
  at every lower measured sparsity — stays within ``max_drop`` points. Requiring the whole prefix to stay
  within budget keeps a noisy dip at one sparsity from being mistaken for a safe level.
* **MAC target** (``target_macs``, a fraction of the dense MACs to keep): among the within-budget levels
  (every measured level when no ``max_drop`` is given), the set with the least summed top-1 drop whose
  thinned network reaches the target. The sum is over independently measured drops (the usual
  sensitivity-pruning estimate; drops below zero count as zero).
  It is solved exactly, as a multiple-choice knapsack by dynamic programming over the drop in 0.001-point
  steps, with each level's MAC saving from Distiller's per-layer formula: a conv's MACs fall with its kept
  filters, and every layer reading those channels (the next conv, depthwise convs, a Linear after flatten)
  loses the matching input channels. Savings of two pruned layers that feed each other overlap, so the
  chosen schedule is then applied to a copy of the model, thinned and counted, and the knapsack is re-solved
  with the shortfall added until the counted MACs meet the target.

Residual coupling: a conv whose output channels are tied to other convs' (all producers of one residual
stream, found from the traced channel graph) cannot lose filters alone, and its single-layer sensitivity
says nothing about pruning the whole group. Such weights are **excluded** (listed in the YAML's header),
not grouped: a Leader group would need the group's own sensitivity, which a per-weight analysis does not
measure. The same goes for convs whose channels reach something that cannot be thinned.

The YAML is plain Distiller: one ``L1RankedStructureParameterPruner`` (``Filters``) per sparsity level, a
``FilterRemover`` extension, every policy at ``epochs: [0]``; ``round_to`` (an edgeprune key) is written
only when asked for. It runs unchanged with ``edgeprune prune`` and ``edgeprune train --schedule``.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgeprune.analysis.sensitivity import Results, read_sensitivity_csv, read_state
from edgeprune.errors import ConfigError, UnknownNameError
from edgeprune.fileio import write_text
from edgeprune.models.naming import normalize_module_name
from edgeprune.models.resolve import resolve_model
from edgeprune.models.summary import ModelSummary, model_summary
from edgeprune.pruning.dependency import ChannelGraph, channel_graph
from edgeprune.pruning.ranking import num_structs_to_prune, prune_count
from edgeprune.pruning.remover import DATASET_INPUT_SHAPES
from edgeprune.schedule.config import parse_schedule
from edgeprune.schedule.scheduler import CompressionScheduler

COST_STEP = 0.001  # knapsack resolution of the summed drop, in top-1 points
MAX_RECOUNTS = 20


@dataclass(frozen=True)
class Level:
    """One way to prune one weight: the sparsity to write, the filters it removes, the measured drop."""

    sparsity: float
    pruned: int
    drop: float


@dataclass
class LayerPlan:
    """A prunable weight: its filter count, MACs saved per removed filter, and its within-budget levels."""

    weight: str
    filters: int
    macs_per_filter: int
    levels: list[Level]
    chosen: Level | None = None

    @property
    def macs_saved(self) -> int:
        return self.chosen.pruned * self.macs_per_filter if self.chosen else 0


@dataclass
class Suggestion:
    yaml: str
    layers: list[LayerPlan]
    excluded: dict[str, str]
    before: ModelSummary
    after: ModelSummary
    max_drop: float | None
    target_macs: float | None = None

    @property
    def chosen(self) -> list[LayerPlan]:
        return [p for p in self.layers if p.chosen is not None]

    @property
    def summed_drop(self) -> float:
        return summed_drop(self.layers)

    def to_dict(self) -> dict[str, Any]:
        """What ``edgeprune schedule suggest`` prints, as plain data (``--json``)."""
        return {"arch": self.before.arch, "macs_before": self.before.macs, "macs_after": self.after.macs,
                "summed_drop": self.summed_drop, "max_drop": self.max_drop, "target_macs": self.target_macs,
                "chosen": [{"weight": p.weight, "filters": p.filters, "pruned": p.chosen.pruned,
                            "sparsity": p.chosen.sparsity, "top1_drop": p.chosen.drop, "macs_saved": p.macs_saved}
                           for p in self.chosen if p.chosen is not None],
                "excluded": dict(self.excluded)}


def summed_drop(plans: Sequence[LayerPlan]) -> float:
    """The knapsack's objective: chosen single-weight drops, negative ones (gains) counted as zero."""
    return sum(max(p.chosen.drop, 0.0) for p in plans if p.chosen is not None)


# ------------------------------------------------------------------------------------------ coupling
def prunable_filters(graph: ChannelGraph, model: nn.Module, weights: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """Which ``weights`` can lose filters on their own; the others with the reason, in ``weights`` order."""
    modules = {normalize_module_name(n): m for n, m in model.named_modules()}
    blocked = graph.blocked()
    eligible, excluded = [], {}
    for weight in weights:
        layer = weight.removesuffix(".weight")
        if not weight.endswith(".weight") or not isinstance(modules.get(layer), nn.Conv2d) \
                or layer not in graph.producers:
            excluded[weight] = "not the weight of a conv with filters of its own (filter pruning needs one)"
            continue
        classes = torch.zeros(graph.num_classes, dtype=torch.bool)
        classes[graph.producers[layer].classes] = True
        partners = [n for n in graph.layers_with(graph.producers, classes) if n != layer]
        if partners:
            shown = ", ".join(f"{p}.weight" for p in partners[:4]) + (" ..." if len(partners) > 4 else "")
            excluded[weight] = f"residual-coupled with {shown}"
        elif blocked[classes].any():
            excluded[weight] = "its channels reach " + "; ".join(graph.blocked_reasons(
                torch.nonzero(classes & blocked).flatten().tolist()))
        else:
            eligible.append(weight)
    return eligible, excluded


def layer_macs(summary: ModelSummary) -> dict[str, int]:
    """MACs per layer name in forward order (a module called twice counts twice, as in Distiller)."""
    macs: dict[str, int] = {}
    for row in summary.layers:
        macs[row.name] = macs.get(row.name, 0) + row.macs
    return macs


def macs_per_filter(graph: ChannelGraph, summary: ModelSummary, layer: str) -> int:
    """MACs one removed filter of ``layer`` saves, by Distiller's per-layer counting (reference §5.1).

    Its own MACs fall by 1/n; a layer reading its channels loses, per filter, as many input channels as
    it reads each channel (1 for a conv, H·W for a Linear after flatten); a depthwise conv loses a channel.
    """
    macs = layer_macs(summary)
    own = graph.producers[layer].classes
    n = own.numel()
    saved = macs.get(layer, 0) // n
    for table in (graph.consumers, graph.followers):
        for name, reader in table.items():
            hits = int(torch.isin(reader.classes, own).sum())
            if hits and name in macs:
                saved += macs[name] * hits // (reader.classes.numel() * n)
    return saved


# -------------------------------------------------------------------------------------------- levels
def baseline_top1(weight: str, points: dict[float, dict[str, float]], dense: dict[str, float] | None) -> float:
    if 0.0 in points:
        return points[0.0]["top1"]
    if dense is not None:
        return dense["top1"]
    raise ConfigError(f"The sensitivity CSV has no sparsity-0 row for {weight!r} and no sensitivity.json beside it, "
                      "so the drops cannot be measured.",
                      hint="Run the analysis with a range that starts at 0 (e.g. --sparsities 0:0.5:0.05).")


def within_budget(points: dict[float, dict[str, float]], base: float, n: int, max_drop: float,
                  round_to: int | None) -> list[Level]:
    """The levels of one weight that stay within ``max_drop`` (see the module docstring), fewest filters first.

    With ``round_to`` a level prunes ``prune_count(...)`` filters, which may be more than the sparsity
    measured; its drop is then the one measured at the lowest within-budget sparsity pruning at least as
    many filters, and a level no measured point covers is left out.
    """
    measured: list[tuple[float, int, float]] = []  # (sparsity, filters pruned, drop) of the in-budget prefix
    for sparsity in sorted(points):
        drop = base - points[sparsity]["top1"]
        if drop > max_drop:
            break
        measured.append((sparsity, num_structs_to_prune(n, sparsity), drop))
    levels: dict[int, Level] = {}
    for sparsity, _, _ in measured:
        pruned = prune_count(n, sparsity, round_to=round_to)
        cover = next((d for _, k, d in measured if k >= pruned), None)
        if pruned and cover is not None and pruned not in levels:
            levels[pruned] = Level(sparsity, pruned, cover)
    return sorted(levels.values(), key=lambda level: level.pruned)


# ------------------------------------------------------------------------------------------- choosing
def cheapest(plans: Sequence[LayerPlan], required: int) -> list[Level | None] | None:
    """Levels (None: leave the weight) with the least summed drop saving at least ``required`` MACs.

    Multiple-choice knapsack over integer drop costs: ``best[c]`` is the most MACs saved at summed cost
    exactly ``c``; the cheapest feasible cost wins, and at that cost the largest saving.
    """
    costs = [[max(0, round(level.drop / COST_STEP)) for level in plan.levels] for plan in plans]
    cap = sum(max(c, default=0) for c in costs)
    best = np.full(cap + 1, -1, dtype=np.int64)
    best[0] = 0
    picks: list[np.ndarray] = []
    for plan, plan_costs in zip(plans, costs, strict=True):
        new = best.copy()
        pick = np.full(cap + 1, -1, dtype=np.int32)
        for j, (level, cost) in enumerate(zip(plan.levels, plan_costs, strict=True)):
            shifted = np.full(cap + 1, -1, dtype=np.int64)
            reachable = best[: cap + 1 - cost] >= 0
            shifted[cost:][reachable] = best[: cap + 1 - cost][reachable] + level.pruned * plan.macs_per_filter
            better = shifted > new
            new[better] = shifted[better]
            pick[better] = j
        best = new
        picks.append(pick)
    feasible = np.flatnonzero(best >= required)
    if feasible.size == 0:
        return None
    c = int(feasible[0])
    chosen: list[Level | None] = [None] * len(plans)
    for i in range(len(plans) - 1, -1, -1):
        j = int(picks[i][c])
        if j >= 0:
            chosen[i] = plans[i].levels[j]
            c -= costs[i][j]
    return chosen


# ---------------------------------------------------------------------------------------------- YAML
def _written_sparsity(level: Level, n: int, round_to: int | None) -> float:
    """A short decimal for the YAML (0.3, not 0.30000000000000004) when it prunes the same filters."""
    short = float(f"{level.sparsity:.6g}")
    return short if prune_count(n, short, round_to=round_to) == level.pruned else level.sparsity


def _dataset_name(model: nn.Module, num_classes: int | None) -> str | None:
    """Distiller's FilterRemover wants a dataset name; guess it from the input shape (None: leave it out)."""
    shape = tuple(getattr(model, "input_shape", ()) or ())
    names = [name for name, s in DATASET_INPUT_SHAPES.items() if s == shape]
    if len(names) > 1:
        names = [name for name in names if name.endswith(str(num_classes))] or names[:1]
    return names[0] if names else None


@dataclass(frozen=True)
class FilterPrunerSpec:
    """One L1-ranked filter pruner of a one-shot schedule; ``extra`` keys (round_to, auto_group) follow the
    sparsity in the YAML."""

    name: str
    sparsity: float
    weights: Sequence[str]
    extra: tuple[tuple[str, Any], ...] = ()


def one_shot_filter_schedule(pruners: Sequence[FilterPrunerSpec], arch: str, dataset: str | None,
                             header: Sequence[str]) -> str:
    """Plain Distiller YAML: the pruners, a ``FilterRemover`` for ``arch``, every policy at ``epochs: [0]``.
    What ``schedule suggest`` and ``edgeprune search`` write."""
    lines = [f"# {line}".rstrip() for line in header] + ["version: 1", "pruners:" if pruners else "pruners: {}"]
    for p in pruners:
        lines += [f"  {p.name}:", "    class: L1RankedStructureParameterPruner", "    group_type: Filters",
                  f"    desired_sparsity: {p.sparsity!r}"] + [f"    {key}: {value}" for key, value in p.extra]
        lines += ["    weights:"] + [f"      - {weight}" for weight in p.weights] + [""]
    lines += ["extensions:", "  net_thinner:", "    class: FilterRemover", "    thinning_func_str: remove_filters",
              f"    arch: '{arch}'"] + ([f"    dataset: {dataset}"] if dataset else []) + ["", "policies:"]
    for p in pruners:
        lines += ["  - pruner:", f"      instance_name: {p.name}", "    epochs: [0]", ""]
    lines += ["  - extension:", "      instance_name: net_thinner", "    epochs: [0]"]
    return "\n".join(lines) + "\n"


def render_schedule(plans: Sequence[LayerPlan], arch: str, dataset: str | None, round_to: int | None,
                    header: Sequence[str]) -> str:
    groups: dict[float, list[str]] = {}
    for plan in plans:
        if plan.chosen is not None:
            groups.setdefault(_written_sparsity(plan.chosen, plan.filters, round_to), []).append(plan.weight)
    pruners = [FilterPrunerSpec("filter_pruner_" + f"{sparsity * 100:.6g}".replace(".", "_"), sparsity,
                                groups[sparsity], (("round_to", round_to),) if round_to else ())
               for sparsity in sorted(groups)]
    return one_shot_filter_schedule(pruners, arch, dataset, header)


def count_after(model: nn.Module, yaml_text: str) -> ModelSummary:
    """Prune-and-count: run the schedule's epoch 0 (prune + FilterRemover) on a copy, then Distiller's summary."""
    thin = copy.deepcopy(model)
    CompressionScheduler(thin, parse_schedule(yaml_text, "<suggested schedule>")).apply_epoch_zero()
    return model_summary(thin)


# ------------------------------------------------------------------------------------------------ job
def _load_results(csv_path: Path) -> tuple[Results, dict[str, float] | None]:
    results = read_sensitivity_csv(csv_path)
    state_path = csv_path.with_name("sensitivity.json")
    if not state_path.exists():
        return results, None
    state = read_state(state_path)
    group = state.get("settings", {}).get("group")
    if group != "filter":
        raise ConfigError(f"{str(csv_path)!r} is a {group}-wise sensitivity analysis (says {state_path.name}); a "
                          "filter-pruning schedule needs a filter-wise one.",
                          hint="Run `edgeprune sensitivity MODEL --group filter ...` first.")
    return results, state.get("baseline")


def suggest_schedule(csv_path: str | Path, model_spec: str, *, max_drop: float | None = None,
                     target_macs: float | None = None, round_to: int | None = None,
                     arch: str | None = None) -> Suggestion:
    """Choose per-weight filter sparsities from ``csv_path`` for MODEL and render the schedule (not written).

    ``max_drop`` None (only a MAC target) lets every measured sparsity of a weight compete.
    """
    if max_drop is None and target_macs is None:
        raise ConfigError("Give --max-drop (a top-1 drop cap per weight), --target-macs (a fraction of the dense "
                          "MACs to keep), or both.", hint="For example --max-drop 2, or --target-macs 0.7.")
    if max_drop is not None and not max_drop >= 0:
        raise ConfigError(f"--max-drop must be a number of top-1 points >= 0, got {max_drop!r}.")
    cap = math.inf if max_drop is None else max_drop
    budget = "" if max_drop is None else f" within a top-1 drop of {max_drop:g} points per weight"
    if target_macs is not None and not 0 < target_macs <= 1:
        raise ConfigError(f"--target-macs is the fraction of the dense MACs to keep, in (0, 1]; got {target_macs!r}.",
                          hint="For example --target-macs 0.7 keeps at most 70 % of the MACs.")
    if round_to is not None and round_to < 1:
        raise ConfigError(f"--round-to must be a positive integer, got {round_to!r}.")
    csv_path = Path(csv_path)
    results, dense = _load_results(csv_path)
    loaded = resolve_model(model_spec, arch=arch)
    model = loaded.model.eval()
    params = {normalize_module_name(n): p for n, p in model.named_parameters()}
    for weight in results:
        if weight not in params:
            raise UnknownNameError("weight", weight, params,
                                   hint=f"{csv_path} names weights {model_spec!r} does not have: was it made for "
                                        "another model?")
    before = model_summary(model, arch=loaded.arch)
    graph = channel_graph(model, before.input_shape)
    eligible, excluded = prunable_filters(graph, model, list(results))
    plans = []
    for weight in eligible:
        n = params[weight].shape[0]
        levels = within_budget(results[weight], baseline_top1(weight, results[weight], dense), n, cap, round_to)
        plans.append(LayerPlan(weight, n, macs_per_filter(graph, before, weight.removesuffix(".weight")), levels))
    if not any(plan.levels for plan in plans):
        raise ConfigError(f"No weight can lose a filter{budget}"
                          + (f" ({len(excluded)} residual-coupled or unprunable weights are excluded)." if excluded
                             else "."),
                          hint="Raise --max-drop, or measure finer sparsities (the first level that prunes a filter "
                               "already costs more).")
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    dataset = _dataset_name(model, linears[-1].out_features if linears else None)

    def render(counts: tuple[ModelSummary, ModelSummary] | None = None) -> str:
        header = _header(csv_path, model_spec, max_drop, target_macs, plans, excluded, counts)
        return render_schedule(plans, loaded.arch, dataset, round_to, header)

    for plan in plans:  # the drop-budget rule, which is also the most the MAC rule can reach
        plan.chosen = plan.levels[-1] if plan.levels else None
    after = count_after(model, render())
    if target_macs is not None:
        target = math.floor(target_macs * before.macs)
        if after.macs > target:
            raise ConfigError(
                f"The MAC target {target_macs:g} of the dense {before.macs:,} MACs ({target:,}) cannot be reached"
                f"{budget}: the most this analysis allows leaves "
                f"{after.macs:,} MACs ({after.macs / before.macs:.3f} of dense).",
                hint=f"Aim for --target-macs {math.ceil(after.macs / before.macs * 1000) / 1000:g} or more, raise "
                     "--max-drop, or measure higher sparsities.")
        after = _meet_target(plans, model, render, before.macs - target, target) or after
        if not any(plan.chosen for plan in plans):
            raise ConfigError(f"The dense network's {before.macs:,} MACs already meet --target-macs {target_macs:g}, "
                              "and no filter can go for free: there is nothing to prune.")
    return Suggestion(render((before, after)), plans, excluded, before, after, max_drop, target_macs)


def _meet_target(plans: Sequence[LayerPlan], model: nn.Module, render: Callable[[], str], required: int,
                 target: int) -> ModelSummary | None:
    """Set the cheapest levels whose counted MACs reach ``target`` and return that count; None (with a warning,
    every level back at its largest) when re-solving with the shortfall does not get there in MAX_RECOUNTS."""
    largest = [plan.chosen for plan in plans]
    for _ in range(MAX_RECOUNTS):
        picked = cheapest(plans, required)
        if picked is None:
            break
        for plan, level in zip(plans, picked, strict=True):
            plan.chosen = level
        after = count_after(model, render())
        if after.macs <= target:
            return after
        required += after.macs - target  # layers feeding each other saved less than the sum of their savings
    warnings.warn("The cheapest-set search did not converge (pruned layers feeding each other save less than the "
                  "sum of their savings); the schedule uses every weight's largest in-budget level instead.",
                  stacklevel=2)
    for plan, level in zip(plans, largest, strict=True):
        plan.chosen = level
    return None


def _header(csv_path: Path, model_spec: str, max_drop: float | None, target_macs: float | None,
            plans: Sequence[LayerPlan], excluded: dict[str, str],
            counts: tuple[ModelSummary, ModelSummary] | None) -> list[str]:
    """The YAML's comment block: where it came from, the rule, the counted result, what was left alone."""
    lines = [f"Suggested by `edgeprune schedule suggest` from {csv_path} for {model_spec}.",
             "Rule: any measured sparsity of a weight may be chosen (no per-weight drop cap)." if max_drop is None
             else f"Rule: per weight, the largest measured sparsity whose top-1 drop (and every lower one's) is <= "
                  f"{max_drop:g} points."]
    if target_macs is not None:
        lines.append(f"MAC target: <= {target_macs:g} of the dense MACs, with the least summed top-1 drop.")
    if counts is not None:
        before, after = counts
        lines += [f"MACs {before.macs:,} -> {after.macs:,} ({after.macs / before.macs:.3f} of dense); weights "
                  f"{before.weight_params:,} -> {after.weight_params:,}.",
                  f"Summed single-weight top-1 drops (an estimate, before fine-tuning): {summed_drop(plans):.2f}."]
    if excluded:
        lines.append("Not pruned (their filters cannot be removed on their own):")
        lines += [f"  {weight}: {reason}" for weight, reason in excluded.items()]
    return [*lines, "", "  edgeprune prune MODEL -s THIS.yaml -o pruned.pth",
            "  edgeprune train MODEL --schedule THIS.yaml --data DATA --epochs 30 -o runs/finetune", ""]


def write_suggestion(suggestion: Suggestion, out: str | Path) -> Path:
    write_text(out, suggestion.yaml)
    return Path(out)
