"""``edgeprune report STUDY -o report.html``: one static HTML file about a sweep, readable offline.

What it shows, in the order a reader asks: the Pareto front of top-1 against measured latency (MACs as the
marker colour, the dense model as a star, trials that break the sweep's constraints as red crosses, never on
the front), a parallel-coordinates view of parameters against objectives,
parameter importance (random forest as WandB, PED-ANOVA) next to linear correlation, each trial's
per-epoch metric (early-terminated trials dashed), sensitivity plots found in the run directory, and a
table of every trial linking its artifacts, with its latency speed-up over the dense model when both were
measured and, for a sweep with constraints, which bound an infeasible trial broke and by how much.

Why matplotlib SVG inlined into the HTML rather than plotly: the file must open with no network and no
JavaScript at all (a CDN script or a 4 MB inlined bundle per report is fragile to mail or archive), and the
same figures are written as PNG with ``--png``. ``STUDY`` is a sweep's run directory, its ``study.db``, or
any study storage URL.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import os
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from edgeprune.errors import ConfigError
from edgeprune.fileio import write_text
from edgeprune.sweep.analysis import pareto_mask
from edgeprune.sweep.constraints import describe_all, explain
from edgeprune.sweep.results import StudyData, load_study_data, metric_value

STATE_COLOURS = {"COMPLETE": "#1b7837", "PRUNED": "#b8860b", "FAIL": "#b2182b", "RUNNING": "#2166ac",
                 "WAITING": "#777777"}
INFEASIBLE_COLOUR = "#b2182b"


# ------------------------------------------------------------------------------------------------- figures
def pareto_figure(data: StudyData) -> Figure | None:
    axes = data.front_axes()
    if axes is None:
        return None
    (xn, xg), (yn, yg) = axes
    measured = [t for t in data.complete if metric_value(t, xn) is not None and metric_value(t, yn) is not None]
    if not measured:
        return None
    trials = [t for t in measured if not explain(t)]  # the feasible ones: the front is theirs alone
    infeasible = [t for t in measured if t not in trials]
    xy = np.array([[metric_value(t, xn), metric_value(t, yn)] for t in trials], float).reshape(-1, 2)
    on_front = pareto_mask(xy, [xg == "maximize", yg == "maximize"])
    macs = [metric_value(t, "macs") for t in trials]
    fig = Figure(figsize=(7.5, 4.8))
    ax = fig.add_subplot()
    if infeasible:
        bad = np.array([[metric_value(t, xn), metric_value(t, yn)] for t in infeasible], float)
        ax.scatter(bad[:, 0], bad[:, 1], marker="x", s=40, color=INFEASIBLE_COLOUR, zorder=3,
                   label=f"infeasible ({describe_all(data.constraints) or 'breaks a constraint'})")
        for t, (x, y) in zip(infeasible, bad, strict=True):
            ax.annotate(f"#{t.number}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7,
                        color=INFEASIBLE_COLOUR)
    for spec in data.constraints:  # the bounds that lie on an axis, as dashed lines
        for _, bound in spec.bounds():
            if spec.name in (xn, yn):
                (ax.axvline if spec.name == xn else ax.axhline)(bound, color=INFEASIBLE_COLOUR, linestyle="--",
                                                                linewidth=0.8, zorder=1)
    if trials and all(m is not None for m in macs):
        points = ax.scatter(xy[:, 0], xy[:, 1], c=np.array(macs, float) / 1e6, cmap="viridis", s=46, zorder=3,
                            edgecolors=np.where(on_front, "black", "none"), linewidths=1.4)
        fig.colorbar(points, ax=ax, label="MMACs per image")
    else:
        ax.scatter(xy[:, 0], xy[:, 1], s=46, zorder=3, edgecolors=np.where(on_front, "black", "none"))
    front = xy[on_front][np.argsort(xy[on_front][:, 0])]
    ax.step(front[:, 0], front[:, 1], where="post", color="black", linewidth=1, zorder=2,
            label="Pareto front" if len(front) else "_nolegend_")
    for t, (x, y), keep in zip(trials, xy, on_front, strict=True):
        if keep:
            ax.annotate(f"#{t.number}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    base = data.attrs.get("baseline") or {}
    if isinstance(base.get(xn), (int, float)) and isinstance(base.get(yn), (int, float)):
        ax.scatter([base[xn]], [base[yn]], marker="*", s=180, color="#d6604d", zorder=4, label="dense model")
    ax.set_xlabel(xn + (" (median, ms)" if xn == "latency_ms" else ""))
    ax.set_ylabel(yn + (" (%)" if yn == "top1" else ""))
    ax.set_title(f"{yn} vs {xn}: {int(on_front.sum())} of {len(measured)} trials on the Pareto front"
                 + (f", {len(infeasible)} infeasible" if infeasible else ""))
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return fig


def parallel_figure(data: StudyData) -> Figure | None:
    """One line per completed trial across its parameters and objectives, each axis scaled to its range."""
    trials = data.complete
    columns = [(p, "param") for p in data.params] + [(o["name"], "metric") for o in data.objectives]
    if len(trials) < 2 or not columns:
        return None
    table, labels = [], []
    for name, kind in columns:
        raw = [t.user_attrs.get("config", {}).get(name) if kind == "param" else metric_value(t, name) for t in trials]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in raw)
        if numeric:
            values = np.array(raw, float)
            lo, hi = float(values.min()), float(values.max())
            labels.append((name, f"{hi:.4g}", f"{lo:.4g}"))
        else:
            cats = sorted({repr(v) for v in raw})
            values = np.array([cats.index(repr(v)) for v in raw], float)
            lo, hi = 0.0, float(max(len(cats) - 1, 1))
            labels.append((name, cats[-1], cats[0]))
        table.append((values - lo) / (hi - lo) if hi > lo else np.full(len(raw), 0.5))
    matrix = np.array(table).T
    colour_by = np.array([metric_value(t, data.objectives[0]["name"]) or 0.0 for t in trials])
    span = np.ptp(colour_by) or 1.0
    fig = Figure(figsize=(max(6.0, 1.5 * len(columns)), 4.2))
    ax = fig.add_subplot()
    cmap = matplotlib.colormaps["plasma"]
    xs = np.arange(len(columns))
    for row, c in zip(matrix, colour_by, strict=True):
        ax.plot(xs, row, color=cmap((c - colour_by.min()) / span), alpha=0.75, linewidth=1.3)
    for x, (_, top, bottom) in zip(xs, labels, strict=True):
        ax.axvline(x, color="#444", linewidth=0.8)
        ax.text(x, 1.04, top, ha="center", fontsize=8)
        ax.text(x, -0.08, bottom, ha="center", fontsize=8)
    ax.set_xticks(xs, [name for name, *_ in labels], rotation=15, fontsize=9)
    ax.set_yticks([])
    ax.set_ylim(-0.12, 1.1)
    ax.set_title(f"Parameters and objectives of {len(trials)} completed trials (colour: {data.objectives[0]['name']})")
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    fig.tight_layout()
    return fig


def importance_figure(data: StudyData) -> Figure | None:
    analysis = (data.attrs.get("analysis") or {}).get("metrics") or {}
    rows = [(m, a) for m, a in analysis.items() if a.get("importance") or any(
        v is not None for v in a.get("correlation", {}).values())]
    if not rows:
        return None
    params = data.params
    fig = Figure(figsize=(9.5, 1.0 + 0.45 * len(params) * len(rows) + 0.6 * len(rows)))
    axes = fig.subplots(len(rows), 2, squeeze=False)
    y = np.arange(len(params))
    for (metric, a), (ax_imp, ax_cor) in zip(rows, axes, strict=True):
        evaluators = list(a.get("importance", {}).items())
        height = 0.8 / max(len(evaluators), 1)
        for i, (name, scores) in enumerate(evaluators):
            ax_imp.barh(y + i * height, [scores.get(p, 0.0) for p in params], height=height,
                        label={"random_forest": "random forest (WandB)", "ped_anova": "PED-ANOVA"}.get(name, name))
        ax_imp.set_yticks(y + 0.4 - height / 2, params, fontsize=8)
        ax_imp.set_xlim(0, 1)
        ax_imp.set_title(f"importance for {metric}", fontsize=10)
        if evaluators:
            ax_imp.legend(fontsize=7, loc="best", framealpha=0.9)
        else:
            ax_imp.text(0.5, 0.5, "not enough trials yet", ha="center", va="center", transform=ax_imp.transAxes)
        corr = [a.get("correlation", {}).get(p) for p in params]
        ax_cor.barh(y, [c or 0.0 for c in corr], color=["#2166ac" if (c or 0) >= 0 else "#b2182b" for c in corr])
        ax_cor.set_yticks(y, params, fontsize=8)
        ax_cor.set_xlim(-1, 1)
        ax_cor.axvline(0, color="#444", linewidth=0.8)
        ax_cor.set_title(f"correlation with {metric} (Pearson)", fontsize=10)
    fig.tight_layout()
    return fig


def history_figure(data: StudyData) -> Figure | None:
    metric = (data.attrs.get("metric") or {}).get("name") or data.objectives[0]["name"]
    series = [(t, [h[metric] for h in t.user_attrs.get("history", []) if isinstance(h.get(metric), (int, float))])
              for t in data.trials]
    series = [(t, s) for t, s in series if s]
    if not series:
        return None
    fig = Figure(figsize=(7.5, 3.6))
    ax = fig.add_subplot()
    for t, s in series:
        ax.plot(range(len(s)), s, marker="o", markersize=3, linewidth=1, color=STATE_COLOURS.get(t.state.name),
                linestyle="--" if t.state.name == "PRUNED" else "-", alpha=0.8)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("step (retraining epoch)")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} per step: completed (green), early-terminated (dashed), failed (red)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _svg(fig: Figure) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})  # the same study gives the same figure
    text = buf.getvalue()
    return text[text.index("<svg"):]


# ---------------------------------------------------------------------------------------------------- HTML
def _fmt(value: Any) -> str:
    """Counts (MACs, weights) in full with thousands separators, other numbers to 4 significant digits."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and float(value).is_integer() \
            and abs(value) >= 1000:
        return f"{int(value):,}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


