"""Constraints in sweep files (``constraints: [{name: latency_ms, max: 0.35}]``): judged once when a result is told,
stored where Optuna's samplers read them, kept off the front everywhere the front is shown while the trials that
break them stay visible with what they broke; and every bad entry refused where it is written.

Results are told through SweepStudy.complete on real studies, with numbers chosen so the front is known by hand.
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState
from rich.console import Console

from edgeprune.fileio import sha256_file
from edgeprune.report.study_html import write_study_report
from edgeprune.sweep.analysis import front
from edgeprune.sweep.config import BenchmarkSettings, SweepError, load_sweep, parse_sweep
from edgeprune.sweep.constraints import explain
from edgeprune.sweep.engine import StudyMismatchError, SweepStudy, fingerprint
from edgeprune.sweep.job import TrialJob
from edgeprune.sweep.measure import measure_and_tell
from edgeprune.sweep.progress import status_line, trial_line
from edgeprune.sweep.results import load_study_data
from edgeprune.sweep.runner import SweepRunner
from edgeprune.sweep.status import study_status
from tests.conftest import REPO, run_cli
from tests.test_sweep_config import PIPELINE, write_pipeline
from tests.test_sweep_report import SWEEP as REPORT_SWEEP

optuna.logging.set_verbosity(optuna.logging.WARNING)

SWEEP = REPORT_SWEEP.replace(  # a grid of six with two objectives; the results are ours
    "parameters:\n", "constraints:\n  - {name: latency_ms, max: 1.0}\n  - {name: top1, min: 91}\nparameters:\n", 1)
# (top1, latency_ms) per trial. By hand: without constraints the front is #3, #4, #0 (#4 beats #1 and #2). With
# latency_ms <= 1 and top1 >= 91, #0 (1.5 ms) and #2 (1.2 ms) are too slow, #3 (90 %) too inaccurate; #1 sits
# exactly on the budget (a bound holds with equality) but #4 beats it, so the front is #4 alone.
RESULTS = [(97.0, 1.5), (95.0, 1.0), (94.0, 1.2), (90.0, 0.5), (96.0, 0.9)]
BROKEN = {0: "latency_ms 1.5 > max 1 (by 0.5)", 2: "latency_ms 1.2 > max 1 (by 0.2)", 3: "top1 90 < min 91 (by 1)"}


def told(url: str, sweep: str = SWEEP, results: list[tuple[float, float]] = RESULTS) -> SweepStudy:
    study = SweepStudy(parse_sweep(sweep, "budget.yaml"), url)
    for top1, latency in results:
        asked = study.ask()
        study.complete(asked.trial, {"top1": top1, "latency_ms": latency, "macs": 1e6 * latency})
    return study


def test_infeasible_trials_are_stored_kept_off_the_front_and_listed_with_what_they_broke(tmp_path: Path) -> None:
    study = told(f"sqlite:///{tmp_path / 'study.db'}")
    trials = study.trials()
    for t, (top1, latency) in zip(trials, RESULTS, strict=True):  # Optuna's own reading of what was stored
        assert t.constraints == pytest.approx({"latency_ms.max": latency - 1.0, "top1.min": 91 - top1})
        assert {"constraints:latency_ms.max", "constraints:top1.min"} <= set(t.system_attrs)
    objectives = {"top1": "maximize", "latency_ms": "minimize"}
    assert [t.number for t in front(trials, objectives)] == [4]
    assert [t.number for t in study.study.best_trials] == [4]  # Optuna sees the same constraints
    assert "Pareto front 1 trials · 3 infeasible" in status_line(study, "idle")
    assert trial_line(study, 0, "COMPLETE", None).endswith(f"[yellow]infeasible[/]: {BROKEN[0]}")
    assert "infeasible" not in trial_line(study, 1, "COMPLETE", None)

    status = study_status(str(tmp_path))
    assert [row["trial"] for row in status["best"]] == [4]
    assert {row["trial"]: row["violations"][0]["text"] for row in status["infeasible"]} == BROKEN
    assert status["infeasible"][0]["violations"][0] == pytest.approx(
        {"metric": "latency_ms", "bound": "max", "limit": 1.0, "value": 1.5, "by": 0.5,
         "text": BROKEN[0]}) and status["constraints"] == "latency_ms ≤ 1, top1 ≥ 91"
    printed = " ".join(run_cli("status", str(tmp_path)).stdout.split())  # the CLI's summary, title unwrapped
    assert "subject to latency_ms ≤ 1, top1 ≥ 91" in printed
    assert all(f"infeasible: {text}" in printed for text in BROKEN.values())


def test_the_report_marks_infeasible_trials_beside_the_front(tmp_path: Path) -> None:
    told(f"sqlite:///{tmp_path / 'study.db'}")
    page = write_study_report(str(tmp_path)).read_text()
    assert "1 of 5 trials on the Pareto front, 3 infeasible" in page  # the figure's title, in the SVG
    assert "<dt>constraints</dt><dd>latency_ms ≤ 1, top1 ≥ 91</dd>" in page and "<th>constraints</th>" in page
    for number, text in BROKEN.items():
        row = page.split(f"<tr><td>{number}</td>", 1)[1].split("</tr>", 1)[0]
        assert f'<span class="infeasible">infeasible: {text.replace(">", "&gt;").replace("<", "&lt;")}</span>' in row
    for number in (1, 4):
        assert "<td>ok</td>" in page.split(f"<tr><td>{number}</td>", 1)[1].split("</tr>", 1)[0]


def test_the_live_front_draws_infeasible_trials_apart(tmp_path: Path) -> None:
    pytest.importorskip("plotly", reason="the live view needs pip install 'edgeprune[dashboard]'")
    from edgeprune.sweep.live import FRONT_ID, TABLE_ID, live_views

    told(f"sqlite:///{tmp_path / 'study.db'}")
    views = live_views(load_study_data(str(tmp_path)))
    traces = {t.name: t for t in views[FRONT_ID].data}
    assert list(traces["Pareto front"].x) == [0.9] and list(traces["trials"].x) == [1.0, 0.9]
    assert list(traces["infeasible (3)"].x) == [1.5, 1.2, 0.5]
    assert all(f"<b>infeasible</b>: {text}" in hover for text, hover in zip(
        [BROKEN[0], BROKEN[2], BROKEN[3]], traces["infeasible (3)"].text, strict=True))
    assert "1 of 5 measured trials on the front, 3 infeasible" in views[FRONT_ID].layout.title.text
    assert list(views[TABLE_ID].data[0].cells.values[0]) == ["dense", "#4"]


def test_no_feasible_trial_yet_is_said_not_crashed_on(tmp_path: Path) -> None:
    study = told(f"sqlite:///{tmp_path / 'study.db'}", results=[RESULTS[0], RESULTS[3]])
    assert "no feasible trial yet · 2 infeasible" in status_line(study, "idle")
    assert study_status(str(tmp_path))["best"] == []
    assert "0 of 2 trials on the Pareto front, 2 infeasible" in write_study_report(str(tmp_path)).read_text()


@pytest.mark.parametrize("sampler", ["tpe", "gp"])
def test_samplers_that_model_constraints_read_the_stored_values(tmp_path: Path, sampler: str) -> None:
    """Bayesian sweeps past their random start-up trials: the stored values are what the sampler reads
    (FrozenTrial.constraints), and Optuna's best trial of one objective skips a better but infeasible one."""
    cfg = parse_sweep(f"name: b\nmethod: bayes\nsampler: {sampler}\nprogram: t.py\nrun_cap: 6\n"
                      "metric: {name: top1, goal: maximize}\nconstraints: [{name: latency_ms, max: 0.5}]\n"
                      "parameters:\n  x: {min: 0.0, max: 1.0}\n", "b.yaml")
    study = SweepStudy(cfg, f"sqlite:///{tmp_path / 'study.db'}")
    while study.stop_reason() is None:  # top1 and latency both grow with x: the budget caps x at 0.5
        asked = study.ask()
        x = asked.values["x"]
        study.complete(asked.trial, {"top1": 90 + 10 * x, "latency_ms": x})
    done = study.trials(TrialState.COMPLETE)
    assert len(done) == 6 and all(t.constraints == pytest.approx({"latency_ms.max": t.params["x"] - 0.5})
                                  for t in done)
    feasible = [t for t in done if t.params["x"] <= 0.5]
    assert feasible and len(feasible) < len(done)  # the seed's draws fall on both sides of the budget
    assert study.study.best_trial.number == max(feasible, key=lambda t: t.params["x"]).number
    assert [t.number for t in front(done, {"top1": "maximize"})] == [t.number for t in study.study.best_trials]


