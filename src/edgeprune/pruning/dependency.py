"""Which output channels of which layers are the *same* channel: the dependency graph behind thinning.

Removing filter ``i`` of a conv is only half of the job: every layer that reads that channel must lose
the matching input slice, every BatchNorm or depthwise conv on the way must lose its entry ``i``,
and when several layers feed one residual add (or one tensor is split by ``torch.cat`` offsets),
their channels are tied together. This module answers those questions for any model that
``torch.fx`` can trace.

Model of the problem: every channel that exists in the network (each output channel of a Conv2d /
Linear, each channel of the model input, each channel created by an op we do not understand) is
an *element*. Tracing the forward pass assigns every tensor a *layout*: the element carried by each
index of its dim 1. Pass-through ops (ReLU, pooling, dropout, BN, depthwise conv, identity) keep the
layout; ``torch.cat`` on dim 1 concatenates layouts (the channel offsets fall out for free);
flattening a (N, C, H, W) tensor repeats each element H·W times, with H·W read from the real shapes
of the traced dummy input (Distiller assumed square maps of size √(in_features/C)); elementwise ops
such as a residual add unite their operands' elements index by index (union-find). After the trace,
each union-find set is a *coupling class*: the channels that must be removed together or not at all.

Why torch.fx and not torch-pruning's ``DependencyGraph``:

* Thinning must happen *in place* (``param.data = index_select(...)``) so the same ``nn.Parameter``
  objects stay in the optimizer's param_groups, and every optimizer state tensor, ``.grad`` and
  mask must be thinned alongside. torch-pruning replaces Parameters with new ones and does not
  touch optimizer state, so it would only have supplied the graph, behind an extra pinned dependency.
* torch-pruning always prunes a coupled group together from one importance ranking. edgeprune has
  to do something else: detect coupled layers whose *existing* zero masks disagree and refuse with
  a message naming the layers and the Leader group to use (Distiller silently misaligned them).
  That decision needs the per-channel classes above, which torch-pruning does not expose.
* ``torch.fx`` is part of torch and public, so this graph does not break with torch upgrades the way
  Distiller's ONNX/JIT-trace graph did (issues #494/#515/#79).

Anything the trace cannot map is handled conservatively: the channels reaching such an op (a
grouped conv, an unknown function, an odd reshape, the model output) are *locked*, and a request to
remove them raises :class:`ThinningError` naming the op, instead of producing a broken model.
"""

from __future__ import annotations

import functools
import itertools
import math
import operator
import types
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from edgeprune.errors import ConfigError
from edgeprune.models.naming import normalize_module_name
from edgeprune.models.summary import LayerCounter, LayerSummary, eval_mode

Layout = list[int]  # the element carried by each index of a tensor's dim 1


class ThinningError(ConfigError, ValueError):
    """Thinning cannot be done as asked. Also a ``ValueError``, which is what Distiller raised."""


@dataclass
class LayerChannels:
    """One thinnable dimension of one layer: the coupling class of each of its indices."""

    name: str
    module: nn.Module
    classes: torch.Tensor  # int64, one class id per index of the dimension


@dataclass
class Lock:
    """Channels read by something that cannot be thinned (with a readable reason)."""

    reason: str
    classes: torch.Tensor


@dataclass
class ChannelGraph:
    """Coupling classes of a traced model and, per layer, which class each channel index belongs to.

    ``producers`` (Conv with groups=1, Linear): output dim (filters / rows), dim 0 of the weight.
    ``consumers`` (the same layers): input dim, dim 1 of the weight.
    ``followers`` (BatchNorm, depthwise conv): per-channel tensors that follow their input's channels.
    ``fixed``: classes that also contain a channel nothing can remove (model input, grouped conv or
    unknown-op output), with the names of those sources.
    """

    num_classes: int
    producers: dict[str, LayerChannels]
    consumers: dict[str, LayerChannels]
    followers: dict[str, LayerChannels]
    fixed: dict[int, list[str]]
    locks: list[Lock]
    # Distiller's per-layer counts from the same traced pass (see LayerCounter); None when a counted layer did
    # not see the batch as its first dimension, so the pass cannot stand for one image.
    dense_counts: list[LayerSummary] | None = None
    # Whether the run that built it depends on shapes alone (see "twins" below): then so do the counts of the
    # same model with fewer channels, and they may be reused for its twins (verified_counts).
    shape_only: bool = False

    def blocked(self) -> torch.Tensor:
        """Classes that cannot be removed at all (bool per class)."""
        mask = torch.zeros(self.num_classes, dtype=torch.bool)
        mask[list(self.fixed)] = True
        for lock in self.locks:
            mask[lock.classes] = True
        return mask

    def blocked_reasons(self, classes: Iterable[int]) -> list[str]:
        """Why the given classes cannot be removed, de-duplicated, in discovery order."""
        wanted = set(classes)
        reasons = [source for c in sorted(wanted) for source in self.fixed.get(c, [])]
        reasons += [lock.reason for lock in self.locks if wanted & set(lock.classes.tolist())]
        return list(dict.fromkeys(reasons))

    def layers_with(self, table: dict[str, LayerChannels], classes: torch.Tensor) -> list[str]:
        """Names of the layers in ``table`` that have an index in any of ``classes`` (bool per class)."""
        return [name for name, layer in table.items() if classes[layer.classes].any()]