def _link(path: str, base: Path) -> str:
    rel = os.path.relpath(path, base) if Path(path).exists() else path
    return f'<a href="{html.escape(Path(rel).as_posix())}">{html.escape(Path(path).name)}</a>'


def trial_table(data: StudyData, base: Path) -> str:
    metrics = sorted({k for t in data.trials for k in t.user_attrs.get("metrics", {})},
                     key=lambda k: ([o["name"] for o in data.objectives] + [k]).index(k))
    dense_ms = (data.attrs.get("baseline") or {}).get("latency_ms")
    speedup = isinstance(dense_ms, (int, float)) and dense_ms > 0 and "latency_ms" in metrics
    constrained = bool(data.constraints)
    head = ["#", "state", *data.params, *metrics, *(["speed-up"] if speedup else []),
            *(["constraints"] if constrained else []), "seconds", "artifacts / error"]
    rows = []
    for t in data.trials:
        config = t.user_attrs.get("config", {})
        m = t.user_attrs.get("metrics", {})
        ratio = ([f"{dense_ms / m['latency_ms']:.2f}×" if m.get("latency_ms") else ""] if speedup else [])
        seconds = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete and \
            t.datetime_start else None
        artifacts = " ".join(_link(p, base) for p in t.user_attrs.get("artifacts", {}).values())
        error = t.user_attrs.get("error")
        last = artifacts or (f'<pre>{html.escape(error[-600:])}</pre>' if error else "")
        cells = [str(t.number), f'<span style="color:{STATE_COLOURS.get(t.state.name, "#000")}">{t.state.name}</span>',
                 *(_fmt(config.get(p, "")) for p in data.params), *(_fmt(m.get(k, "")) for k in metrics), *ratio,
                 *([_feasibility(t)] if constrained else []), _fmt(seconds) if seconds is not None else "", last]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    header = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join(rows)
    return f'<div style="overflow-x:auto"><table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table></div>'


