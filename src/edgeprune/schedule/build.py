"""Turning a checked schedule into pruners, regularizers, LR schedulers, extensions and policies.

This is Distiller's ``dict_config``/``build_component`` (dependency injection with strict keyword
checking) with the silent failures turned into located errors: an unknown class or keyword, a weight
name that is not in the model (Distiller silently pruned nothing), an AGP pruner on an ``epochs:`` list
(Distiller crashed on ``// None`` at the first epoch), a sparsity outside [0, 1].

Build order and policy order are Distiller's: pruners, regularizers, (quantizers), extensions, the
non-LR policies in YAML order, then the LR schedulers and their policies, so within one epoch the LR
policies always run after every other policy.

One check needs the model's channel graph: structure pruning of residual-coupled weights with different
masks is settled *before* training when the schedule thins the model later, because thinning would refuse
it only after the pruning epochs (hours) have run. A pruner that ranks whole coupled groups independently
(Distiller's own resnet20 agp examples) is switched to ranking each group as one, with a warning: the
schedule runs unchanged and gives Distiller's shapes, without Distiller's misaligned channels. Anything
else (a pruner that prunes only part of a coupled group, Distiller issue #304, or two pruners sharing one)
is refused with a ready-to-paste fix; see :func:`check_structure_coupling`.
"""

from __future__ import annotations

import inspect
import typing
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from pydantic import ConfigDict, TypeAdapter, ValidationError
from torch import nn

from edgeprune.errors import ConfigError, UnknownNameError, closest
from edgeprune.models.naming import normalize_module_name
from edgeprune.pruning.dependency import STRUCTURE_TABLES, ChannelGraph, channel_graph, coupled_layers
from edgeprune.pruning.pruners import BasePruner
from edgeprune.pruning.pruners.agp import agp_target_sparsity
from edgeprune.pruning.registry import PRUNERS
from edgeprune.pruning.regularizers import REGULARIZERS
from edgeprune.pruning.remover import DATASET_INPUT_SHAPES, ChannelRemover, FilterRemover, StructureRemover
from edgeprune.registry import Registry
from edgeprune.schedule.config import (
    POLICY_KINDS,
    ComponentSpec,
    KeyPath,
    PolicySpec,
    ScheduleSource,
    ScheduleSpec,
    _canonical_policy_text,
    _yaml_lines,
    check_sparsity,
    pydantic_error,
)
from edgeprune.schedule.lr import LR_SCHEDULERS, step_to_epoch
from edgeprune.schedule.policies import (
    ExtensionPolicy,
    LRPolicy,
    Policy,
    PruningPolicy,
    RegularizationPolicy,
    ScheduleContext,
)

EXTENSIONS: Registry[type] = Registry("extension")
for _name, _cls in (("StructureRemover", StructureRemover), ("FilterRemover", FilterRemover),
                    ("ChannelRemover", ChannelRemover)):
    EXTENSIONS.register(_name)(_cls)

SECTION_REGISTRIES: dict[str, Registry[type]] = {
    "pruners": PRUNERS, "regularizers": REGULARIZERS, "lr_schedulers": LR_SCHEDULERS, "extensions": EXTENSIONS,
}
# What a ``package.module:ClassName`` from a schedule must subclass, per section.
SECTION_BASES: dict[str, type] = {"pruners": BasePruner}
INJECTED = ("model", "name", "optimizer", "last_epoch")  # supplied by edgeprune, never by the YAML
SPARSITY_KEYS = ("desired_sparsity", "initial_sparsity", "final_sparsity")
# Exceptions a third-party constructor (torch's LR schedulers) raises for arguments it does not like.
ARGUMENT_ERRORS = (ValueError, TypeError, AssertionError, ArithmeticError, LookupError)
MODULE_PREFIX_NOTE = ("Names are matched after removing a 'module.' component (DataParallel's prefix), so "
                      "'module.layer1.0.conv1.weight' and 'layer1.0.conv1.weight' name the same weight.")


def _parameters(cls: type) -> list[inspect.Parameter]:
    """Distiller's strict check: a YAML key must be a POSITIONAL_OR_KEYWORD parameter of ``__init__``."""
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]  # without self
    return [p for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]


def accepted_keywords(cls: type) -> list[str]:
    return [p.name for p in _parameters(cls)]


