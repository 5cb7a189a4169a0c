"""``edgeprune status``: where a sweep stands — one command for a run directory or study, and for a queue.

``edgeprune status RUN_DIR|study.db|STORAGE_URL`` reads the study alone (trial counts, the Pareto front,
importance); ``edgeprune status --queue URL`` reads the agents' queue (per sweep: producing, queued, in flight,
done, dead letters, producers). ``edgeprune sweep status RUN_DIR``, the older spelling, still works.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from edgeprune.cli.app import AgentStorageOpt, QueueOpt, agent_storage, app, out


def print_study_status(target: str, study: str | None, as_json: bool) -> None:
    """The status of one sweep's study, as a table or one JSON object."""
    from edgeprune.sweep.status import status_table, study_status

    status = study_status(target, study)
    if as_json:
        print(json.dumps(status, default=str))
    else:
        out.print(status_table(status))


@app.command("status")
def status_cmd(
    target: Annotated[str | None, typer.Argument(help="A sweep's run directory, study.db or storage URL; without "
                                                      "it, the sweeps of the agents' queue.")] = None,
    study: Annotated[str | None, typer.Option("--study", help="The study, if the storage holds several.")] = None,
    queue: QueueOpt = None,
    storage: AgentStorageOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON: one object for a study, a list (an object "
                                                         "per sweep) for a queue.")] = False,
) -> None:
    """Where a sweep stands: a study's trials and front, or a queue's sweeps, jobs and producers."""
    if target is not None:
        if queue is not None or storage is not None:
            raise typer.BadParameter("give a run directory/storage URL, or --queue/--storage, not both")
        print_study_status(target, study, as_json)
        return
    from edgeprune.agents.queue import get_queue
    from edgeprune.agents.status import agents_status, latency_notes, status_table

    q = get_queue(queue)
    rows = agents_status(q, agent_storage(storage))
    if as_json:
        print(json.dumps(rows))
        return
    out.print(status_table(rows, q.url, latency_notes(q)))
