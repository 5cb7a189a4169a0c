"""``edgeprune dashboard``: the live view of a sweep in the browser."""

from __future__ import annotations

from typing import Annotated

import typer

from edgeprune.cli.app import app, err, out


@app.command("dashboard")
def dashboard_cmd(
    target: Annotated[str, typer.Argument(help="The sweep: its run directory, study.db or storage URL "
                                               "(postgresql://..., redis://...).")],
    study: Annotated[str | None, typer.Option("--study", help="The study, if the storage holds several.")] = None,
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port to listen on (0: any free port).")] = (
        8080),
    host: Annotated[str, typer.Option("--host", help="Address to listen on (0.0.0.0: every interface).")] = (
        "127.0.0.1"),
    latency_budget: Annotated[float | None, typer.Option(
        "--latency-budget", help="Milliseconds: trials measured slower are marked infeasible in the live views "
                                 "(stored with the study).")] = None,
) -> None:
    """Open the live view of a running or finished sweep in the browser (optuna-dashboard + edgeprune's views)."""
    from edgeprune.sweep.dashboard import open_dashboard

    dashboard = open_dashboard(target, study, host=host, port=port, latency_budget_ms=latency_budget)
    out.print(f"live view of {dashboard.study.study_name}: {dashboard.url}  (Ctrl-C stops it)", highlight=False,
              soft_wrap=True)
    try:
        dashboard.serve(err)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