def is_agp(cls: type) -> bool:
    """AGP pruners ramp sparsity from ``initial_sparsity`` to ``final_sparsity`` over the policy's range."""
    return {"initial_sparsity", "final_sparsity"} <= set(accepted_keywords(cls))


@dataclass
class Component:
    """One built instance (or, for an LR scheduler, its checked recipe) and where it is defined."""

    section: str
    name: str
    cls: type
    kwargs: dict[str, Any]
    path: KeyPath
    instance: Any = None


def _resolve(section: str, name: str, spec: ComponentSpec, source: ScheduleSource) -> Component:
    """Look up ``class`` and check the keywords (Distiller's strict check), without instantiating."""
    path = (section, name)
    registry = SECTION_REGISTRIES[section]
    if ":" not in spec.class_name and spec.class_name not in registry:
        close = closest(spec.class_name, registry.names())
        raise source.error((*path, "class"), f"unknown class {spec.class_name!r}"
                           + (f"; did you mean {close[0]!r}?" if close else ""),
                           hint=f"Known {section}: {', '.join(registry.names())}; or a class of your own as "
                                "'package.module:ClassName'.")
    try:
        cls = registry.get(spec.class_name)  # a registered name, or a user's package.module:ClassName
    except (ConfigError, UnknownNameError) as exc:
        raise source.error((*path, "class"), exc.message, hint=exc.hint) from None
    base = SECTION_BASES.get(section)
    if base is not None and not (isinstance(cls, type) and issubclass(cls, base)):
        raise source.error((*path, "class"), f"{spec.class_name!r} is not a {base.__name__} subclass",
                           hint=f"A pruner of your own subclasses {base.__module__}.{base.__name__} (a ranked "
                                "structure pruner overrides structure_scores; see docs/internals-pruning.md).")
    accepted = accepted_keywords(cls)
    offered = [k for k in accepted if k not in INJECTED]
    for key in spec.kwargs:
        if key in INJECTED:
            raise source.error((*path, key), f"{key!r} is supplied by edgeprune; remove it from the YAML")
        if key not in accepted:
            close = closest(key, offered)
            raise source.error((*path, key), f"{spec.class_name} does not accept {key!r}"
                               + (f"; did you mean {close[0]!r}?" if close else ""),
                               hint=f"Accepted keys: {', '.join(offered) or '(none)'}.")
    missing = [p.name for p in _parameters(cls)
               if p.default is p.empty and p.name not in INJECTED and p.name not in spec.kwargs]
    if missing:
        raise source.error(path, f"{spec.class_name} needs {', '.join(map(repr, missing))}",
                           hint=f"Accepted keys: {', '.join(offered)}.")
    component = Component(section, name, cls, spec.kwargs, path)
    _check_types(component, source)
    return component


def _check_types(component: Component, source: ScheduleSource) -> None:
    """Check each YAML value against the constructor's annotation, so a wrong type is reported at its key.

    Without this a string where a number belongs surfaces as a TypeError from deep inside torch (or
    not at all until the first epoch). Annotations that do not resolve or cannot be turned into a
    validator are skipped: the constructor's own checks still apply.
    """
    try:
        hints = typing.get_type_hints(component.cls.__init__)
    except Exception:  # third-party annotations may name things only importable for type checkers
        return
    for key, value in component.kwargs.items():
        if key not in hints:
            continue
        try:
            adapter = TypeAdapter(hints[key], config=ConfigDict(strict=True, arbitrary_types_allowed=True))
        except Exception:  # pydantic cannot validate every annotation (protocols, callables of torch types, ...)
            continue
        try:
            adapter.validate_python(value)
        except ValidationError as exc:
            raise pydantic_error(exc, (*component.path, key), source) from None


def _injected(cls: type, **available: Any) -> dict[str, Any]:
    accepted = accepted_keywords(cls)
    return {k: v for k, v in available.items() if k in accepted}


def _find_name(value: Any, name: str, path: KeyPath) -> Iterator[KeyPath]:
    """Paths of YAML strings (list items or mapping keys) that canonicalise to parameter ``name``."""
    if isinstance(value, str) and normalize_module_name(value) == name:
        yield path
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _find_name(item, name, (*path, i))
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and normalize_module_name(key) == name:
                yield (*path, key)
            yield from _find_name(item, name, (*path, key))


