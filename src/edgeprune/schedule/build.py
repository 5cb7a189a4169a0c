"""Turning a checked schedule into pruners, regularizers, LR schedulers, extensions and policies.

This is Distiller's ``dict_config``/``build_component`` (dependency injection with strict keyword
checking) with the silent failures turned into located errors: an unknown class or keyword, a weight
name that is not in the model (Distiller silently pruned nothing), an AGP pruner on an ``epochs:`` list
(Distiller crashed on ``// None`` at the first epoch), a sparsity outside [0, 1].

Build order and policy order are Distiller's: pruners, regularizers, (quantizers), extensions, the
non-LR policies in YAML order, then the LR schedulers and their policies, so within one epoch the LR
policies always run after every other policy.
"""

from __future__ import annotations

import inspect
import typing
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from pydantic import ConfigDict, TypeAdapter, ValidationError
from torch import nn

from edgeprune.errors import closest
from edgeprune.models.naming import normalize_module_name
from edgeprune.pruning import agp, pruners  # noqa: F401  (importing them registers the pruner classes)
from edgeprune.pruning.registry import PRUNERS
from edgeprune.pruning.regularizers import REGULARIZERS
from edgeprune.pruning.remover import ChannelRemover, FilterRemover, StructureRemover
from edgeprune.registry import Registry
from edgeprune.schedule.config import (
    POLICY_KINDS,
    ComponentSpec,
    KeyPath,
    PolicySpec,
    ScheduleSource,
    ScheduleSpec,
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
    if spec.class_name not in registry:
        close = closest(spec.class_name, registry.names())
        raise source.error((*path, "class"), f"unknown class {spec.class_name!r}"
                           + (f"; did you mean {close[0]!r}?" if close else ""),
                           hint=f"Known {section}: {', '.join(registry.names())}.")
    cls = registry.get(spec.class_name)
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
        agp.agp_target_sparsity(0.0, 1.0, policy.starting_epoch, policy.ending_epoch,  # type: ignore[arg-type]
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
    return policies + lr_policies