def build_channel_graph(model: nn.Module, input_shape: Sequence[int]) -> ChannelGraph:
    """Trace ``model`` with torch.fx and run it on zeros of ``(2, *input_shape)`` to map every channel.

    Batch 2 (not 1) so that a reshape mixing batch and channels cannot pass for a flatten. The model
    runs in eval mode under ``no_grad`` so BatchNorm statistics are not touched. The same pass counts MACs
    and weights per layer as Distiller does (``dense_counts``; zeroed weights count), thinning's "before".
    """
    tree = _tree_key(model, input_shape)
    known = _TWINS.get(tree) if tree is not None else None
    if known is not None:  # a copy of a network run before: not even traced
        _TWINS.move_to_end(tree)
        return known.graph_for(model)
    try:
        traced = fx.Tracer().trace(model)  # what fx.symbolic_trace records, without compiling a GraphModule
    except Exception as exc:  # fx raises many types (TraceError, TypeError, NotImplementedError, ...)
        raise ThinningError(
            f"Cannot trace {type(model).__name__} with torch.fx, so its channel dependencies are unknown: "
            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
            hint="Thinning needs a forward() without control flow that depends on tensor values.",
        ) from None
    twin = _twin_key(model, traced, input_shape)
    known = _TWINS.get(twin) if twin is not None else None
    if known is not None:
        _TWINS.move_to_end(twin)
        return known.graph_for(model)
    tracer = _ChannelTracer(model, traced)
    dummy = torch.zeros((2, *input_shape), device=_device_of(model))
    try:
        with LayerCounter(model, batch=2) as counter, eval_mode(model), torch.no_grad():
            tracer.run(dummy)
    except RuntimeError as exc:
        raise ThinningError(
            f"A traced forward pass of {type(model).__name__} on input (2, {', '.join(map(str, input_shape))}) "
            f"failed: {str(exc).splitlines()[0]}",
            hint="Pass the input_shape=(C, H, W) the model was built for.",
        ) from None
    graph = tracer.finish()
    graph.dense_counts = counter.layers if counter.per_image else None
    graph.shape_only = twin is not None
    if twin is not None:
        template = _Template.of(graph, model)
        for key in (twin, tree) if tree is not None else (twin,):
            _TWINS[key] = template
        while len(_TWINS) > 2 * TWINS_KEPT:
            _TWINS.popitem(last=False)
    return graph


# Which table of a ChannelGraph a structure pruner's dimension lives in: zeroed filters are removed from the
# producers, zeroed input channels from the consumers.
STRUCTURE_TABLES = {"filters": "producers", "channels": "consumers"}

_GRAPHS: weakref.WeakKeyDictionary[nn.Module, tuple[Hashable, ChannelGraph]] = weakref.WeakKeyDictionary()


def channel_graph(model: nn.Module, input_shape: Sequence[int]) -> ChannelGraph:
    """:func:`build_channel_graph` of the (unwrapped) model, reused until its architecture changes.

    Why cached: the schedule builder, every pruning round of an ``auto_group`` pruner and the thinning that
    follows ask which channels are coupled, and the trace is most of what a one-shot prune + thin costs.
    Coupling only changes when the architecture does: the key is the input shape, every submodule (by name
    and identity, so a replaced layer is seen even at the same shapes) and every parameter's shape, which
    thinning changes, so a thinned model is traced again. The graph is built with one intra-op thread: on
    small dummy batches more threads spin-wait instead of working (resnet56 measured 2.3 s with 2 busy
    cores, 0.18 s with one).
    """
    while isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        model = model.module
    key = (tuple(input_shape), tuple((name, m) for name, m in model.named_modules() if m is not model),
           tuple((name, tuple(p.shape)) for name, p in model.named_parameters()))
    cached = _GRAPHS.get(model)
    if cached is not None and cached[0] == key:
        return cached[1]
    with one_intra_op_thread():
        graph = build_channel_graph(model, input_shape)
    _GRAPHS[model] = (key, graph)
    return graph