def check_weight_names(names: list[str], raw: Any, path: KeyPath, model: nn.Module, source: ScheduleSource) -> None:
    """Every named weight must be a parameter of the model ('*' means all); else say which are close."""
    known = [normalize_module_name(n) for n, _ in model.named_parameters()]
    for name in names:
        canonical = normalize_module_name(str(name))
        if canonical == "*" or canonical in known:
            continue
        where = next(_find_name(raw, canonical, path), path)
        close = closest(canonical, known, n=3)
        raise source.error(where, f"{canonical!r} is not a parameter of the model"
                           + (f"; closest: {', '.join(close)}" if close else ""), hint=MODULE_PREFIX_NOTE)


def _check_sparsities(component: Component, source: ScheduleSource) -> None:
    for key in SPARSITY_KEYS:
        if key in component.kwargs:
            check_sparsity(component.kwargs[key], (*component.path, key), source)
    for key in ("sparsity_range", "levels"):
        value = component.kwargs.get(key)
        items = enumerate(value) if isinstance(value, list) else value.items() if isinstance(value, dict) else ()
        for index, level in items:
            check_sparsity(level, (*component.path, key, index), source)


def _instantiate(component: Component, model: nn.Module, source: ScheduleSource) -> None:
    kwargs = {**component.kwargs, **_injected(component.cls, model=model, name=component.name)}
    with source.blame(component.path, *ARGUMENT_ERRORS):
        component.instance = component.cls(**kwargs)
    names = getattr(component.instance, "params_names", None)
    if names is not None:
        check_weight_names(list(names), component.kwargs, component.path, model, source)


def _probe_lr_scheduler(component: Component, source: ScheduleSource) -> None:
    """Build the scheduler on a throw-away optimizer and step it once, so bad values fail now, located."""
    probe = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    with source.blame(component.path, *ARGUMENT_ERRORS), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. "lr_scheduler.step() before optimizer.step()": true, and irrelevant
        scheduler = make_lr_scheduler(component, probe)
        step_to_epoch(scheduler, 1, metric=0.0)


def make_lr_scheduler(component: Component, optimizer: torch.optim.Optimizer) -> Any:
    """Instantiate an LR scheduler recipe on the real optimizer (the schedule is built before it exists)."""
    extra = _injected(component.cls, optimizer=optimizer, last_epoch=-1, name=component.name)
    return component.cls(**component.kwargs, **extra)


def _check_agp_timing(policy: PolicySpec, path: KeyPath, source: ScheduleSource) -> None:
    """AGP ramps over the policy's range, so it needs one, spanning at least two scheduled epochs."""
    if policy.epochs is not None:
        raise source.error((*path, "epochs"), f"AGP pruner {policy.target.instance_name!r} needs a range, "
                           "not an 'epochs' list (Distiller fails on it)",
                           hint="Use starting_epoch, ending_epoch and frequency.")
    with source.blame((*path, "ending_epoch")):
        agp_target_sparsity(0.0, 1.0, policy.starting_epoch, policy.ending_epoch,  # type: ignore[arg-type]
                                policy.frequency, policy.starting_epoch)  # type: ignore[arg-type]


def build_components(spec: ScheduleSpec, model: nn.Module) -> dict[tuple[str, str], Component]:
    """Every instance of the schedule, built (LR schedulers: checked recipes), keyed by (section, name)."""
    source = spec.source
    if spec.quantizers:
        raise source.error(("quantizers", next(iter(spec.quantizers))), "quantization is not supported by "
                           "edgeprune", hint="Remove the 'quantizers' section and its policies.")
    components: dict[tuple[str, str], Component] = {}
    for section in ("pruners", "regularizers", "extensions", "lr_schedulers"):
        for name, component_spec in getattr(spec, section).items():
            component = _resolve(section, name, component_spec, source)
            if section == "pruners":
                _check_sparsities(component, source)
            if section == "lr_schedulers":
                _probe_lr_scheduler(component, source)
            else:
                _instantiate(component, model, source)
            components[section, name] = component
    return components


