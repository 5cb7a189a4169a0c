"""The study engine: stop conditions, importance after every result, reclaiming dead runners' trials (never those
handed to a queue), run_cap held by processes asking at once, processes opening a fresh study at once, storage errors.

The "metric" here is a formula of the parameters: these tests check the mapping onto Optuna, not pruning.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from edgeprune.sweep.analysis import hypervolume_2d, pareto_mask, pearson
from edgeprune.sweep.config import HyperbandSpec, parse_sweep
from edgeprune.sweep.engine import QUEUED_ATTR, StudyMismatchError, SweepStudy
from edgeprune.sweep.hyperband import should_stop
from edgeprune.sweep.storage import StorageError, open_storage, redact

optuna.logging.set_verbosity(optuna.logging.WARNING)
pytest_plugins = ["tests.services"]


def sweep(method: str, parameters: str, extra: str = "") -> object:
    return parse_sweep(f"name: s\nmethod: {method}\nmetric: {{name: score, goal: maximize{extra}}}\nprogram: t.py\n"
                       f"parameters:\n{parameters}", "s.yaml")


def run(study: SweepStudy, limit: int = 100) -> list[dict]:
    """Ask and tell until the engine says stop; score = 2x + y (x, y numeric)."""
    seen = []
    while study.stop_reason() is None and len(seen) < limit:
        asked = study.ask()
        v = asked.values
        study.complete(asked.trial, {"score": 2 * float(v["x"]) + float(v.get("y", 0))})
        seen.append(v)
    return seen


def test_grid_exhaustion_ends_the_sweep(tmp_path) -> None:
    cfg = sweep("grid", "  x: {values: [1, 2, 3]}\n  y: {values: [0, 10]}\n")
    study = SweepStudy(cfg, f"sqlite:///{tmp_path / 'study.db'}")
    seen = run(study)
    assert sorted((v["x"], v["y"]) for v in seen) == [(x, y) for x in (1, 2, 3) for y in (0, 10)]
    assert study.stop_reason() == "grid exhausted"


def test_grid_never_asks_a_running_point_twice(tmp_path) -> None:
    study = SweepStudy(sweep("grid", "  x: {values: [1, 2]}\n"), f"sqlite:///{tmp_path / 'study.db'}")
    first = study.ask()
    assert study.stop_reason() is None
    second = study.ask()  # with two workers, both points run at once ...
    assert study.stop_reason() == "grid exhausted"  # ... and nothing more is asked while they do
    assert {first.values["x"], second.values["x"]} == {1, 2}


def test_run_cap_and_importance_after_every_result(tmp_path) -> None:
    cfg = parse_sweep("name: s\nmethod: random\nrun_cap: 6\nmetric: {name: score, goal: maximize}\nprogram: t.py\n"
                      "parameters:\n  x: {min: 0.0, max: 1.0}\n  y: {min: 0.0, max: 0.01}\n")
    study = SweepStudy(cfg, f"sqlite:///{tmp_path / 'study.db'}")
    counts = []
    while study.stop_reason() is None:
        asked = study.ask()
        study.complete(asked.trial, {"score": 2 * asked.values["x"] + asked.values["y"]})
        counts.append(study.study.user_attrs["analysis"]["trials"])
    assert counts == [1, 2, 3, 4, 5, 6] and study.stop_reason() == "run_cap 6 reached"
    analysis = study.study.user_attrs["analysis"]["metrics"]["score"]
    assert analysis["correlation"]["x"] > 0.99  # score is driven by x ...
    assert set(analysis["importance"]) == {"random_forest", "ped_anova"}
    assert analysis["importance"]["random_forest"]["x"] > analysis["importance"]["random_forest"]["y"]  # ... not y


def test_target_stops_the_sweep(tmp_path) -> None:
    cfg = sweep("grid", "  x: {values: [1, 5, 2, 3]}\n", ", target: 10")
    study = SweepStudy(cfg, f"sqlite:///{tmp_path / 'study.db'}")
    run(study)
    assert study.stop_reason().startswith("target 10.0 reached by trial")
    assert len(study.trials(TrialState.COMPLETE)) < 4


def test_reclaims_trials_of_a_dead_runner_and_retries_them(tmp_path) -> None:
    cfg = sweep("grid", "  x: {values: [1, 2]}\n")
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = SweepStudy(cfg, url)
    asked = study.ask()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    asked.trial.set_user_attr("lease", {"owner": f"{socket.gethostname()}:{dead.pid}", "expires": 4e9})
    again = SweepStudy(cfg, url)  # a new runner opens the study
    assert again.reclaim_stale() == [asked.number]
    failed = again.trials()[asked.number]
    assert failed.state == TrialState.FAIL and failed.user_attrs["abandoned"]
    retry = again.ask()
    assert retry.values == asked.values and retry.trial.user_attrs["retry_of"] == asked.number
    assert again.counted() == 1  # the abandoned attempt does not count towards run_cap


def test_live_lease_is_left_alone(tmp_path) -> None:
    cfg = sweep("random", "  x: {min: 0.0, max: 1.0}\n")
    study = SweepStudy(cfg, f"sqlite:///{tmp_path / 'study.db'}")
    asked = study.ask()
    asked.trial.set_user_attr("lease", {"owner": f"{socket.gethostname()}:{os.getppid()}", "expires": 4e9})
    assert study.reclaim_stale() == []


def test_trials_handed_to_a_queue_are_never_reclaimed(tmp_path) -> None:
    """A handed-off trial's lease is no longer renewed: expired, or owned by a dead producer, it stays RUNNING."""
    study = SweepStudy(sweep("random", "  x: {min: 0.0, max: 1.0}\n"), f"sqlite:///{tmp_path / 'study.db'}")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    leases = {"dead": {"owner": f"{socket.gethostname()}:{dead.pid}", "expires": 4e9},
              "expired": {"owner": "elsewhere:1", "expires": time.time() - 1}}
    trials = {(lease, handed): study.ask() for lease in leases for handed in (True, False)}
    for (lease, handed), asked in trials.items():
        asked.trial.set_user_attr("lease", leases[lease])
        if handed:
            asked.trial.set_user_attr(QUEUED_ATTR, {"message_id": str(asked.number), "at": time.time()})
    assert study.reclaim_stale() == [trials["dead", False].number, trials["expired", False].number]
    assert [study.trials()[trials[lease, True].number].state for lease in leases] == [TrialState.RUNNING] * 2


