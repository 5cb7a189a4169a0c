"""A diagram of the network (``edgeprune show graph``), drawn with matplotlib from the torch.fx graph.

Distiller drew ``--summary=png`` with graphviz, which is not always installed; here the traced graph is laid
out by hand. One box per conv / linear / add / pooling / unknown op, labelled with the weight name a schedule's
``weights:`` list uses (``layer2.0.downsample.0.weight``) so users can copy it; BatchNorm, activations,
dropout and flatten are folded into the box before them to keep the picture to the layers that matter.

Layout: a box's row is one more than its deepest input's; within a row a box takes its first input's
column when it is free, so the main path runs straight down and a projection shortcut (``downsample``) sits
beside it. Edges are orthogonal: an identity shortcut runs down a lane on the right of its column, a branch
leaves sideways and comes back into the side of the add. Weights a schedule prunes are highlighted with
the pruner and its sparsity.
"""

from __future__ import annotations

import copy
import operator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch, Patch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from edgeprune.analysis.plotting import picture_format, save_figure
from edgeprune.errors import ConfigError
from edgeprune.models.naming import normalize_module_name
from edgeprune.models.resolve import resolve_model
from edgeprune.models.summary import input_shape_of
from edgeprune.schedule.policies import PruningPolicy
from edgeprune.schedule.scheduler import CompressionScheduler

BOX_W, BOX_H, COL_W, ROW_H, LANE = 2.75, 0.5, 3.55, 0.7, 0.2  # inches: 1 data unit is 1 inch on the page
COLORS = {"weight": "#DCE6F2", "pruned": "#F8C9A0", "add": "#D5EDD5", "io": "#EEEEEE", "other": "#F4F4F4"}
SKIP = "#2E8B57"

_FOLDED_MODULES = (nn.modules.batchnorm._BatchNorm, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU,
                   nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.Tanh, nn.Dropout, nn.Dropout2d, nn.Identity,
                   nn.Flatten)
_FOLDED_FUNCTIONS = {torch.relu, torch.flatten, torch.nn.functional.relu, torch.nn.functional.dropout}
_FOLDED_METHODS = {"relu", "view", "flatten", "reshape", "contiguous"}
_ADDS = {operator.add, operator.iadd, torch.add}


@dataclass
class Box:
    """One drawn node: the fx nodes folded into it, its title and detail lines, where it is drawn."""

    title: str
    kind: str  # weight | add | io | other
    inputs: list[int]
    details: list[str] = field(default_factory=list)
    shape: str = ""
    rank: int = 0
    col: int = 0

    def label(self) -> str:
        return " · ".join(self.details + ([f"→ {self.shape}"] if self.shape else []))


def _shape(node: fx.Node) -> str:
    meta = node.meta.get("tensor_meta")
    shape = getattr(meta, "shape", None)
    return "×".join(str(s) for s in shape[1:]) if shape is not None else ""


def _folds(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules[str(node.target)], _FOLDED_MODULES)
    if node.op == "call_function":
        return node.target in _FOLDED_FUNCTIONS
    return node.op == "call_method" and node.target in _FOLDED_METHODS


def _describe(node: fx.Node, modules: dict[str, nn.Module]) -> tuple[str, str, list[str]]:
    """(title, kind, first detail) of a box that starts at ``node``."""
    if node.op == "placeholder":
        return "input", "io", []
    if node.op == "call_module":
        name = normalize_module_name(str(node.target))
        m = modules[str(node.target)]
        if isinstance(m, nn.Conv2d):
            k = "×".join(map(str, m.kernel_size))
            stride = f" s{m.stride[0]}" if m.stride[0] > 1 else ""
            groups = f" g{m.groups}" if m.groups > 1 else ""
            return f"{name}.weight", "weight", [f"Conv2d {k}{stride}{groups} {m.in_channels}→{m.out_channels}"]
        if isinstance(m, nn.Linear):
            return f"{name}.weight", "weight", [f"Linear {m.in_features}→{m.out_features}"]
        return name, "other", [type(m).__name__]
    if node.target in _ADDS:
        return "add", "add", []
    target = getattr(node.target, "__name__", str(node.target))
    return target, "other", [node.op.replace("call_", "")]