def build_policies(spec: ScheduleSpec, ctx: ScheduleContext) -> list[Policy]:
    """The schedule's policies in Distiller's order: non-LR policies in YAML order, then the LR policies."""
    source, model = spec.source, ctx.model
    components = build_components(spec, model)
    policies: list[Policy] = []
    lr_policies: list[Policy] = []
    for index, policy_spec in enumerate(spec.policies):
        path: KeyPath = ("policies", index)
        kind, name = policy_spec.kind, policy_spec.target.instance_name
        component = components[POLICY_KINDS[kind], name]
        if kind == "pruner":
            if is_agp(component.cls):
                _check_agp_timing(policy_spec, path, source)
            levels = policy_spec.options.levels if policy_spec.options else None  # type: ignore[union-attr]
            if levels:
                check_weight_names(list(levels), policy_spec.target.args, (*path, kind, "args"), model, source)
            policies.append(PruningPolicy(component.instance, policy_spec, source, component.path, ctx))
        elif kind == "regularizer":
            policies.append(RegularizationPolicy(component.instance, policy_spec, source, component.path, ctx))
        elif kind == "extension":
            policies.append(ExtensionPolicy(component.instance, policy_spec, source, component.path, ctx))
        else:
            lr_policies.append(LRPolicy(lambda opt, c=component: make_lr_scheduler(c, opt), policy_spec, source,
                                        component.path, ctx))
    check_structure_coupling(spec, policies, ctx)
    return policies + lr_policies


# ------------------------------------------------------------------------------------ residual coupling
THINNED_DIMS = {"remove_filters": ("filters",), "remove_channels": ("channels",),
                "contract_model": ("filters", "channels")}
RELATION = {"filters": "feed the same channels (e.g. one residual add)",
            "channels": "read the same channels (e.g. one residual stream)"}
UNIT = {"filters": "filter", "channels": "input channel"}


@dataclass
class Coupling:
    """A group of coupled weights (model order) that one pruner prunes without giving all of them one map."""

    dim: str  # "filters" | "channels"
    group: list[str]
    pruned: list[str]  # the members this pruner prunes
    shared: bool  # whether the pruner gives its coupled members one map (Leader / auto_group)
    others: dict[str, str] = field(default_factory=dict)  # member -> another pruner that prunes it too

    def describe(self) -> str:
        text = f"[{', '.join(self.group)}] {RELATION[self.dim]}"
        if self.pruned != self.group:
            text += f", but this pruner prunes only {', '.join(self.pruned)}"
        elif not self.shared:
            text += ", but this pruner ranks them independently"
        others = [f"{', '.join(weights)} {'is' if len(weights) == 1 else 'are'} also pruned by pruner {other!r}, "
                  "with its own mask" for other, weights in self.others_by_pruner().items()]
        return "; ".join([text, *others])

    def others_by_pruner(self) -> dict[str, list[str]]:
        grouped: dict[str, list[str]] = {}
        for weight, other in self.others.items():
            grouped.setdefault(other, []).append(weight)
        return grouped


@dataclass
class _Thinner:
    """When and how the schedule thins: an extension policy, or ``CompressionScheduler.thin_all``."""

    name: str
    label: str
    dims: tuple[str, ...]
    last_epoch: float
    auto_group: bool
    origin: KeyPath | None = None
    input_shape: tuple[int, ...] | None = None  # of its dataset, for models that do not declare one


