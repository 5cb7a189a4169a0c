"""Activation statistics and feature-map samples that data-driven pruners rank or refit with.

Distiller's activation-ranked pruners failed with "apoz_channels not found" unless statistics had been
collected by a separate command-line switch (issues #444/#123/#459). Here the pruners declare what they
need (``needs_activation_stats`` / ``needs_feature_maps``), the scheduler collects it with the functions
below on a few training batches, and passes it in ``meta`` — so a missing statistic is a clear error
naming the module, never a silent no-op.

Deliberate difference: for 2D activations (after a Linear layer) each feature is a channel. Distiller's
2D branch averaged over features instead, which gave one number per sample rather than per channel.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from edgeprune.errors import ConfigError, UnknownNameError
from edgeprune.models.naming import normalize_module_name

# --------------------------------------------------------------------------------------------------------------
# Per-batch statistics (Distiller's activation_channels_*), one value per channel, as float64.


def _per_map(activation: torch.Tensor) -> torch.Tensor:
    """(batch, channels, elements) view: each feature map (or each feature of a 2D activation) is a group."""
    if activation.dim() == 4:
        return activation.detach().double().flatten(2)
    if activation.dim() == 2:
        return activation.detach().double().unsqueeze(2)
    raise ConfigError(f"Activation statistics need a 2D or 4D activation, got shape {tuple(activation.shape)}.")


def activation_channels_l1(activation: torch.Tensor) -> torch.Tensor:
    """Batch mean of each channel's feature-map L1 norm."""
    return _per_map(activation).abs().sum(dim=2).mean(dim=0)


def activation_channels_means(activation: torch.Tensor) -> torch.Tensor:
    """Batch mean of each channel's feature-map mean."""
    return _per_map(activation).mean(dim=2).mean(dim=0)


def activation_channels_apoz(activation: torch.Tensor) -> torch.Tensor:
    """Average Percentage of Zeros per channel: ``100 - mean % nonzero`` (Hu et al. 2016)."""
    return 100.0 * _per_map(activation).eq(0).double().mean(dim=2).mean(dim=0)


@dataclass
class ChannelStats:
    """Per-channel activation statistics of one module, averaged over every sample seen."""

    l1: torch.Tensor
    apoz: torch.Tensor
    mean: torch.Tensor
    samples: int

    @classmethod
    def of(cls, activation: torch.Tensor) -> ChannelStats:
        return cls(activation_channels_l1(activation), activation_channels_apoz(activation),
                   activation_channels_means(activation), activation.size(0))

    def merged(self, other: ChannelStats) -> ChannelStats:
        """Sample-weighted mean of two running statistics (equal to the statistics of the joined batches)."""
        total = self.samples + other.samples

        def mix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return (a * self.samples + b * other.samples) / total

        return ChannelStats(mix(self.l1, other.l1), mix(self.apoz, other.apoz), mix(self.mean, other.mean), total)


# --------------------------------------------------------------------------------------------------------------
# Which module's activations rank a weight.


def activation_module_name(param_name: str) -> str:
    """Distiller's rule: ``layer1.0.conv1.weight`` → ``layer1.0.relu1`` (``.conv`` → ``.relu``, drop ``.weight``)."""
    return normalize_module_name(param_name).replace(".conv", ".relu")[: -len(".weight")]


def resolve_activation_module(model: nn.Module, param_name: str) -> str:
    """The ReLU named by Distiller's rule if the model has it, else the weight's own module (its output)."""
    modules = _canonical_modules(model)
    name = activation_module_name(param_name)
    return name if name in modules else normalize_module_name(param_name)[: -len(".weight")]


def needs_activation_stats(pruner: Any, model: nn.Module | None = None) -> list[str]:
    """Modules whose activation statistics ``pruner`` ranks by (empty for other pruners).

    Pass the model so that weights without a ``.relu`` sibling fall back to their own module, as the
    pruner does; without it the names follow Distiller's rule only.
    """
    inner = getattr(pruner, "pruner", pruner)  # the AGP variants wrap the ranking pruner
    if not getattr(inner, "activation_rank_criterion", None):
        return []
    if model is None:
        return [activation_module_name(p) for p in inner.params_names]
    return [resolve_activation_module(model, p) for p in inner.params_names]


def needs_feature_maps(pruner: Any) -> list[str]:
    """Layers whose input/output feature-map samples ``pruner`` refits weights from (empty for others)."""
    inner = getattr(pruner, "pruner", pruner)
    if not getattr(inner, "reconstructs_feature_maps", False):
        return []
    return [p[: -len(".weight")] for p in inner.params_names]


# --------------------------------------------------------------------------------------------------------------
# Collection with forward hooks.


def _canonical_modules(model: nn.Module) -> dict[str, nn.Module]:
    return {normalize_module_name(n): m for n, m in model.named_modules()}


def _inputs_of(batch: Any) -> torch.Tensor:
    """The model input of a batch given as a tensor or an (inputs, targets, ...) tuple."""
    return batch[0] if isinstance(batch, (tuple, list)) else batch


