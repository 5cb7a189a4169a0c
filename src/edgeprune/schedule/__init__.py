"""Compression schedules in Distiller's YAML format: schema, policies and the scheduler."""

from edgeprune.schedule.config import ScheduleError, ScheduleSpec, ScheduleWarning, load_schedule, parse_schedule
from edgeprune.schedule.scheduler import CompressionScheduler
from edgeprune.schedule.timeline import TimelineRow, TimelineRun, timeline, timeline_runs, timeline_table

__all__ = [
    "CompressionScheduler",
    "ScheduleError",
    "ScheduleSpec",
    "ScheduleWarning",
    "TimelineRow",
    "TimelineRun",
    "load_schedule",
    "parse_schedule",
    "timeline",
    "timeline_runs",
    "timeline_table",
]