def _folded_name(node: fx.Node, modules: dict[str, nn.Module]) -> str:
    if node.op == "call_module":
        m = modules[str(node.target)]
        return "BN" if isinstance(m, nn.modules.batchnorm._BatchNorm) else type(m).__name__
    return getattr(node.target, "__name__", str(node.target))


def network_boxes(model: nn.Module, input_shape: tuple[int, ...]) -> list[Box]:
    """Trace ``model`` (shapes from one batch-1 pass) and fold its fx nodes into boxes, in graph order."""
    try:
        graph_module = fx.symbolic_trace(model)
    except Exception as exc:  # fx raises many types for untraceable code
        raise ConfigError(f"Cannot trace {type(model).__name__} with torch.fx to draw it: "
                          f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            ShapeProp(graph_module).propagate(torch.zeros((1, *input_shape)))
    finally:
        model.train(was_training)
    modules = dict(graph_module.named_modules())
    boxes: list[Box] = []
    box_of: dict[fx.Node, int] = {}
    for node in graph_module.graph.nodes:
        tensor_inputs = [n for n in node.all_input_nodes if n in box_of]
        if node.op == "output":
            boxes.append(Box("output", "io", sorted({box_of[n] for n in tensor_inputs})))
            continue
        if node.op != "placeholder" and (not _shape(node) or not tensor_inputs):
            continue  # sizes, attributes and constants are not drawn
        producer = tensor_inputs[0] if len(tensor_inputs) == 1 else None
        chain = producer is not None and sum(1 for u in producer.users if _shape(u)) == 1
        if chain and _folds(node, modules):
            box = boxes[box_of[producer]]  # type: ignore[index]
            box.details.append(_folded_name(node, modules))
            box_of[node] = box_of[producer]  # type: ignore[index]
        else:
            title, kind, details = _describe(node, modules)
            boxes.append(Box(title, kind, list(dict.fromkeys(box_of[n] for n in tensor_inputs)), details))
            box_of[node] = len(boxes) - 1
        boxes[box_of[node]].shape = _shape(node)
    _layout(boxes)
    return boxes


def _layout(boxes: list[Box]) -> None:
    taken: set[tuple[int, int]] = set()
    for box in boxes:
        box.rank = max((boxes[i].rank + 1 for i in box.inputs), default=0)
        col = boxes[box.inputs[0]].col if box.inputs else 0
        while (box.rank, col) in taken:
            col += 1
        box.col = col
        taken.add((box.rank, col))


def schedule_targets(model: nn.Module, schedule: str | Path) -> dict[str, str]:
    """``{weight: "instance: what"}`` for every weight a schedule's pruning policies own (built on a copy)."""
    scheduler = CompressionScheduler(copy.deepcopy(model), schedule)
    targets: dict[str, str] = {}
    for policy in scheduler.policies:
        if not isinstance(policy, PruningPolicy):
            continue
        pruner = policy.pruner
        if hasattr(pruner, "final_sparsity"):
            what = f"AGP {pruner.initial_sparsity:g}→{pruner.final_sparsity:g}"
        elif hasattr(pruner, "desired_sparsity"):
            what = f"{getattr(pruner, 'group_type', '')} {pruner.desired_sparsity:g}".strip()
        else:
            what = type(pruner).__name__
        for weight in getattr(pruner, "params_names", []):
            targets[weight] = f"{policy.instance_name}: {what}"
    return targets


def plot_network(boxes: list[Box], path: str | Path, title: str, targets: dict[str, str] | None = None) -> Path:
    targets = targets or {}
    cols = max(b.col for b in boxes) + 1
    rows = max(b.rank for b in boxes) + 1
    width, height = cols * COL_W + 0.9, rows * ROW_H + 1.3
    fig = Figure(figsize=(width, height))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(-BOX_W / 2 - 0.3, width - BOX_W / 2 - 0.3)
    ax.set_ylim(-(rows - 1) * ROW_H - BOX_H / 2 - 0.3, height - (rows - 1) * ROW_H - BOX_H / 2 - 0.3)
    ax.axis("off")
    pos = [(b.col * COL_W, -b.rank * ROW_H) for b in boxes]
    for i, box in enumerate(boxes):
        for j in box.inputs:
            _edge(ax, pos[j], pos[i], boxes[j].rank, box.rank)
    for (x, y), box in zip(pos, boxes, strict=True):
        pruned = targets.get(box.title)
        face = COLORS["pruned"] if pruned else COLORS[box.kind]
        ax.add_patch(FancyBboxPatch((x - BOX_W / 2, y - BOX_H / 2), BOX_W, BOX_H, facecolor=face, edgecolor="0.35",
                                    boxstyle="round,pad=0,rounding_size=0.06", linewidth=0.8, zorder=2))
        lines = [line for line in (box.label(), f"pruned by {pruned}" if pruned else "") if line]
        top = y + 0.06 * len(lines)  # the title and the detail lines, centred together in the box
        ax.text(x, top, box.title, ha="center", va="center", zorder=3, fontsize=7.5, weight="bold",
                family="monospace" if box.kind == "weight" else "sans-serif")
        for k, line in enumerate(lines, start=1):
            ax.text(x, top - 0.13 * k, line, ha="center", va="center", fontsize=6.3, zorder=3, color="0.15")
    top = ax.get_ylim()[1]
    ax.text(-BOX_W / 2, top - 0.3, title, ha="left", va="center", fontsize=10, weight="bold")
    handles = [Patch(facecolor=COLORS["weight"], edgecolor="0.35", label="conv / linear (its weight name)"),
               Patch(facecolor=COLORS["add"], edgecolor="0.35", label="residual add"),
               Patch(facecolor=COLORS["other"], edgecolor="0.35", label="other op"),
               Patch(color=SKIP, label="shortcut (identity or projection)")]
    if targets:
        handles.insert(1, Patch(facecolor=COLORS["pruned"], edgecolor="0.35", label="weight the schedule prunes"))
    ax.legend(handles=handles, loc="upper right", fontsize=7, frameon=False)
    return save_figure(fig, path)


def _edge(ax: Axes, src: tuple[float, float], dst: tuple[float, float], src_rank: int, dst_rank: int) -> None:
    """An orthogonal arrow from the box at ``src`` to the box at ``dst`` (centres)."""
    (xs, ys), (xd, yd) = src, dst
    color = "0.25"
    if xs == xd and dst_rank - src_rank == 1:
        points = [(xs, ys - BOX_H / 2), (xd, yd + BOX_H / 2)]
    elif xs == xd:  # identity shortcut: down a lane right of the column
        right = xs + BOX_W / 2
        points = [(right, ys - BOX_H / 4), (right + LANE, ys - BOX_H / 4), (right + LANE, yd + BOX_H / 4),
                  (right, yd + BOX_H / 4)]
        color = SKIP
    elif xd > xs:  # a branch leaves sideways, then down
        points = [(xs + BOX_W / 2, ys), (xd, ys), (xd, yd + BOX_H / 2)]
    else:  # a branch comes back: down, then into the side of the box
        points = [(xs, ys - BOX_H / 2), (xs, yd), (xd + BOX_W / 2, yd)]
    if xs != xd:  # a side branch is a shortcut path (a projection like ``downsample``)
        color = SKIP
    xs_, ys_ = zip(*points, strict=True)
    ax.plot(xs_, ys_, color=color, linewidth=1.0, zorder=1, solid_joinstyle="miter")
    ax.annotate("", xy=points[-1], xytext=points[-2], zorder=1,
                arrowprops={"arrowstyle": "-|>", "color": color, "lw": 1.0, "shrinkA": 0, "shrinkB": 0})


def show_graph(model_spec: str, out: str | Path, *, schedule: str | Path | None = None,
               arch: str | None = None) -> Path:
    """``edgeprune show graph``: the network diagram, with the weights ``schedule`` prunes highlighted."""
    picture_format(out)
    loaded = resolve_model(model_spec, arch=arch)
    boxes = network_boxes(loaded.model, input_shape_of(loaded.model))
    targets = schedule_targets(loaded.model, schedule) if schedule is not None else {}
    title = loaded.arch + (f" ({Path(model_spec).name})" if loaded.checkpoint is not None else "")
    return plot_network(boxes, out, title + (f" + {Path(schedule).name}" if schedule else ""), targets)
