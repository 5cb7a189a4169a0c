"""Per-layer widths: what a thinned model needs, beyond its architecture name, to be rebuilt.

Thinning changes only the channel counts of Conv2d / Linear / BatchNorm layers (and ``groups``
of depthwise convs). Recording those counts lets a checkpoint of a thinned network be rebuilt
from the dense architecture: build dense, resize the listed layers in place, load the weights.
The same resize, driven by tensor shapes, loads thinned Distiller checkpoints without replaying
their pickled thinning recipes.
"""

from __future__ import annotations

import torch
from torch import nn

from edgeprune.errors import CheckpointError
from edgeprune.models.naming import normalize_module_name

Widths = dict[str, dict[str, int]]


def layer_widths(model: nn.Module) -> Widths:
    """``{layer: {"in": .., "out": .., "groups": ..}}`` for every conv/linear/BN layer."""
    widths: Widths = {}
    for name, m in model.named_modules():
        name = normalize_module_name(name)
        if isinstance(m, nn.Conv2d):
            widths[name] = {"in": m.in_channels, "out": m.out_channels, "groups": m.groups}
        elif isinstance(m, nn.Linear):
            widths[name] = {"in": m.in_features, "out": m.out_features}
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            widths[name] = {"out": m.num_features}
    return widths


def widths_from_state_dict(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> Widths:
    """Widths implied by the tensor shapes of ``state_dict`` (canonical names) for ``model``'s layers."""
    widths: Widths = {}
    for name, m in model.named_modules():
        name = normalize_module_name(name)
        weight = state_dict.get(f"{name}.weight" if name else "weight")
        if isinstance(m, nn.Conv2d) and weight is not None and weight.dim() == 4:
            out = int(weight.shape[0])
            depthwise = m.groups > 1 and m.groups == m.in_channels  # one group per channel
            groups = out // (m.out_channels // m.groups) if depthwise else m.groups
            widths[name] = {"in": int(weight.shape[1]) * groups, "out": out, "groups": groups}
        elif isinstance(m, nn.Linear) and weight is not None and weight.dim() == 2:
            widths[name] = {"in": int(weight.shape[1]), "out": int(weight.shape[0])}
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            stat = state_dict.get(f"{name}.running_mean", weight)
            if stat is not None:
                widths[name] = {"out": int(stat.shape[0])}
    return widths


def apply_widths(model: nn.Module, widths: Widths) -> nn.Module:
    """Resize layers in place to the given widths (new weights uninitialised, BN statistics reset).

    In place, not by replacing modules, so that module identity (and anything holding a reference
    to a layer, such as forward hooks) survives, exactly as thinning itself does.
    """
    modules = {normalize_module_name(n): m for n, m in model.named_modules()}
    for name, w in widths.items():
        m = modules.get(name)
        if m is None:
            raise CheckpointError(
                f"The checkpoint has widths for layer {name!r}, which the architecture does not have.",
                hint="The checkpoint was made from a different architecture; pass the right --arch.",
            )
        if isinstance(m, nn.Conv2d):
            if (m.in_channels, m.out_channels, m.groups) != (w["in"], w["out"], w["groups"]):
                m.in_channels, m.out_channels, m.groups = w["in"], w["out"], w["groups"]
                _resize(m, "weight", (w["out"], w["in"] // w["groups"], *m.kernel_size))
                _resize(m, "bias", (w["out"],))
        elif isinstance(m, nn.Linear):
            if (m.in_features, m.out_features) != (w["in"], w["out"]):
                m.in_features, m.out_features = w["in"], w["out"]
                _resize(m, "weight", (w["out"], w["in"]))
                _resize(m, "bias", (w["out"],))
        elif isinstance(m, nn.modules.batchnorm._BatchNorm) and m.num_features != w["out"]:
            m.num_features = w["out"]
            for attr in ("weight", "bias", "running_mean", "running_var"):
                _resize(m, attr, (w["out"],))
            if m.track_running_stats:
                m.reset_running_stats()
    return model


def _resize(module: nn.Module, attr: str, shape: tuple[int, ...]) -> None:
    old = getattr(module, attr, None)
    if old is None:
        return
    new = torch.empty(shape, dtype=old.dtype, device=old.device)
    if isinstance(old, nn.Parameter):
        setattr(module, attr, nn.Parameter(new, requires_grad=old.requires_grad))
    else:
        module.register_buffer(attr, new)