def test_a_target_counts_only_when_a_feasible_trial_reaches_it(tmp_path: Path) -> None:
    cfg = parse_sweep("name: t\nmethod: random\nprogram: t.py\nmetric: {name: top1, goal: maximize, target: 95}\n"
                      "constraints: [{name: latency_ms, max: 1}]\nparameters:\n  x: {min: 0.0, max: 1.0}\n", "t.yaml")
    study = SweepStudy(cfg, f"sqlite:///{tmp_path / 'study.db'}")
    study.complete(study.ask().trial, {"top1": 99.0, "latency_ms": 2.0})
    assert study.stop_reason() is None
    study.complete(study.ask().trial, {"top1": 96.0, "latency_ms": 0.5})
    assert study.stop_reason() == "target 95.0 reached by trial 1"


def test_changing_the_constraints_of_a_study_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    told(url, results=RESULTS[:1])
    SweepStudy(parse_sweep(SWEEP, "budget.yaml"), url)  # the same sweep continues
    with pytest.raises(StudyMismatchError):
        SweepStudy(parse_sweep(SWEEP.replace("max: 1.0", "max: 2.0"), "budget.yaml"), url)
    without = SWEEP.replace("  - {name: latency_ms, max: 1.0}\n  - {name: top1, min: 91}\n", "")
    assert "constraints:\n" in without and "max: 1.0" not in without
    none, empty = (parse_sweep(without.replace("constraints:\n", text), "p.yaml") for text in ("", "constraints: []\n"))
    assert fingerprint(none) == fingerprint(empty)  # studies of sweeps without constraints are resumed as before


