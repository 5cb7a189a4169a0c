"""What a schedule will do, epoch by epoch, without training (``edgeprune schedule check``).

Distiller's timing rules are easy to misread (``ending_epoch`` is exclusive, LR policies run after all
others, AGP reaches ``final_sparsity`` only at the last *scheduled* epoch, a ``keep_mask`` on a range
whose last epoch is never scheduled never fires), so the check prints the exact firing order the
scheduler will follow, built with the same code as a real run. A policy that fires the same way in a
regular run of epochs (an LR decay from epoch 10 to 300) is one line, ``10–299, every epoch``; the
per-epoch rows stay available.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
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

    def to_dict(self) -> dict[str, object]:
        return {("class" if k == "cls" else k): v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class TimelineRun:
    """Firings of one policy at a regular step: ``first.epoch``, ``first.epoch + step``, ..., ``last.epoch``."""

    first: TimelineRow
    last: TimelineRow
    step: int  # 0 for a single firing
    count: int

    @property
    def epochs_text(self) -> str:
        """``7``; ``3, 7``; ``10–299, every epoch``; ``0–28, every 2nd epoch``."""
        if self.count == 1:
            return str(self.first.epoch)
        if self.count == 2:
            return f"{self.first.epoch}, {self.last.epoch}"
        every = "every epoch" if self.step == 1 else f"every {_ordinal(self.step)} epoch"
        return f"{self.first.epoch}–{self.last.epoch}, {every}"

    @property
    def agp_text(self) -> str:
        """The AGP target, or the ramp ``0.1000 → 0.5000`` over the run."""
        first, last = self.first.agp_target, self.last.agp_target
        if first is None or last is None:
            return ""
        return f"{first:.4f}" if self.count == 1 else f"{first:.4f} → {last:.4f}"


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


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


def timeline_runs(rows: list[TimelineRow]) -> list[TimelineRun]:
    """:func:`timeline` rows with each policy's firings at a regular step merged into one run.

    Runs are ordered by their first epoch, then in the scheduler's order within that epoch, like the rows.
    An AGP pruner's run shows its target ramp; the per-epoch targets are in the rows.
    """
    order = {id(row): i for i, row in enumerate(rows)}
    runs: list[TimelineRun] = []
    for policy in dict.fromkeys(row.policy for row in rows):
        for row in (r for r in rows if r.policy == policy):
            run = runs[-1] if runs and runs[-1].first.policy == policy else None
            step = row.epoch - run.last.epoch if run else 0
            if run and (run.count == 1 or step == run.step):
                runs[-1] = TimelineRun(run.first, row, step, run.count + 1)
            else:
                runs.append(TimelineRun(row, row, 0, 1))
    return sorted(runs, key=lambda r: (r.first.epoch, order[id(r.first)]))


def timeline_table(rows: list[TimelineRow], title: str = "Schedule timeline", per_epoch: bool = False) -> Table:
    """A Rich table of :func:`timeline` rows: one line per run of a policy's firings, or per firing."""
    runs = [TimelineRun(row, row, 0, 1) for row in rows] if per_epoch else timeline_runs(rows)
    table = Table(title=title)
    for column in ("Epoch" if per_epoch else "Epochs", "Policy", "Kind", "Instance", "Class", "AGP target"):
        table.add_column(column, justify="left" if column in ("Epochs", "Kind", "Instance", "Class") else "right")
    for run in runs:
        row = run.first
        table.add_row(run.epochs_text, f"policies[{row.policy}]", row.kind, row.instance, row.cls, run.agp_text)
    return table
