"""The sweep report: one static HTML file, no network, renders in a headless browser without console errors."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import optuna
import pytest

from edgeprune.sweep.config import parse_sweep
from edgeprune.sweep.engine import SweepStudy
from tests.conftest import run_cli

optuna.logging.set_verbosity(optuna.logging.WARNING)

SWEEP = """\
name: report-demo
description: made-up numbers for the report's layout
method: grid
program: t.py
objectives:
  - {name: top1, goal: maximize}
  - {name: latency_ms, goal: minimize}
parameters:
  sparsity:
    parameters:
      a: {values: [0.2, 0.5, 0.8]}
      b: {values: [0.3, 0.6]}
"""


def make_study(run_dir: Path) -> None:
    """Six trials whose (invented) accuracy and latency fall as sparsity rises; one failed, one pruned."""
    study = SweepStudy(parse_sweep(SWEEP, "report.yaml"), f"sqlite:///{run_dir / 'study.db'}")
    study.study.set_user_attr("baseline", {"top1": 98.0, "latency_ms": 1.0, "macs": 2.5e6})
    for i in range(6):
        asked = study.ask()
        a, b = asked.values["sparsity.a"], asked.values["sparsity.b"]
        if i == 4:
            study.fail(asked.trial, "exit code 1: Traceback ... RuntimeError: out of memory")
            continue
        history = [{"_step": e, "top1": 90 - 10 * a * b + e} for e in range(3)]
        study.report_history(asked, history, [h["top1"] for h in history])
        if i == 5:
            study.fail(asked.trial, "stopped by hyperband", pruned=True)
            continue
        artifact = run_dir / "trials" / f"{asked.number:04d}" / "model.onnx"
        artifact.parent.mkdir(parents=True)
        artifact.write_bytes(b"onnx")
        study.complete(asked.trial, {"top1": 97 - 10 * a * b, "latency_ms": 1 - 0.5 * a - 0.3 * b + 0.01 * i,
                                     "macs": 2.5e6 * (1 - a * b)}, history=history, artifacts={"onnx": str(artifact)})


def test_report_is_one_offline_html_file(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    make_study(run_dir)
    (run_dir / "sensitivity.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>')
    result = run_cli("report", str(run_dir), "-o", str(tmp_path / "out" / "report.html"), "--png")
    assert result.returncode == 0, result.stderr
    page = (tmp_path / "out" / "report.html").read_text()
    for heading in ("Pareto front", "Parallel coordinates", "Parameter importance and correlation",
                    "Validation metric per step", "Sensitivity", "Trials"):
        assert f"<h2>{heading}</h2>" in page
    assert page.count("<svg") == 5  # four figures + the sensitivity picture, all inline
    assert not any(s in page for s in ("<script", "<link", 'src="http', 'href="http', "url(http"))  # nothing to fetch
    assert 'href="../run/trials/0000/model.onnx"' in page  # artifacts linked relative to the report
    assert "out of memory" in page and "PRUNED" in page
    assert "macs 2,500,000" in page and "latency_ms 1," in page  # counts in full, not 2.5e+06
    assert "<th>speed-up</th>" in page
    study = optuna.load_study(study_name="report-demo", storage=f"sqlite:///{run_dir / 'study.db'}")
    done = [t.user_attrs["metrics"]["latency_ms"] for t in study.trials if t.state.name == "COMPLETE"]
    assert len(done) == 4 and all(f"<td>{1.0 / ms:.2f}×</td>" in page for ms in done)  # dense 1.0 ms / trial's
    assert {p.name for p in (tmp_path / "out").glob("*.png")} == {
        "report-pareto.png", "report-parallel.png", "report-importance.png", "report-history.png"}


def test_sweep_status_json_is_the_printed_table_as_data(tmp_path: Path) -> None:
    make_study(tmp_path)
    printed = run_cli("sweep", "status", str(tmp_path))
    status = json.loads(run_cli("sweep", "status", str(tmp_path), "--json").stdout)
    assert status["study"] == "report-demo" and status["counts"] == {"complete": 4, "fail": 1, "pruned": 1}
    assert status["best"] and all(f"{row['trial']}" in printed.stdout for row in status["best"])


def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("headless Chromium is not installed (apt-get install -y chromium)")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    make_study(run_dir)
    assert run_cli("report", str(run_dir)).returncode == 0
    shot = tmp_path / "shot.png"
    proc = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
         f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0", "--window-size=1280,2400",
         f"--screenshot={shot}", (run_dir / "report.html").as_uri()],
        capture_output=True, text=True, timeout=120)
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    assert shot.is_file() and shot.stat().st_size > 20_000, proc.stderr[-2000:]
    assert console == []


def test_report_of_a_missing_sweep_is_a_clear_error(tmp_path: Path) -> None:
    result = run_cli("report", str(tmp_path / "nothing.db"))
    assert result.returncode != 0 and "Traceback" not in result.stderr