def check_structure_coupling(spec: ScheduleSpec, policies: Sequence[Policy], ctx: ScheduleContext, *,
                             thin_all: bool = False) -> None:
    """Refuse, before training, structure pruning that thinning would refuse only after the pruning epochs.

    Thinning removes a filter (input channel) only where every coupled weight has it zero, so weights that
    feed (read) the same channels must all be pruned by one pruner that gives them one map
    (``group_dependency: Leader`` or ``auto_group: true``). When a thinning extension runs at or after a
    pruner's first epoch (or ``thin_all`` asks), a pruner that ranks whole coupled groups independently is
    switched to ``auto_group`` (a :class:`ScheduleWarning` says so; the shapes are Distiller's), and one that
    prunes only some of a coupled group (Distiller issue #304) or shares a group with another pruner raises a
    :class:`ScheduleError` at its YAML key with the fix. Without such thinning, masks-only pruning is legal,
    as in Distiller: a :class:`ScheduleWarning`. A thinning extension with ``auto_group: true`` keeps such
    filters instead of refusing, so that also only warns. ``thin_all`` (``prune --thin``) sweeps up whatever
    is zero at the end, so a pruner that zeroes only part of a coupled group (e.g. a ``Rows`` pruner on the fc
    that reads a residual stream beside convs) only warns that those structures stay zeroed in place, which
    is what Distiller's own published results of such schedules show. Nothing is checked when the input
    shape is unknown.
    """
    structural = {policy.instance_name: policy.pruner for policy in policies
                  if isinstance(policy, PruningPolicy) and policy.pruner.structure_dims()}
    if not structural:
        return
    thinners = _thinners(policies, thin_all)
    graph = _graph_for_check(ctx, thinners, spec.source)
    if graph is None:
        return
    first_epoch = {name: min(e for policy in policies if isinstance(policy, PruningPolicy)
                             and policy.instance_name == name for e in policy.epochs) for name in structural}
    _check_removable(spec, graph, structural, thinners, first_epoch)
    found = _couplings(graph, structural)
    warned = []
    for name in (n for n in spec.pruners if n in found):  # YAML order
        refusing = {dim: next((t for t in thinners if dim in t.dims and not t.auto_group
                               and t.last_epoch >= first_epoch[name]), None) for dim in STRUCTURE_TABLES}
        thinner = next((refusing[c.dim] for c in found[name] if refusing[c.dim] is not None), None)
        if thinner is not None:
            errors = [c for c in found[name] if refusing[c.dim] is not None]
            if thinner.origin is None:  # thin_all sweeps up what is zero: part of a group stays zero in place
                kept = [c for c in errors if c.pruned != c.group and not c.others]
                if kept:
                    warned.append((name, _kept_warning(kept, thinner)))
                    errors = [c for c in errors if c not in kept]
                    found[name] = [c for c in found[name] if c not in kept]
            if not errors:
                if not found[name]:
                    continue
            elif all(c.pruned == c.group and not c.others for c in errors) and structural[name].group_coupled_weights():
                warned.append((name, _grouped_warning(errors, thinner)))
                found[name] = [c for c in found[name] if c not in errors]
                if not found[name]:
                    continue
            else:
                raise spec.source.error(("pruners", name), _refusal(errors, thinner),
                                        hint=_fix_hint(spec, name, structural[name], errors, policies, thinner))
        keeping = [t for t in thinners if t.auto_group and t.last_epoch >= first_epoch[name]
                   and any(c.dim in t.dims for c in found[name])]
        warned.append((name, _masks_only_warning(found[name], keeping, spec.pruners[name].class_name)))
    for name, message in warned:
        spec.source.warn(("pruners", name), message)


def _check_removable(spec: ScheduleSpec, graph: ChannelGraph, structural: dict[str, Any], thinners: list[_Thinner],
                     first_epoch: dict[str, int]) -> None:
    """Refuse now what thinning would refuse whatever training does: a pruner whose target empties a weight's
    filters (input channels), or that prunes channels which nothing can remove (the model output, a grouped
    conv, an op the trace cannot see through), when a thinner of that dimension runs after it starts."""
    blocked = graph.blocked()
    for name in (n for n in spec.pruners if n in structural):  # YAML order
        pruner = structural[name]
        target = max(float(getattr(pruner, key, 0) or 0) for key in ("desired_sparsity", "final_sparsity"))
        for weight, dim in pruner.structure_dims().items():
            thinner = next((t for t in thinners if dim in t.dims and t.last_epoch >= first_epoch[name]), None)
            layer = getattr(graph, STRUCTURE_TABLES[dim]).get(weight.removesuffix(".weight"))
            if thinner is None or layer is None:
                continue
            if target >= 1.0:
                raise spec.source.error(("pruners", name), f"its target sparsity 1.0 zeroes all {len(layer.classes)} "
                                        f"{UNIT[dim]}s of {weight!r}, and {thinner.label} would then refuse to "
                                        "remove them all (a layer cannot lose every one)",
                                        hint="Lower the target below 1.0, or drop the weight from this pruner.")
            if not thinner.auto_group and bool(blocked[layer.classes].all()):
                reasons = "; ".join(graph.blocked_reasons(layer.classes.tolist()))
                raise spec.source.error(("pruners", name), f"it prunes {UNIT[dim]}s of {weight!r}, which also reach "
                                        f"{reasons}, which cannot lose channels, so {thinner.label} would refuse "
                                        "to remove them", hint=f"Drop {weight!r} from this pruner"
                                        + (f", or set auto_group: true on {thinner.name} to keep such {UNIT[dim]}s."
                                           if thinner.origin is not None else "."))


