"""What a latency search may change: one width per *unit*, and which layers each width reaches.

A unit is a set of convs whose filters are the same channels — one conv on its own, or every conv feeding
one residual stream (found from the traced channel graph, :mod:`edgeprune.pruning.dependency`) — so it has
one width: a coupled group can only lose filters together. Convs whose channels reach something that cannot
be thinned (the model output, a grouped conv, an op the trace does not understand) are not units.

Each conv and Linear layer is a *kernel* whose cost depends on two widths: the units it reads (its input
channels) and the unit it belongs to (its filters). :meth:`SearchSpace.kernels` gives every kernel's exact
shape for a width configuration, which is what the latency table is looked up with.

Candidate widths lie on a grid: ``steps`` equal fractions of the dense width (1/8, 2/8, ... 8/8 by default),
rounded to a multiple of ``align`` channels (8 by default) and never below ``min_fraction``. Why aligned: CPU
runtimes keep activations in channel blocks of the SIMD width (OpenVINO's blocked layouts: 8 channels for
AVX2 f32, 16 for AVX-512), so a width off the block pays for the whole block, and a network mixing
blocked and unblocked widths pays layout conversions between layers that no per-layer table sees — measured
on ResNet-20, networks of random unaligned widths ran as slowly as the dense one. The latency table is
measured exactly at the grid's widths, so no width the search can pick is ever interpolated.
"""

from __future__ import annotations

import copy
import functools
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from edgeprune.analysis.suggest import FilterPrunerSpec, one_shot_filter_schedule
from edgeprune.errors import ConfigError
from edgeprune.models.naming import normalize_module_name
from edgeprune.models.summary import input_shape_of, model_summary
from edgeprune.pruning.dependency import ChannelGraph, channel_graph, coupled_layers, is_depthwise
from edgeprune.pruning.ranking import prune_count
from edgeprune.schedule.config import parse_schedule
from edgeprune.schedule.scheduler import CompressionScheduler

Widths = dict[str, int]  # unit name -> kept filters


@dataclass(frozen=True)
class Unit:
    """Convs that keep the same filters; ``name`` is the first member's layer name."""

    name: str
    members: tuple[str, ...]
    width: int  # dense filter count
    options: tuple[int, ...]  # candidate widths, ascending, the dense width last


@dataclass(frozen=True)
class Kernel:
    """One conv (with its BN and activation) or Linear layer at given widths: what a table entry measures."""

    op: str  # "conv", "dwconv" or "linear"
    cin: int
    cout: int
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    hw: tuple[int, int] = (1, 1)  # input height and width

    @property
    def key(self) -> str:
        """A stable text key for the table file."""
        k, s, p, h = self.kernel, self.stride, self.padding, self.hw
        return (f"{self.op} {self.cin}->{self.cout} k{k[0]}x{k[1]} s{s[0]}x{s[1]} p{p[0]}x{p[1]} "
                f"in{h[0]}x{h[1]}")


@dataclass
class _Reads:
    """How many input channels a layer reads from each unit, and from channels no unit owns."""

    per_unit: dict[str, int] = field(default_factory=dict)
    fixed: int = 0


@dataclass
class _Layer:
    name: str
    module: nn.Module
    hw: tuple[int, int]
    reads: _Reads
    unit: str | None  # the unit its filters belong to (None: fixed output width)
    per_position: int = 1  # input features per channel (H*W for a Linear after flatten)


