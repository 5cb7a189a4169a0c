"""The agents as separate processes, the way users start and stop them: a missing sweep file, producers started
together on one work directory, a producer killed with ``kill -9`` as ``edgeprune status`` sees it, and Ctrl-C
of ``edgeprune sweep`` while a reader holds the study open. Embedded queue and SQLite study: nothing to run."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from optuna.trial import TrialState
from typer.testing import CliRunner

from edgeprune.agents.janitor import orphan_reason
from edgeprune.agents.messages import QUEUED_ATTR
from edgeprune.agents.queue import HEARTBEAT_S, PRODUCER_LEASE_S, get_queue
from edgeprune.agents.status import agents_status, status_table
from edgeprune.cli import app
from edgeprune.sweep.config import load_sweep
from edgeprune.sweep.engine import SweepStudy
from tests.conftest import run_cli
from tests.test_agents_flow import TEMPLATE, wait_for

pytest.importorskip("onnxruntime", reason="pipeline trials export ONNX: pip install 'edgeprune[sweep]'")

SWEEP = """\
name: {name}
method: grid
objectives: [{{name: top1, goal: maximize}}, {{name: latency_ms, goal: minimize}}]
parameters:
  sparsity: {{values: {values}}}
model: resnet20_cifar
data: digits
pretrain: {{epochs: {pretrain}, batch_size: 128}}
schedule_template: template.yaml
retrain: {{epochs: 1, batch_size: 128}}
export: {{exporter: torchscript, parity_images: 8}}
benchmark: {{backend: onnxruntime, threads: 1, niter: 20, warmup: 2, budget_s: 0.2}}
"""
STOP_S = 12.0  # Ctrl-C to the prompt; a blocked write used to take SQLite's 30 s busy timeout and then fail


def write_sweep(directory: Path, name: str, values: tuple[float, ...] = (0.25, 0.75), pretrain: int = 0) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "template.yaml").write_text(TEMPLATE)
    (directory / "sweep.yaml").write_text(SWEEP.format(name=name, values=list(values), pretrain=pretrain))
    return directory / "sweep.yaml"


def edgeprune(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "edgeprune", *map(str, args)]


def start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    """A process in its own session (a terminal's Ctrl-C reaches its group only), its output in ``log``."""
    with open(log, "ab") as fh:
        return subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_a_missing_sweep_file_is_named_as_a_missing_file(tmp_path: Path) -> None:
    queue = f"sqlite:///{tmp_path / 'queue.db'}"
    missing = run_cli("agent", "producer", "--sweep", str(tmp_path / "missing.yaml"), "--queue", queue,
                      "--storage", f"sqlite:///{tmp_path / 'study.db'}")
    said = " ".join(missing.stderr.split())
    assert missing.returncode != 0 and "Traceback" not in said
    assert f"The sweep file {tmp_path / 'missing.yaml'} does not exist" in said and "Unknown sweep" not in said
    unknown = run_cli("agent", "producer", "--sweep", "no-such-sweep", "--queue", queue)
    assert "Unknown sweep 'no-such-sweep'" in " ".join(unknown.stderr.split())  # a name: the registered ones


def test_producers_started_together_prepare_the_base_model_once(tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path / "files", "together", pretrain=1)
    common = ["--queue", f"sqlite:///{tmp_path / 'queue.db'}", "--storage", f"sqlite:///{tmp_path / 'study.db'}",
              "--artifacts", tmp_path / "artifacts", "--work-dir", tmp_path / "work", "--threads", "1",
              "--max-trials", "0"]
    procs = [start(edgeprune("agent", "producer", "--sweep", sweep, "--name", f"p{i}", *common),
                   tmp_path / f"p{i}.log") for i in range(3)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0, 0]
    logs = [" ".join((tmp_path / f"p{i}.log").read_text().split()) for i in range(3)]
    assert sum("pre-training resnet20_cifar" in log for log in logs) == 1, logs
    assert sum("is stored for the consumer" in log for log in logs) == 1, logs
    assert all("Traceback" not in log for log in logs), logs
    assert len(list((tmp_path / "artifacts").rglob("*.onnx"))) == 1  # one dense model stored, not three


def test_status_shows_heartbeat_ages_and_a_killed_producer_as_gone_within_its_lease(tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path / "files", "beats")
    queue_url, storage = f"sqlite:///{tmp_path / 'queue.db'}", f"sqlite:///{tmp_path / 'study.db'}"
    proc = start(edgeprune("agent", "producer", "--sweep", sweep, "--queue", queue_url, "--storage", storage,
                           "--artifacts", tmp_path / "artifacts", "--work-dir", tmp_path / "work", "--threads", "1"),
                 tmp_path / "producer.log")
    queue = get_queue(queue_url)

    def producers() -> list[dict]:
        [row] = agents_status(queue, storage)
        return row["producers"]

    try:
        wait_for(lambda: queue.sweeps() and producers(), 120, "the producer's first heartbeat")
        watched_until = time.monotonic() + 1.5 * PRODUCER_LEASE_S  # preparing, producing, waiting: it keeps beating
        while time.monotonic() < watched_until:
            [p] = producers()
            assert p["alive"] and p["beat_s_ago"] < HEARTBEAT_S + 3, p
            time.sleep(0.5)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    [p] = producers()
    assert p["lease_s"] == PRODUCER_LEASE_S
    [beat] = queue.producers(queue.sweeps()[0])  # the beat's own time: "s ago" ages while a busy machine reads it
    last_beat = beat.beat
    [row] = agents_status(queue, storage, now=last_beat + PRODUCER_LEASE_S - 0.5)
    assert row["producers"][0]["alive"]  # within its lease: no beat missed yet as far as anyone can tell
    [row] = agents_status(queue, storage, now=last_beat + PRODUCER_LEASE_S + 1)
    assert not row["producers"][0]["alive"] and row["producers_alive"] == []
    caption = str(status_table([row], queue_url).caption)
    assert f"producer {p['name']} gone: last heartbeat 16 s ago, past its {PRODUCER_LEASE_S:.0f} s lease" in caption
    wait_for(lambda: not producers()[0]["alive"], PRODUCER_LEASE_S + 1, "the killed producer to show as gone")


def test_ctrl_c_of_a_local_sweep_stops_within_seconds_and_the_rerun_loses_nothing(tmp_path: Path) -> None:
    """Ctrl-C while another process reads the study (``edgeprune sweep status``, a report; the sweep's own
    progress poll cut short by the signal is the same): the agents still hand their work back at once."""
    values = (0.25, 0.5, 0.75)
    sweep = write_sweep(tmp_path / "files", "ctrl-c", values)
    run = tmp_path / "run"
    argv = edgeprune("sweep", sweep, "-o", run, "--producers", "2")
    proc = start(argv, tmp_path / "sweep.log")
    study_db = run / "study.db"
    try:
        wait_for(lambda: (run / "logs" / "consumer.log").is_file() and "serving" in
                 (run / "logs" / "consumer.log").read_text() and _producing(study_db), 240, "a trial being produced")
        reader = sqlite3.connect(study_db)
        reader.execute("BEGIN")
        reader.execute("SELECT COUNT(*) FROM trials").fetchone()  # a read transaction left open
        interrupted = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        code = proc.wait(timeout=120)
        stopped_s = time.monotonic() - interrupted
        reader.close()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    output = (tmp_path / "sweep.log").read_text() + "".join(f.read_text() for f in (run / "logs").glob("*.log"))
    assert code == 130 and "interrupted" in output
    assert "locked" not in output and "Traceback" not in output, output
    assert stopped_s < STOP_S, f"stopping took {stopped_s:.1f} s"
    study = SweepStudy(load_sweep(sweep), f"sqlite:///{study_db}")
    queue = get_queue(f"sqlite:///{run / 'queue.db'}")
    for trial in study.trials(TrialState.RUNNING):  # its job waits in the queue, or its producer is gone (the
        handed = trial.user_attrs.get(QUEUED_ATTR)    # interrupt came as it asked): the rerun's janitor retries it
        assert queue.contains(study.cfg.study_name, handed["message_id"]) if handed else \
            "is no longer running" in str(orphan_reason(trial, queue, study.cfg.study_name, time.time()))
    rerun = subprocess.run(argv, capture_output=True, text=True, timeout=600,
                           env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    done = study.trials(TrialState.COMPLETE)
    assert sorted(t.params["sparsity"] for t in done) == sorted(values)  # one result per grid point, none twice
    assert all(t.user_attrs.get("abandoned") for t in study.trials(TrialState.FAIL))
    assert not study.trials(TrialState.RUNNING)


def _producing(study_db: Path) -> bool:
    """Whether a trial is being produced (RUNNING, not handed to the queue yet): its producer writes on Ctrl-C."""
    if not study_db.is_file():
        return False
    with sqlite3.connect(study_db) as db:
        try:
            return bool(db.execute("SELECT COUNT(*) FROM trials t WHERE state = 'RUNNING' AND NOT EXISTS (SELECT 1 "
                                   "FROM trial_user_attributes a WHERE a.trial_id = t.trial_id AND a.key = ?)",
                                   (QUEUED_ATTR,)).fetchone()[0])
        except sqlite3.OperationalError:  # the tables are not there yet
            return False


def test_status_json_lists_every_producer_with_its_heartbeat(tmp_path: Path) -> None:
    queue_url, storage = f"sqlite:///{tmp_path / 'queue.db'}", f"sqlite:///{tmp_path / 'study.db'}"
    queue = get_queue(queue_url)
    queue.register_sweep("s", "{}")
    queue.beat("s", "old", {"state": "producing", "trial": 1, "lease_s": 10.0})
    result = CliRunner().invoke(app, ["status", "--queue", queue_url, "--storage", storage, "--json"])
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.stdout)
    [p] = row["producers"]
    assert p["name"] == "old" and p["alive"] and 0 <= p["beat_s_ago"] < 5 and p["lease_s"] == 10.0


def test_a_trial_of_a_producer_on_another_machine_is_retried_once_its_lease_runs_out(tmp_path: Path) -> None:
    """Elsewhere nobody can see whether the producer's process lives: only its lease (60 s) tells."""
    from edgeprune.agents.janitor import reclaim
    from edgeprune.sweep.engine import LEASE_S

    study = SweepStudy(load_sweep(write_sweep(tmp_path / "files", "lease")), f"sqlite:///{tmp_path / 'study.db'}")
    queue = get_queue(f"sqlite:///{tmp_path / 'queue.db'}")
    asked = study.ask()
    now = time.time()
    asked.trial.set_user_attr("lease", {"owner": "another-machine:4242", "expires": now + LEASE_S})
    [trial] = study.trials()
    assert orphan_reason(trial, queue, "lease", now + LEASE_S - 1) is None
    assert orphan_reason(trial, queue, "lease", now + LEASE_S + 1) == \
        "abandoned: its producer another-machine:4242 stopped renewing its lease"
    assert reclaim(study, queue) == []  # the real clock: still within the lease
    asked.trial.set_user_attr("lease", {"owner": "another-machine:4242", "expires": now - 1})
    [(number, reason)] = reclaim(study, queue)
    failed, retry = study.trials()
    assert number == failed.number == asked.number and "stopped renewing its lease" in reason
    assert failed.state == TrialState.FAIL and retry.state == TrialState.WAITING
    assert retry.system_attrs["fixed_params"] == failed.params  # the same point again


def test_an_interrupted_producer_queues_its_trial_again_and_when_idle_says_it_had_none(tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path / "files", "stop")
    queue_url, storage = f"sqlite:///{tmp_path / 'queue.db'}", f"sqlite:///{tmp_path / 'study.db'}"
    argv = edgeprune("agent", "producer", "--sweep", sweep, "--queue", queue_url, "--storage", storage, "--artifacts",
                     tmp_path / "artifacts", "--work-dir", tmp_path / "work", "--threads", "1")

    def interrupted(log: Path, ready: Callable[[], object]) -> str:
        proc = start(argv, log)
        try:
            wait_for(ready, 180, f"the producer to get ready ({log.name})")
            os.kill(proc.pid, signal.SIGTERM)
            assert proc.wait(timeout=60) == 130
        finally:
            proc.kill()
        return " ".join(log.read_text().split())

    busy = interrupted(tmp_path / "busy.log", lambda: "trial 0 producing" in (tmp_path / "busy.log").read_text())
    assert "interrupted: trial 0 is queued again" in busy
    study = SweepStudy(load_sweep(sweep), storage)
    abandoned, retry = study.trials()
    assert abandoned.user_attrs["abandoned"] and retry.state == TrialState.WAITING
    queue = get_queue(queue_url)
    idle = interrupted(tmp_path / "idle.log", lambda: [p for p in queue.producers("stop") if p.info["state"] ==
                                                        "waiting"])
    assert "interrupted: no trial was being produced" in idle and "queued again" not in idle


def test_a_reader_holding_the_study_open_does_not_block_a_trial_handed_back(tmp_path: Path) -> None:
    """What made Ctrl-C of ``edgeprune sweep`` hang for SQLite's 30 s busy timeout and end in "database is
    locked": in rollback-journal mode one open read (a status command, a report, the sweep's progress poll cut
    short by the signal) blocks every write, such as an interrupted producer's abandon."""
    study = SweepStudy(load_sweep(write_sweep(tmp_path / "files", "reader")), f"sqlite:///{tmp_path / 'study.db'}")
    asked = study.ask()
    reader = sqlite3.connect(tmp_path / "study.db")
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT COUNT(*) FROM trials").fetchone()
        started = time.monotonic()
        study.abandon(asked.number, "abandoned: its producer was interrupted")
        assert time.monotonic() - started < 5.0
    finally:
        reader.close()
    assert [t.state for t in study.trials()] == [TrialState.FAIL, TrialState.WAITING]
