"""The thinning schedule extension: Distiller's ``StructureRemover`` (alias ``FilterRemover`` / ``ChannelRemover``).

A schedule's ``extensions:`` section names a thinning function and, for Distiller compatibility, the
``arch`` and ``dataset``. Distiller needed ``dataset`` to build its dummy input; edgeprune uses the
model's own ``input_shape`` and falls back on the dataset only for models that do not declare one.
Nothing is registered here: the schedule builder imports these classes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from edgeprune.errors import ConfigError, closest
from edgeprune.pruning.masks import MasksDict
from edgeprune.pruning.thinning import ThinningRecord, contract_model, remove_channels, remove_filters

THINNING_FUNCTIONS: dict[str, Callable[..., ThinningRecord]] = {
    "remove_filters": remove_filters,
    "remove_channels": remove_channels,
    "contract_model": contract_model,
}

# Dummy-input shapes (C, H, W) of the datasets Distiller's thinning accepted.
DATASET_INPUT_SHAPES: dict[str, tuple[int, int, int]] = {
    "cifar10": (3, 32, 32),
    "cifar100": (3, 32, 32),
    "mnist": (1, 28, 28),
    "imagenet": (3, 224, 224),
}


class StructureRemover:
    """Physically removes the structures that pruning zeroed, when the schedule says so.

    ``auto_group`` (edgeprune extension, default off as in Distiller) removes only channels that are
    zero in all layers of a residual group instead of raising when their masks disagree.
    """

    def __init__(self, thinning_func_str: str, arch: str | None = None, dataset: str | None = None,
                 auto_group: bool = False) -> None:
        if thinning_func_str not in THINNING_FUNCTIONS:
            close = closest(thinning_func_str, THINNING_FUNCTIONS)
            raise ConfigError(
                f"Unknown thinning_func_str {thinning_func_str!r}"
                + (f"; did you mean {close[0]!r}?" if close else "."),
                hint=f"Use one of: {', '.join(THINNING_FUNCTIONS)}.",
            )
        self.thinning_func_str = thinning_func_str
        self.thinning_func = THINNING_FUNCTIONS[thinning_func_str]
        self.arch = arch
        self.dataset = dataset
        self.auto_group = auto_group

    def thin(self, model: nn.Module, zeros_mask_dict: MasksDict | None, optimizer: torch.optim.Optimizer | None = None,
             input_shape: Sequence[int] | None = None) -> ThinningRecord:
        """Run the configured thinning function on ``model`` (its masks and optimizer state follow)."""
        return self.thinning_func(model, zeros_mask_dict, optimizer, self._input_shape(model, input_shape),
                                  auto_group=self.auto_group)

    def _input_shape(self, model: nn.Module, input_shape: Sequence[int] | None) -> Sequence[int] | None:
        """Explicit shape, else the model's own (thinning reads it), else the dataset's."""
        if input_shape is not None or getattr(model, "input_shape", None) is not None or self.dataset is None:
            return input_shape
        key = self.dataset.lower()
        if key not in DATASET_INPUT_SHAPES:
            raise ConfigError(
                f"{type(self).__name__}: cannot tell the input shape for dataset {self.dataset!r}, and the model "
                "has no input_shape attribute.",
                hint=f"Known datasets: {', '.join(DATASET_INPUT_SHAPES)}; or set model.input_shape = (C, H, W).",
            )
        return DATASET_INPUT_SHAPES[key]


FilterRemover = ChannelRemover = StructureRemover