@dataclass
class SearchSpace:
    """The units of one model, their grids, and its kernels; ``input_shape`` is (C, H, W)."""

    units: list[Unit]
    input_shape: tuple[int, ...]
    excluded: dict[str, str]  # conv layer -> why it is not searched
    _layers: list[_Layer] = field(repr=False, default_factory=list)

    @property
    def dense(self) -> Widths:
        return {u.name: u.width for u in self.units}

    @property
    def narrowest(self) -> Widths:
        return {u.name: u.options[0] for u in self.units}

    @functools.cached_property
    def _by_name(self) -> dict[str, Unit]:
        return {u.name: u for u in self.units}

    def unit(self, name: str) -> Unit:
        """The unit called ``name`` (KeyError if none): looked up on every kernel of every prediction."""
        return self._by_name[name]

    def check(self, widths: Mapping[str, int]) -> None:
        """Refuse a configuration naming unknown units or widths off a unit's grid."""
        for name, width in widths.items():
            try:
                unit = self.unit(name)
            except KeyError:
                raise ConfigError(f"{name!r} is not a searchable unit of this model.",
                                  hint="Units: " + ", ".join(u.name for u in self.units)) from None
            if width not in unit.options:
                raise ConfigError(f"width {width} of unit {name!r} is not on its grid {list(unit.options)}.")

    def kernels(self, widths: Mapping[str, int], only: str | None = None) -> list[tuple[str, Kernel]]:
        """Every conv/Linear layer's kernel at ``widths`` (units not named keep their dense width)."""
        full = {**self.dense, **widths}
        out = []
        for layer in self._layers:
            if only is not None and layer.name != only:
                continue
            cin = layer.reads.fixed + sum(n * full[u] // self.unit(u).width for u, n in layer.reads.per_unit.items())
            m = layer.module
            if isinstance(m, nn.Linear):
                cout = full[layer.unit] if layer.unit else m.out_features
                out.append((layer.name, Kernel("linear", cin, cout)))
                continue
            assert isinstance(m, nn.Conv2d)
            dw = is_depthwise(m)
            cout = cin if dw else (full[layer.unit] if layer.unit else m.out_channels)
            out.append((layer.name, Kernel("dwconv" if dw else "conv", cin, cout, _pair(m.kernel_size),
                                           _pair(m.stride), _pair(m.padding), layer.hw)))
        return out


    def all_kernels(self) -> list[Kernel]:
        """Every kernel any configuration on the grid can have (what a complete latency table holds)."""
        seen: dict[str, Kernel] = {}
        for layer in self._layers:
            varying = sorted({*layer.reads.per_unit, *([layer.unit] if layer.unit else [])})
            for combo in itertools.product(*(self.unit(u).options for u in varying)):
                for _, kernel in self.kernels(dict(zip(varying, combo, strict=True)), only=layer.name):
                    seen.setdefault(kernel.key, kernel)
        return list(seen.values())


def _pair(v: int | tuple[int, ...] | str) -> tuple[int, int]:
    if isinstance(v, str):
        raise ConfigError(f"padding={v!r} convs are not supported by the latency search.")
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[-1]))


def width_grid(width: int, steps: int, min_fraction: float, align: int = 1) -> tuple[int, ...]:
    """``steps`` equal fractions of ``width`` in whole channels, each rounded to a multiple of ``align``, at least
    ``min_fraction`` of it and at least ``align`` (the dense width is always an option, aligned or not)."""
    floor = max(1, round(width * min_fraction))
    options = {width}
    for k in range(1, steps + 1):
        w = max(align, align * round(width * k / steps / align))
        if floor <= w <= width:
            options.add(w)
    return tuple(sorted(options))


