"""``edgeprune sweep status STUDY``: where a sweep stands, read from its storage alone.

Works from any machine that reaches the storage, while the sweep runs or after: counts per state, the best
trial (one objective) or the Pareto front (several), the completed trials that break the sweep's constraints
(left out of the front, with the bound each broke and by how much), the running trials with their runner and
lease, and the most important parameters so far.
"""

from __future__ import annotations

import time
from typing import Any

from rich.table import Table

from edgeprune.sweep.analysis import front
from edgeprune.sweep.constraints import describe_all, violations
from edgeprune.sweep.results import load_study_data


def study_status(target: str, study_name: str | None = None) -> dict[str, Any]:
    """A plain summary of the study at ``target`` (run directory, study.db or storage URL)."""
    data = load_study_data(target, study_name)
    states = [t.state.name for t in data.trials]
    objectives = {o["name"]: o["goal"] for o in data.objectives}
    best = front(data.trials, objectives)
    infeasible = [(t, broken) for t in data.complete if (broken := violations(t))]
    now = time.time()
    running = [{"trial": t.number, "owner": (t.user_attrs.get("lease") or {}).get("owner", "?"),
                "lease_left_s": round((t.user_attrs.get("lease") or {}).get("expires", now) - now, 1)}
               for t in data.trials if t.state.name == "RUNNING"]
    analysis = (data.attrs.get("analysis") or {}).get("metrics", {})
    first = next(iter(objectives), None)
    importance = (analysis.get(first, {}).get("importance", {}).get("random_forest", {}) if first else {})
    sweep = data.attrs.get("sweep") or {}
    return {
        "study": data.name, "storage": data.storage, "method": sweep.get("method"), "run_cap": sweep.get("run_cap"),
        "objectives": objectives, "counts": {s.lower(): states.count(s) for s in sorted(set(states))},
        "constraints": describe_all(data.constraints),
        "best": [{"trial": t.number, "config": t.user_attrs.get("config", {}),
                  **{k: t.user_attrs["metrics"][k] for k in objectives}} for t in best],
        "infeasible": [{"trial": t.number, "config": t.user_attrs.get("config", {}),
                        "violations": [v.as_dict() for v in broken],
                        **{k: t.user_attrs["metrics"].get(k) for k in objectives}} for t, broken in infeasible],
        "running": running, "importance": dict(sorted(importance.items(), key=lambda kv: -kv[1])),
        "baseline": data.attrs.get("baseline"),
    }


def status_table(status: dict[str, Any]) -> Table:
    counts = ", ".join(f"{n} {s}" for s, n in status["counts"].items()) or "no trials yet"
    goals = ", ".join(f"{g} {n}" for n, g in status["objectives"].items())
    constraints = status.get("constraints")
    table = Table(title=f"{status['study']} ({status['method']}; {goals}"
                        f"{'; subject to ' + constraints if constraints else ''}) — {counts}", title_justify="left")
    objectives = list(status["objectives"])
    table.add_column("Trial", justify="right")
    for name in objectives:
        table.add_column(name, justify="right")
    table.add_column("Parameters")
    for row in status["best"]:
        table.add_row(str(row["trial"]), *(f"{row[n]:.4g}" for n in objectives),
                      ", ".join(f"{k}={v}" for k, v in row["config"].items()))
    if not status["best"]:
        table.add_row("—", *("" for _ in objectives),
                      "no feasible trial yet" if status.get("infeasible") else "no completed trial yet")
    for row in status.get("infeasible", []):  # shown, never on the front: what they broke and by how much
        table.add_row(f"{row['trial']} ✗", *(_number(row[n]) for n in objectives),
                      ", ".join(f"{k}={v}" for k, v in row["config"].items()) + " — infeasible: "
                      + "; ".join(v["text"] for v in row["violations"]), style="dim")
    table.caption = "; ".join(filter(None, [
        ("best trial" if len(objectives) == 1 else "the Pareto front")
        + (", then the trials that break a constraint (✗, left out of it)" if status.get("infeasible") else ""),
        ("running: " + ", ".join(f"#{r['trial']} on {r['owner']} (lease {r['lease_left_s']} s)"
                                 for r in status["running"])) if status["running"] else "",
        ("importance: " + ", ".join(f"{k} {v:.2f}" for k, v in list(status["importance"].items())[:5]))
        if status["importance"] else "",
    ]))
    return table


def _number(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) else "—"
