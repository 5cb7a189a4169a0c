"""Compression schedules in Distiller's YAML format: schema, policies and the scheduler."""
