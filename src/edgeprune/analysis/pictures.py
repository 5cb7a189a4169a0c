"""Pictures of what pruning does to a network (``edgeprune show ...``), PNG or SVG by suffix.

* ``filters``: one layer's filter (or input-channel) norms as bars, the pruned ones marked — the ranking an
  L1 pruner sees, so a user can tell a clear cut from a coin toss between near-equal filters.
* ``kernels``: the first conv's kernels as RGB tiles, pruned ones crossed out.
* ``widths``: every layer's kept and removed filters and input channels after thinning.
* ``macs``: MACs per layer before and after thinning (Distiller's counting).

What is pruned comes from a schedule (the masks it computes at epoch 0, on a copy of the model) or from a
plain sparsity (L1 ranking with Distiller's rounding); ``widths``/``macs`` thin a copy with the schedule's
epoch 0, or compare a thinned checkpoint with its dense architecture. The network diagram is in
:mod:`edgeprune.analysis.diagram`.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import EngFormatter
from torch import nn

from edgeprune.analysis.plotting import picture_format, save_figure
from edgeprune.analysis.suggest import layer_macs
from edgeprune.errors import ConfigError, UnknownNameError
from edgeprune.models import create_model
from edgeprune.models.naming import normalize_module_name
from edgeprune.models.resolve import LoadedModel, resolve_model
from edgeprune.models.summary import ModelSummary, model_summary
from edgeprune.models.widths import layer_widths
from edgeprune.pruning.masks import MasksDict
from edgeprune.pruning.pruners import find_param
from edgeprune.pruning.ranking import rank_structures, structure_magnitudes
from edgeprune.schedule.scheduler import CompressionScheduler

KEPT, REMOVED = "#4C72B0", "#DD8452"


@dataclass
class Structures:
    """The filters (or input channels) of one weight: their mean-|w| scores and which ones are pruned."""

    weight: str
    kind: str  # "filters" | "input channels"
    scores: torch.Tensor
    pruned: torch.Tensor  # bool, one per structure
    source: str  # what decided the pruning, for the title


# -------------------------------------------------------------------------------------------- inputs
def layer_weight(model: nn.Module, layer: str) -> str:
    """``layer1.0.conv1``, ``layer1.0.conv1.weight`` or ``module.layer1.0.conv1.weight`` → the canonical weight."""
    weights = {normalize_module_name(n): p for n, p in model.named_parameters() if p.dim() in (2, 4)}
    name = normalize_module_name(layer)
    name = name if name.endswith(".weight") else f"{name}.weight"
    if name not in weights:
        raise UnknownNameError("layer", layer, [w.removesuffix(".weight") for w in weights],
                               hint="Name a conv or linear layer as in `edgeprune summary MODEL`.")
    return name


def schedule_masks(model: nn.Module, schedule: str | Path) -> MasksDict:
    """The masks ``schedule`` computes at epoch 0, on a copy of ``model`` (nothing applied, nothing thinned)."""
    scheduler = CompressionScheduler(copy.deepcopy(model), schedule)
    scheduler.on_epoch_begin(0)
    return scheduler.zeros_mask_dict


def _pruning_source(schedule: str | Path | None, sparsity: float | None) -> None:
    if schedule is not None and sparsity is not None:
        raise ConfigError("Give --schedule or --sparsity, not both.")
    if sparsity is not None and not 0 <= sparsity < 1:
        raise ConfigError(f"--sparsity must be in [0, 1), got {sparsity!r}.")


def structures(model: nn.Module, weight: str, *, channels: bool = False, schedule: str | Path | None = None,
               sparsity: float | None = None) -> Structures:
    """Scores and pruned flags of ``weight``'s filters (``channels``: input channels)."""
    _pruning_source(schedule, sparsity)
    param = find_param(model, weight).detach()
    group = "Channels" if channels else "Filters"
    kind = "input channels" if channels else "filters"
    scores = structure_magnitudes(param, group)
    pruned = torch.zeros(scores.numel(), dtype=torch.bool)
    if schedule is not None:
        source = f"schedule {Path(schedule).name}, epoch 0"
        mask = schedule_masks(model, schedule)[weight].mask
        if mask is not None:
            per = mask.transpose(0, 1) if channels else mask
            pruned = per.reshape(per.size(0), -1).abs().sum(dim=1).eq(0).cpu()
    elif sparsity is not None:
        source = f"L1 ranking at sparsity {sparsity:g}"
        binary_map = rank_structures(param, group, sparsity)
        if binary_map is not None:
            pruned = binary_map.eq(0).cpu()
    else:
        source = "nothing pruned"
    return Structures(weight, kind, scores.cpu(), pruned, source)


