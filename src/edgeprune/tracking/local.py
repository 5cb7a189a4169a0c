"""The local tracker: every event of every trial as one JSON line in ``RUN_DIR/trials.jsonl``.

Always on. The study itself (SQLite, PostgreSQL or Redis) holds the results; this log is the
human-readable, append-only, grep-able record of how the sweep went, in the order it happened.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from edgeprune.tracking.base import Tracker


class LocalTracker(Tracker):
    name = "local"

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / "trials.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def _write(self, event: str, number: int, **fields: Any) -> None:
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"time": time.time(), "event": event, "trial": number, **fields}, default=str) + "\n")

    def start_trial(self, number: int, config: dict[str, Any]) -> None:
        self._write("start", number, config=config)

    def log_metrics(self, number: int, metrics: dict[str, float], step: int | None = None) -> None:
        self._write("metrics", number, step=step, metrics=metrics)

    def log_artifact(self, number: int, path: Path, kind: str) -> None:
        self._write("artifact", number, kind=kind, path=str(path))

    def end_trial(self, number: int, state: str, error: str | None = None) -> None:
        self._write("end", number, state=state, error=error)