def test_a_trial_asked_beyond_the_cap_is_deferred_with_its_values(tmp_path) -> None:
    """Two processes at the cap both asked: the later trial goes back to WAITING, and runs first once a slot
    opens (here: a runner died), with the values it was asked with."""
    cfg = parse_sweep("name: s\nmethod: random\nrun_cap: 2\nmetric: {name: score}\nprogram: t.py\n"
                      "parameters:\n  x: {min: 0.0, max: 1.0}\n", "s.yaml")
    url = f"sqlite:///{tmp_path / 'study.db'}"
    mine, theirs = SweepStudy(cfg, url), SweepStudy(cfg, url)
    first, second = mine.ask(), theirs.ask()
    assert mine.ask() is None  # asked before it saw the cap reached
    [deferred] = mine.trials(TrialState.WAITING)
    assert "run_cap 2 was filled" in deferred.user_attrs["deferred"] and mine.counted() == 2
    mine.abandon(second.number, "abandoned: its runner died")
    again = theirs.ask()
    assert again.number == deferred.number and again.values["x"] == deferred.params["x"]
    assert mine.ask() is None and mine.counted() == 2  # the retry of the dead runner's trial waits now
    assert mine.stop_reason() == "run_cap 2 reached" and first.number == 0


BARRIER = """\
go = pathlib.Path(sys.argv[1])
pathlib.Path(f"{go}.{os.getpid()}").touch()
while not go.exists():
    time.sleep(0.002)
"""
PRELUDE = """\
import os, pathlib, sys, time
from edgeprune.sweep.config import parse_sweep
from edgeprune.sweep.engine import SweepStudy
cfg = parse_sweep(sys.argv[3], "s.yaml")
"""
ASKER = PRELUDE + "study = SweepStudy(cfg, sys.argv[2])\n" + BARRIER + """\
asked = 0
while study.stop_reason() is None:
    asked += study.ask() is not None
print(asked)
"""
OPENER = PRELUDE + BARRIER + "SweepStudy(cfg, sys.argv[2]).ask()\n"