@contextmanager
def one_intra_op_thread() -> Iterator[None]:
    """Tracing and thinning run batch 1-2 dummies: intra-op threads cost more than they save on them.

    Measured on 2 busy cores, thinning resnet56 took 0.3-10 s with 2 OpenMP threads (spin-waiting on a
    descheduled sibling) and 0.07-0.18 s with one. The previous setting is restored on exit.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def coupled_layers(table: Mapping[str, LayerChannels], names: Iterable[str] | None = None) -> list[list[str]]:
    """Groups of two or more layers of ``table`` that share a coupling class, in table order.

    Layers sharing any class must lose the same indices in thinning (e.g. every conv feeding one residual
    stream); sharing is transitive, so a group is a connected component. ``names`` restricts the layers
    considered: two of them are then joined only through classes they share themselves.
    """
    wanted = set(table) if names is None else set(names) & set(table)
    members = [name for name in table if name in wanted]
    if len(members) < 2:
        return []
    # Every layer is joined to the first layer (in table order) holding each of its classes.
    classes = [table[name].classes for name in members]
    flat = torch.cat(classes)
    owner = torch.repeat_interleave(torch.arange(len(members)), torch.tensor([c.numel() for c in classes]),
                                    output_size=flat.numel())
    first_owner = torch.full((int(flat.max()) + 1,), len(members), dtype=torch.long)
    first_owner.scatter_reduce_(0, flat, owner, reduce="amin")
    joined = owner * len(members) + first_owner[flat]  # the pair (layer, first holder) as one number
    parent = list(range(len(members)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for pair in joined.unique().tolist():
        a, b = divmod(pair, len(members))
        if a != b:
            parent[find(a)] = find(b)
    groups: dict[int, list[str]] = {}
    for i, name in enumerate(members):
        groups.setdefault(find(i), []).append(name)
    return [group for group in groups.values() if len(group) > 1]


def coupled_weight_groups(graph: ChannelGraph, dim: str, weights: Sequence[str]) -> list[tuple[str, ...]]:
    """``weights`` (canonical ``<layer>.weight`` names) grouped by coupling in ``dim`` (``filters``/``channels``).

    Every weight is in exactly one group, uncoupled weights alone, each group in the order of ``weights``.
    One 0/1 map can serve a group only if index i of every member is the same channel, which is what a
    residual add makes; members coupled in another order or size (e.g. through ``torch.cat``) raise.
    """
    table: dict[str, LayerChannels] = getattr(graph, STRUCTURE_TABLES[dim])
    layer_of = {w: w.removesuffix(".weight") for w in weights if w.endswith(".weight")}
    first_weight = {layer: f"{group[0]}.weight" for group in coupled_layers(table, layer_of.values())
                    for layer in group}
    groups: dict[str, list[str]] = {}  # keyed by the group's first weight
    for weight in weights:
        groups.setdefault(first_weight.get(layer_of.get(weight, ""), weight), []).append(weight)
    for members in groups.values():
        for other in members[1:]:
            if not torch.equal(table[layer_of[other]].classes, table[layer_of[members[0]]].classes):
                raise ThinningError(
                    f"{members[0]!r} and {other!r} are coupled, but their {dim} do not correspond index by index "
                    "(e.g. they are joined by torch.cat), so one map cannot serve both.",
                    hint="Prune these weights without auto_group (masks only, they cannot be thinned), or not "
                         "at all.")
    return [tuple(members) for members in groups.values()]


def _device_of(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def is_depthwise(conv: nn.Module) -> bool:
    """One filter per input channel: its filters follow the input channels, it never owns any."""
    return (isinstance(conv, nn.modules.conv._ConvNd) and conv.groups > 1
            and conv.groups == conv.in_channels == conv.out_channels)


_PASS_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish, nn.Sigmoid, nn.Tanh,
    nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Softplus, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d,
    nn.Dropout3d, nn.AlphaDropout, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d,
    nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d, nn.Upsample, nn.ZeroPad2d,
)
_PASS_FUNCTIONS = {
    F.relu, torch.relu, torch.relu_, F.relu6, F.leaky_relu, F.elu, F.gelu, F.silu, F.mish, F.hardswish,
    F.hardsigmoid, F.hardtanh, torch.sigmoid, F.sigmoid, torch.tanh, F.tanh, torch.clamp, F.max_pool1d,
    F.max_pool2d, F.max_pool3d, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d, F.adaptive_avg_pool1d,
    F.adaptive_avg_pool2d, F.adaptive_avg_pool3d, F.adaptive_max_pool1d, F.adaptive_max_pool2d,
    F.adaptive_max_pool3d, F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.interpolate, operator.neg,
}
_PASS_METHODS = {"relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "clamp", "clamp_", "contiguous", "clone",
                 "detach", "float", "half", "double", "to", "neg"}
_ELEMENTWISE_FUNCTIONS = {operator.add, operator.iadd, operator.sub, operator.isub, operator.mul, operator.imul,
                          operator.truediv, operator.itruediv, torch.add, torch.sub, torch.mul, torch.div}
_ELEMENTWISE_METHODS = {"add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_"}
_RESHAPE_FUNCTIONS = {torch.flatten, torch.reshape}
_RESHAPE_METHODS = {"view", "reshape", "flatten"}
_REDUCE_FUNCTIONS = {torch.mean, torch.sum, torch.amax, torch.amin}
_REDUCE_METHODS = {"mean", "sum", "amax", "amin"}
_CAT_FUNCTIONS = {torch.cat, torch.concat}
_SHAPE_METHODS = {"size", "dim", "numel"}
_SHAPE_ATTRIBUTES = {"shape", "ndim", "device", "dtype"}


class _ChannelTracer(fx.Interpreter):
    """Runs the traced graph once and, beside each real result, computes the layout of its dim 1."""

    def __init__(self, model: nn.Module, graph: fx.Graph) -> None:
        super().__init__(model, graph=graph)
        self.parent: list[int] = []  # union-find over elements
        self.fixed_source: dict[int, str] = {}  # element -> what made it, for elements nothing can remove
        self.layouts: dict[fx.Node, Layout] = {}
        self.shapes: dict[fx.Node, tuple[int, ...]] = {}
        self.producers: dict[str, Layout] = {}
        self.consumers: dict[str, Layout] = {}
        self.followers: dict[str, Layout] = {}
        self.locks: list[tuple[str, Layout]] = []
        self.modules: dict[str, nn.Module] = {}

    # ----- union-find over elements
    def fresh(self, count: int, fixed_source: str | None = None) -> Layout:
        start = len(self.parent)
        ids = list(range(start, start + count))
        self.parent.extend(ids)
        if fixed_source is not None:
            self.fixed_source.update(dict.fromkeys(ids, fixed_source))
        return ids

    def find(self, element: int) -> int:
        parent = self.parent
        while parent[element] != element:
            parent[element] = parent[parent[element]]
            element = parent[element]
        return element

    def unite(self, a: Layout, b: Layout) -> None:
        for x, y in zip(a, b, strict=True):
            rx, ry = self.find(x), self.find(y)
            if rx != ry:
                self.parent[ry] = rx

    # ----- the interpreter hooks
    def run_node(self, n: fx.Node) -> Any:
        # Interpreter.run_node without what only matters to passes that build graphs (a context manager per
        # node that hands its metadata to nodes created while it runs, and a debug log call per node).
        args, kwargs = self.fetch_args_kwargs_from_env(n)
        result = getattr(self, n.op)(n.target, args, kwargs)
        if isinstance(result, torch.Tensor):
            self.shapes[n] = tuple(result.shape)
        layout = self._layout(n, result)
        if layout is not None:
            self.layouts[n] = layout
        return result

    def call_module(self, target: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return self.module_at(target)(*args, **kwargs)

    def module_at(self, target: Any) -> Any:
        """The submodule a ``call_module`` node names (a dict look-up instead of a walk down the attributes)."""
        found = self.submodules.get(target)
        return found if found is not None else self.fetch_attr(target)

    def _layout(self, n: fx.Node, result: Any) -> Layout | None:
        if n.op == "output":
            self._lock_inputs(n, "the model output")
            return None
        if not isinstance(result, torch.Tensor) or result.dim() < 2:
            if not _is_shape_query(n):
                self._lock_inputs(n, f"{self._describe(n)}, whose result has no channel dimension")
            return None
        if n.op in ("placeholder", "get_attr"):
            return self.fresh(result.shape[1], f"{'model input' if n.op == 'placeholder' else 'tensor'} {n.target!r}")
        if n.op == "call_module":
            return self._module_layout(n, self.module_at(n.target), result)
        return self._function_layout(n, result)

    def _module_layout(self, n: fx.Node, m: nn.Module, result: torch.Tensor) -> Layout:
        name = normalize_module_name(str(n.target))
        x = self._input(n)
        if x is None:
            return self._opaque(n, result)
        if isinstance(m, nn.modules.conv._ConvNd) and not m.transposed:
            return self._conv_layout(n, name, m, x, result)
        if isinstance(m, nn.Linear):
            if len(self.shapes[n.args[0]]) != 2:  # features are not dim 1
                return self._opaque(n, result)
            self._record_input(self.consumers, name, m, x)
            return self._produced(name, m.out_features)
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            self._record_input(self.followers, name, m, x)
            return x
        if isinstance(m, _PASS_MODULES):
            return x
        if isinstance(m, nn.Flatten):
            return self._reshaped(n, x, result)
        return self._opaque(n, result)

    def _conv_layout(self, n: fx.Node, name: str, conv: nn.modules.conv._ConvNd, x: Layout,
                     result: torch.Tensor) -> Layout:
        if conv.groups == 1:
            self._record_input(self.consumers, name, conv, x)
            return self._produced(name, conv.out_channels)
        if is_depthwise(conv):
            self._record_input(self.followers, name, conv, x)
            return x
        return self._opaque(n, result, f"grouped conv {name!r} (groups={conv.groups}; only groups=1 or depthwise "
                                       "convs can be thinned)")

    def _function_layout(self, n: fx.Node, result: torch.Tensor) -> Layout:
        target, method = n.target, n.op == "call_method"
        if target in _CAT_FUNCTIONS and not method:
            return self._cat(n, result)
        if (target in _ELEMENTWISE_METHODS) if method else (target in _ELEMENTWISE_FUNCTIONS):
            return self._elementwise(n, result)
        x = self._input(n)
        if x is None:
            return self._opaque(n, result)
        if (target in _PASS_METHODS) if method else (target in _PASS_FUNCTIONS):
            return x
        if (target in _RESHAPE_METHODS) if method else (target in _RESHAPE_FUNCTIONS):
            return self._reshaped(n, x, result)
        reduces = (target in _REDUCE_METHODS) if method else (target in _REDUCE_FUNCTIONS)
        if reduces and _keeps_channels(n, len(self.shapes[n.all_input_nodes[0]])):
            return x
        return self._opaque(n, result)

    def _cat(self, n: fx.Node, result: torch.Tensor) -> Layout:
        tensors = n.args[0] if n.args else n.kwargs.get("tensors", ())
        dim = n.args[1] if len(n.args) > 1 else n.kwargs.get("dim", 0)
        parts = [self.layouts.get(t) if isinstance(t, fx.Node) else None for t in tensors]
        if any(p is None for p in parts):
            return self._opaque(n, result)
        if dim % result.dim() == 1:  # channel offsets: producer k occupies [sum(sizes[:k]), sum(sizes[:k+1]))
            return [element for part in parts for element in part]
        for part in parts[1:]:
            self.unite(parts[0], part)
        return parts[0]

    def _elementwise(self, n: fx.Node, result: torch.Tensor) -> Layout:
        """Operands of an elementwise op share each channel index: a residual add couples its producers."""
        coupled: list[Layout] = []
        for operand in n.all_input_nodes:
            layout, shape = self.layouts.get(operand), self.shapes.get(operand)
            if layout is None:
                continue
            if len(shape) == result.dim() and shape[1] == result.shape[1]:
                coupled.append(layout)
            elif len(shape) != result.dim() or shape[1] != 1:  # anything but a broadcast over channels
                self.locks.append((f"{self._describe(n)}, which broadcasts channels", layout))
        for layout in coupled[1:]:
            self.unite(coupled[0], layout)
        return coupled[0] if coupled else self._opaque(n, result)

    def _reshaped(self, n: fx.Node, x: Layout, result: torch.Tensor) -> Layout:
        """Flatten-like reshapes: (N, C, H, W) -> (N, C·H·W) maps channel c to features [c·H·W, (c+1)·H·W)."""
        before, after = self.shapes[n.all_input_nodes[0]], tuple(result.shape)
        if after[:2] == before[:2]:
            return x
        if len(after) == 2 and after[0] == before[0] and after[1] == math.prod(before[1:]):
            spatial = math.prod(before[2:])
            return [element for element in x for _ in range(spatial)]
        return self._opaque(n, result)

    def _opaque(self, n: fx.Node, result: torch.Tensor, what: str | None = None) -> Layout:
        """An op we cannot see through: its inputs are locked, its output channels are new and fixed."""
        what = what or self._describe(n)
        self._lock_inputs(n, what)
        return self.fresh(result.shape[1], what)

    def _describe(self, n: fx.Node) -> str:
        if n.op == "call_module":
            return f"module {normalize_module_name(str(n.target))!r} ({type(self.module_at(n.target)).__name__})"
        kind = "method" if n.op == "call_method" else "operation"
        return f"{kind} {getattr(n.target, '__name__', str(n.target))!r} (graph node {n.name!r})"

    def _input(self, n: fx.Node) -> Layout | None:
        first = n.args[0] if n.args else None
        return self.layouts.get(first) if isinstance(first, fx.Node) else None

    def _lock_inputs(self, n: fx.Node, what: str) -> None:
        for operand in n.all_input_nodes:
            if operand in self.layouts:
                self.locks.append((what, self.layouts[operand]))

    def _record_input(self, table: dict[str, Layout], name: str, module: nn.Module, layout: Layout) -> None:
        """A layer called more than once reads the same weight slice each time, so its inputs are coupled."""
        self.modules[name] = module
        if name in table:
            self.unite(table[name], layout)
        else:
            table[name] = layout

    def _produced(self, name: str, count: int) -> Layout:
        """A layer's output channels are the same elements on every call."""
        if name not in self.producers:
            self.producers[name] = self.fresh(count)
        return self.producers[name]

    # ----- result
    def finish(self) -> ChannelGraph:
        element_class, num_classes = _number_sets(torch.tensor(self.parent, dtype=torch.long))
        class_list = element_class.tolist()

        def classes(layout: Layout) -> torch.Tensor:
            return element_class[torch.tensor(layout, dtype=torch.long)]

        def table(layouts: dict[str, Layout]) -> dict[str, LayerChannels]:
            return {name: LayerChannels(name, self.modules[name], classes(layout))
                    for name, layout in layouts.items()}

        fixed: dict[int, list[str]] = {}
        for element, source in self.fixed_source.items():
            sources = fixed.setdefault(class_list[element], [])
            if source not in sources:
                sources.append(source)
        return ChannelGraph(
            num_classes=num_classes, producers=table(self.producers), consumers=table(self.consumers),
            followers=table(self.followers), fixed=fixed,
            locks=[Lock(reason, classes(layout)) for reason, layout in self.locks],
        )


