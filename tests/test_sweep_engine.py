"""The study engine: stop conditions, importance after every result, reclaiming dead runners' trials, storage errors.

The "metric" here is a formula of the parameters: these tests check the mapping onto Optuna, not pruning.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from edgeprune.sweep.analysis import hypervolume_2d, pareto_mask, pearson
from edgeprune.sweep.config import HyperbandSpec, parse_sweep
from edgeprune.sweep.engine import StudyMismatchError, SweepStudy
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