def _thinners(policies: Sequence[Policy], thin_all: bool) -> list[_Thinner]:
    if thin_all:
        return [_Thinner("thin_all()", "thin_all()", THINNED_DIMS["contract_model"], float("inf"), auto_group=False)]
    return [_Thinner(f"extension {policy.instance_name!r}",
                     f"extension {policy.instance_name!r} (epoch{'s' * (len(policy.epochs) > 1)} "
                     f"{', '.join(map(str, policy.epochs))})",
                     THINNED_DIMS[policy.extension.thinning_func_str], max(policy.epochs),
                     policy.extension.auto_group, policy.origin,
                     DATASET_INPUT_SHAPES.get(str(policy.extension.dataset).lower()))
            for policy in policies
            if isinstance(policy, ExtensionPolicy) and isinstance(policy.extension, StructureRemover)]


def _graph_for_check(ctx: ScheduleContext, thinners: list[_Thinner], source: ScheduleSource) -> ChannelGraph | None:
    """The model's channel graph; a model that cannot be traced fails now if the schedule thins it anyway."""
    shape = (ctx.input_shape or getattr(ctx.model, "input_shape", None)
             or next((t.input_shape for t in thinners if t.input_shape), None))
    if shape is None:
        return None
    try:
        return channel_graph(ctx.model, shape)
    except ConfigError as exc:
        if not thinners:
            return None
        if thinners[0].origin is None:  # thin_all: its own thinning would raise the same error
            raise
        raise source.error(thinners[0].origin, f"this extension thins the model, which cannot work: {exc.message}",
                           hint=exc.hint) from None


def _couplings(graph: ChannelGraph, structural: dict[str, Any]) -> dict[str, list[Coupling]]:
    """Per pruner name, the coupled groups it prunes without one map for the whole group."""
    found: dict[str, list[Coupling]] = {}
    for dim, table in STRUCTURE_TABLES.items():
        pruned_by: dict[str, list[str]] = {}
        for name, pruner in structural.items():
            for weight, weight_dim in pruner.structure_dims().items():
                if weight_dim == dim:
                    pruned_by.setdefault(weight, []).append(name)
        for layers in coupled_layers(getattr(graph, table)):
            group = [f"{layer}.weight" for layer in layers]
            for name, pruner in structural.items():
                pruned = [w for w in group if name in pruned_by.get(w, ())]
                if not pruned:
                    continue
                others = {w: next(o for o in pruned_by[w] if o != name) for w in group
                          if any(o != name for o in pruned_by.get(w, ()))}
                if pruned != group or not pruner.shares_coupled_maps or others:
                    found.setdefault(name, []).append(
                        Coupling(dim, group, pruned, pruner.shares_coupled_maps, others))
    return found


def _refusal(couplings: list[Coupling], thinner: _Thinner) -> str:
    unit = UNIT[couplings[0].dim]
    return (f"the {unit}s of coupled weights would get different masks: "
            f"{'; '.join(c.describe() for c in couplings)}. Thinning removes a {unit} only where all coupled "
            f"weights have it zero, so {thinner.label} would refuse this model after the pruning epochs have run "
            "(Distiller misaligned the channels silently)")


def _grouped_warning(couplings: list[Coupling], thinner: _Thinner) -> str:
    unit = UNIT[couplings[0].dim]
    return (f"{'; '.join(c.describe() for c in couplings)}. Distiller thinned such weights with misaligned "
            f"{unit}s; because {thinner.label} thins them, edgeprune ranks each coupled group as one "
            f"(auto_group: true): each weight loses as many {unit}s as in Distiller (the same shapes and MACs), "
            f"and the same ones. Set auto_group: true on this pruner to silence this warning.")


def _kept_warning(couplings: list[Coupling], thinner: _Thinner) -> str:
    unit = UNIT[couplings[0].dim]
    return (f"{'; '.join(c.describe() for c in couplings)}. {thinner.label} removes {unit}s only where every coupled "
            f"weight has them zero, so these {unit}s stay zeroed in place (as in Distiller's own results of such "
            f"schedules); to remove them, prune the whole coupled group with one map (auto_group: true or "
            f"group_dependency: Leader).")


