"""An interrupted sweep resumes: a runner killed with SIGKILL mid-trial, then the same command again, completes it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

from tests.conftest import run_cli

SLOW = """\
import sys, time
from edgeprune.sweep import report
x = int(sys.argv[1].split("=")[1])
time.sleep(1.5)
report(score=x * 10)
"""


def states(db: Path) -> list[TrialState]:
    try:
        study = optuna.load_study(study_name="resume", storage=f"sqlite:///{db}")
    except Exception:  # not created yet
        return []
    return [t.state for t in study.get_trials(deepcopy=False)]


def test_resume_after_sigkill(tmp_path: Path) -> None:
    (tmp_path / "slow.py").write_text(SLOW)
    (tmp_path / "sweep.yaml").write_text(textwrap.dedent("""\
        name: resume
        program: slow.py
        method: grid
        metric: {name: score, goal: maximize}
        parameters: {x: {values: [1, 2, 3, 4]}}
        """))
    run_dir, db = tmp_path / "run", tmp_path / "run" / "study.db"
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    runner = subprocess.Popen([sys.executable, "-m", "edgeprune", "sweep", str(tmp_path / "sweep.yaml"), "-o",
                               str(run_dir)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        s = states(db)
        if TrialState.COMPLETE in s and TrialState.RUNNING in s:
            break
        time.sleep(0.2)
    else:
        runner.kill()
        raise AssertionError(f"the sweep never had a completed and a running trial: {states(db)}")
    runner.send_signal(signal.SIGKILL)
    runner.wait()
    assert TrialState.RUNNING in states(db)  # left behind by the dead runner

    result = run_cli("sweep", str(tmp_path / "sweep.yaml"), "-o", str(run_dir), timeout=180)
    assert result.returncode == 0, result.stderr
    assert "left running by a runner that stopped: queued again" in result.stderr
    study = optuna.load_study(study_name="resume", storage=f"sqlite:///{db}")
    done = study.get_trials(states=(TrialState.COMPLETE,))
    assert sorted(t.user_attrs["config"]["x"] for t in done) == [1, 2, 3, 4]
    abandoned = [t for t in study.trials if t.user_attrs.get("abandoned")]
    assert len(abandoned) == 1 and any(t.user_attrs.get("retry_of") == abandoned[0].number for t in done)
    status = run_cli("sweep", "status", str(run_dir))
    assert status.returncode == 0 and "4 complete" in status.stdout and "1 fail" in status.stdout
