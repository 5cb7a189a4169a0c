"""``edgeprune status --queue URL --storage URL``: every sweep of a queue, as the queue and the study see it.

Per sweep: trials being produced (by which producer, since when), jobs queued, jobs in flight (on which
consumer, since when, which delivery), trials done, failed, retried (failed by the janitor and queued
again), dead-lettered jobs with their reasons, and each producer's last heartbeat: alive only while that
is within the producer's lease (a few missed beats), so a killed producer shows as gone within seconds.
Below the sweeps, the files latency searches (``edgeprune search --queue``) have waiting or being measured.
Read-only; works from any machine that reaches the queue and the storage.
"""

from __future__ import annotations

import json
import time
from typing import Any

from rich.table import Table

from edgeprune.agents.latency_jobs import LATENCY_JOBS
from edgeprune.agents.messages import QUEUED_ATTR
from edgeprune.agents.queue import JobQueue
from edgeprune.sweep.storage import open_storage


def _trial_of(body: str) -> int | None:
    try:
        return int(json.loads(body)["job"]["trial_number"])
    except (ValueError, KeyError, TypeError):
        return None


def agents_status(queue: JobQueue, storage_url: str, now: float | None = None) -> list[dict[str, Any]]:
    """One plain dict per registered sweep (what ``--json`` prints), as of ``now`` (default: the clock's)."""
    import optuna


    storage = open_storage(storage_url)
    studies = set(optuna.get_all_study_names(storage))
    now = time.time() if now is None else now
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
            "producers": [{"name": p.name, "beat_s_ago": round(p.age(now), 1), "alive": p.alive(now), **p.info,
                           "lease_s": p.lease_s} for p in producers],
        })
        rows[-1]["producers_alive"] = [p for p in rows[-1]["producers"] if p["alive"]]
    return rows


def latency_notes(queue: JobQueue, now: float | None = None) -> list[str]:
    """What the queue holds for latency searches: files waiting, being measured (where, since when), given up."""
    now = time.time() if now is None else now
    counts = queue.counts(LATENCY_JOBS)
    if not (counts.queued or counts.in_flight or counts.dead):
        return []
    notes = [f"latency searches: {counts.queued} file(s) waiting, {len(counts.in_flight)} being measured, "
             f"{counts.dead} dead-lettered"]
    notes += [f"latency searches: {_label(f.body)} measuring on {f.consumer} since {_ago(f.since, now)}"
              for f in counts.in_flight]
    notes += [f"latency searches: {_label(d.body)} dead-lettered: {d.reason}"
              for d in queue.dead_letters(LATENCY_JOBS)[-3:]]
    return notes


def _label(body: str) -> str:
    try:
        job = json.loads(body)
        return f"{job['label']} from {job['requester']}"
    except (ValueError, KeyError, TypeError):
        return "an unreadable job"


def _ago(since: float | None, now: float) -> str:
    return "?" if since is None else f"{now - since:.0f} s ago"


def _liveness(producer: dict[str, Any]) -> str:
    """Its last heartbeat's age, and what that means: alive within its lease, else gone (killed, or cut off)."""
    age, lease = producer["beat_s_ago"], producer["lease_s"]
    if not producer["alive"]:
        return f"gone: last heartbeat {age:.0f} s ago, past its {lease:.0f} s lease"
    doing = producer.get("state", "?") + (f" trial {producer['trial']}" if producer.get("trial") is not None else "")
    return f"alive ({doing}): last heartbeat {age:.0f} s ago, lease {lease:.0f} s"


def status_table(rows: list[dict[str, Any]], queue_url: str, extra: list[str] | None = None) -> Table:
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
        notes += [f"{r['sweep']}: producer {p['name']} {_liveness(p)}" for p in r["producers"]]
    if not rows:
        table.add_row("—", *([""] * 8))
        notes.append("no sweep registered yet: start a producer with a sweep file")
    notes += extra or []
    table.caption = "\n".join(notes) or None
    table.caption_justify = "left"
    return table