def before_after(model_spec: str, schedule: str | Path | None = None,
                 arch: str | None = None) -> tuple[LoadedModel, nn.Module, nn.Module]:
    """(loaded, dense, thinned): a schedule's epoch 0 + thinning on a copy, or a thinned checkpoint vs its arch."""
    loaded = resolve_model(model_spec, arch=arch)
    if schedule is not None:
        after = copy.deepcopy(loaded.model)
        scheduler = CompressionScheduler(after, schedule)
        scheduler.apply_epoch_zero()
        scheduler.thin_all()
        return loaded, loaded.model, after
    if loaded.checkpoint is None:
        raise ConfigError(f"{model_spec!r} is not a checkpoint, so there is no thinned 'after' to compare.",
                          hint="Give --schedule SCHEDULE.yaml to thin a copy, or a checkpoint thinned by "
                               "`edgeprune prune`.")
    dense = create_model(loaded.arch, **loaded.arch_kwargs)
    dense.input_shape = getattr(loaded.model, "input_shape", getattr(dense, "input_shape", None))
    return loaded, dense, loaded.model


# ------------------------------------------------------------------------------------------- pictures
def plot_structure_norms(s: Structures, path: str | Path, title: str) -> Path:
    """Bars of mean |w| per structure in index order, pruned ones orange and hatched, the cut as a line."""
    n = s.scores.numel()
    fig = Figure(figsize=(min(max(6.0, 0.16 * n + 2.0), 16.0), 4.2))
    ax = fig.add_subplot()
    colors = [REMOVED if p else KEPT for p in s.pruned.tolist()]
    bars = ax.bar(range(n), s.scores.numpy(), color=colors, width=0.8)
    for bar, p in zip(bars, s.pruned.tolist(), strict=True):
        if p:
            bar.set_hatch("///")
    if s.pruned.any() and not s.pruned.all():
        cut = float(s.scores[s.pruned].max())
        ax.axhline(cut, color="0.3", linestyle="--", linewidth=1)
    ax.set_xlabel(f"{s.kind[:-1]} index")
    ax.set_ylabel("mean |w| (length-normalised L1)")
    ax.set_xlim(-0.7, n - 0.3)
    if n <= 64:
        ax.set_xticks(range(n), [str(i) for i in range(n)], fontsize=7 if n > 32 else 8)
    ax.set_title(f"{title}\n{s.weight}: {int(s.pruned.sum())} of {n} {s.kind} pruned ({s.source})", fontsize=10)
    handles = [Patch(color=KEPT, label="kept"), Patch(facecolor=REMOVED, hatch="///", label="pruned")]
    if s.pruned.any() and not s.pruned.all():
        handles.append(ax.lines[-1])
        ax.lines[-1].set_label("highest pruned score")
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, path)


def plot_kernels(weight: torch.Tensor, pruned: torch.Tensor, name: str, path: str | Path, title: str) -> Path:
    """Each filter of a first conv as a k×k tile (RGB for 3 input channels, grey for 1, else the channel mean).

    Colours share one symmetric scale (0 is mid-grey), so a low-norm filter looks flat — which is why an
    L1 ranking picks it.
    """
    w = weight.detach().float().cpu()
    if w.size(1) not in (1, 3):
        w = w.mean(dim=1, keepdim=True)
    scale = float(w.abs().max()) or 1.0
    tiles = (0.5 + w / (2 * scale)).clamp(0, 1).permute(0, 2, 3, 1).numpy()  # (F, k, k, C)
    n = tiles.shape[0]
    cols = min(8, n)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(1.25 * cols + 0.4, 1.45 * rows + 0.9))
    norms = w.abs().reshape(n, -1).mean(dim=1)
    for i in range(n):
        ax = fig.add_subplot(rows, cols, i + 1)
        tile = tiles[i] if tiles.shape[3] == 3 else tiles[i][..., 0]
        ax.imshow(tile, cmap=None if tiles.shape[3] == 3 else "gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"#{i}  {norms[i]:.3f}", fontsize=7, color=REMOVED if pruned[i] else "black")
        if pruned[i]:
            k = tile.shape[0]
            ax.plot([-0.5, k - 0.5], [-0.5, k - 0.5], color="red", linewidth=2)
            ax.plot([-0.5, k - 0.5], [k - 0.5, -0.5], color="red", linewidth=2)
            for spine in ax.spines.values():
                spine.set_edgecolor("red")
                spine.set_linewidth(2)
    fig.suptitle(f"{title}\n{name}: {n} kernels (mean |w| above each), {int(pruned.sum())} pruned (crossed out)",
                 fontsize=10)
    return save_figure(fig, path)


def plot_widths(dense: nn.Module, thin: nn.Module, path: str | Path, title: str) -> Path:
    """Per layer (forward order): kept and removed filters (left) and input channels (right)."""
    order = list(layer_macs(model_summary(dense)))
    before, after = layer_widths(dense), layer_widths(thin)
    fig = Figure(figsize=(11, 0.26 * len(order) + 1.6))
    axes = fig.subplots(1, 2, sharey=True)
    y = np.arange(len(order))
    for ax, key, label in ((axes[0], "out", "filters (output channels)"), (axes[1], "in", "input channels")):
        kept = np.array([after[n][key] for n in order])
        total = np.array([before[n][key] for n in order])
        ax.barh(y, kept, color=KEPT, height=0.7, label="kept")
        ax.barh(y, total - kept, left=kept, color=REMOVED, hatch="///", height=0.7, label="removed")
        for i, (k, t) in enumerate(zip(kept, total, strict=True)):
            if k != t:
                ax.text(t + 0.01 * total.max(), i, f"{k}/{t}", va="center", fontsize=6)
        ax.set_xlabel(label)
        ax.set_xlim(0, total.max() * 1.15)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y, order, fontsize=7)
    axes[0].invert_yaxis()
    axes[1].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    removed = sum(before[n]["out"] - after[n]["out"] for n in order)
    fig.suptitle(f"{title}\n{removed} of {sum(before[n]['out'] for n in order)} filters removed by thinning",
                 fontsize=10)
    return save_figure(fig, path)


