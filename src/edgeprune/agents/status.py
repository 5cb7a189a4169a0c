"""``edgeprune status --queue URL --storage URL``: every sweep of a queue, as the queue and the study see it.

Per sweep: trials being produced (by which producer, since when), jobs queued, jobs in flight (on which
consumer, since when, which delivery), trials done, failed, retried (failed by the janitor and queued
again), dead-lettered jobs with their reasons, and the producers alive. Read-only; works from any
machine that reaches the queue and the storage.
"""

from __future__ import annotations

import json
import time
from typing import Any

from rich.table import Table

from edgeprune.agents.messages import QUEUED_ATTR
from edgeprune.agents.queue import JobQueue
from edgeprune.sweep.storage import open_storage


def _trial_of(body: str) -> int | None:
    try:
        return int(json.loads(body)["job"]["trial_number"])
    except (ValueError, KeyError, TypeError):
        return None


def agents_status(queue: JobQueue, storage_url: str) -> list[dict[str, Any]]:
    """One plain dict per registered sweep (what ``--json`` prints)."""
    import optuna


    storage = open_storage(storage_url)
    studies = set(optuna.get_all_study_names(storage))
    now = time.time()
    rows = []
    for sweep in queue.sweeps():
        trials = optuna.load_study(study_name=sweep, storage=storage).get_trials(deepcopy=False) \
            if sweep in studies else []
        states = [t.state.name for t in trials]
        retried = sum(1 for t in trials if t.state.name == "FAIL" and t.user_attrs.get("abandoned"))
        counts = queue.counts(sweep)
        producers = queue.producers(sweep)
        rows.append({
            "sweep": sweep,
            "producing": [{"trial": t.number, "producer": (t.user_attrs.get("lease") or {}).get("owner", "?"),
                           "since": t.datetime_start.timestamp() if t.datetime_start else None}
                          for t in trials if t.state.name == "RUNNING" and QUEUED_ATTR not in t.user_attrs],
            "queued": counts.queued,
            "in_flight": [{"trial": _trial_of(f.body), "consumer": f.consumer, "since": f.since,
                           "delivery": f.deliveries, "message_id": f.message_id} for f in counts.in_flight],
            "done": states.count("COMPLETE"),
            "failed": states.count("FAIL") - retried,
            "retried": retried,
            "waiting_retry": states.count("WAITING"),
            "dead_lettered": counts.dead,
            "dead_letters": [{"trial": _trial_of(d.body), "reason": d.reason, "deliveries": d.deliveries}
                             for d in queue.dead_letters(sweep)],
            "producers_alive": [{"name": p.name, "beat_s_ago": round(now - p.beat, 1), **p.info}
                                for p in producers if p.alive(now)],
        })
    return rows


def _ago(since: float | None, now: float) -> str:
    return "?" if since is None else f"{now - since:.0f} s ago"


def status_table(rows: list[dict[str, Any]], queue_url: str) -> Table:
    now = time.time()
    table = Table(title=f"Sweeps in {queue_url}", title_justify="left")
    for col in ("Sweep", "Producing", "Queued", "In flight", "Done", "Failed", "Retried", "Dead-lettered",
                "Producers alive"):
        table.add_column(col, justify="left" if col == "Sweep" else "right")
    notes = []
    for r in rows:
        table.add_row(r["sweep"], str(len(r["producing"])), str(r["queued"]), str(len(r["in_flight"])), str(r["done"]),
                      str(r["failed"]), str(r["retried"]), str(r["dead_lettered"]), str(len(r["producers_alive"])))
        notes += [f"{r['sweep']}: trial {p['trial']} producing on {p['producer']} since {_ago(p['since'], now)}"
                  for p in r["producing"]]
        notes += [f"{r['sweep']}: trial {f['trial']} measuring on {f['consumer']} since {_ago(f['since'], now)} "
                  f"(delivery {f['delivery']})" for f in r["in_flight"]]
        notes += [f"{r['sweep']}: trial {d['trial']} dead-lettered after {d['deliveries']} deliveries: {d['reason']}"
                  for d in r["dead_letters"][-5:]]
    if not rows:
        table.add_row("—", *([""] * 8))
        notes.append("no sweep registered yet: start a producer with a sweep file")
    table.caption = "\n".join(notes) or None
    table.caption_justify = "left"
    return table
