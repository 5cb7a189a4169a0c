"""What the CLI prints: every table has its JSON, and tables stay whole when stdout is not a terminal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import typer.main

from edgeprune.cli import app
from edgeprune.models import create_model
from edgeprune.models.summary import model_summary

from .conftest import run_cli

# Commands that print no table: a line of numbers, paths written, or progress on stderr.
NO_TABLE = {"train", "sensitivity", "show filters", "show kernels", "show widths", "show macs", "show graph",
            "agent producer", "agent consumer", "agent janitor", "dashboard"}


def _commands(command: Any, prefix: tuple[str, ...] = ()) -> dict[str, Any]:
    """Every command of the CLI by its full name (``schedule check``)."""
    subcommands = getattr(command, "commands", None)  # a group's
    if subcommands is None:
        return {" ".join(prefix): command}
    return {name: cmd for sub, group in subcommands.items() for name, cmd in _commands(group, (*prefix, sub)).items()}


def test_every_command_that_prints_a_table_has_json() -> None:
    """``summary --sparsity --json`` once dropped the sparsity table; prune, schedule check and suggest, a run
    report, sweep status and the demo's summary had no JSON at all."""
    commands = _commands(typer.main.get_command(app))
    without = {name for name, cmd in commands.items() if not any("--json" in p.opts for p in cmd.params)}
    assert without == NO_TABLE, "a new command prints a table? give it --json, or list it in NO_TABLE"
    assert set(json.loads(run_cli("models", "resnet2*", "--json").stdout)) == {"resnet20_cifar"}


def test_cli_tables_print_full_width_when_piped() -> None:
    """``edgeprune summary ... | less`` truncated names to ``layer1…`` at 80 columns."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"} | {"NO_COLOR": "1"}
    result = subprocess.run([sys.executable, "-m", "edgeprune", "summary", "resnet56_cifar"], capture_output=True,
                            text=True, env=env, stdin=subprocess.DEVNULL, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "…" not in result.stdout
    names = [layer.name for layer in model_summary(create_model("resnet56_cifar")).layers]
    assert all(f"│ {name} " in result.stdout for name in names)
    assert "│ (1, 64, 8, 8)" in result.stdout and "│ 1,179,648 │" in result.stdout  # OFM and MACs columns too


def test_an_output_path_the_system_refuses_is_one_clear_error_naming_it(tmp_path) -> None:
    """A run directory or cache under a regular file (as under a missing mount or a read-only folder): the path
    and the system's reason, never a traceback."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    runs = {blocker / "run": ["train", "resnet20_cifar", "--data", "digits", "--epochs", "0", "-o"],
            blocker / "cache": ["search", "resnet20_cifar", "--data", "digits", "--latency", "0.6x", "-o",
                                str(tmp_path / "search"), "--cache"]}
    for path, argv in runs.items():
        proc = run_cli(*argv, str(path))
        said = " ".join(proc.stderr.split())
        assert proc.returncode == 2 and "Traceback" not in said, said
        assert f"error: {path}: Not a directory." in said


def test_an_agents_thread_or_round_count_below_one_is_refused_before_it_serves(tmp_path) -> None:
    for role, option in (("consumer", "--threads"), ("consumer", "--niter"), ("producer", "--threads")):
        proc = run_cli("agent", role, "--queue", f"sqlite:///{tmp_path / 'q.db'}", "--storage",
                       f"sqlite:///{tmp_path / 's.db'}", option, "0")
        said = " ".join(proc.stderr.split())
        assert proc.returncode == 2 and "Traceback" not in said
        assert f"Invalid value for '{option}'" in said and "greater than or equal to 1" in said