def test_a_program_trial_must_log_what_the_constraints_bound(tmp_path: Path) -> None:
    """The embedded runner: a program that logs the bounded metric is judged; one that does not fails its trial."""
    script = ("import sys\nfrom edgeprune.sweep import report\nx = int(sys.argv[1].split('=')[1])\n"
              "report(score=x, **({'latency_ms': 0.2 * x} if x < 3 else {}))\n")
    (tmp_path / "prog.py").write_text(script)
    (tmp_path / "sweep.yaml").write_text(textwrap.dedent("""\
        program: prog.py
        method: grid
        metric: {name: score, goal: maximize}
        constraints: [{name: latency_ms, max: 0.3}]
        parameters: {x: {values: [1, 2, 3]}}
        """))
    runner = SweepRunner(load_sweep(tmp_path / "sweep.yaml"), tmp_path / "run", console=Console(quiet=True))
    runner.run()
    by_x = {t.params["x"]: t for t in runner.study.trials()}
    assert by_x[1].state == TrialState.COMPLETE and by_x[1].constraints == pytest.approx({"latency_ms.max": -0.1})
    assert by_x[2].state == TrialState.COMPLETE and by_x[2].constraints == pytest.approx({"latency_ms.max": 0.1})
    assert by_x[3].state == TrialState.FAIL and "never logged latency_ms" in by_x[3].user_attrs["error"]
    assert [t.number for t in front(runner.study.trials(), {"score": "maximize"})] == [by_x[1].number]


