"""The compression scheduler: runs a Distiller schedule's policies as training-loop hooks.

It is a :class:`~edgeprune.training.hooks.TrainingHooks`, so the training loop drives it like any other
hook, in Distiller's callback order: pruners compute masks at ``on_epoch_begin``, pruning policies apply
them (and thinning runs) at ``on_minibatch_begin``, regularizers add their loss before the backward
pass, every mask is re-applied after every optimizer step for the rest of training, and LR policies set
the learning rate at ``on_epoch_end``. Its state (masks, per-policy state, LR scheduler state) goes into
every checkpoint, together with the schedule itself, so a resumed run continues exactly, and one whose
schedule file was edited in between is refused or continues under the edit as the user chose
(:mod:`edgeprune.schedule.resume`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgeprune.errors import CheckpointError
from edgeprune.models.naming import normalize_module_name
from edgeprune.pruning.masks import create_model_masks_dict, mask_all_weights
from edgeprune.pruning.remover import StructureRemover
from edgeprune.schedule.build import build_policies, check_structure_coupling
from edgeprune.schedule.config import ScheduleSpec, load_schedule
from edgeprune.schedule.policies import LRPolicy, Policy, ScheduleContext
from edgeprune.schedule.resume import (
    ON_CHANGE,
    START_OVER,
    ScheduleChange,
    ScheduleChangedError,
    check_on_change,
    matching_policies,
    schedule_changes,
    schedule_document,
)
from edgeprune.training.hooks import TrainingHooks

MASKER_FLAGS = ("use_double_copies", "mask_on_forward_only")  # what pruning policies set on maskers


class CompressionScheduler(TrainingHooks):
    """Runs ``schedule`` (a file path or a checked :class:`ScheduleSpec`) on ``model``.

    ``optimizer`` may be given later: hooks receive it, and LR policies bind to the first one they see.
    ``input_shape`` (C, H, W; default ``model.input_shape``) is what thinning traces the model with.
    ``batches`` (an iterable of training batches) feeds the activation statistics of activation-ranked
    pruners; only a few batches are used. ``owns_lr`` tells the training loop to leave the LR alone when
    the schedule has LR policies. ``on_change`` says what :meth:`load_state_dict` does with a state saved
    under a different schedule: ``refuse`` (raise :class:`ScheduleChangedError`) or ``continue`` (under
    this schedule; then ``changes`` lists the differences and ``restarted`` the policies that start afresh).
    """

    def __init__(self, model: nn.Module, schedule: ScheduleSpec | str | Path,
                 optimizer: torch.optim.Optimizer | None = None, input_shape: Sequence[int] | None = None, *,
                 batches: Iterable[Any] | None = None, on_change: str = ON_CHANGE[0]) -> None:
        self.spec = schedule if isinstance(schedule, ScheduleSpec) else load_schedule(schedule)
        self.on_change = check_on_change(on_change)
        self.changes: list[ScheduleChange] = []
        self.restarted: list[Policy] = []
        self.model = model
        self.zeros_mask_dict = create_model_masks_dict(model)
        shape = input_shape or getattr(model, "input_shape", None)
        self.ctx = ScheduleContext(model, self.zeros_mask_dict, tuple(shape) if shape else None, batches)
        self.policies: list[Policy] = build_policies(self.spec, self.ctx)
        self.epoch_policies: dict[int, list[Policy]] = {}
        for policy in self.policies:
            for epoch in policy.epochs:
                self.epoch_policies.setdefault(epoch, []).append(policy)
        self.owns_lr = any(isinstance(p, LRPolicy) for p in self.policies)
        if optimizer is not None:
            self._bind(optimizer)

    def _bind(self, optimizer: torch.optim.Optimizer | None) -> None:
        """Give every LR policy the optimizer now, so all capture the same base LR (as Distiller built them)."""
        if optimizer is not None:
            for policy in self.policies:
                if isinstance(policy, LRPolicy):
                    policy.bind(optimizer)

    def _scheduled(self, epoch: int) -> list[Policy]:
        policies = self.epoch_policies.get(epoch, [])
        for policy in policies:
            policy.meta["current_epoch"] = epoch
        return policies

    # ------------------------------------------------------------------------------------------- hooks
    def on_epoch_begin(self, epoch: int, model: nn.Module | None = None,
                       optimizer: torch.optim.Optimizer | None = None) -> None:
        self._bind(optimizer)
        for policy in self._scheduled(epoch):
            policy.on_epoch_begin(optimizer)

    def on_minibatch_begin(self, epoch: int, step: int, steps_per_epoch: int,
                           optimizer: torch.optim.Optimizer | None = None) -> None:
        for policy in self._scheduled(epoch):
            policy.on_minibatch_begin(epoch, step, steps_per_epoch, optimizer)

    def before_backward_pass(self, epoch: int, step: int, steps_per_epoch: int, loss: torch.Tensor,
                             optimizer: torch.optim.Optimizer | None = None) -> torch.Tensor:
        for policy in self._scheduled(epoch):
            loss = policy.before_backward_pass(loss)
        return loss

    def before_parameter_optimization(self, epoch: int, step: int, steps_per_epoch: int,
                                      optimizer: torch.optim.Optimizer | None = None) -> None:
        for policy in self._scheduled(epoch):
            policy.before_parameter_optimization()

    def on_minibatch_end(self, epoch: int, step: int, steps_per_epoch: int,
                         optimizer: torch.optim.Optimizer | None = None) -> None:
        # The optimizer step (momentum, weight decay) moves pruned weights off zero: re-mask every minibatch.
        mask_all_weights(self.model, self.zeros_mask_dict, is_forward=False)
        for policy in self._scheduled(epoch):
            policy.on_minibatch_end(epoch, step, steps_per_epoch)

    def on_epoch_end(self, epoch: int, optimizer: torch.optim.Optimizer | None = None,
                     metrics: dict[str, float] | None = None) -> None:
        self._bind(optimizer)
        for policy in self._scheduled(epoch):
            policy.on_epoch_end(optimizer, metrics or {})

    # ------------------------------------------------------------------------------------------ one-shot
    def apply_epoch_zero(self, optimizer: torch.optim.Optimizer | None = None) -> list[Policy]:
        """Prune (and thin) as epoch 0's first minibatch would, without training; returns the policies run.

        This is ``edgeprune prune``: masks computed at ``on_epoch_begin(0)``, applied at minibatch 0,
        then any extension scheduled at epoch 0 thins the model.
        """
        self.on_epoch_begin(0, self.model, optimizer)
        self.on_minibatch_begin(0, 0, 1, optimizer)
        return list(self.epoch_policies.get(0, []))

    def compression_epochs(self) -> int:
        """Epochs until every non-LR policy has fired for the last time (the timeline of pruning and thinning)."""
        return 1 + max((epoch for epoch, policies in self.epoch_policies.items()
                        if any(not isinstance(p, LRPolicy) for p in policies)), default=0)

    def replay(self, epochs: int) -> None:
        """Run epochs ``0 .. epochs-1`` without training: each epoch's begin, one minibatch and end.

        Why: an AGP pruner reaches ``final_sparsity`` only at its last scheduled epoch and a thinning
        extension often fires after that, so the shapes a gradual schedule produces appear only at the end of
        its timeline. LR policies are skipped: nothing is trained, so there is no learning rate to set.
        """
        for epoch in range(epochs):
            policies = [p for p in self._scheduled(epoch) if not isinstance(p, LRPolicy)]
            for policy in policies:
                policy.on_epoch_begin(None)
            for policy in policies:
                policy.on_minibatch_begin(epoch, 0, 1, None)
            mask_all_weights(self.model, self.zeros_mask_dict, is_forward=False)
            for policy in policies:
                policy.on_minibatch_end(epoch, 0, 1)
            for policy in policies:
                policy.on_epoch_end(None, {})

    def thin_all(self, optimizer: torch.optim.Optimizer | None = None) -> Any:
        """Physically remove every all-zero filter and channel now (Distiller's ``--thinnify``).

        A schedule whose pruners gave coupled weights different masks is refused first, at the pruner's YAML
        key and with the fix, rather than by thinning's layer-level error.
        """
        check_structure_coupling(self.spec, self.policies, self.ctx, thin_all=True)
        return StructureRemover("contract_model").thin(self.model, self.zeros_mask_dict, optimizer=optimizer,
                                                        input_shape=self.ctx.input_shape)

    # ------------------------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {
            "masks_dict": {name: masker.mask for name, masker in self.zeros_mask_dict.items()},
            "maskers": {name: {flag: getattr(masker, flag) for flag in MASKER_FLAGS}
                        for name, masker in self.zeros_mask_dict.items()},
            "policies": [policy.state_dict() for policy in self.policies],
            "policy_index": [self._yaml_index[id(policy.spec)] for policy in self.policies],
            "schedule": schedule_document(self.spec),
        }

    @property
    def _yaml_index(self) -> dict[int, int]:
        return {id(spec): i for i, spec in enumerate(self.spec.policies)}

    def _saved_states(self, state: dict[str, Any]) -> list[dict[str, Any] | None]:
        """The saved state of each of this schedule's policies (None: it starts afresh).

        A checkpoint without a recorded schedule (older ones, Distiller's) is matched by position. One with
        a schedule is compared with this one first: see :mod:`edgeprune.schedule.resume`.
        """
        states = state.get("policies")
        saved = state.get("schedule")
        if saved is None or states is None:
            if states is not None and len(states) != len(self.policies):
                raise CheckpointError(f"The checkpoint's schedule had {len(states)} policies, this one has "
                                      f"{len(self.policies)}.", hint="Resume with the schedule the run started with.")
            return list(states or [None] * len(self.policies))
        current = schedule_document(self.spec)
        self.changes = schedule_changes(saved, current)
        if self.changes and self.on_change == "refuse":
            raise ScheduleChangedError(
                f"{self.spec.source.filename} differs from the schedule this run was trained under, so it cannot "
                "resume as saved:", changes=self.changes,
                hint="Rerun with --schedule-changed continue to train the remaining epochs under the edited "
                     f"schedule, undo the edit to resume exactly, {START_OVER}.")
        saved_by_yaml = dict(zip(state["policy_index"], states, strict=True))
        match, index = matching_policies(saved, current), self._yaml_index
        restored = [saved_by_yaml.get(match[index[id(p.spec)]]) for p in self.policies]  # type: ignore[arg-type]
        self.restarted = [p for p, s in zip(self.policies, restored, strict=True) if s is None]
        return restored

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (a Distiller ``compression_sched`` with only ``masks_dict`` works too)."""
        params = {normalize_module_name(n): p for n, p in self.model.named_parameters()}
        masks = {normalize_module_name(k): v for k, v in state.get("masks_dict", {}).items()}
        for name, mask in masks.items():
            if name not in params:
                raise CheckpointError(f"The checkpoint has a mask for {name!r}, which this model does not have.",
                                      hint="Resume with the same architecture (and thinning) as the saved run.")
            if mask is not None and tuple(mask.shape) != tuple(params[name].shape):
                raise CheckpointError(f"The checkpoint's mask for {name!r} is {tuple(mask.shape)}, but the weight "
                                      f"is {tuple(params[name].shape)}.",
                                      hint="Resume with the same architecture (and thinning) as the saved run.")
        policy_states = self._saved_states(state)
        for name, mask in masks.items():
            self.zeros_mask_dict[name].mask = None if mask is None else mask.to(params[name].device)
        for name, flags in state.get("maskers", {}).items():
            masker = self.zeros_mask_dict.get(normalize_module_name(name))
            if masker is not None:
                for flag in MASKER_FLAGS:
                    setattr(masker, flag, bool(flags.get(flag, False)))
        for policy, policy_state in zip(self.policies, policy_states, strict=True):
            if policy_state is not None:
                policy.load_state_dict(policy_state)