def _run_batches(model: nn.Module, batches: Iterable[Any], max_batches: int) -> int:
    """Forward up to ``max_batches`` batches in eval mode without gradients; returns how many ran."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    ran = 0
    try:
        with torch.no_grad():
            for batch in batches:
                if ran >= max_batches:
                    break
                model(_inputs_of(batch).to(device))
                ran += 1
    finally:
        model.train(was_training)
    if ran == 0:
        raise ConfigError("No batches were given to collect activation statistics or feature maps from.")
    return ran


def _hooked_modules(model: nn.Module, names: Iterable[str]) -> dict[str, nn.Module]:
    modules = _canonical_modules(model)
    found = {}
    for name in names:
        canonical = normalize_module_name(name)
        if canonical not in modules:
            raise UnknownNameError("module", canonical, [n for n in modules if n])
        found[canonical] = modules[canonical]
    return found


def collect_activation_stats(model: nn.Module, batches: Iterable[Any], module_names: Iterable[str],
                             max_batches: int = 8) -> dict[str, ChannelStats]:
    """Per-channel APoZ/mean/L1 of the outputs of ``module_names`` over up to ``max_batches`` batches.

    The model runs in eval mode (as Distiller's ``--act-stats=valid``), so BatchNorm uses its running
    statistics and the model is left as it was.
    """
    module_names = [normalize_module_name(n) for n in module_names]
    stats: dict[str, ChannelStats] = {}

    def hook_for(name: str) -> Callable[..., None]:
        def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
            batch_stats = ChannelStats.of(output)
            stats[name] = batch_stats if name not in stats else stats[name].merged(batch_stats)
        return hook

    handles = [m.register_forward_hook(hook_for(n)) for n, m in _hooked_modules(model, module_names).items()]
    try:
        _run_batches(model, batches, max_batches)
    finally:
        for handle in handles:
            handle.remove()
    silent = sorted(set(module_names) - set(stats))
    if silent:
        raise ConfigError(f"Module(s) {', '.join(silent)} never ran in the forward pass, so they have no "
                          "activation statistics.")
    return stats


@dataclass
class FeatureMapSamples:
    """Sampled (input patch, output) pairs of one layer, for least-squares weight reconstruction.

    ``inputs`` is (samples, in_channels, kh*kw) — each sampled output position's receptive field, so that
    input channels can be dropped — and ``outputs`` is (samples, out_channels), bias included.
    """

    inputs: torch.Tensor
    outputs: torch.Tensor


def sample_feature_maps(module: nn.Module, inputs: torch.Tensor, output: torch.Tensor,
                        n_points_per_fm: int) -> FeatureMapSamples:
    """Sample ``n_points_per_fm`` random output positions (the same for the whole batch) of a conv/Linear."""
    x, y = inputs.detach(), output.detach()
    if isinstance(module, nn.Linear):
        return FeatureMapSamples(x.reshape(-1, x.size(-1), 1).cpu(), y.reshape(-1, y.size(-1)).cpu())
    if not isinstance(module, nn.Conv2d) or module.groups != 1:
        raise ConfigError(f"Feature-map reconstruction supports Linear and ungrouped Conv2d layers, not {module}.")
    patches = F.unfold(x, module.kernel_size, module.dilation, module.padding, module.stride)  # (N, C*k*k, L)
    points = torch.randint(0, patches.size(2), (n_points_per_fm,), device=patches.device)
    per_channel = patches.size(1) // module.in_channels
    sampled = patches[:, :, points].permute(0, 2, 1).reshape(-1, module.in_channels, per_channel)
    outputs = y.flatten(2)[:, :, points].permute(0, 2, 1).reshape(-1, y.size(1))
    return FeatureMapSamples(sampled.cpu(), outputs.cpu())


def collect_feature_maps(model: nn.Module, batches: Iterable[Any], layer_names: Iterable[str],
                         n_points_per_fm: int = 10, max_batches: int = 4) -> dict[str, FeatureMapSamples]:
    """Input/output samples of ``layer_names`` (module names) over up to ``max_batches`` batches."""
    collected: dict[str, list[FeatureMapSamples]] = {}

    def hook_for(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            collected.setdefault(name, []).append(sample_feature_maps(module, inputs[0], output, n_points_per_fm))
        return hook

    handles = [m.register_forward_hook(hook_for(n)) for n, m in _hooked_modules(model, layer_names).items()]
    try:
        _run_batches(model, batches, max_batches)
    finally:
        for handle in handles:
            handle.remove()
    return {name: FeatureMapSamples(torch.cat([s.inputs for s in samples]), torch.cat([s.outputs for s in samples]))
            for name, samples in collected.items()}


def least_squares_refit(samples: FeatureMapSamples, keep: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Weights over the kept input channels that best reproduce the sampled outputs (He et al. 2017).

    Returns (out_channels, kept_channels, kh*kw). The bias is subtracted from the outputs first and left as
    it is, so the fit reproduces ``W·x`` (Distiller fitted the bias into the weights, without an intercept).
    """
    inputs = samples.inputs[:, keep.to(samples.inputs.device), :].double()
    design = inputs.reshape(inputs.size(0), -1)
    targets = samples.outputs.double()
    if bias is not None:
        targets = targets - bias.detach().double().cpu()
    solution = torch.linalg.lstsq(design, targets, driver="gelsd").solution  # (kept*k*k, out_channels)
    return solution.t().reshape(targets.size(1), inputs.size(1), inputs.size(2))
