"""The search's one-file HTML report: budget against measured latency, the widths chosen, the latency model's
predictions against measurements, and accuracy before pruning, after pruning and after fine-tuning."""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from matplotlib.figure import Figure

from edgeprune.analysis.plotting import figure_svg
from edgeprune.budget_search.space import SearchSpace
from edgeprune.fileio import write_text
from edgeprune.report.study_html import CSS

if TYPE_CHECKING:
    from edgeprune.budget_search.run import SearchResult

KIND_COLOURS = {"dense": "#222222", "narrowest": "#888888", "calibration": "#1f77b4", "uniform": "#ff7f0e",
                "candidate": "#2ca02c"}


LOSS_RISE = ("mean cross-entropy on the search's training images of the network thinned, its BatchNorm statistics "
             "re-estimated, minus the dense network's")
PAIRED = ("latency as a fraction of the dense network's, the two timed in alternating rounds on the device; the "
          "measured ms is this times the dense network's latency")
HELD_OUT = ("after fine-tuning, on the training images held out of it (--validation-share): the search picks its "
            "result by this, never by the test split")


def prediction_figure(result: SearchResult) -> Figure | None:
    points = [m for m in result.measured if m.predicted_ms is not None]
    if not points:
        return None
    fig = Figure(figsize=(5.5, 4.5))
    ax = fig.add_subplot()
    for kind, colour in KIND_COLOURS.items():
        xs = [m.measured_ms for m in points if m.kind == kind]
        ys = [m.predicted_ms for m in points if m.kind == kind]
        if xs:
            ax.scatter(xs, ys, label=kind, color=colour, s=22)
    lo = min(min(m.measured_ms, m.predicted_ms or m.measured_ms) for m in points) * 0.95
    hi = max(max(m.measured_ms, m.predicted_ms or m.measured_ms) for m in points) * 1.05
    ax.plot([lo, hi], [lo, hi], color="#bbbbbb", lw=1, zorder=0)
    ax.axvline(result.budget_ms, color="#d62728", lw=1, ls="--", label="budget")
    ax.set_xlabel("measured latency (ms)")
    ax.set_ylabel("predicted latency (ms)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _row(cells: list[Any]) -> str:
    return "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>"


def _fmt(v: float | None, spec: str = ".4g") -> str:
    return "—" if v is None else format(v, spec)


def render(result: SearchResult, space: SearchSpace, fingerprint: Mapping[str, Any]) -> str:
    best, dense = result.best, result.dense
    facts = {
        "device": f"{fingerprint.get('device_name')} ({fingerprint.get('backend')}, {fingerprint.get('precision')}, "
                  f"{fingerprint.get('threads')} thread(s), batch {fingerprint.get('batch')}, runtime "
                  f"{fingerprint.get('runtime_version')})",
        "budget": f"{result.budget_ms:.4g} ms",
        "dense model": f"{dense.measured_ms:.4g} ms, {dense.macs:,} MACs, top-1 {result.dense_top1:.2f}",
        "result": f"{best.measured_ms:.4g} ms measured ({best.measured_ms / result.budget_ms:.3f} of the budget, "
                  f"{dense.measured_ms / best.measured_ms:.2f}x faster), {best.macs:,} MACs",
        "accuracy (test split)": f"before pruning {result.dense_top1:.2f}, after pruning "
                                 f"{_fmt(best.top1_pruned, '.2f')}, after fine-tuning "
                                 f"{_fmt(best.top1_finetuned, '.2f')}",
        "picked by": f"top-1 {_fmt(best.top1_validation, '.2f')} on the held-out training images",
        "latency table": f"{result.table_kernels} kernels, {result.table_measured_now} measured by this run",
        "written": dt.datetime.now().isoformat(timespec="seconds"),
    }
    head = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>" for k, v in facts.items())
    widths = "".join(_row([u.name, ", ".join(u.members), u.width, best.widths[u.name],
                           f"{best.widths[u.name] / u.width:.2f}"]) for u in space.units)
    measured = "".join(_row([m.kind, _fmt(m.measured_ms), _fmt(m.ratio, ".3f"), _fmt(m.predicted_ms),
                             _fmt(None if m.predicted_ms is None else 100 * (m.predicted_ms - m.measured_ms)
                                  / m.measured_ms, "+.1f"),
                             "yes" if m.measured_ms <= result.budget_ms else "no", f"{m.macs:,}" if m.macs else "—",
                             _fmt(m.estimated_loss, ".4f"), _fmt(m.top1_pruned, ".2f"), _fmt(m.top1_validation, ".2f"),
                             _fmt(m.top1_finetuned, ".2f"),
                             " ".join(str(m.widths[u.name]) for u in space.units)]) for m in result.measured)
    fig = prediction_figure(result)
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>edgeprune search</title>"
            f"<style>{CSS}</style></head><body><h1>Latency-budget search</h1><dl>{head}</dl>"
            "<h2>Widths chosen</h2><table><tr><th>unit</th><th>convs (one width)</th><th>dense</th><th>chosen</th>"
            f"<th>fraction</th></tr>{widths}</table>"
            + (f"<h2>Predicted against measured latency</h2>{figure_svg(fig)}" if fig is not None else "")
            + "<h2>Every network measured</h2><table><tr><th>kind</th><th>measured ms</th>"
              f"<th title=\"{PAIRED}\">× dense</th><th>predicted ms</th>"
              "<th>error %</th><th>under budget</th><th>MACs</th>"
              f"<th title=\"{LOSS_RISE}\">loss rise</th><th>top-1 pruned</th>"
              f"<th title=\"{HELD_OUT}\">top-1 held out</th><th>top-1 fine-tuned (test)</th>"
              f"<th>widths ({', '.join(u.name for u in space.units)})</th></tr>{measured}"
              "</table></body></html>\n")


def write_report(result: SearchResult, space: SearchSpace, fingerprint: Mapping[str, Any], out: Path) -> Path:
    write_text(out, render(result, space, fingerprint))
    return out
