"""Resuming a run whose schedule file was edited: what changed, and what the user chose to do about it.

A checkpoint records the schedule it was trained under (as data: comments, layout and the flattened
copy-paste form make no difference). On resume the file given now is compared with it. An edit is
never ignored: by default the resume is refused with the list of changes (key path, old → new) and the
ways out; with ``continue`` the run goes on under the edited schedule from the next epoch: policies whose
definition is unchanged keep their saved state, edited or new ones start afresh from the YAML, and the
masks already applied stay applied (Distiller re-reads the schedule on resume in the same way).
Resuming a run trained under a schedule without one, or adding one to a run trained without, is a
change too, refused or continued the same way.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from edgeprune.errors import ConfigError
from edgeprune.schedule.config import POLICY_KINDS, KeyPath, ScheduleSpec, format_key_path
from edgeprune.schedule.policies import Policy

ON_CHANGE = ("refuse", "continue")  # the first is the default


class _Absent:
    def __repr__(self) -> str:
        return "(absent)"


ABSENT: Any = _Absent()


@dataclass(frozen=True)
class ScheduleChange:
    """One value that differs between the recorded schedule and the edited one."""

    path: KeyPath
    old: Any
    new: Any

    def __str__(self) -> str:
        return f"{format_key_path(self.path) or '(whole schedule)'}: {self.old!r} → {self.new!r}"


class ScheduleChangedError(ConfigError):
    """The schedule given for a resume differs from the one the checkpoint was trained under."""

    def __init__(self, message: str, hint: str, changes: Sequence[ScheduleChange] = ()) -> None:
        self.changes = list(changes)
        super().__init__("\n".join([message, *(f"  {change}" for change in self.changes)]), hint=hint)


START_OVER = "or start over with --no-resume (or a new --output directory)"


def check_on_change(value: str) -> str:
    if value not in ON_CHANGE:
        raise ConfigError(f"--schedule-changed must be one of {', '.join(ON_CHANGE)}, got {value!r}.")
    return value


def schedule_document(spec: ScheduleSpec) -> dict[str, Any]:
    """The schedule as plain data, the form a checkpoint records and resumes compare.

    JSON types only (a YAML date becomes its ISO text), so ``torch.load(weights_only=True)`` reads it back.
    """
    return spec.model_dump(mode="json", by_alias=True, exclude_none=True)


def schedule_changes(old: Any, new: Any, path: KeyPath = ()) -> list[ScheduleChange]:
    """Every leaf that differs, by key path; a list whose length changed counts as one change."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [change for key in [*old, *(k for k in new if k not in old)]
                for change in schedule_changes(old.get(key, ABSENT), new.get(key, ABSENT), (*path, key))]
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [change for i, (a, b) in enumerate(zip(old, new, strict=True))
                for change in schedule_changes(a, b, (*path, i))]
    return [] if _same(old, new) else [ScheduleChange(path, old, new)]


def _same(a: Any, b: Any) -> bool:
    return a == b and isinstance(a, bool) == isinstance(b, bool)  # 1 == 1.0, but 1 is not true


def policy_definitions(document: dict[str, Any]) -> list[str]:
    """Each policy with the definition of the instance it drives, as one comparable text per policy."""
    definitions = []
    for policy in document.get("policies", []):
        kind = next(k for k in POLICY_KINDS if k in policy)
        instance = document.get(POLICY_KINDS[kind], {}).get(policy[kind]["instance_name"])
        definitions.append(json.dumps([policy, instance], sort_keys=True))
    return definitions


def matching_policies(old: dict[str, Any], new: dict[str, Any]) -> list[int | None]:
    """For each policy of ``new``, the index of an identical policy of ``old`` (each used once), else None."""
    unused: dict[str, list[int]] = {}
    for i, definition in enumerate(policy_definitions(old)):
        unused.setdefault(definition, []).append(i)
    return [(unused.get(d) or [None]).pop(0) for d in policy_definitions(new)]


def recorded_schedule(hook_states: Sequence[Any]) -> dict[str, Any] | None:
    """The schedule a checkpoint's hook states record, ``{}`` for a scheduler state from before schedules were
    recorded, None when the run had no compression schedule."""
    for state in hook_states:
        if isinstance(state, dict) and "masks_dict" in state and "policies" in state:
            return state.get("schedule", {})
    return None


def check_resumed_schedule(hook_states: Sequence[Any], scheduler: Any, on_change: str, start_epoch: int,
                           run: str) -> list[str]:
    """What a resume tells the user about its schedule; raises :class:`ScheduleChangedError` when refusing.

    ``hook_states`` are the checkpoint's, ``scheduler`` the :class:`CompressionScheduler` of the schedule given
    now (None: none given; it has compared an edited schedule already). A schedule dropped or added on resume
    is a change too: dropped, its masks are no longer applied; added, its policies of past epochs never fire.
    """
    check_on_change(on_change)
    recorded = recorded_schedule(hook_states)
    if scheduler is None and recorded is not None:
        if on_change == "refuse":
            raise ScheduleChangedError(
                f"{run} was trained under a compression schedule and no --schedule is given: resuming would stop "
                "applying its masks and policies.",
                hint="Give the --schedule it was trained under to resume exactly, rerun with --schedule-changed "
                     f"continue to train on without it, {START_OVER}.")
        return [f"{run} was trained under a compression schedule; training epochs {start_epoch}.. without it "
                "(--schedule-changed continue): its masks are no longer applied"]
    if scheduler is not None and recorded is None:
        name = scheduler.spec.source.filename
        if on_change == "refuse":
            raise ScheduleChangedError(
                f"{run} was trained without a compression schedule: resuming under {name} would start it at epoch "
                f"{start_epoch}, and its policies of earlier epochs would never fire.",
                hint=f"Resume without --schedule to continue as saved, rerun with --schedule-changed continue to "
                     f"apply it from epoch {start_epoch}, {START_OVER}.")
        return [f"{run} was trained without a compression schedule; training epochs {start_epoch}.. under {name} "
                f"(--schedule-changed continue): its policies of epochs before {start_epoch} never fire"]
    if scheduler is None or not scheduler.changes:
        return []
    return _continue_notice(scheduler.changes, scheduler.restarted, scheduler.spec, start_epoch)


def _continue_notice(changes: Sequence[ScheduleChange], restarted: Sequence[Policy], spec: ScheduleSpec,
                     start_epoch: int) -> list[str]:
    """What a resume under an edited schedule tells the user: the changes, and which policies start afresh."""
    index = {id(policy): i for i, policy in enumerate(spec.policies)}
    lines = [f"{spec.source.filename} changed since the checkpoint; training epochs {start_epoch}.. under the "
             "edited schedule (--schedule-changed continue):", *(f"  {change}" for change in changes)]
    for policy in restarted:
        name = f"policies[{index[id(policy.spec)]}] ({policy.kind} {policy.instance_name!r})"
        upcoming = [e for e in policy.epochs if e >= start_epoch]
        lines.append(f"  {name} starts afresh at epoch {upcoming[0]}" if upcoming else
                     f"  {name} fires in no epoch from {start_epoch} on, so its edit changes nothing in this run; "
                     "start over with --no-resume to apply it")
    return lines