def together(script: str, go: Path, *args: str, n: int = 3) -> list[tuple[int, str, str]]:
    """Run ``n`` processes of ``script``, released by its barrier at the same moment once all of them are ready
    (imports done); returns each one's exit code, stdout and stderr."""
    procs = [subprocess.Popen([sys.executable, "-c", script, str(go), *args], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(n)]
    deadline = time.monotonic() + 120
    while len(list(go.parent.glob(f"{go.name}.*"))) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    go.touch()
    outputs = [p.communicate(timeout=120) for p in procs]
    return [(p.returncode, out, err) for p, (out, err) in zip(procs, outputs, strict=True)]


SMALL = "name: s\nmethod: random\nmetric: {name: score}\nprogram: t.py\nparameters:\n  x: {min: 0.0, max: 1.0}\n"


def test_processes_asking_at_once_never_exceed_the_cap(tmp_path) -> None:
    """Three processes ask as fast as they can until the study says stop: check-then-ask alone lets up to two
    trials past run_cap; with the deferral exactly run_cap trials run, and the extra ones wait."""
    text = SMALL.replace("method: random", "method: random\nrun_cap: 5")
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = SweepStudy(parse_sweep(text, "s.yaml"), url)
    results = together(ASKER, tmp_path / "go", url, text)
    assert [code for code, _, _ in results] == [0] * 3, [err[-1500:] for _, _, err in results]
    assert sum(int(out) for _, out, _ in results) == 5
    assert study.counted() == 5 and len(study.trials(TrialState.RUNNING)) == 5


def test_a_limit_for_this_run_caps_below_run_cap(tmp_path) -> None:
    cfg = sweep("random", "  x: {min: 0.0, max: 1.0}\n")
    study = SweepStudy(cfg, f"sqlite:///{tmp_path / 'study.db'}")
    run(study, limit=2)
    study.limit = study.counted() + 3
    assert len(run(study)) == 3 and study.stop_reason() == "this run's limit of 5 trials reached"


def test_processes_opening_a_fresh_sqlite_study_at_once_all_succeed(tmp_path) -> None:
    """Optuna creates its tables and stamps their version without a lock: without the retry, some of three
    processes opening a new study.db together fail with 'table ... already exists' or a UNIQUE constraint."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    results = together(OPENER, tmp_path / "go", url, SMALL)
    assert [code for code, _, _ in results] == [0] * 3, [err[-1500:] for _, _, err in results]
    assert len(SweepStudy(parse_sweep(SMALL, "s.yaml"), url).trials()) == 3


def test_resuming_with_a_changed_sweep_is_refused(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    SweepStudy(sweep("grid", "  x: {values: [1, 2]}\n"), url)
    with pytest.raises(StudyMismatchError, match="made from a different sweep"):
        SweepStudy(sweep("grid", "  x: {values: [1, 2, 3]}\n"), url)


def test_random_resume_draws_new_points(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    cfg = sweep("random", "  x: {min: 0.0, max: 1.0}\n")
    first = run(SweepStudy(cfg, url), limit=3)
    second = run(SweepStudy(cfg, url), limit=3)
    assert not {v["x"] for v in first} & {v["x"] for v in second}


@pytest.mark.redis
def test_study_on_redis_journal_storage(start_redis) -> None:
    """redis://... is Optuna's JournalStorage over JournalRedisBackend: a study shared by machines."""
    server = start_redis("--save", "", "--appendonly", "no")
    cfg = sweep("grid", "  x: {values: [1, 2]}\n")
    run(SweepStudy(cfg, server.url))
    again = SweepStudy(cfg, server.url)  # another runner, same study
    assert again.stop_reason() == "grid exhausted" and len(again.trials(TrialState.COMPLETE)) == 2


@pytest.mark.parametrize("url", ["redis://127.0.0.1:1/0", "postgresql://u:secret@127.0.0.1:1/db", "nonsense"])
def test_unreachable_storage_is_one_clear_error(url: str) -> None:
    with pytest.raises(StorageError) as info:
        open_storage(url)
    assert "secret" not in info.value.message and "Traceback" not in info.value.message


def test_redact() -> None:
    assert redact("postgresql://me:pw@h/db") == "postgresql://me:***@h/db"
    assert redact("sqlite:///x.db") == "sqlite:///x.db"


# ---------------------------------------------------------------------------------------- WandB's hyperband
def test_hyperband_matches_wandbs_own_example() -> None:
    """WandB's doctest (sweeps/hyperband_stopping.py): loss, max_iter 5, eta 2, s 2 -> stop b and c, keep d."""
    bands = HyperbandSpec(type="hyperband", max_iter=5, eta=2, s=2).bands()
    assert bands == [1, 2]
    histories = {"a": [10, 9], "b": [10, 10], "c": [10, 8, 8], "d": [10, 7, 7], "e": [10, 6, 6]}
    everyone = list(histories.values())
    stopped = {k for k in "bcd" if should_stop(histories[k], everyone, bands, 2, maximize=False)}
    assert stopped == {"b", "c"}


def test_hyperband_bands_forwards_and_maximise() -> None:
    assert HyperbandSpec(type="hyperband", min_iter=1, eta=3).bands()[:4] == [1, 3, 9, 27]
    everyone = [[50, 60], [50, 90], [50, 95]]
    assert should_stop([50, 60], everyone, [1], 3, maximize=True)
    assert not should_stop([50, 95], everyone, [1], 3, maximize=True)
    assert not should_stop([50], everyone, [1], 3, maximize=True)  # has not reached a band yet


# ---------------------------------------------------------------------------------------- Pareto, hypervolume
def test_pareto_mask_and_hypervolume() -> None:
    pts = np.array([[90.0, 1.0], [95.0, 2.0], [93.0, 3.0], [97.0, 4.0]])  # (top1 max, latency min)
    assert pareto_mask(pts, [True, False]).tolist() == [True, True, False, True]
    # reference (80, 5): rectangles in minimisation space, summed by hand
    assert hypervolume_2d(pts, [True, False], [80.0, 5.0]) == pytest.approx(10 * 4 + 5 * 3 + 2 * 1)
    assert hypervolume_2d(pts[:0], [True, False], [80.0, 5.0]) == 0.0


def test_pearson() -> None:
    assert pearson([1, 2, 3, 4], [2, 4, 6, 8]) == pytest.approx(1.0)
    assert pearson([1, 1, 1], [1, 2, 3]) is None
