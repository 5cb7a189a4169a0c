"""The tracker interface: one small base class, every hook a no-op by default.

Why this shape: a sweep talks to any number of experiment trackers (the local log always, WandB and
MLflow when configured) at the same few moments of a trial, and a tracker that cannot do something
(no artifacts, say) just does not override that hook. Trackers never decide anything: a tracker that
fails to log must not fail the trial, so :class:`Trackers` turns their errors into warnings.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any


class TrackerWarning(UserWarning):
    """A tracker could not record something; the sweep goes on."""


class Tracker:
    """Subclass and override what the tracker supports."""

    name = "tracker"

    def start_trial(self, number: int, config: dict[str, Any]) -> None:
        """A trial starts with ``config`` (its nested parameter values)."""

    def log_metrics(self, number: int, metrics: dict[str, float], step: int | None = None) -> None:
        """Metrics of a trial, at ``step`` (e.g. a retraining epoch) or, without one, its final values."""

    def log_artifact(self, number: int, path: Path, kind: str) -> None:
        """A file a trial made: ``kind`` is schedule, onnx, checkpoint, bench, job, ..."""

    def end_trial(self, number: int, state: str, error: str | None = None) -> None:
        """The trial ended: ``state`` is COMPLETE, PRUNED or FAIL."""

    def close(self) -> None:
        """Flush and release (the sweep ends)."""


class Trackers(Tracker):
    """Fans every call out to several trackers; one failing tracker only warns."""

    name = "trackers"

    def __init__(self, trackers: Iterable[Tracker]) -> None:
        self.trackers = list(trackers)

    def _each(self, method: str, *args: Any, **kwargs: Any) -> None:
        for tracker in self.trackers:
            try:
                getattr(tracker, method)(*args, **kwargs)
            except Exception as exc:  # a tracker is never allowed to fail the sweep
                warnings.warn(f"{tracker.name} tracker: {method} failed: {exc}", TrackerWarning, stacklevel=3)

    def start_trial(self, number: int, config: dict[str, Any]) -> None:
        self._each("start_trial", number, config)

    def log_metrics(self, number: int, metrics: dict[str, float], step: int | None = None) -> None:
        self._each("log_metrics", number, metrics, step)

    def log_artifact(self, number: int, path: Path, kind: str) -> None:
        self._each("log_artifact", number, path, kind)

    def end_trial(self, number: int, state: str, error: str | None = None) -> None:
        self._each("end_trial", number, state, error)

    def close(self) -> None:
        self._each("close")
