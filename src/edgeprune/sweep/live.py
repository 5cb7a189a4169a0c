"""edgeprune's views on the live dashboard, saved into the study each time a result is told.

optuna-dashboard (``edgeprune dashboard``, :mod:`edgeprune.sweep.dashboard`) draws what any study has —
trials, parameters, objectives, its own Pareto front and importances — from the study as it grows. What it
cannot know is what an edgeprune result means: that ``latency_ms`` was *measured* on a device (which one),
that the dense model is the reference every trial is compared with (its speed-up), how many MACs pruning
removed, and which trials break a latency budget or the sweep's constraints. Those views are plotly figures
saved into the study with optuna-dashboard's own ``save_plotly_graph_object``; the dashboard shows saved figures
on the study's page and its live update fetches them again with the trials, so they follow the sweep without a
reload.

They are saved where results are told (:meth:`edgeprune.sweep.engine.SweepStudy.complete`, and when the
consumer has measured the dense model), so every dashboard on the study — on any machine — sees them, and
again when ``edgeprune dashboard`` starts, for studies told by agents without the ``dashboard`` extra.
Each figure keeps one id and is overwritten, never appended.

The latency budget (``edgeprune dashboard --latency-budget MS``) is stored with the study, so whoever tells
the next result draws it too: trials over it are drawn apart and left out of the front. Trials that break the
sweep file's ``constraints`` (:mod:`edgeprune.sweep.constraints`) are drawn apart too, with what they broke.
"""

from __future__ import annotations

import importlib.util
from collections import Counter
from dataclasses import dataclass
from typing import Any

import optuna

from edgeprune.sweep.analysis import front
from edgeprune.sweep.constraints import describe_all, explain
from edgeprune.sweep.results import StudyData, metric_value, study_data

FRONT_ID = "edgeprune-front"
TABLE_ID = "edgeprune-front-table"
SPEEDUP_ID = "edgeprune-speedup"
BUDGET_ATTR = "latency_budget_ms"
DENSE_COLOUR, OVER_COLOUR, INFEASIBLE_COLOUR = "#d6604d", "#9e9e9e", "#b2182b"
HEIGHT = 440  # the dashboard gives each saved figure a 450-px box


def available() -> bool:
    """Whether the ``dashboard`` extra (optuna-dashboard and plotly) is installed here."""
    return all(importlib.util.find_spec(name) is not None for name in ("optuna_dashboard", "plotly"))


def publish_live_views(study: optuna.Study, url: str = "") -> list[str]:
    """Save (overwrite) edgeprune's figures into ``study``; returns their ids, none without the extra."""
    if not available():
        return []
    from optuna_dashboard import save_plotly_graph_object

    figures = live_views(study_data(study, url))
    for graph_id, figure in figures.items():
        save_plotly_graph_object(study, figure, graph_object_id=graph_id)
    return list(figures)


def set_latency_budget(study: optuna.Study, budget_ms: float | None) -> None:
    """Store (or, with None, remove the effect of) the latency budget the live views mark infeasible trials by."""
    study.set_user_attr(BUDGET_ATTR, budget_ms)


# ------------------------------------------------------------------------------------------------ the views
def _speedup(dense: dict[str, Any], latency: float | None) -> float | None:
    dense_ms = dense.get("latency_ms")
    return dense_ms / latency if isinstance(dense_ms, (int, float)) and dense_ms > 0 and latency else None


def devices(data: StudyData) -> str:
    """Where the study's latencies were measured: one line, or each device with its count when they differ."""
    counts = Counter(t.user_attrs["measured_on"] for t in data.complete if t.user_attrs.get("measured_on"))
    if not counts:
        return "device not recorded"
    if len(counts) == 1:
        return f"measured on {next(iter(counts))}"
    return "measured on " + "; ".join(f"{device} ({n} trials)" for device, n in counts.most_common())


def _hover(t: Any, xn: str, yn: str, dense: dict[str, Any]) -> str:
    x, y, macs = metric_value(t, xn), metric_value(t, yn), metric_value(t, "macs")
    lines = [f"<b>trial {t.number}</b>", f"{yn} {y:.4g}", f"{xn} {x:.4g}"]
    speedup = _speedup(dense, x) if xn == "latency_ms" else None
    if speedup is not None:
        lines.append(f"speed-up {speedup:.2f}× over dense")
    if macs is not None:
        share = f" ({macs / dense['macs']:.0%} of dense)" if isinstance(dense.get("macs"), (int, float)) else ""
        lines.append(f"{macs / 1e6:.3g} MMACs{share}")
    lines += [f"{k} = {v}" for k, v in t.user_attrs.get("config", {}).items()]
    broken = explain(t)
    return "<br>".join(lines + ([f"<b>infeasible</b>: {broken}"] if broken else []))


