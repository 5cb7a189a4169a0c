"""Compression schedules in Distiller's YAML format: schema, policies and the scheduler."""

from edgeprune.schedule.config import ScheduleError, ScheduleSpec, ScheduleWarning, load_schedule, parse_schedule
from edgeprune.schedule.scheduler import CompressionScheduler
from edgeprune.schedule.timeline import TimelineRow, timeline, timeline_table

__all__ = [
    "CompressionScheduler",
    "ScheduleError",
    "ScheduleSpec",
    "ScheduleWarning",
    "TimelineRow",
    "load_schedule",
    "parse_schedule",
    "timeline",
    "timeline_table",
]
