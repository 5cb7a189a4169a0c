"""Compression schedules in Distiller's YAML format: schema, policies and the scheduler.

The schema (:mod:`edgeprune.schedule.config`) needs no torch, so a sweep file (which embeds a schedule
template) is read on a measuring host without the training stack. The scheduler builds policies over a model
and loads torch the first time it is used (PEP 562); the timeline is :mod:`edgeprune.schedule.timeline`'s
(its function shares the module's name, which a lazy attribute here could not tell apart).
"""

from __future__ import annotations

import importlib
from typing import Any

from edgeprune.schedule.config import ScheduleError, ScheduleSpec, ScheduleWarning, load_schedule, parse_schedule


def __getattr__(name: str) -> Any:
    if name == "CompressionScheduler":
        return importlib.import_module("edgeprune.schedule.scheduler").CompressionScheduler
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CompressionScheduler",
    "ScheduleError",
    "ScheduleSpec",
    "ScheduleWarning",
    "load_schedule",
    "parse_schedule",
]