def _masks_only_warning(couplings: list[Coupling], keeping: list[_Thinner], class_name: str) -> str:
    unit = UNIT[couplings[0].dim]
    text = f"the {unit}s of coupled weights get different masks: {'; '.join(c.describe() for c in couplings)}. "
    if keeping:
        text += (f"Because {keeping[0].label} has auto_group: true, it will keep every {unit} that is not zero in "
                 "all of them, and that pruning is lost")
    else:
        text += ("That is fine for this masks-only schedule (the weights are zeroed in place, as in Distiller), "
                 "but this model cannot be thinned later")
    fix = "add the missing coupled weights to this pruner and " if any(c.pruned != c.group for c in couplings) \
        else ""
    way = "set auto_group: true on this pruner" if "auto_group" in accepted_keywords(PRUNERS.get(class_name)) \
        else "use one group_dependency: Leader pruner per coupled group"
    return f"{text}; to prune them consistently, {fix}{way}."


def _fix_hint(spec: ScheduleSpec, name: str, pruner: Any, couplings: list[Coupling], policies: Sequence[Policy],
              thinner: _Thinner) -> str:
    """Ready-to-paste YAML giving every coupled group one map: ``auto_group: true``, or Leader pruners."""
    component = spec.pruners[name]
    accepted = accepted_keywords(PRUNERS.get(component.class_name))
    settings = {"class": component.class_name,
                **{k: v for k, v in component.kwargs.items() if k not in ("weights", "group_dependency",
                                                                           "auto_group")}}
    own = list(pruner.params_names)
    groups = [c.group for c in couplings]
    lines = ["Fix it now, in one of these ways:"]
    if "auto_group" in accepted:
        weights = own + [w for group in groups for w in group if w not in own]
        added = " (this adds the missing coupled weights)" if weights != own else ""
        lines += [f"* rank each coupled group as one, by the summed importance of its weights{added}:",
                  *_yaml_lines({"pruners": {name: {**settings, "weights": weights, "auto_group": True}}}, "")]
    if "group_dependency" in accepted:
        grouped = {w for group in groups for w in group}
        remaining = [w for w in own if w not in grouped]
        blocks: dict[str, Any] = {name: {**settings, "weights": remaining}} if remaining else {}
        for group in groups:
            new_name = name if name not in blocks else _free_name(spec, blocks, f"{name}_group")
            blocks[new_name] = {**settings, "weights": group, "group_dependency": "Leader"}
        lines += [f"* or give each coupled group one Leader pruner (every member takes the ranking of its first "
                  f"weight), scheduled like {name!r}:", *_yaml_lines({"pruners": blocks}, "")]
        new_names = [n for n in blocks if n != name]
        if new_names:
            lines.append("policies:")
            for policy in policies:
                if isinstance(policy, PruningPolicy) and policy.instance_name == name:
                    timing = policy.spec.model_dump(include={"epochs", "starting_epoch", "ending_epoch", "frequency"},
                                                    exclude_none=True)
                    args = {"args": policy.spec.target.args} if policy.spec.target.args else {}
                    lines += [_canonical_policy_text({"pruner": {"instance_name": n, **args}, **timing})
                              for n in new_names]
    if "auto_group" not in accepted and "group_dependency" not in accepted:
        lines.append(f"* {component.class_name} ranks every weight on its own: prune each coupled group with a "
                     "structure pruner that has auto_group: true or group_dependency: Leader (e.g. "
                     f"L1RankedStructureParameterPruner), and remove the group from {name!r}.")
    lines += [f"* and remove {', '.join(weights)} from pruner {other!r}: one pruner must own a coupled group."
              for c in couplings for other, weights in c.others_by_pruner().items()]
    if thinner.origin is not None:
        lines.append(f"(Or set auto_group: true on {thinner.name}: it then keeps every "
                     f"{UNIT[couplings[0].dim]} not zero in all coupled weights, and that pruning is lost.)")
    return "\n".join(lines)


def _free_name(spec: ScheduleSpec, taken: dict[str, Any], prefix: str) -> str:
    index = 1
    while f"{prefix}{index}" in spec.pruners or f"{prefix}{index}" in taken:
        index += 1
    return f"{prefix}{index}"
