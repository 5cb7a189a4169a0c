"""The one-way channel from a trial's process to the sweep: JSON lines appended to ``$EDGEPRUNE_SWEEP_METRICS``.

Why a file: it works from any language and any process (a user program, something it starts), survives
the reader restarting, and is the trial's metric log afterwards.
A record is one JSON object per line; the sweep reads complete lines only, so a writer killed mid-line
loses that line and nothing else. A program written for ``wandb agent`` needs none of this: its
``wandb.log`` calls are read from WandB's own run file (:mod:`edgeprune.sweep.wandb_log`).
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

ENV_VAR = "EDGEPRUNE_SWEEP_METRICS"


def report(step: int | None = None, **metrics: Any) -> None:
    """Send metrics to the sweep running this process (``step``: e.g. the epoch); a no-op outside a sweep.

    Call it once per epoch with the validation metric (hyperband compares those) and once at the end;
    the trial's result is the last value of each metric.
    """
    path = os.environ.get(ENV_VAR)
    if not path:
        return
    record = {k: v for k, v in metrics.items() if not (isinstance(v, float) and math.isnan(v))}
    record["_time"] = time.time()
    if step is not None:
        record["_step"] = step
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")


def read_reports(path: str | Path) -> list[dict[str, Any]]:
    """Every complete record in ``path`` (none if it does not exist yet)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    records = []
    for line in text.splitlines(keepends=True):
        if not line.endswith("\n"):
            break  # being written
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            records.append(value)
    return records