def _feasibility(trial: Any) -> str:
    """A completed trial's standing against the constraints: ``ok``, or ``infeasible:`` and what it broke."""
    if trial.state.name != "COMPLETE":
        return ""
    broken = explain(trial)
    if not broken:
        return "ok"
    return f'<span class="infeasible">infeasible: {html.escape(broken)}</span>'


def sensitivity_images(run_dir: Path | None) -> list[tuple[str, str]]:
    """(title, inline HTML) of every sensitivity picture in the run directory (written by ``edgeprune sensitivity``)."""
    if run_dir is None:
        return []
    found = []
    for path in sorted(run_dir.rglob("*sensitivity*")):
        if path.suffix == ".svg":
            found.append((path.name, path.read_text(encoding="utf-8")))
        elif path.suffix == ".png":
            encoded = base64.b64encode(path.read_bytes()).decode()
            found.append((path.name, f'<img alt="{html.escape(path.name)}" src="data:image/png;base64,{encoded}">'))
    return found


CSS = """body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1200px;color:#222;padding:0 1rem}
h1{margin-bottom:.2rem}h2{margin-top:2rem;border-bottom:1px solid #ddd}.muted{color:#666}
table{border-collapse:collapse;font-size:.85rem;width:100%}td,th{border:1px solid #ddd;padding:.25rem .45rem;
text-align:right;vertical-align:top}th{background:#f4f4f4}td:last-child{text-align:left}pre{white-space:pre-wrap;
margin:0;font-size:.75rem;max-width:32rem}svg,img{max-width:100%;height:auto}dl{display:grid;
grid-template-columns:max-content auto;gap:.2rem 1rem}dt{font-weight:600}.infeasible{color:#b2182b}"""