@dataclass
class Front:
    """The front's axes and trials as both front views draw them: the measured ones, those that break the sweep's
    constraints, those (else feasible) over the budget, and the feasible ones no other feasible trial beats, fastest
    first."""

    x: str
    y: str
    dense: dict[str, Any]
    budget: float | None
    trials: list[Any]
    over: list[Any]
    on_front: list[Any]
    infeasible: list[Any]

    @property
    def shown(self) -> list[Any]:
        """The trials drawn as candidates: neither infeasible nor over the budget."""
        return [t for t in self.trials if t not in self.over and t not in self.infeasible]


def front_of(data: StudyData) -> Front | None:
    axes = data.front_axes()
    if axes is None:
        return None
    (xn, xg), (yn, yg) = axes
    budget = data.attrs.get(BUDGET_ATTR) if xn == "latency_ms" else None
    trials = [t for t in data.complete if metric_value(t, xn) is not None and metric_value(t, yn) is not None]
    infeasible = [t for t in trials if explain(t)]
    over = [t for t in trials if budget is not None and metric_value(t, xn) > budget and t not in infeasible]
    within = [t for t in trials if t not in over]
    on_front = sorted(front(within, {xn: xg, yn: yg}), key=lambda t: metric_value(t, xn))  # feasible ones only
    return Front(xn, yn, data.attrs.get("baseline") or {}, budget, trials, over, on_front, infeasible)


def front_figure(data: StudyData) -> Any:
    """Top-1 against measured latency: MACs as colour, the front as a step line, the dense model as a star,
    trials over the latency budget in grey, those that break a constraint as red crosses; the title says how many
    are on the front and the device."""
    import plotly.graph_objects as go

    f = front_of(data)
    if f is None:
        return None
    xn, yn, dense, budget = f.x, f.y, f.dense, f.budget
    feasible = f.shown
    fig = go.Figure()
    macs = [metric_value(t, "macs") for t in feasible]
    fig.add_trace(go.Scatter(
        x=[metric_value(t, xn) for t in feasible], y=[metric_value(t, yn) for t in feasible], mode="markers",
        name="trials", text=[_hover(t, xn, yn, dense) for t in feasible], hoverinfo="text",
        marker={"size": 11, "line": {"width": [2 if t in f.on_front else 0 for t in feasible], "color": "black"},
                **({"color": [m / 1e6 for m in macs], "colorscale": "Viridis", "showscale": True,
                    "colorbar": {"title": {"text": "MMACs"}}} if feasible and None not in macs else {})}))
    fig.add_trace(go.Scatter(x=[metric_value(t, xn) for t in f.on_front], y=[metric_value(t, yn) for t in f.on_front],
                             mode="lines", line={"shape": "hv", "color": "black", "width": 1},
                             name="Pareto front", hoverinfo="skip"))
    for apart, label, colour in ((f.over, "over budget", OVER_COLOUR), (f.infeasible, "infeasible", INFEASIBLE_COLOUR)):
        if apart:
            fig.add_trace(go.Scatter(x=[metric_value(t, xn) for t in apart], y=[metric_value(t, yn) for t in apart],
                                     mode="markers", name=f"{label} ({len(apart)})", hoverinfo="text",
                                     text=[_hover(t, xn, yn, dense) for t in apart],
                                     marker={"symbol": "x", "size": 10, "color": colour}))
    for spec in data.constraints:  # the sweep's bounds that lie on an axis
        for kind, bound in spec.bounds():
            style = {"line": {"dash": "dot", "color": INFEASIBLE_COLOUR, "width": 1},
                     "annotation_text": f"{kind} {bound:g}"}
            if spec.name == xn:
                fig.add_vline(x=bound, annotation_position="bottom left", **style)
            elif spec.name == yn:
                fig.add_hline(y=bound, annotation_position="top left", **style)
    if budget is not None:
        fig.add_vline(x=budget, line={"dash": "dash", "color": OVER_COLOUR},
                      annotation_text=f"budget {budget:g} ms", annotation_position="top left")
    if isinstance(dense.get(xn), (int, float)) and isinstance(dense.get(yn), (int, float)):
        fig.add_trace(go.Scatter(x=[dense[xn]], y=[dense[yn]], mode="markers", name="dense model",
                                 marker={"symbol": "star", "size": 18, "color": DENSE_COLOUR},
                                 hovertemplate=f"<b>dense model</b><br>{yn} %{{y:.4g}}<br>{xn} %{{x:.4g}}"
                                               "<extra></extra>"))
    status = (f"{len(f.on_front)} of {len(f.trials)} measured trials on the front" if f.trials else
              "waiting for the first measured trial")
    if budget is not None:
        status += f", {len(f.over)} over the {budget:g} ms budget"
    constraints = describe_all(data.constraints)
    if constraints:
        status += f", {len(f.infeasible)} infeasible ({constraints})"
    fig.update_layout(
        title={"text": f"{yn} vs measured {xn}: {status}<br><sup>{devices(data)}</sup>", "font": {"size": 14}},
        xaxis_title=xn + (" (median, ms)" if xn == "latency_ms" else ""),
        yaxis_title=yn + (" (%)" if yn == "top1" else ""), height=HEIGHT, margin={"l": 60, "r": 20, "t": 70, "b": 50},
        legend={"orientation": "h", "y": -0.22}, template="none")
    return fig


