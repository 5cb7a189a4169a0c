"""What a schedule will do, epoch by epoch, without training (``edgeprune schedule check``).

Distiller's timing rules are easy to misread (``ending_epoch`` is exclusive, LR policies run after all
others, AGP reaches ``final_sparsity`` only at the last *scheduled* epoch, a ``keep_mask`` on a range
whose last epoch is never scheduled never fires), so the check prints the exact firing order the
scheduler will follow, built with the same code as a real run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.table import Table
from torch import nn

from edgeprune.pruning.masks import create_model_masks_dict
from edgeprune.pruning.pruners.agp import agp_target_sparsity
from edgeprune.schedule.build import build_policies, is_agp
from edgeprune.schedule.config import ScheduleSpec, load_schedule
from edgeprune.schedule.policies import Policy, PruningPolicy, ScheduleContext


@dataclass(frozen=True)
class TimelineRow:
    """One policy firing in one epoch, in the scheduler's order within that epoch."""

    epoch: int
    policy: int  # index in the YAML ``policies`` list
    kind: str  # pruner | regularizer | extension | lr_scheduler
    instance: str
    cls: str
    agp_target: float | None = None  # AGP pruners: the sparsity they prune to in this epoch


def _agp_target(policy: Policy, epoch: int) -> float | None:
    if not isinstance(policy, PruningPolicy) or not is_agp(type(policy.pruner)):
        return None
    meta = policy.meta
    return agp_target_sparsity(policy.pruner.initial_sparsity, policy.pruner.final_sparsity, meta["starting_epoch"],
                               meta["ending_epoch"], meta["frequency"], epoch)


def timeline(schedule: ScheduleSpec | str | Path, model: nn.Module, epochs: int | None = None) -> list[TimelineRow]:
    """Every (epoch, policy) firing of ``schedule`` on ``model``, in order; only epochs ``< epochs`` if given.

    Building validates the whole schedule against the model, so this raises the same
    :class:`~edgeprune.schedule.config.ScheduleError` a run would.
    """
    if not isinstance(schedule, ScheduleSpec):
        schedule = load_schedule(schedule)
    ctx = ScheduleContext(model, create_model_masks_dict(model), getattr(model, "input_shape", None))
    policies = build_policies(schedule, ctx)  # in the scheduler's within-epoch order
    index = {id(spec): i for i, spec in enumerate(schedule.policies)}
    fired = sorted({e for p in policies for e in p.epochs if epochs is None or e < epochs})
    return [TimelineRow(epoch, index[id(p.spec)], p.kind, p.instance_name,
                        schedule.section(p.kind)[p.instance_name].class_name, _agp_target(p, epoch))
            for epoch in fired for p in policies if epoch in p.epochs]


def timeline_table(rows: list[TimelineRow], title: str = "Schedule timeline") -> Table:
    """A Rich table of :func:`timeline` rows."""
    table = Table(title=title)
    for column in ("Epoch", "Policy", "Kind", "Instance", "Class", "AGP target"):
        table.add_column(column, justify="right" if column in ("Epoch", "Policy", "AGP target") else "left")
    for row in rows:
        table.add_row(str(row.epoch), f"policies[{row.policy}]", row.kind, row.instance, row.cls,
                      "" if row.agp_target is None else f"{row.agp_target:.4f}")
    return table
