"""The ``edgeprune`` command line: a module per command group, parsing and printing only.

Each command calls one verb of :mod:`edgeprune.jobs` (or a flow: sweep, demo, agents) and prints its typed result.
Every user error is an :class:`~edgeprune.errors.EdgepruneError`, printed as one paragraph with a non-zero exit;
anything else is a bug and keeps its traceback. Commands import what they run inside their function: the CLI
starts on a device host that has no torch (``edgeprune agent consumer``), so torch, Optuna, matplotlib and the
runtimes load only for the commands that need them.
"""

# The modules register their commands on ``app`` when imported; this order is the order of ``edgeprune --help``.
# isort: off
from edgeprune.cli import (models, train, prune, export, analysis, schedule, search, sweep, demo, status, dashboard,
                           agents)
# isort: on
from edgeprune.cli.app import app, main

__all__ = ["agents", "analysis", "app", "dashboard", "demo", "export", "main", "models", "prune", "schedule", "search",
           "status", "sweep", "train"]