def front_table(data: StudyData) -> Any:
    """The dense model and the front's trials, fastest first: the numbers to pick a trade-off by."""
    import plotly.graph_objects as go

    f = front_of(data)
    if f is None:
        return None
    rows = [("dense", f.dense.get(f.y), f.dense.get(f.x), 1.0 if f.dense.get(f.x) else None, f.dense.get("macs"), "")]
    for t in f.on_front:
        x = metric_value(t, f.x)
        rows.append((f"#{t.number}", metric_value(t, f.y), x, _speedup(f.dense, x) if f.x == "latency_ms" else None,
                     metric_value(t, "macs"), ", ".join(f"{k}={v}" for k, v in t.user_attrs.get("config", {}).items())))

    def cell(value: Any, fmt: str) -> str:
        return format(value, fmt) if isinstance(value, (int, float)) else "—"

    columns = list(zip(*[(name, cell(y, ".2f"), cell(x, ".4g"), cell(s, ".2f") + "×" * (s is not None),
                          cell(m / 1e6 if isinstance(m, (int, float)) else None, ".3g"), params)
                         for name, y, x, s, m, params in rows], strict=True))
    fig = go.Figure(go.Table(
        columnwidth=[50, 60, 70, 60, 60, 260],
        header={"values": ["", f.y, f.x, "speed-up", "MMACs", "parameters"], "align": "left",
                "fill_color": "#eeeeee"},
        cells={"values": columns, "align": "left"}))
    fig.update_layout(title={"text": f"The front: {len(rows) - 1} trade-offs against the dense model",
                             "font": {"size": 14}}, height=HEIGHT, margin={"l": 10, "r": 10, "t": 50, "b": 10})
    return fig


def speedup_figure(data: StudyData) -> Any:
    """Measured speed-up against MAC reduction, each over the dense model, with the line where they are equal:
    on an edge device fewer MACs need not mean proportionally less time, and this shows by how much."""
    import plotly.graph_objects as go

    dense = data.attrs.get("baseline") or {}
    if not isinstance(dense.get("macs"), (int, float)) or not isinstance(dense.get("latency_ms"), (int, float)):
        return None
    trials = [t for t in data.complete if metric_value(t, "macs") and metric_value(t, "latency_ms")]
    reduction = [dense["macs"] / metric_value(t, "macs") for t in trials]
    speedup = [_speedup(dense, metric_value(t, "latency_ms")) for t in trials]
    top = max([1.0, *reduction, *speedup]) * 1.05
    fig = go.Figure([
        go.Scatter(x=[1, top], y=[1, top], mode="lines", name="speed-up = MAC reduction",
                   line={"dash": "dot", "color": "#777777"}, hoverinfo="skip"),
        go.Scatter(x=reduction, y=speedup, mode="markers", name="trials", marker={"size": 10, "color": "#2166ac"},
                   text=[f"trial {t.number}" for t in trials],
                   hovertemplate="%{text}<br>MACs ÷ %{x:.2f}<br>speed-up %{y:.2f}×<extra></extra>"),
        go.Scatter(x=[1], y=[1], mode="markers", name="dense model",
                   marker={"symbol": "star", "size": 16, "color": DENSE_COLOUR}, hoverinfo="skip"),
    ])
    fig.update_layout(title={"text": f"Measured speed-up vs MAC reduction over the dense model<br><sup>"
                                     f"{devices(data)}</sup>", "font": {"size": 14}},
                      xaxis_title="dense MACs / trial MACs", yaxis_title="dense latency / trial latency",
                      height=HEIGHT, margin={"l": 60, "r": 20, "t": 70, "b": 50},
                      legend={"orientation": "h", "y": -0.22}, template="none")
    return fig


def live_views(data: StudyData) -> dict[str, Any]:
    """The figures edgeprune adds to the dashboard, by id; those the study cannot draw yet are left out."""
    views = {FRONT_ID: front_figure(data), TABLE_ID: front_table(data), SPEEDUP_ID: speedup_figure(data)}
    return {k: v for k, v in views.items() if v is not None}