def build_space(model: nn.Module, *, steps: int = 8, min_fraction: float = 0.25, align: int = 8,
                input_shape: tuple[int, ...] | None = None) -> SearchSpace:
    """Trace ``model`` and find its units, their width grids and every kernel's inputs."""
    if steps < 1 or not 0.0 < min_fraction <= 1.0 or align < 1:
        raise ConfigError(f"--width-steps and --align must be >= 1 and --min-fraction in (0, 1], got {steps}, "
                          f"{align} and {min_fraction}.")
    shape = input_shape_of(model, input_shape)
    graph = channel_graph(model, shape)
    blocked = graph.blocked()
    convs = [n for n, lc in graph.producers.items() if isinstance(lc.module, nn.Conv2d)]
    grouped = {name for group in coupled_layers(graph.producers, convs) for name in group}
    groups = coupled_layers(graph.producers, convs) + [[n] for n in convs if n not in grouped]
    order = {n: i for i, n in enumerate(convs)}
    units, excluded, owner = [], {}, {}
    for group in sorted(groups, key=lambda g: min(order[n] for n in g)):
        classes = graph.producers[group[0]].classes
        if blocked[classes].any():
            why = "; ".join(graph.blocked_reasons(torch.nonzero(blocked[classes]).flatten().unique().tolist()))
            excluded.update({n: f"its channels reach {why}" for n in group})
            continue
        width = int(classes.numel())
        unit = Unit(group[0], tuple(group), width, width_grid(width, steps, min_fraction, align))
        units.append(unit)
        for c in classes.tolist():
            owner[c] = unit.name
    return SearchSpace(units, shape, excluded, _kernel_layers(model, graph, owner, shape))


def _kernel_layers(model: nn.Module, graph: ChannelGraph, owner: dict[int, str],
                   shape: tuple[int, ...]) -> list[_Layer]:
    ifm = {row.name: row.ifm for row in model_summary(model, shape).layers}
    layers = []
    for name, m in model.named_modules():
        name = normalize_module_name(name)
        if not isinstance(m, (nn.Conv2d, nn.Linear)) or name not in ifm:
            continue
        reads = _Reads()
        source = graph.consumers.get(name) or graph.followers.get(name)
        classes = source.classes.tolist() if source is not None else []
        for c in classes:
            if c in owner:
                reads.per_unit[owner[c]] = reads.per_unit.get(owner[c], 0) + 1
            else:
                reads.fixed += 1
        if not classes:  # a layer the graph does not map: its input width never changes
            reads.fixed = m.in_channels if isinstance(m, nn.Conv2d) else m.in_features
        produced = graph.producers.get(name)
        unit = owner.get(int(produced.classes[0])) if produced is not None else None
        dims = ifm[name]
        hw = (int(dims[2]), int(dims[3])) if len(dims) == 4 else (1, 1)
        layers.append(_Layer(name, m, hw, reads, unit))
    return layers


# ------------------------------------------------------------------------------------------ schedule
def render_widths_schedule(space: SearchSpace, widths: Mapping[str, int], arch: str,
                           header: Sequence[str] = ()) -> str:
    """A plain Distiller schedule that thins the model to ``widths``: one L1-ranked filter pruner per pruned
    unit (a coupled unit ranked as one, ``auto_group: true``), a ``FilterRemover``, all at epoch 0."""
    space.check(widths)
    pruners = [FilterPrunerSpec("width_" + unit.name.replace(".", "_"),
                                _sparsity_for(unit.width, unit.width - widths[unit.name]),
                                [f"{m}.weight" for m in unit.members],
                                (("auto_group", "true"),) if len(unit.members) > 1 else ())
               for unit in space.units if widths.get(unit.name, unit.width) != unit.width]
    return one_shot_filter_schedule(pruners, arch, None, header)


def _sparsity_for(n: int, pruned: int) -> float:
    """The shortest decimal fraction for which Distiller's count prunes exactly ``pruned`` of ``n``."""
    for digits in range(2, 12):
        short = round(pruned / n, digits)
        if prune_count(n, short) == pruned:
            return short
    for candidate in (pruned / n, (pruned + 0.5) / n):
        if prune_count(n, candidate) == pruned:
            return candidate
    raise ConfigError(f"no sparsity prunes exactly {pruned} of {n} filters")  # unreachable for 0 < pruned < n


def thinned(model: nn.Module, schedule_text: str) -> nn.Module:
    """A thinned copy of ``model``: the schedule's epoch 0 (prune + FilterRemover), as ``edgeprune prune`` runs it."""
    thin = copy.deepcopy(model)
    CompressionScheduler(thin, parse_schedule(schedule_text, "<search widths>")).apply_epoch_zero()
    return thin
