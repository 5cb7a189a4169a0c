"""Per-parameter masks (Distiller's ``ParameterMasker``) and the model-wide mask dict.

A pruner only *computes* a mask; policies decide when it is applied. Masks stay enforced after
their policy ends (the scheduler re-applies every mask after every optimizer step), which is why
they live in one dict keyed by canonical parameter name rather than inside the pruners.
"""

from __future__ import annotations

import torch
from torch import nn

from edgeprune.models.naming import normalize_module_name


class ParameterMasker:
    """The mask of one parameter and how it is applied (Distiller's semantics)."""

    def __init__(self, param_name: str) -> None:
        self.param_name = param_name
        self.mask: torch.Tensor | None = None
        self.is_regularization_mask = False
        self.use_double_copies = False
        self.mask_on_forward_only = False
        self.unmasked_copy: torch.Tensor | None = None
        self.backward_hook_handle: torch.utils.hooks.RemovableHandle | None = None

    def apply_mask(self, parameter: torch.Tensor) -> torch.Tensor | None:
        """Zero the masked elements in place; keep an unmasked copy in double-copies mode."""
        if self.mask is None:
            return None
        if self.use_double_copies:
            self.unmasked_copy = parameter.detach().clone()
        self.mask_tensor(parameter)
        if self.is_regularization_mask:
            self.mask = None
        return parameter

    def mask_tensor(self, tensor: torch.Tensor | None) -> None:
        if self.mask is not None and tensor is not None:
            tensor.data.mul_(self.mask.to(tensor.device, tensor.dtype))

    def mask_gradient(self, gradient: torch.Tensor) -> torch.Tensor:
        return gradient if self.mask is None else gradient.mul(self.mask.to(gradient.device, gradient.dtype))

    def revert_weights(self, parameter: torch.Tensor) -> None:
        if self.use_double_copies and self.unmasked_copy is not None:
            parameter.data.copy_(self.unmasked_copy)
            self.unmasked_copy = None


MasksDict = dict[str, ParameterMasker]


def create_model_masks_dict(model: nn.Module) -> MasksDict:
    """One (empty) masker per parameter, keyed by canonical name."""
    return {normalize_module_name(name): ParameterMasker(normalize_module_name(name))
            for name, _ in model.named_parameters()}


def mask_all_weights(model: nn.Module, zeros_mask_dict: MasksDict, is_forward: bool = True) -> None:
    """Re-apply every mask (Distiller calls this after every minibatch with ``is_forward=False``)."""
    for name, param in model.named_parameters():
        masker = zeros_mask_dict.get(normalize_module_name(name))
        if masker is None or masker.mask is None:
            continue
        if not is_forward and masker.mask_on_forward_only:
            continue
        masker.mask_tensor(param)