def _number_sets(parent: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Class of every element of a union-find forest (``parent``), classes numbered by first element, and
    how many there are. Pointer jumping with whole-tensor steps instead of a ``find`` per element."""
    if parent.numel() == 0:
        return parent, 0
    while True:
        grandparent = parent[parent]
        if torch.equal(grandparent, parent):
            break
        parent = grandparent
    roots, root_index = torch.unique(parent, return_inverse=True)
    first = torch.full((roots.numel(),), parent.numel(), dtype=torch.long)
    first.scatter_reduce_(0, root_index, torch.arange(parent.numel()), reduce="amin")
    number = torch.empty_like(first)
    number[torch.argsort(first)] = torch.arange(roots.numel())
    return number[root_index], roots.numel()


def _is_shape_query(n: fx.Node) -> bool:
    """Reading a size is not reading channels (``x.view(x.size(0), -1)`` stays thinnable)."""
    if n.op == "call_method":
        return n.target in _SHAPE_METHODS
    return n.op == "call_function" and n.target is getattr and n.args[1] in _SHAPE_ATTRIBUTES


def _keeps_channels(n: fx.Node, ndim: int) -> bool:
    """A reduction over spatial dims only (``x.mean((2, 3))``) keeps the channel layout."""
    dim = n.args[1] if len(n.args) > 1 else n.kwargs.get("dim")
    if dim is None:
        return False
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    return all(isinstance(d, int) and d % ndim >= 2 for d in dims)


# ------------------------------------------------------------------------------------------------ twins
# A search prunes many copies of one network: each traces to the same graph, and running that graph again on
# zeros (most of the cost of a graph) can only give the same channel graph again, because every operation in it
# has a result shape that depends on shapes alone and every module in it is a plain torch.nn layer whose
# behaviour is its attributes. Such a run is kept (without its module objects) under a key that holds all of
# that — the traced nodes with their arguments, each called layer's class, attributes, tensor shapes, dtypes and
# devices, the input shape and dtype — and a model with the same key gets the graph bound to its own modules.
# Anything else in a graph (another function, a layer of another class or with hooks) gives no key: that model
# is run as before.
#
# A copy need not even be traced (the trace is most of what is left of a copy's cost): what decides its trace
# is its modules' classes and attributes and what their forward code reads besides them. Once a network's run is
# kept, it is also kept under a *tree key* of exactly that — every module's class, plain attributes (the
# training flag among them), tensor shapes, dtypes and devices and child names; for every module that is not a
# plain layer, the forward function and what its code (and the class's methods it calls) reads from the class
# and the module's globals: plain values by value, anything else by identity. A model with the same tree key
# gets the kept graph without a trace. What is not in the key: the insides of a function defined elsewhere that
# a forward calls (by identity only), and objects read by identity whose state changed in between.
TWINS_KEPT = 8
_TWINS: OrderedDict[Hashable, _Template] = OrderedDict()
_COUNTS: OrderedDict[Hashable, tuple[LayerSummary, ...]] = OrderedDict()  # tree key -> a verified pass's counts
_SHAPE_ONLY_MODULES = frozenset({
    *_PASS_MODULES, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
    nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.Flatten, nn.ConstantPad1d, nn.ConstantPad2d,
    nn.ConstantPad3d, nn.ReflectionPad1d, nn.ReflectionPad2d, nn.ReplicationPad1d, nn.ReplicationPad2d,
})
_SHAPE_ONLY_FUNCTIONS = frozenset({*_PASS_FUNCTIONS, *_ELEMENTWISE_FUNCTIONS, *_RESHAPE_FUNCTIONS,
                                   *_REDUCE_FUNCTIONS, *_CAT_FUNCTIONS, getattr})
_SHAPE_ONLY_METHODS = frozenset({*_PASS_METHODS, *_ELEMENTWISE_METHODS, *_RESHAPE_METHODS, *_REDUCE_METHODS,
                                 *_SHAPE_METHODS})
_PLAIN = frozenset({int, float, bool, str, type(None)})
_HOOK_TABLES = frozenset({dict, OrderedDict, set})  # a module's tables: its tensors, children, hooks
_SIMPLE = (int, float, bool, str, type(None), torch.dtype, torch.device, torch.memory_format, torch.layout)


class _NoKey(Exception):
    """Something in the model or its graph that a twin key cannot hold."""


def clear_twins() -> None:
    """Forget every kept run and count (for measuring the first copy of a network, and for tests)."""
    _TWINS.clear()
    _COUNTS.clear()


def verified_counts(model: nn.Module, input_shape: Sequence[int],
                    count: Callable[[], list[LayerSummary]]) -> list[LayerSummary]:
    """``count()`` (a forward pass that counts, e.g. thinning's check of its result), or what it gave for a model
    with the same tree key before. Only for a model whose channel graph is ``shape_only``: thinned, it is still
    one whose forward depends on shapes alone, so a twin's pass can neither fail nor count differently."""
    key = _tree_key(model, input_shape)
    if key is not None and key in _COUNTS:
        _COUNTS.move_to_end(key)
        return list(_COUNTS[key])
    layers = count()
    if key is not None:
        _COUNTS[key] = tuple(layers)
        while len(_COUNTS) > TWINS_KEPT:
            _COUNTS.popitem(last=False)
    return layers


@dataclass(frozen=True)
class _Template:
    """A built ChannelGraph with module paths instead of modules: what the same run gives any twin."""

    num_classes: int
    tables: tuple[tuple[str, tuple[tuple[str, str, torch.Tensor], ...]], ...]  # table: (name, path, classes)
    fixed: tuple[tuple[int, tuple[str, ...]], ...]
    locks: tuple[Lock, ...]
    dense_counts: tuple[LayerSummary, ...] | None

    @classmethod
    def of(cls, graph: ChannelGraph, model: nn.Module) -> _Template:
        path = {m: name for name, m in model.named_modules()}
        return cls(graph.num_classes,
                   tuple((table, tuple((name, path[layer.module], layer.classes)
                                       for name, layer in getattr(graph, table).items()))
                         for table in ("producers", "consumers", "followers")),
                   tuple((c, tuple(sources)) for c, sources in graph.fixed.items()), tuple(graph.locks),
                   None if graph.dense_counts is None else tuple(graph.dense_counts))

    def graph_for(self, model: nn.Module) -> ChannelGraph:
        modules = dict(model.named_modules())
        tables = {table: {name: LayerChannels(name, modules[path], classes) for name, path, classes in layers}
                  for table, layers in self.tables}
        return ChannelGraph(self.num_classes, fixed={c: list(sources) for c, sources in self.fixed},
                            locks=list(self.locks),
                            dense_counts=None if self.dense_counts is None else list(self.dense_counts),
                            shape_only=True, **tables)


def _twin_key(model: nn.Module, graph: fx.Graph, input_shape: Sequence[int]) -> Hashable | None:
    """What decides the run of ``graph`` on zeros of ``input_shape`` (see above), or None."""
    if any(getattr(torch.nn.modules.module, hooks, True) for hooks in _GLOBAL_HOOKS):
        return None
    modules = dict(model.named_modules())
    index: dict[fx.Node, int] = {}
    nodes = []
    try:
        for i, n in enumerate(graph.nodes):
            index[n] = i
            if n.op == "call_module":
                layer = modules.get(n.target)
                target: Any = (n.target, _layer_key(model.get_submodule(n.target) if layer is None else layer))
            elif n.op == "get_attr":
                target = (n.target, _value_key(_attribute(model, n.target), index))
            elif n.op in ("placeholder", "output") or n.target in (
                    _SHAPE_ONLY_METHODS if n.op == "call_method" else _SHAPE_ONLY_FUNCTIONS):
                target = n.target
            else:
                return None
            nodes.append((n.op, n.name, target, _value_key(n.args, index), _value_key(n.kwargs, index)))
    except (_NoKey, AttributeError, KeyError, TypeError):
        return None
    return tuple(input_shape), torch.get_default_dtype(), tuple(nodes)


_GLOBAL_HOOKS = ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_forward_hooks_always_called")


def _tree_key(model: nn.Module, input_shape: Sequence[int]) -> Hashable | None:
    """What decides the trace of ``model`` without tracing it (see above), or None."""
    if any(getattr(torch.nn.modules.module, hooks, True) for hooks in _GLOBAL_HOOKS):
        return None
    reads: dict[type, tuple[Any, ...]] = {}  # per class, read once per key: the blocks of a ResNet share theirs
    try:
        parts = tuple((name, _layer_key(m) if type(m) in _SHAPE_ONLY_MODULES else _container_key(m, reads))
                      for name, m in model.named_modules())
    except (_NoKey, TypeError):
        return None
    return "tree", tuple(input_shape), torch.get_default_dtype(), parts


def _container_key(m: nn.Module, reads: dict[type, tuple[Any, ...]]) -> tuple[Any, ...]:
    """A module whose forward is not a plain layer's: its class, attributes and what its code reads."""
    kind = type(m)
    if kind not in reads:
        reads[kind] = tuple((name, _read_key(value)) for name, value in _code_reads(kind))
    return kind, _state_key(m, children=True), reads[kind]


def _code_reads(kind: type) -> list[tuple[str, Any]]:
    """Names read by ``kind.forward`` and the methods of ``kind`` it calls, resolved on the class, then in the
    function's globals (builtins and instance attributes are not looked up here)."""
    reads: list[tuple[str, Any]] = [("forward", kind.forward)]
    seen: set[Any] = set()
    todo = [kind.forward]
    while todo:
        fn = todo.pop()
        code = getattr(fn, "__code__", None)
        if code is None or code in seen:
            continue
        seen.add(code)
        for name in _names(code):
            for source in (*(vars(c) for c in kind.__mro__), fn.__globals__):
                if name in source:
                    value = source[name]
                    reads.append((name, value))
                    if callable(value) and getattr(value, "__module__", None) == kind.__module__:
                        todo.append(value)  # a helper of the same module (a _forward_impl): its reads too
                    break
    return reads


@functools.lru_cache(maxsize=256)
def _names(code: types.CodeType) -> tuple[str, ...]:
    """Global and attribute names a code object and its nested ones (comprehensions, lambdas) use."""
    nested = (_names(c) for c in code.co_consts if isinstance(c, types.CodeType))
    return tuple(dict.fromkeys((*code.co_names, *itertools.chain.from_iterable(nested))))


def _read_key(value: Any) -> Any:
    return (type(value), value) if type(value) in _PLAIN else _Same(value)


class _Same:
    """Equal only to the very same object, which it keeps alive (so its id cannot be reused by another)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Same) and other.value is self.value

    def __hash__(self) -> int:
        return id(self.value)


def _attribute(model: nn.Module, target: str) -> Any:
    value: Any = model
    for atom in target.split("."):
        value = getattr(value, atom)
    return value


def _layer_key(m: nn.Module) -> tuple[Any, ...]:
    """A plain torch.nn layer's class and attributes (hooks make it no twin: they may change a result)."""
    if type(m) not in _SHAPE_ONLY_MODULES:
        raise _NoKey
    return type(m), _state_key(m, children=False)


def _state_key(m: nn.Module, *, children: bool) -> tuple[Any, ...]:
    """A module's own attributes: plain values, its tensors' shapes, dtypes and devices, and (``children``) the
    names of its submodules. Hooks, or submodules where ``children`` is false, give no key."""
    state = []
    for attr, value in vars(m).items():
        kind = type(value)
        if kind in _PLAIN:
            state.append((attr, kind, value))
        elif kind in _HOOK_TABLES:  # dicts and sets: hooks and bookkeeping, tensors, submodules
            if attr == "_parameters" or attr == "_buffers":
                state.append((attr, tuple((name, None if t is None else (t.shape, t.dtype, t.device))
                                          for name, t in value.items())))
            elif children and attr == "_modules":
                state.append((attr, tuple((name, child is None) for name, child in value.items())))
            elif value and attr != "_non_persistent_buffers_set":
                raise _NoKey
        else:  # anything else: an instance-level forward, a helper object, ... gives no key (_value_key raises)
            state.append((attr, _value_key(value, {})))
    return tuple(state)


def _value_key(value: Any, index: dict[fx.Node, int]) -> Any:
    """A hashable stand-in that is equal only for values a run cannot tell apart (types kept: 1, True, 1.0)."""
    kind = type(value)
    if kind is int or (kind is tuple and all(type(v) is int for v in value)):  # most of them: sizes, strides
        return kind, value
    if isinstance(value, fx.Node):
        return "node", index[value]
    if isinstance(value, torch.Tensor):
        return "tensor", tuple(value.shape), value.dtype, value.device
    if isinstance(value, _SIMPLE):
        return type(value), value
    if isinstance(value, (tuple, list)):
        return type(value), tuple(_value_key(v, index) for v in value)
    if isinstance(value, dict):
        return dict, tuple((k, _value_key(v, index)) for k, v in value.items())
    if isinstance(value, slice):
        return slice, _value_key((value.start, value.stop, value.step), index)
    if value is Ellipsis:
        return "...", None
    raise _NoKey