def render_report(data: StudyData, out: Path, *, png: bool = False) -> str:
    """The report's HTML; with ``png`` each figure is also written beside ``out`` as ``<stem>-<figure>.png``."""
    figures = {"pareto": pareto_figure(data), "parallel": parallel_figure(data),
               "importance": importance_figure(data), "history": history_figure(data)}
    titles = {"pareto": "Pareto front", "parallel": "Parallel coordinates",
              "importance": "Parameter importance and correlation", "history": "Validation metric per step"}
    sections = []
    for key, fig in figures.items():
        if fig is None:
            continue
        if png:
            fig.savefig(out.with_name(f"{out.stem}-{key}.png"), format="png", dpi=110)
        sections.append(f"<h2>{titles[key]}</h2>{_svg(fig)}")
    sensitivity = sensitivity_images(data.run_dir)
    if sensitivity:
        sections.append("<h2>Sensitivity</h2>" + "".join(f"<h3>{html.escape(t)}</h3>{body}" for t, body in sensitivity))
    states = [t.state.name for t in data.trials]
    counts = ", ".join(f"{states.count(s)} {s.lower()}" for s in STATE_COLOURS if states.count(s))
    sweep = data.attrs.get("sweep") or {}
    facts = {
        "storage": data.storage, "method": sweep.get("method", "?") + (
            f" ({sweep.get('sampler', 'gp')})" if sweep.get("method") == "bayes" else ""),
        "objectives": ", ".join(f"{o['goal']} {o['name']}" for o in data.objectives),
        **({"constraints": describe_all(data.constraints)} if data.constraints else {}),
        "trials": counts or "none",
        "dense model": ", ".join(f"{k} {_fmt(v)}" for k, v in (data.attrs.get("baseline") or {}).items()) or "—",
        "written": dt.datetime.now().isoformat(timespec="seconds"),
    }
    head = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>" for k, v in facts.items())
    desc = html.escape(data.attrs.get("description") or "")
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(data.name)}</title>"
            f"<style>{CSS}</style></head><body><h1>Sweep {html.escape(data.name)}</h1><p class=\"muted\">{desc}</p>"
            f"<dl>{head}</dl>{''.join(sections)}<h2>Trials</h2>{trial_table(data, out.parent)}</body></html>\n")


def write_study_report(target: str, out: str | Path | None = None, *, study_name: str | None = None,
                       png: bool = False) -> Path:
    """Write the HTML report of the sweep at ``target``; default ``RUN_DIR/report.html``."""
    data = load_study_data(target, study_name)
    if out is None:
        if data.run_dir is None:
            raise ConfigError("A study in a remote storage needs -o REPORT.html.")
        out = data.run_dir / "report.html"
    out = Path(out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise ConfigError(f"The report {out} must end in .html.")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out, render_report(data, out.resolve(), png=png))
    return out
