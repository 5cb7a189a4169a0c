"""The hook interface between the training loop and whatever steers it (e.g. a compression schedule).

One naming grammar (Distiller's callback names, in the order the loop calls them), every hook a
no-op by default, and checkpointable state, so a resumed run restores the steering exactly.
"""

from __future__ import annotations

from typing import Any

import torch


class TrainingHooks:
    """Subclass and override what you need; the loop calls every hook of every registered object."""

    def on_epoch_begin(self, epoch: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Before the first minibatch of ``epoch`` (pruners compute masks here)."""

    def on_minibatch_begin(self, epoch: int, step: int, steps_per_epoch: int,
                           optimizer: torch.optim.Optimizer) -> None:
        """Before the forward pass of a minibatch (pruners apply masks, thinning runs here)."""

    def after_forward(self, epoch: int, step: int, steps_per_epoch: int, inputs: torch.Tensor,
                      logits: torch.Tensor) -> None:
        """After the model's forward pass on ``inputs`` (the exact augmented batch), before the loss hooks.

        Distillation runs its teacher on the same batch here.
        """

    def before_backward_pass(self, epoch: int, step: int, steps_per_epoch: int, loss: torch.Tensor,
                             optimizer: torch.optim.Optimizer) -> torch.Tensor:
        """May return a new loss (regularizers add their terms)."""
        return loss

    def before_parameter_optimization(self, epoch: int, step: int, steps_per_epoch: int,
                                      optimizer: torch.optim.Optimizer) -> None:
        """After ``backward()``, before ``optimizer.step()``."""

    def on_minibatch_end(self, epoch: int, step: int, steps_per_epoch: int,
                         optimizer: torch.optim.Optimizer) -> None:
        """After ``optimizer.step()`` (masks are re-applied here)."""

    def on_epoch_end(self, epoch: int, optimizer: torch.optim.Optimizer, metrics: dict[str, float]) -> None:
        """After validation; ``metrics`` has ``top1``, ``top5``, ``loss`` (LR policies step here)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
