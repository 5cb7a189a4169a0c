"""The before/after accuracy report of a training run under a compression schedule.

What a user wants from a pruning run is three numbers side by side: top-1/top-5/loss of the network as it
came in, right after pruning and thinning (before a single optimizer step has repaired anything), and
after each epoch of retraining. :class:`RunReport` is a training hook that measures the first two at the
exact moments they exist, and reads the per-epoch numbers from the trainer's own history, which already
holds them (and survives a resume):

* **before pruning**: measured by :meth:`RunReport.measure_start` before the training loop starts, so
  before any hook — some pruners (feature-map reconstruction) change weights when they compute masks.
* **after pruning + thinning**: at the first minibatch of the first epoch with pruning or thinning
  policies, *after* the scheduler applied the masks and ran the thinning there (the hook is registered
  after the scheduler) and before the forward pass, so no BatchNorm statistic or weight has moved.

The two measurements are hook state, so they are checkpointed and a resumed run still reports them. The
files — ``report.json``, ``report.md`` (a Markdown table) and ``accuracy.png`` (accuracy per epoch with the
pruning and thinning epochs marked) — are written when training ends; ``edgeprune report RUN_DIR`` prints
``report.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from rich.table import Table

from edgeprune.analysis.plotting import save_figure
from edgeprune.errors import ConfigError
from edgeprune.fileio import write_json, write_text
from edgeprune.models.sparsity import sparsity_table
from edgeprune.models.summary import model_summary
from edgeprune.schedule.policies import ExtensionPolicy, PruningPolicy
from edgeprune.schedule.scheduler import CompressionScheduler
from edgeprune.training.hooks import TrainingHooks
from edgeprune.training.loop import Trainer
from edgeprune.training.metrics import evaluate

FORMAT = "edgeprune.run_report"
REPORT_JSON, REPORT_MD, ACCURACY_PNG = "report.json", "report.md", "accuracy.png"
METRICS = ("top1", "top5", "loss")


def pruning_events(scheduler: CompressionScheduler, epochs: int) -> list[dict[str, Any]]:
    """Every (epoch, prune|thin, instance) the schedule fires before ``epochs``, in firing order."""
    return [{"epoch": epoch, "kind": "prune" if isinstance(policy, PruningPolicy) else "thin",
             "name": policy.instance_name}
            for epoch in sorted(scheduler.epoch_policies) if epoch < epochs
            for policy in scheduler.epoch_policies[epoch] if isinstance(policy, (PruningPolicy, ExtensionPolicy))]


class RunReport(TrainingHooks):
    """Measures a run's accuracy before and right after pruning; writes the report from the trainer's history.

    Register it with ``trainer.add_hook`` *after* the :class:`CompressionScheduler`, call
    :meth:`measure_start` before ``trainer.fit()`` on a fresh run, and :meth:`write` after it.
    """

    def __init__(self, trainer: Trainer, scheduler: CompressionScheduler) -> None:
        self.trainer = trainer
        self.events = pruning_events(scheduler, trainer.cfg.epochs)
        self.first_event = self.events[0]["epoch"] if self.events else None
        self.before: dict[str, float] | None = None
        self.after_pruning: dict[str, float] | None = None

    def measure(self) -> dict[str, float]:
        """Top-1/top-5/loss on the validation split, with the network's MACs, weights and zeroed weights (%)."""
        t = self.trainer
        metrics = evaluate(t.model, t.val_loader, t.device)
        summary = model_summary(t.model, t.val_data.input_shape)
        return {**{k: float(metrics[k]) for k in METRICS}, "macs": summary.macs,
                "weight_params": summary.weight_params, "zero_weights_pct": sparsity_table(t.model)[1]}

    def measure_start(self) -> None:
        self.before = self.measure()

    def on_minibatch_begin(self, epoch: int, step: int, steps_per_epoch: int,
                           optimizer: torch.optim.Optimizer) -> None:
        if step == 0 and epoch == self.first_event and self.after_pruning is None:
            self.after_pruning = {"epoch": epoch, **self.measure()}

    def state_dict(self) -> dict[str, Any]:
        return {"before": self.before, "after_pruning": self.after_pruning}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.before = state.get("before")
        self.after_pruning = state.get("after_pruning")

    def to_dict(self) -> dict[str, Any]:
        t = self.trainer
        epochs = [{"epoch": h["epoch"], **{k: h[k] for k in METRICS}} for h in t.history]
        final = None
        if epochs:
            summary = model_summary(t.model, t.val_data.input_shape)
            final = {**epochs[-1], "macs": summary.macs, "weight_params": summary.weight_params}
        return {"format": FORMAT, "version": 1, "run": str(t.out_dir), "arch": t.arch,
                "model": t.provenance.get("model"), "data": t.provenance.get("data"),
                "schedule": t.provenance.get("schedule"), "distillation": t.provenance.get("distillation"),
                "before_pruning": self.before,
                "after_pruning": self.after_pruning, "epochs": epochs, "final": final, "events": self.events}

    def write(self) -> dict[str, Any]:
        """Write ``report.json``, ``report.md`` and ``accuracy.png`` into the run directory."""
        report = self.to_dict()
        out = self.trainer.out_dir
        write_json(out / REPORT_JSON, report)
        write_text(out / REPORT_MD, markdown(report))
        plot_accuracy(report, out / ACCURACY_PNG)
        return report