def plot_macs(before: ModelSummary, after: ModelSummary, path: str | Path, title: str) -> Path:
    """Horizontal bars: each layer's MACs before (grey) and after (blue) thinning."""
    b, a = layer_macs(before), layer_macs(after)
    order = list(b)
    y = np.arange(len(order))
    fig = Figure(figsize=(9, 0.3 * len(order) + 1.6))
    ax = fig.add_subplot()
    ax.barh(y - 0.2, [b[n] for n in order], height=0.4, color="0.7", label=f"before ({before.macs:,} MACs)")
    ax.barh(y + 0.2, [a.get(n, 0) for n in order], height=0.4, color=KEPT, label=f"after ({after.macs:,} MACs)")
    ax.set_yticks(y, order, fontsize=7)
    ax.invert_yaxis()
    ax.xaxis.set_major_formatter(EngFormatter())
    ax.set_xlabel("MACs per image (Distiller's counting)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    ax.set_title(f"{title}\nMACs {before.macs:,} -> {after.macs:,} ({before.macs / max(after.macs, 1):.2f}x fewer)",
                 fontsize=10)
    return save_figure(fig, path)


# ----------------------------------------------------------------------------------------------- jobs
def _title(loaded: LoadedModel, model_spec: str) -> str:
    return loaded.arch if loaded.checkpoint is None else f"{loaded.arch} ({Path(model_spec).name})"


def show_filters(model_spec: str, layer: str, out: str | Path, *, channels: bool = False,
                 schedule: str | Path | None = None, sparsity: float | None = None, arch: str | None = None) -> Path:
    """``edgeprune show filters``: the layer's filter (or input-channel) norms with the pruned ones marked."""
    picture_format(out)
    _pruning_source(schedule, sparsity)
    loaded = resolve_model(model_spec, arch=arch)
    weight = layer_weight(loaded.model, layer)
    s = structures(loaded.model, weight, channels=channels, schedule=schedule, sparsity=sparsity)
    return plot_structure_norms(s, out, _title(loaded, model_spec))


def show_kernels(model_spec: str, out: str | Path, *, schedule: str | Path | None = None,
                 sparsity: float | None = None, arch: str | None = None) -> Path:
    """``edgeprune show kernels``: the first conv's kernels, pruned ones crossed out."""
    picture_format(out)
    _pruning_source(schedule, sparsity)
    loaded = resolve_model(model_spec, arch=arch)
    first = next((row.name for row in model_summary(loaded.model).layers if row.type == "Conv2d"), None)
    if first is None:
        raise ConfigError(f"{model_spec!r} has no Conv2d layer, so there are no kernels to show.")
    weight = f"{first}.weight"
    s = structures(loaded.model, weight, schedule=schedule, sparsity=sparsity)
    return plot_kernels(find_param(loaded.model, weight), s.pruned, weight, out,
                        f"{_title(loaded, model_spec)}: first conv ({s.source})")


def show_widths(model_spec: str, out: str | Path, *, schedule: str | Path | None = None,
                arch: str | None = None) -> Path:
    """``edgeprune show widths``: kept vs removed filters and input channels per layer."""
    picture_format(out)
    loaded, dense, thin = before_after(model_spec, schedule, arch)
    return plot_widths(dense, thin, out, _title(loaded, model_spec) + (f" + {Path(schedule).name}" if schedule else ""))


def show_macs(model_spec: str, out: str | Path, *, schedule: str | Path | None = None,
              arch: str | None = None) -> Path:
    """``edgeprune show macs``: MACs per layer before and after thinning."""
    picture_format(out)
    loaded, dense, thin = before_after(model_spec, schedule, arch)
    return plot_macs(model_summary(dense), model_summary(thin), out,
                     _title(loaded, model_spec) + (f" + {Path(schedule).name}" if schedule else ""))
