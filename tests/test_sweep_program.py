"""User programs as trials, the way ``wandb agent`` runs them: macros, wandb.config, metrics back, failures, stops."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from optuna.trial import TrialState
from rich.console import Console

from edgeprune.sweep.config import load_sweep
from edgeprune.sweep.process import build_command, command_args, write_wandb_params
from edgeprune.sweep.runner import SweepRunner
from edgeprune.sweep.wandb_log import find_run_file, read_wandb_run

# A training script written for `wandb agent`, unchanged: it knows nothing about edgeprune.
WANDB_SCRIPT = """\
import wandb

run = wandb.init()
lr, depth = wandb.config.lr, wandb.config.model["depth"]
for epoch in range(3):
    wandb.log({"val_acc": 0.5 + lr * depth * (epoch + 1), "epoch": epoch})
wandb.finish()
"""

WANDB_SWEEP = """\
program: train.py
method: grid
metric: {name: val_acc, goal: maximize}
parameters:
  lr: {values: [0.01, 0.05]}
  model:
    parameters:
      depth: {value: 2}
"""


def write(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (tmp_path / name).write_text(textwrap.dedent(text))
    return tmp_path / "sweep.yaml"


def run_sweep(path: Path, run_dir: Path, **kwargs) -> SweepRunner:
    runner = SweepRunner(load_sweep(path), run_dir, console=Console(quiet=True), **kwargs)
    runner.result = runner.run()
    return runner


def test_command_macros_like_the_agent() -> None:
    config = {"lr": 0.1, "flag": False, "on": True, "layers": [1, 2]}
    env = {"DATA": "/data"}
    argv = build_command(None, "train.py", config, "/x/args.json", env)
    assert argv == ["/usr/bin/env", sys.executable, "train.py", "--lr=0.1", "--flag=False", "--on=True",
                    "--layers=[1, 2]"]
    custom = ["${env}", "python3", "${program}", "--data", "${envvar:DATA}", "${envvar:UNSET}", "${args_no_hyphens}",
              "${args_json_file}", "${nonsense}", "${args_no_boolean_flags}"]
    argv = build_command(custom, "train.py", config, "/x/args.json", env)
    assert argv == ["/usr/bin/env", "python3", "train.py", "--data", "/data", "UNSET", "lr=0.1", "flag=False",
                    "on=True", "layers=[1, 2]", "/x/args.json", "--lr=0.1", "--on", "--layers=[1, 2]"]
    assert json.loads(command_args(config)["args_json"][0]) == config


def test_wandb_param_file_is_what_wandb_reads(tmp_path: Path) -> None:
    pytest.importorskip("wandb", reason="wandb is not installed (pip install 'edgeprune[sweep]')")
    from wandb.sdk.lib import config_util

    path = tmp_path / "config.yaml"
    write_wandb_params(path, {"lr": 0.1, "model": {"depth": 2}})
    assert config_util.dict_from_config_file(str(path)) == {"lr": 0.1, "model": {"depth": 2}}


def test_a_wandb_agent_script_runs_unchanged(tmp_path: Path) -> None:
    pytest.importorskip("wandb", reason="wandb is not installed (pip install 'edgeprune[sweep]')")
    path = write(tmp_path, {"train.py": WANDB_SCRIPT, "sweep.yaml": WANDB_SWEEP})
    runner = run_sweep(path, tmp_path / "run")
    done = runner.study.trials(TrialState.COMPLETE)
    assert runner.result.stop_reason == "grid exhausted" and len(done) == 2
    for t in done:  # the metric the script logged (its last value, as WandB's summary) reached the study
        lr = t.user_attrs["config"]["lr"]
        assert t.values[0] == pytest.approx(0.5 + lr * 2 * 3)
        assert [h["val_acc"] for h in t.user_attrs["history"]] == pytest.approx([0.5 + lr * 2 * e for e in (1, 2, 3)])
        assert t.user_attrs["artifacts"]["wandb_run"].endswith(".wandb")
    assert runner.study.study.user_attrs["analysis"]["metrics"]["val_acc"]["importance"]


def test_missing_and_failing_programs_fail_their_trial_and_the_sweep_goes_on(tmp_path: Path) -> None:
    fails = "import sys\nprint('bad things happened', file=sys.stderr)\nsys.exit(3)\n"
    path = write(tmp_path, {"fails.py": fails, "sweep.yaml": """\
        method: grid
        metric: {name: score}
        command: ["${program}", "${args}"]
        program: does-not-exist
        parameters:
          x: {values: [1, 2]}
        """})
    runner = run_sweep(path, tmp_path / "a")
    failed = runner.study.trials(TrialState.FAIL)
    assert len(failed) == 2 and all("cannot start 'does-not-exist'" in t.user_attrs["error"] for t in failed)
    path.write_text(path.read_text().replace("does-not-exist", "fails.py").replace('command: ["${program}", '
                                                                                   '"${args}"]\n', ""))
    runner = run_sweep(path, tmp_path / "b")
    failed = runner.study.trials(TrialState.FAIL)
    assert len(failed) == 2 and all(t.user_attrs["error"].startswith("exit code 3: bad things happened")
                                    for t in failed)


def test_a_program_that_never_logs_the_metric_fails(tmp_path: Path) -> None:
    path = write(tmp_path, {"quiet.py": "print('hello')\n", "sweep.yaml": """\
        program: quiet.py
        method: grid
        metric: {name: score}
        parameters: {x: {values: [1]}}
        """})
    runner = run_sweep(path, tmp_path / "run")
    [failed] = runner.study.trials(TrialState.FAIL)
    assert "never logged score" in failed.user_attrs["error"]


def test_hyperband_stops_hopeless_trials(tmp_path: Path) -> None:
    # Reports through edgeprune.sweep.report (no wandb). The k-th trial to run is worse at every step than the ones
    # before it, whatever the grid order: the third is below the median at band 2 (WandB's rule) and is stopped.
    script = """\
        import sys, time
        from pathlib import Path
        from edgeprune.sweep import report
        counter = Path(sys.argv[1].split("=", 1)[1])
        k = int(counter.read_text()) if counter.exists() else 0
        counter.write_text(str(k + 1))
        for step in range(8):
            report(step=step, acc=10 * step / (k + 1))
            time.sleep(0.4)
        """
    path = write(tmp_path, {"steps.py": script, "sweep.yaml": f"""\
        program: steps.py
        method: grid
        metric: {{name: acc, goal: maximize}}
        early_terminate: {{type: hyperband, min_iter: 2, eta: 2}}
        parameters:
          counter: {{value: {tmp_path / 'counter'}}}
          x: {{values: [1, 2, 3]}}
        """})
    runner = run_sweep(path, tmp_path / "run")
    states = [t.state for t in runner.study.trials()]
    assert states == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.PRUNED]
    pruned = runner.study.trials()[2]
    assert "hyperband" in pruned.user_attrs["error"] and len(pruned.user_attrs["history"]) < 8


def test_wandb_run_file_reader_crosses_blocks(tmp_path: Path) -> None:
    pytest.importorskip("wandb", reason="wandb is not installed (pip install 'edgeprune[sweep]')")
    script = ("import wandb\nrun = wandb.init(mode='offline', id='blocks1', dir=%r)\nfor i in range(1500):\n"
              "    wandb.log({'loss': 1.0 / (i + 1), 'text': 'x' * 40})\nwandb.summary['best'] = 7\nwandb.finish()\n")
    subprocess.run([sys.executable, "-c", script % str(tmp_path)], check=True, capture_output=True)
    run_file = find_run_file(tmp_path, "blocks1")
    assert run_file is not None and run_file.stat().st_size > 3 * 32 * 1024
    run = read_wandb_run(run_file)
    assert len(run.history) == 1500 and run.history[-1]["loss"] == pytest.approx(1 / 1500)
    assert run.summary["best"] == 7 and run.summary["loss"] == pytest.approx(1 / 1500) and run.exited


def test_two_workers_run_a_grid_once(tmp_path: Path) -> None:
    path = write(tmp_path, {"quick.py": "import sys, time\nfrom edgeprune.sweep import report\ntime.sleep(0.5)\n"
                                        "report(score=float(sys.argv[1].split('=')[1]))\n", "sweep.yaml": """\
        program: quick.py
        method: grid
        metric: {name: score}
        parameters: {x: {values: [1, 2, 3, 4, 5]}}
        """})
    runner = run_sweep(path, tmp_path / "run", workers=2)
    done = runner.study.trials(TrialState.COMPLETE)
    assert sorted(t.values[0] for t in done) == [1, 2, 3, 4, 5] and len(runner.study.trials()) == 5