# ---------------------------------------------------------------------------------------------- views
def report_rows(report: dict[str, Any]) -> list[list[str]]:
    """(stage, epoch, top-1, top-5, loss, MACs, weights) as text, shared by the Markdown and the terminal table."""

    def row(stage: str, epoch: Any, m: dict[str, Any] | None) -> list[str]:
        if m is None:
            return [stage, "", "not measured", "", "", "", ""]
        counts = [f"{m[key]:,}" if key in m else "" for key in ("macs", "weight_params")]
        return [stage, "" if epoch is None else str(epoch), f"{m['top1']:.2f}", f"{m['top5']:.2f}",
                f"{m['loss']:.4f}", *counts]

    rows = [row("before pruning", None, report.get("before_pruning"))]
    after = report.get("after_pruning")
    if after is not None:
        later = sorted({e["epoch"] for e in report.get("events", []) if e["epoch"] > after["epoch"]})
        stage = ("after pruning + thinning, before retraining" if not later else
                 f"after the first pruning step, before retraining (more at epoch{'s' * (len(later) > 1)} "
                 f"{', '.join(map(str, later))})")
        rows.append(row(stage, after["epoch"], after))
    rows += [row(f"after epoch {e['epoch']}", e["epoch"], e) for e in report.get("epochs", [])]
    if report.get("final"):
        rows.append(row("final", report["final"]["epoch"], report["final"]))
    return rows


COLUMNS = ("stage", "epoch", "top-1 (%)", "top-5 (%)", "loss", "MACs", "weights")


def _events_text(report: dict[str, Any]) -> str:
    by_epoch: dict[int, list[str]] = {}
    for event in report.get("events", []):
        by_epoch.setdefault(event["epoch"], []).append(f"{event['kind']} {event['name']}")
    return "; ".join(f"epoch {e}: {', '.join(names)}" for e, names in by_epoch.items()) or "none"


def _distillation_text(d: dict[str, Any] | None) -> str:
    if not d:
        return ""
    return (f", distilled from `{d['teacher']['path']}` (T {d['temperature']:g}, distillation weight "
            f"{d['distill_wt']:g}, student weight {d['student_wt']:g}, from epoch {d['start_epoch']})")


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# Run report: {report['run']}", "",
             f"model `{report.get('model')}` ({report.get('arch')}), data `{report.get('data')}`, "
             f"schedule `{report.get('schedule')}`" + _distillation_text(report.get("distillation")), "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cells) + " |" for cells in report_rows(report)]
    lines += ["", f"Pruning / thinning events: {_events_text(report)}.", "", f"![accuracy per epoch]({ACCURACY_PNG})",
              ""]
    return "\n".join(lines)


def report_table(report: dict[str, Any]) -> Table:
    table = Table(title=f"{report['run']}: {report.get('arch')} under {report.get('schedule')}",
                  caption=f"pruning / thinning events: {_events_text(report)}")
    for column in COLUMNS:
        table.add_column(column, justify="left" if column == "stage" else "right")
    for cells in report_rows(report):
        table.add_row(*cells)
    return table


def plot_accuracy(report: dict[str, Any], path: str | Path) -> Path:
    """Top-1 and top-5 after each epoch (x = epochs completed), the before/after-pruning points, event epochs."""
    fig = Figure(figsize=(8, 4.6))
    ax = fig.add_subplot()
    before, after = report.get("before_pruning"), report.get("after_pruning")
    start = [after] if after else []
    xs = [p["epoch"] for p in start] + [e["epoch"] + 1 for e in report.get("epochs", [])]  # after may be None
    for metric, style, color in (("top1", "-", "#4C72B0"), ("top5", "--", "#55A868")):
        points = start + report.get("epochs", [])
        ax.plot(xs, [p[metric] for p in points], style, marker="o", markersize=4, color=color, label=metric)
        if before:  # drawn just left of the pruning epoch: it is the network before anything fired
            ax.plot([(xs[0] if xs else 0) - 0.25], [before[metric]], "s", markerfacecolor="white", color=color,
                    markersize=7, label=f"{metric} before pruning")
    if after:
        ax.plot([after["epoch"]] * 2, [after["top1"], after["top5"]], "v", color="#C44E52", markersize=8,
                label="right after pruning + thinning")
    for i, epoch in enumerate(sorted({e["epoch"] for e in report.get("events", [])})):
        ax.axvline(epoch, color="#DD8452", linestyle=":", linewidth=1.2, label="pruning / thinning epoch" if not i
                   else None)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epochs of retraining completed")
    ax.set_ylabel("accuracy on the validation split (%)")
    ax.set_title(f"{report.get('arch')}: accuracy before / after pruning and per epoch", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    return save_figure(fig, path)


def load_run_report(run_dir: str | Path) -> dict[str, Any]:
    """The ``report.json`` of a run directory (a clear error for anything else)."""
    path = Path(run_dir) / REPORT_JSON
    if not path.is_file():
        raise ConfigError(f"{str(run_dir)!r} is not a run directory with a {REPORT_JSON}.",
                          hint="`edgeprune train MODEL --schedule SCHEDULE.yaml ... -o RUN_DIR` writes one.")
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"Cannot read {str(path)!r}: {exc}.") from None
    if not isinstance(report, dict) or report.get("format") != FORMAT:
        raise ConfigError(f"{str(path)!r} is not an edgeprune run report.")
    return report
