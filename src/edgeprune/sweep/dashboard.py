"""``edgeprune dashboard RUN_DIR | STORAGE_URL``: the live view of a running or finished sweep, in the browser.

Why optuna-dashboard: edgeprune's sweeps *are* Optuna studies, and optuna-dashboard is Optuna's own, kept
dashboard for exactly them. It reads every storage the agents write (SQLite, PostgreSQL, the Redis journal)
through Optuna's storage API, so it shows trials from all producers as the consumers tell them, updates
itself while the study grows (its "Live Update" polling), and already draws the history, parallel
coordinates, parameter importance and the objectives' Pareto front. What it cannot know about edgeprune's
results — measured latency against the dense model, speed-ups, MACs, the device, a latency budget — edgeprune
saves into the study as figures the dashboard shows beside its own (:mod:`edgeprune.sweep.live`). It is an
optional extra (``pip install 'edgeprune[dashboard]'``): a sweep runs without it, and the offline HTML report
(``edgeprune report``) stays the one-file artifact to keep.

It is served with optuna-dashboard's WSGI application (``optuna_dashboard.wsgi``) on a threaded wsgiref
server bound here rather than with ``run_server``, so that a port in use is one clear error before anything
is printed, port 0 takes a free port and says which, request lines do not flood the terminal, and a
background thread can keep edgeprune's figures current for studies told by agents without the extra.
"""

from __future__ import annotations

import errno
import threading
from dataclasses import dataclass, field
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import optuna
from optuna.trial import TrialState
from rich.console import Console

from edgeprune.errors import ConfigError, EdgepruneError
from edgeprune.sweep.live import BUDGET_ATTR, available, publish_live_views, set_latency_budget
from edgeprune.sweep.results import open_study
from edgeprune.sweep.storage import open_storage, redact

REFRESH_S = 2.0  # how often the views are checked against the study (the dashboard itself polls every 10 s)


class DashboardError(EdgepruneError):
    """The dashboard cannot be served: its extra is missing or its address cannot be listened on."""


class _ThreadedServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a browser's open request does not keep Ctrl-C waiting


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """The dashboard polls several URLs every few seconds: no line per request."""


def dashboard_command(where: str, study: str | None = None) -> str:
    """The one command that opens the live view of the sweep at ``where`` (run directory or storage URL)."""
    return f"edgeprune dashboard {where}" + (f" --study {study}" if study else "")


def listen(app: Any, host: str, port: int) -> WSGIServer:
    """A threaded server for ``app`` bound to ``host:port`` (0: any free port), or one clear error."""
    try:
        return make_server(host, port, app, server_class=_ThreadedServer, handler_class=_QuietHandler)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise DashboardError(f"Port {port} on {host} is in use: another dashboard or server listens there.",
                                 hint="Choose another with --port N (--port 0 takes any free port).") from None
        raise DashboardError(f"Cannot listen on {host}:{port}: {exc.strerror or exc}.",
                             hint="Check --host (an address of this machine) and --port (0-65535).") from None


@dataclass
class Dashboard:
    """A bound dashboard on one study; :meth:`serve` runs it until Ctrl-C."""

    server: WSGIServer
    study: optuna.Study
    storage_url: str
    url: str
    _seen: tuple[Any, ...] = field(default=())

    def serve(self, console: Console | None = None) -> None:
        """Serve until interrupted, keeping edgeprune's figures current as results arrive."""
        console = console or Console(stderr=True)
        self._refresh_or_warn(console)  # before the first page: a finished sweep or one told without the extra
        stop = threading.Event()
        refresher = threading.Thread(target=self._refresh_until, args=(stop, console), name="edgeprune-live-views",
                                     daemon=True)
        refresher.start()
        try:
            self.server.serve_forever(poll_interval=0.2)
        finally:
            stop.set()
            self.server.server_close()
            refresher.join(timeout=REFRESH_S * 2)

    def refresh(self) -> bool:
        """Publish the views if the study's results, dense model or budget changed since the last time."""
        attrs = self.study.user_attrs
        seen = (len(self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))),
                repr(attrs.get("baseline")), attrs.get(BUDGET_ATTR))
        if seen == self._seen:
            return False
        publish_live_views(self.study, self.storage_url)
        self._seen = seen
        return True

    def _refresh_until(self, stop: threading.Event, console: Console) -> None:
        while not stop.wait(REFRESH_S):
            self._refresh_or_warn(console)

    def _refresh_or_warn(self, console: Console) -> None:
        try:
            self.refresh()
        except Exception as exc:  # a storage hiccup or a read-only database user must not end the view
            console.print(f"[yellow]warning:[/] edgeprune's views were not saved into the study ({exc}); the "
                          "dashboard shows what the study holds", highlight=False)


def open_dashboard(target: str, study_name: str | None = None, *, host: str = "127.0.0.1", port: int = 8080,
                   latency_budget_ms: float | None = None) -> Dashboard:
    """Check the study and the address and bind the dashboard (:meth:`Dashboard.serve` serves it)."""
    if not available():
        raise DashboardError("The live dashboard needs optuna-dashboard and plotly.",
                             hint="pip install 'edgeprune[dashboard]'")
    if latency_budget_ms is not None and not latency_budget_ms > 0:
        raise ConfigError(f"--latency-budget must be a positive number of milliseconds, got {latency_budget_ms}.")
    import optuna_dashboard

    study, url, _ = open_study(target, study_name)
    if latency_budget_ms is not None:
        set_latency_budget(study, latency_budget_ms)
    storage = open_storage(url)
    server = listen(optuna_dashboard.wsgi(storage), host, port)
    study_id = storage.get_study_id_from_name(study.study_name)
    return Dashboard(server, study, redact(url), f"http://{host}:{server.server_port}/dashboard/studies/{study_id}")
