"""Phases 2 and 3: which convs can lose filters (sensitivity analysis), and a one-shot schedule from it.

Both are the very jobs behind ``edgeprune sensitivity`` and ``edgeprune schedule suggest``, called with the
demo's settings: the analysis resumes point by point on its own, and the suggestion is a pure function of the
CSV and the checkpoint, so it is recomputed (about a second) rather than trusted from a file a user may have
edited — the file the user edits to steer the sweep is ``sweep.yaml``.
"""

from __future__ import annotations

import math

from rich.console import Console

from edgeprune.analysis.sensitivity import SensitivityOutput
from edgeprune.analysis.suggest import Suggestion, suggest_schedule, write_suggestion
from edgeprune.demo.baseline import Baseline
from edgeprune.demo.rundir import RunDir
from edgeprune.demo.settings import DemoSettings
from edgeprune.jobs.sensitivity import run_sensitivity

EVAL_BATCH = 256


def analyse(rd: RunDir, baseline: Baseline, data: str, settings: DemoSettings,
            console: Console) -> SensitivityOutput:
    """Filter-wise sensitivity of every conv of the baseline into ``rd.sensitivity_dir`` (CSV, JSON, plots)."""
    return run_sensitivity(str(baseline.checkpoint), data, rd.sensitivity_dir, group="filter",
                           sparsities=settings.sensitivity_range, batch_size=EVAL_BATCH,
                           eval_batches=math.ceil(settings.sensitivity_images / EVAL_BATCH), seed=settings.seed,
                           console=console)


def suggest(rd: RunDir, baseline: Baseline, sensitivity: SensitivityOutput, settings: DemoSettings) -> Suggestion:
    """The suggested schedule (largest per-conv sparsities within ``max_drop``), written to ``rd.suggested``."""
    suggestion = suggest_schedule(sensitivity.csv, str(baseline.checkpoint), max_drop=settings.max_drop)
    write_suggestion(suggestion, rd.suggested)
    return suggestion
