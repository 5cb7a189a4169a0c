"""Network thinning: physically remove all-zero filters / channels that pruning left behind.

Pruning only zeroes structures (masks); the network keeps its size and its MACs until the zeros are
cut out. These functions do that cut, Distiller-style (``distiller/thinning.py``), on any model
that torch.fx can trace (see :mod:`edgeprune.pruning.dependency` for how coupled channels are found):

* :func:`remove_filters`: conv filters whose weights are all zero (weights only, as Distiller:
  bias / BN values of a removed filter are dropped with it).
* :func:`remove_channels`: input channels that are all zero in a conv / Linear, together with the
  filters (or Linear rows) that produce them.
* :func:`contract_model`: both, filters first.

As in Distiller's removers, only one side decides: ``remove_filters`` removes what the all-zero
filters of convs say, and every reader of those channels loses them whatever its own weights are;
``remove_channels`` removes what the all-zero input channels of convs / Linears say, and the
producers (and BatchNorms) follow. Zeros on the other side (a Linear's zero columns in
``remove_filters``, a conv's zero filters in ``remove_channels``) play no part.

Where edgeprune deliberately differs from Distiller:

* Coupled deciders (several producers feeding one residual add, or several readers of one stream)
  that were *all* pruned but lost different filters / channels are an error naming the layers and the
  ``group_dependency: Leader`` group to use, instead of Distiller's silent channel misalignment;
  ``auto_group=True`` removes only what is zero in all of them.
* Zeros that only some coupled deciders have (those of fine-grained pruning or of training in a
  trained network, or a Linear's zero columns beside the convs that read the same stream) cannot go
  without cutting live weights of the others; Distiller removed them and broke the shapes. They stay
  zero in place, and the record's notes (logged as warnings) say so.
* Linear inputs after a flatten map each channel to its real H·W features (traced), not √-guessed.
* Every optimizer's state is thinned (any state tensor shaped like the parameter), not only SGD's.
* The result is checked by a forward pass; if it fails, every change is undone before raising,
  so the model, optimizer and masks stay usable.

Everything happens in place: the ``nn.Parameter`` objects are kept (``param.data`` is replaced), so
optimizer param_groups, hooks and references held elsewhere stay valid.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from edgeprune.errors import ConfigError
from edgeprune.models.naming import normalize_module_name
from edgeprune.models.summary import ModelSummary, eval_mode, input_shape_of, model_summary, summarize
from edgeprune.pruning.dependency import (
    ChannelGraph,
    LayerChannels,
    ThinningError,
    channel_graph,
    is_depthwise,
    one_intra_op_thread,
    verified_counts,
)
from edgeprune.pruning.masks import MasksDict

__all__ = ["LayerChange", "ThinningError", "ThinningRecord", "contract_model", "remove_channels", "remove_filters"]

logger = logging.getLogger(__name__)

Selections = list[tuple[int, torch.Tensor]]  # (dim, indices to keep) applied in order


@dataclass
class LayerChange:
    """How one layer changed. Indices are positions in the layer *before* this thinning."""

    name: str
    type: str
    old_shape: tuple[int, ...]  # weight shape (BatchNorm without affine: (num_features,))
    new_shape: tuple[int, ...]
    removed_out: list[int]  # output channels / filters (or BN features, depthwise filters)
    removed_in: list[int]  # input channels (conv) / input features (Linear)
    macs_before: int = 0
    macs_after: int = 0


@dataclass
class ThinningRecord:
    """What a thinning call did: per-layer old -> new shapes and the MACs before / after."""

    function: str
    input_shape: tuple[int, ...]
    layers: list[LayerChange]
    macs_before: int
    macs_after: int
    weight_params_before: int
    weight_params_after: int
    notes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.layers)

    def layer(self, name: str) -> LayerChange:
        """The change of layer ``name`` (canonical module name)."""
        for change in self.layers:
            if change.name == name:
                return change
        raise KeyError(f"Layer {name!r} was not changed by {self.function}.")

    def __str__(self) -> str:
        lines = [f"{self.function}: {len(self.layers)} layers thinned; MACs {self.macs_before:,} -> "
                 f"{self.macs_after:,}; weights {self.weight_params_before:,} -> {self.weight_params_after:,}"]
        lines += [f"  {c.name} ({c.type}): {c.old_shape} -> {c.new_shape}" for c in self.layers]
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


def remove_filters(
    model: nn.Module, zeros_mask_dict: MasksDict | None, optimizer: torch.optim.Optimizer | None = None,
    input_shape: Sequence[int] | None = None, *, auto_group: bool = False,
) -> ThinningRecord:
    """Remove every conv filter whose weights are all zero, and fix every layer that depends on it.

    Coupled convs (feeding the same residual add) must have the same zero filters, else
    :class:`ThinningError` names them; with ``auto_group`` only filters zero in all of them go.
    """
    return _thin(model, zeros_mask_dict, optimizer, input_shape, "remove_filters", _select_filters, auto_group)


def remove_channels(
    model: nn.Module, zeros_mask_dict: MasksDict | None, optimizer: torch.optim.Optimizer | None = None,
    input_shape: Sequence[int] | None = None, *, auto_group: bool = False,
) -> ThinningRecord:
    """Remove all-zero input channels of convs / Linears together with the filters that produce them.

    A channel goes only when *every* layer reading it has it zeroed (e.g. all convs reading a residual
    stream), else :class:`ThinningError` names those layers; with ``auto_group`` such channels stay.
    """
    return _thin(model, zeros_mask_dict, optimizer, input_shape, "remove_channels", _select_channels, auto_group)


def contract_model(
    model: nn.Module, zeros_mask_dict: MasksDict | None, optimizer: torch.optim.Optimizer | None = None,
    input_shape: Sequence[int] | None = None, *, auto_group: bool = False,
) -> ThinningRecord:
    """:func:`remove_filters` then :func:`remove_channels` (Distiller's ``--thinnify``), as one record."""
    filters = remove_filters(model, zeros_mask_dict, optimizer, input_shape, auto_group=auto_group)
    channels = remove_channels(model, zeros_mask_dict, optimizer, input_shape, auto_group=auto_group)
    order = {normalize_module_name(name): i for i, (name, _) in enumerate(_unwrap(model).named_modules())}
    return _merge("contract_model", filters, channels, order)


# ----------------------------------------------------------------------------------------------- driver
def _thin(
    model: nn.Module, masks: MasksDict | None, optimizer: torch.optim.Optimizer | None,
    input_shape: Sequence[int] | None, function: str, select: Callable[[ChannelGraph, bool], _Selection],
    auto_group: bool,
) -> ThinningRecord:
    model = _unwrap(model)
    shape = input_shape_of(model, tuple(input_shape) if input_shape else None)
    with one_intra_op_thread(), eval_mode(model):  # one switch to eval for the passes, not one each
        graph, before = _traced(model, shape)
        selection = select(graph, auto_group)
        plans = _plan(graph, selection.removed, _module_order(model))
        thinner = _InPlaceThinner(optimizer, masks or {})
        try:
            changes = [_thin_layer(name, plan, thinner) for name, plan in plans.items()]
            after = _verify(model, shape, function, graph.shape_only) if changes else before
        except BaseException:
            thinner.rollback()
            raise
    record = _record(function, shape, changes, before, after, selection.notes)
    logger.info("%s", record if changes else f"{function}: nothing to remove")
    for note in selection.notes:
        logger.warning("%s: %s", function, note)
    return record


def _traced(model: nn.Module, shape: tuple[int, ...]) -> tuple[ChannelGraph, ModelSummary]:
    """The channel graph and the counts before thinning, from one traced pass (the schedule builder's, when the
    model is unchanged since). A model whose forward pass fails is reported by the count, as it always was."""
    try:
        graph = channel_graph(model, shape)
    except ConfigError:
        model_summary(model, shape)
        raise
    if graph.dense_counts is None:
        return graph, model_summary(model, shape)
    return graph, summarize(model, shape, list(graph.dense_counts))


def _unwrap(model: nn.Module) -> nn.Module:
    """Thin the wrapped model of DataParallel / DDP: names are canonical (no ``module.``) anyway."""
    while isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        model = model.module
    return model


def _module_order(model: nn.Module) -> dict[nn.Module, int]:
    return {m: i for i, m in enumerate(model.modules())}


def _verify(model: nn.Module, shape: tuple[int, ...], function: str, shape_only: bool) -> ModelSummary:
    """A forward pass on the thinned model (which also recounts MACs); failure undoes the thinning. A twin of a
    model thinned and verified before (``shape_only`` graphs only) reuses that pass's counts."""
    try:
        if shape_only:
            return summarize(model, shape, verified_counts(model, shape, lambda: model_summary(model, shape).layers))
        return model_summary(model, shape)
    except ConfigError as exc:
        raise ThinningError(
            f"{function} produced a model whose forward pass fails, so every change was undone: {exc.message}",
            hint="The model's forward() probably hard-codes a channel or feature count (e.g. x.view(-1, 400)); "
                 "derive it from the tensor (x.flatten(1)) instead.",
        ) from None


# -------------------------------------------------------------------------------------------- selection
@dataclass
class _Selection:
    removed: torch.Tensor  # bool per coupling class
    notes: list[str]


@dataclass
class _Votes:
    """Per coupling class: how many tested layers have it, and in how many of them it is all zero."""

    layers: dict[str, LayerChannels]
    zero: dict[str, torch.Tensor]  # per layer: bool per index
    voters: torch.Tensor
    zero_voters: torch.Tensor


def _select_filters(graph: ChannelGraph, auto_group: bool) -> _Selection:
    """A class of output channels goes when every producer of it has that filter all-zero.

    Only convs with groups=1 are tested (Distiller: 4D weights); Linear rows never count as zero here.
    A depthwise conv never decides: its filter i exists only for input channel i, so it follows that channel.
    """
    def zero_filters(layer: LayerChannels) -> torch.Tensor:
        weight = layer.module.weight.detach()
        if not isinstance(layer.module, nn.modules.conv._ConvNd):
            return torch.zeros(weight.shape[0], dtype=torch.bool, device=weight.device)
        zero = weight.flatten(1).abs().sum(1) == 0
        if zero.all():
            raise ThinningError(f"Trying to remove all {zero.numel()} filters of layer {layer.name!r} is not "
                                "allowed: its weight is entirely zero.",
                                hint="Lower the pruning target of this layer below 100%.")
        return zero

    return _resolve(graph, _votes(graph, graph.producers, zero_filters), "filters", auto_group)


def _select_channels(graph: ChannelGraph, auto_group: bool) -> _Selection:
    """A class of channels goes when every conv / Linear reading it has all its columns for it zero."""
    def zero_channels(layer: LayerChannels) -> torch.Tensor:
        zero = layer.module.weight.detach().transpose(0, 1).flatten(1).abs().sum(1) == 0
        if zero.all():
            raise ThinningError(f"Trying to remove all {zero.numel()} input channels of layer {layer.name!r} is "
                                "not allowed: its weight is entirely zero.",
                                hint="Lower the pruning target of this layer below 100%.")
        return zero

    return _resolve(graph, _votes(graph, graph.consumers, zero_channels), "channels", auto_group)


def _votes(graph: ChannelGraph, layers: dict[str, LayerChannels],
           zero_of: Callable[[LayerChannels], torch.Tensor]) -> _Votes:
    k = graph.num_classes
    zero = {name: zero_of(layer).cpu() for name, layer in layers.items()}
    if not layers:
        return _Votes(layers, zero, torch.zeros(k, dtype=torch.long), torch.zeros(k, dtype=torch.long))
    # Every (layer, class) pair votes once: for the class, and for its removal if all its indices in that layer
    # are zero (a flattened channel is zero only if all its features are). One count over all layers at once.
    classes, owner = _concatenated(list(layers.values()))
    pairs, pair_of_index = torch.unique(owner * k + classes, return_inverse=True)
    total = torch.bincount(pair_of_index, minlength=pairs.numel())
    zeros = torch.bincount(pair_of_index[torch.cat(list(zero.values()))], minlength=pairs.numel())
    voted_class = pairs % k
    return _Votes(layers, zero, torch.bincount(voted_class, minlength=k),
                  torch.bincount(voted_class[zeros == total], minlength=k))


def _concatenated(layers: list[LayerChannels]) -> tuple[torch.Tensor, torch.Tensor]:
    """The classes of ``layers`` end to end, and beside each the position of its layer in the list."""
    classes = torch.cat([layer.classes for layer in layers])
    sizes = torch.tensor([layer.classes.numel() for layer in layers])
    return classes, torch.repeat_interleave(torch.arange(len(layers)), sizes, output_size=classes.numel())


def _resolve(graph: ChannelGraph, votes: _Votes, what: str, auto_group: bool) -> _Selection:
    """Remove unanimous classes; misaligning disagreement or unremovable channels raise (or stay, ``auto_group``).

    Like Distiller's removers, only the deciding layers vote (producers' filters, or readers' input channels);
    the other side follows. A class some deciders have zero and others not cannot go without cutting live
    weights. Where every decider of it has zero {what} in the channels they share, a structure pruner ranked
    them apart and Distiller would have removed each set, misaligning the channels: that is refused. Where
    some decider has none there (fine-grained or trained zeros, or a Linear's zero columns beside convs that
    read the same stream), Distiller's removal would break the shapes; those zeros stay in place, with a note.
    """
    candidate = votes.zero_voters > 0
    unanimous = votes.zero_voters == votes.voters
    blocked = graph.blocked()
    conflicts = candidate & ~unanimous
    misaligning = conflicts & _all_deciders_pruned(votes, conflicts)
    stuck = candidate & unanimous & blocked
    notes = []
    if misaligning.any():
        if not auto_group:
            raise _coupling_error(votes, misaligning, what)
        notes += _coupling_notes(votes, misaligning, what)
    if (conflicts & ~misaligning).any():
        notes += _partial_notes(votes, conflicts & ~misaligning, what)
    if stuck.any():
        if not auto_group:
            raise _blocked_error(graph, votes, stuck, what)
        notes.append(f"kept {int(stuck.sum())} zero {what} of {', '.join(graph.layers_with(votes.layers, stuck))}: "
                     f"they reach {'; '.join(graph.blocked_reasons(stuck.nonzero().flatten().tolist()))}")
    return _Selection(candidate & unanimous & ~blocked, notes)


def _all_deciders_pruned(votes: _Votes, conflicts: torch.Tensor) -> torch.Tensor:
    """Per class: whether every layer deciding it has some zero index among the classes they all share.

    For a residual stream the shared classes are the whole stream, so this asks whether every conv feeding
    (reading) the stream lost some of its filters (input channels), i.e. whether all of them were pruned.
    """
    result = torch.zeros_like(conflicts)
    for c in conflicts.nonzero().flatten().tolist():
        deciders = [layer for layer in votes.layers.values() if bool((layer.classes == c).any())]
        shared = set(deciders[0].classes.tolist()).intersection(*(d.classes.tolist() for d in deciders[1:]))
        shared_index = torch.tensor(sorted(shared), dtype=torch.long)
        result[c] = all(bool(votes.zero[d.name][torch.isin(d.classes, shared_index)].any()) for d in deciders)
    return result


def _coupled_groups(votes: _Votes, conflicts: torch.Tensor) -> list[list[str]]:
    """Layers that disagree, grouped by the classes they share (e.g. one group per residual stream)."""
    groups: dict[tuple[str, ...], None] = {}
    for c in conflicts.nonzero().flatten().tolist():
        groups[tuple(name for name, layer in votes.layers.items() if bool((layer.classes == c).any()))] = None
    return [list(group) for group in groups]


def _kept(votes: _Votes, name: str) -> str:
    zero = votes.zero[name]
    return f"{name} ({int((~zero).sum())} of {zero.numel()} kept)"


def _coupling_error(votes: _Votes, conflicts: torch.Tensor, what: str) -> ThinningError:
    groups = _coupled_groups(votes, conflicts)
    relation = ("feed the same channels (e.g. one residual add), so they must lose the same filters"
                if what == "filters" else "read the same channels, so they must lose the same input channels")
    described = "; ".join(f"[{', '.join(_kept(votes, name) for name in group)}]" for group in groups)
    leader = "\n".join(f"  group_dependency: Leader\n  weights: [{', '.join(f'{n}.weight' for n in group)}]"
                       for group in groups)
    return ThinningError(
        f"Cannot remove {what}: coupled layers {described} {relation}, but their all-zero {what} differ. "
        f"Removing them anyway would misalign channels (Distiller did so silently).",
        hint=f"Give each coupled group one shared mask: in the schedule, one structure pruner (group_type: "
             f"{'Filters' if what == 'filters' else 'Channels'}) per group with\n{leader}\nor thin with "
             f"auto_group=True to remove only the {what} that are zero in all layers of a group.",
    )


def _coupling_notes(votes: _Votes, conflicts: torch.Tensor, what: str) -> list[str]:
    return [f"auto_group: kept {what} zero in only some of the coupled layers "
            f"{', '.join(_kept(votes, name) for name in group)}; removed only those zero in all of them"
            for group in _coupled_groups(votes, conflicts)]


def _partial_notes(votes: _Votes, kept: torch.Tensor, what: str) -> list[str]:
    return [f"kept {int(kept.sum())} zero {what} in place: the coupled layers "
            f"{', '.join(_kept(votes, name) for name in group)} share these channels, and not all of them have "
            f"them zero, so removing them would cut live weights (zeros of fine-grained pruning, of training, or "
            f"of a pruner that prunes only part of the group)"
            for group in _coupled_groups(votes, kept)]


def _blocked_error(graph: ChannelGraph, votes: _Votes, stuck: torch.Tensor, what: str) -> ThinningError:
    reasons = graph.blocked_reasons(stuck.nonzero().flatten().tolist())
    return ThinningError(
        f"Cannot remove the zero {what} of {', '.join(graph.layers_with(votes.layers, stuck))}: those channels "
        f"also reach {'; '.join(reasons)}, which cannot lose channels.",
        hint="Do not structure-prune these layers, or thin with auto_group=True to keep these channels.",
    )


# ----------------------------------------------------------------------------------------- plan & apply
@dataclass
class _LayerPlan:
    module: nn.Module
    out_keep: torch.Tensor | None = None  # kept indices of the output / per-channel dim
    in_keep: torch.Tensor | None = None  # kept indices of the input dim


def _plan(graph: ChannelGraph, removed: torch.Tensor, order: dict[nn.Module, int]) -> dict[str, _LayerPlan]:
    """Kept indices per layer and dimension, in model order; refuses to empty any layer."""
    plans: dict[str, _LayerPlan] = {}
    for role, table, what in (("out_keep", graph.producers, "filters"), ("out_keep", graph.followers, "channels"),
                              ("in_keep", graph.consumers, "input channels")):
        if not table:
            continue
        classes, owner = _concatenated(list(table.values()))
        touched = torch.bincount(owner[removed[classes]], minlength=len(table)).tolist()  # removed per layer
        for (name, layer), count in zip(table.items(), touched, strict=True):
            if count == 0:
                continue
            keep = (~removed[layer.classes]).nonzero().flatten()
            if keep.numel() == layer.classes.numel():
                continue
            if keep.numel() == 0:
                raise ThinningError(f"Thinning would remove all {layer.classes.numel()} {what} of layer {name!r}, "
                                    "which is not allowed.", hint="Prune fewer channels of the layers feeding it.")
            setattr(plans.setdefault(name, _LayerPlan(layer.module)), role, keep)
    return dict(sorted(plans.items(), key=lambda item: order[item[1].module]))


def _thin_layer(name: str, plan: _LayerPlan, thinner: _InPlaceThinner) -> LayerChange:
    m, out, inp = plan.module, plan.out_keep, plan.in_keep
    old_shape = _weight_shape(m)
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        thinner.parameters(m, name, ("weight", "bias"), [(0, out)])
        thinner.buffers(m, ("running_mean", "running_var"), [(0, out)])
        thinner.set(m, "num_features", len(out))
    elif is_depthwise(m):  # filter i reads only channel i: filters, channels and groups shrink together
        thinner.parameters(m, name, ("weight", "bias"), [(0, out)])
        for attr in ("in_channels", "out_channels", "groups"):
            thinner.set(m, attr, len(out))
    else:
        linear = isinstance(m, nn.Linear)
        out_attr, in_attr = ("out_features", "in_features") if linear else ("out_channels", "in_channels")
        selections = [(dim, keep) for dim, keep in ((0, out), (1, inp)) if keep is not None]
        thinner.parameters(m, name, ("weight",), selections)
        if out is not None:
            thinner.parameters(m, name, ("bias",), [(0, out)])
            thinner.set(m, out_attr, len(out))
        if inp is not None:
            thinner.set(m, in_attr, len(inp))
    return LayerChange(name, type(m).__name__, old_shape, _weight_shape(m), _removed(out, old_shape, 0),
                       _removed(inp, old_shape, 1))


def _weight_shape(m: nn.Module) -> tuple[int, ...]:
    weight = getattr(m, "weight", None)
    return tuple(weight.shape) if weight is not None else (int(m.num_features),)


def _removed(keep: torch.Tensor | None, old_shape: tuple[int, ...], dim: int) -> list[int]:
    if keep is None:
        return []
    kept = set(keep.tolist())
    return [i for i in range(old_shape[dim]) if i not in kept]


def _select(tensor: torch.Tensor, selections: Selections) -> torch.Tensor:
    for dim, keep in selections:
        tensor = tensor.index_select(dim, keep.to(tensor.device))
    return tensor


class _InPlaceThinner:
    """Applies index selections in place (Parameters, grads, optimizer state, masks) and can undo them all."""

    def __init__(self, optimizer: torch.optim.Optimizer | None, masks: MasksDict) -> None:
        self.optimizer = optimizer
        self.masks = masks
        self._undo: list[Callable[[], None]] = []

    def set(self, obj: Any, attr: str, value: Any) -> None:
        old = getattr(obj, attr)
        self._undo.append(lambda: setattr(obj, attr, old))
        setattr(obj, attr, value)

    def set_item(self, mapping: dict, key: Any, value: Any) -> None:
        old = mapping[key]
        self._undo.append(lambda: mapping.__setitem__(key, old))
        mapping[key] = value

    def parameters(self, module: nn.Module, module_name: str, attrs: Sequence[str], selections: Selections) -> None:
        for attr in attrs:
            param = getattr(module, attr, None)
            if param is not None:
                self._parameter(param, f"{module_name}.{attr}" if module_name else attr, selections)

    def buffers(self, module: nn.Module, attrs: Sequence[str], selections: Selections) -> None:
        for attr in attrs:
            buffer = getattr(module, attr, None)
            if buffer is not None:
                self.set(module, attr, _select(buffer, selections))

    def _parameter(self, param: nn.Parameter, name: str, selections: Selections) -> None:
        """Same Parameter object, new data; its grad, optimizer state and mask follow the same selection."""
        old_shape, old_data, old_grad = param.shape, param.data, param.grad
        param.grad = None  # a grad of the old shape cannot sit on the new data, nor new on old
        param.data = _select(old_data, selections)
        if old_grad is not None:
            param.grad = _select(old_grad, selections)

        def undo() -> None:
            param.grad = None
            param.data = old_data
            param.grad = old_grad

        self._undo.append(undo)
        state = self.optimizer.state.get(param, {}) if self.optimizer is not None else {}
        for key, value in list(state.items()):  # momentum_buffer, exp_avg, exp_avg_sq, square_avg, sum, ...
            if isinstance(value, torch.Tensor) and value.shape == old_shape:
                self.set_item(state, key, _select(value, selections))
        masker = self.masks.get(name)
        for attr in ("mask", "unmasked_copy") if masker is not None else ():
            value = getattr(masker, attr)
            if isinstance(value, torch.Tensor) and value.shape == old_shape:
                self.set(masker, attr, _select(value, selections))

    def rollback(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()


# --------------------------------------------------------------------------------------------- records
def _macs_by_layer(summary: ModelSummary) -> dict[str, int]:
    macs: dict[str, int] = {}
    for layer in summary.layers:  # a layer called twice is counted twice, as in the summary
        macs[layer.name] = macs.get(layer.name, 0) + layer.macs
    return macs


def _record(function: str, shape: tuple[int, ...], changes: list[LayerChange], before: ModelSummary,
            after: ModelSummary, notes: list[str]) -> ThinningRecord:
    macs_before, macs_after = _macs_by_layer(before), _macs_by_layer(after)
    for change in changes:
        change.macs_before, change.macs_after = macs_before.get(change.name, 0), macs_after.get(change.name, 0)
    return ThinningRecord(function, shape, changes, before.macs, after.macs, before.weight_params,
                          after.weight_params, notes)


def _merge(function: str, first: ThinningRecord, second: ThinningRecord, order: dict[str, int]) -> ThinningRecord:
    """One record for two consecutive thinnings; removed indices are mapped back to the original layer."""
    layers = {change.name: change for change in first.layers}
    for change in second.layers:
        earlier = layers.get(change.name)
        layers[change.name] = change if earlier is None else replace(
            change, old_shape=earlier.old_shape, macs_before=earlier.macs_before,
            removed_out=_compose(earlier.removed_out, change.removed_out, earlier.old_shape, 0),
            removed_in=_compose(earlier.removed_in, change.removed_in, earlier.old_shape, 1),
        )
    return ThinningRecord(
        function, first.input_shape, sorted(layers.values(), key=lambda c: order[c.name]), first.macs_before,
        second.macs_after, first.weight_params_before, second.weight_params_after, [*first.notes, *second.notes],
    )


def _compose(first: list[int], second: list[int], old_shape: tuple[int, ...], dim: int) -> list[int]:
    if not second:
        return first
    gone = set(first)
    survivors = [i for i in range(old_shape[dim]) if i not in gone]
    return sorted([*first, *(survivors[j] for j in second)])
