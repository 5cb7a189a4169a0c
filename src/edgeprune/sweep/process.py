"""Trials as processes: how ``wandb agent`` launches a program, and how a running trial is watched and stopped.

The launch reproduces ``wandb agent`` (wandb/wandb_agent.py and sdk/launch/sweeps/utils.py):

* the command defaults to ``${env} ${interpreter} ${program} ${args}``; a ``${...}`` item that is a whole
  word expands to a list (``args`` = ``--key=value``, ``args_no_hyphens``, ``args_no_boolean_flags``,
  ``args_no_equals``, ``args_json``, ``args_json_file``, ``args_append_hydra``, ``args_override_hydra``), an
  unknown one to nothing; ``${envvar:NAME}`` is replaced anywhere in an item by ``$NAME`` (left as ``NAME``
  when unset, as the agent does). Values are formatted with Python's ``str`` (``--lr=0.1``,
  ``--layers=[1, 2]``).
* the trial's parameters are written where ``wandb.init()`` reads them, ``WANDB_SWEEP_PARAM_PATH``
  (``wandb_version: 1`` then ``key: {value: ...}``), and ``WANDB_SWEEP_ID``/``WANDB_RUN_ID`` are set, so
  ``wandb.config`` holds them in a script that runs unchanged.

One deliberate difference: ``${interpreter}`` is this Python (``sys.executable``), not whatever ``python``
is first on PATH, so a trial runs in the environment the sweep runs in. WandB runs offline (local files,
no server) unless ``WANDB_MODE`` or the sweep's ``tracking.wandb.mode`` says online.

Stopping follows the agent too: SIGTERM to the trial's whole process group, SIGKILL after a grace period.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edgeprune.sweep.channel import ENV_VAR, read_reports
from edgeprune.sweep.hyperband import metric_series
from edgeprune.sweep.wandb_log import find_run_file, read_wandb_run

DEFAULT_COMMAND = ("${env}", "${interpreter}", "${program}", "${args}")
ENVVAR_MACRO = re.compile(r"\$\{envvar:([A-Z0-9_]*)\}")
GRACE_S = 30.0  # the agent's KILL_DELAY
TAIL_LINES = 20


def command_args(config: Mapping[str, Any]) -> dict[str, list[str]]:
    """The agent's argument formats for a (nested) trial config, keyed by macro name."""
    flags, no_hyphens, no_booleans, no_equals, append, override = [], [], [], [], [], []
    for key, value in config.items():
        flag = f"{key}={value}"
        flags.append(f"--{flag}")
        no_hyphens.append(flag)
        no_equals += [f"--{key}", str(value)]
        append.append(f"+{flag}")
        override.append(f"++{flag}")
        if isinstance(value, bool):
            no_booleans += [f"--{key}"] if value else []
        else:
            no_booleans.append(f"--{flag}")
    return {"args": flags, "args_no_hyphens": no_hyphens, "args_no_boolean_flags": no_booleans,
            "args_no_equals": no_equals, "args_json": [json.dumps(dict(config))], "args_append_hydra": append,
            "args_override_hydra": override}


def build_command(command: Sequence[Any] | None, program: str | None, config: Mapping[str, Any],
                  args_json_file: str, environ: Mapping[str, str]) -> list[str]:
    """The argv ``wandb agent`` would run for this trial."""
    macros = {**command_args(config), "env": ["/usr/bin/env"], "interpreter": [sys.executable],
              "program": [program] if program else [], "args_json_file": [args_json_file]}
    argv: list[str] = []
    for item in command or DEFAULT_COMMAND:
        text = ENVVAR_MACRO.sub(lambda m: environ.get(m[1], m[1]), str(item))
        if text.startswith("${") and text.endswith("}"):
            argv += macros.get(text[2:-1], [])
        else:
            argv.append(text)
    return argv


def write_wandb_params(path: Path, config: Mapping[str, Any]) -> None:
    """The sweep-parameter file in the agent's format, which ``wandb.init()`` loads into ``wandb.config``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = yaml.safe_dump({k: {"value": v} for k, v in config.items()}, default_flow_style=False, sort_keys=False)
    path.write_text("wandb_version: 1\n\n" + body, encoding="utf-8")


def new_run_id(trial_number: int) -> str:
    """A fresh WandB run id per attempt (a retried trial must not append to its predecessor's run)."""
    return f"t{trial_number:04d}{secrets.token_hex(3)}"


@dataclass
class TrialOutput:
    """What a trial process has reported so far: per-step rows and the latest value of every metric."""

    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    def series(self, metric: str) -> list[float]:
        return metric_series(self.history, metric)


class TrialProcess:
    """A running trial: its process group, log files, and the two places it reports metrics."""

    def __init__(self, argv: list[str], trial_dir: Path, env: Mapping[str, str], *, run_id: str | None = None,
                 cwd: str | None = None) -> None:
        self.trial_dir = trial_dir
        self.run_id = run_id
        self.metrics_file = trial_dir / "metrics.jsonl"
        self.stdout_path, self.stderr_path = trial_dir / "stdout.log", trial_dir / "stderr.log"
        self.started = time.monotonic()
        self.stop_reason: str | None = None
        self._term_sent: float | None = None
        trial_dir.mkdir(parents=True, exist_ok=True)
        full_env = {**env, ENV_VAR: str(self.metrics_file)}
        with open(self.stdout_path, "ab") as out, open(self.stderr_path, "ab") as err:
            try:
                self.proc: subprocess.Popen[bytes] | None = subprocess.Popen(
                    argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=full_env, cwd=cwd,
                    start_new_session=True)  # its own process group: a stop reaches what it started too
                self.launch_error: str | None = None
            except OSError as exc:  # no such program, not executable
                self.proc, self.launch_error = None, f"cannot start {argv[0]!r}: {exc.strerror or exc}"

    def poll(self) -> int | None:
        """The exit code once the process has ended (or could not start), else None; escalates a pending stop."""
        if self.proc is None:
            return 127
        code = self.proc.poll()
        if code is None and self._term_sent is not None and time.monotonic() - self._term_sent > GRACE_S:
            self._signal(signal.SIGKILL)
        return code

    def stop(self, reason: str) -> None:
        """SIGTERM now; :meth:`poll` sends SIGKILL after the grace period if it is still running."""
        if self.proc is None or self._term_sent is not None:
            return
        self.stop_reason = reason
        self._term_sent = time.monotonic()
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL at once (the sweep itself is being interrupted)."""
        if self.proc is not None and self.proc.poll() is None:
            self._signal(signal.SIGKILL)
            self.proc.wait()

    def _signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def output(self) -> TrialOutput:
        """Everything reported so far, from ``edgeprune.sweep.report`` lines and the program's WandB run file."""
        out = TrialOutput()
        run_file = find_run_file(self.trial_dir, self.run_id) if self.run_id else None
        if run_file is not None:
            run = read_wandb_run(run_file)
            out.history += run.history
            out.summary.update(run.summary)
        for record in read_reports(self.metrics_file):
            row = {k: v for k, v in record.items() if k != "_time"}
            out.history.append(row)
            out.summary.update({k: v for k, v in row.items() if not k.startswith("_")})
        return out

    def error_tail(self) -> str:
        """Why it failed, in the program's own words: the launch error or the last lines of its stderr."""
        if self.launch_error:
            return self.launch_error
        try:
            lines = self.stderr_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-TAIL_LINES:])