def tiny_onnx(path: Path) -> Path:
    """A one-convolution ONNX model: a real artifact the consumer's benchmark measures in a fraction of a second."""
    onnx = pytest.importorskip("onnx", reason="pipeline trials hand over ONNX: pip install 'edgeprune[sweep]'")
    pytest.importorskip("onnxruntime", reason="pipeline trials are benchmarked with ONNX Runtime here")
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((2, 1, 3, 3), np.float32), "w")
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])], "tiny",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 8, 8])], [weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


def test_the_consumers_tell_stores_the_same_constraint_values(tmp_path: Path) -> None:
    """A pipeline trial's result reaches the study through measure_and_tell (the agents' consumer): the bounds on
    what the producer measured (macs) and on what the consumer measures (latency_ms) are both judged and stored."""
    body = PIPELINE.rstrip(" ") + "    constraints: [{name: latency_ms, max: 1000}, {name: macs, max: 1500000}]\n"
    study = SweepStudy(load_sweep(write_pipeline(tmp_path, body)), f"sqlite:///{tmp_path / 'study.db'}")
    artifact = tiny_onnx(tmp_path / "model.onnx")
    for macs in (1e6, 2e6):
        asked = study.ask()
        job = TrialJob(study_name=study.cfg.study_name, trial_number=asked.number, values=asked.values,
                       artifact=str(artifact), artifact_sha256=sha256_file(artifact), checkpoint="", schedule="",
                       input_shape=[1, 1, 8, 8], history=[], host="here",
                       metrics={"top1": 90.0, "top5": 99.0, "loss": 0.3, "top1_pruned": 80.0, "macs": macs,
                                "weight_params": 18.0},
                       benchmark=BenchmarkSettings(niter=20, warmup=2, budget_s=0.2))
        measure_and_tell(study, job)
    cheap, costly = study.trials(TrialState.COMPLETE)
    for t, macs in ((cheap, 1e6), (costly, 2e6)):
        latency = t.user_attrs["metrics"]["latency_ms"]
        assert 0 < latency < 1000
        assert t.constraints == pytest.approx({"latency_ms.max": latency - 1000, "macs.max": macs - 1.5e6})
    assert explain(costly) == "macs 2e+06 > max 1.5e+06 (by 5e+05)" and explain(cheap) == ""
    assert [t.number for t in front(study.trials(), {"top1": "maximize", "latency_ms": "minimize"})] == [cheap.number]


# ------------------------------------------------------------------------------------------------ bad input
def program(constraints: str) -> str:
    return f"program: t.py\nmethod: random\nmetric: {{name: acc}}\nparameters: {{x: {{min: 0.0, max: 1.0}}}}\n" \
           f"constraints:\n{textwrap.indent(textwrap.dedent(constraints), '  ')}"


@pytest.mark.parametrize(("constraints", "match", "key", "line"), [
    ("- {name: latency_ms}\n", "the constraint on 'latency_ms' has neither 'max' nor 'min'", "constraints[0]", 6),
    ("- {name: top1, max: 1}\n- {name: acc, min: 0.9, max: 0.5}\n", "min 0.9 is greater than max 0.5",
     "constraints[1].min", 7),
    ("- {name: acc, maximum: 1}\n", "unknown constraint key 'maximum'; did you mean 'max'?",
     "constraints[0].maximum", 6),
    ("- {max: 1}\n", "a constraint needs 'name'", "constraints[0]", 6),
    ("- {name: acc, max: fast}\n", "Input should be a valid number, got 'fast'", "constraints[0].max", 6),
    ("- {name: acc, max: .inf}\n", "finite number", "constraints[0].max", 6),
    ("- {name: acc, max: 1}\n- {name: acc, min: 0}\n", "'acc' is constrained twice (also constraints[0])",
     "constraints[1].name", 7),
    ("- latency_ms\n", "a constraint is a mapping such as", "constraints[0]", 6),
    ("{name: acc, max: 1}\n", "'constraints' is a list of bounds", "constraints", 5),
])
def test_bad_constraints_are_located(constraints: str, match: str, key: str, line: int) -> None:
    with pytest.raises(SweepError, match=re.escape(match)) as info:
        parse_sweep(program(constraints), "s.yaml")
    assert (info.value.file, info.value.key_path, info.value.line) == ("s.yaml", key, line)
    assert str(info.value).startswith(f"s.yaml:{line}:")


def test_a_pipeline_constraint_names_a_measured_metric(tmp_path: Path) -> None:
    body = PIPELINE.rstrip(" ") + "    constraints: [{name: weights, max: 100000}]\n"
    with pytest.raises(SweepError, match=r"the pipeline does not measure 'weights'; did you mean 'weight_params'\?") \
            as info:
        load_sweep(write_pipeline(tmp_path, body))
    assert info.value.key_path == "constraints[0].name" and info.value.line == 9
    assert "Measured per trial: top1, top5" in (info.value.hint or "")
    cfg = load_sweep(write_pipeline(tmp_path, body.replace("weights,", "weight_params,")))
    assert [(c.name, c.max, c.min) for c in cfg.constraints] == [("weight_params", 1e5, None)]
    assert json.dumps(cfg.constraints[0].model_dump(exclude_none=True)) == '{"name": "weight_params", "max": 100000.0}'


def test_the_budget_example_loads() -> None:
    cfg = load_sweep(REPO / "examples" / "sweeps" / "resnet20_digits_budget.yaml")
    assert [c.describe() for c in cfg.constraints] == ["latency_ms ≤ 0.045", "top1 ≥ 95"]
