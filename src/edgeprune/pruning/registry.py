"""The pruner registry: the class names a schedule's ``class:`` key may name.

Pruners register under Distiller's exact class names so existing Distiller YAML files build unchanged;
an explicit registry (rather than Distiller's module ``globals()``) lets a typo be answered with the
closest registered names.
"""

from __future__ import annotations

from edgeprune.registry import Registry

PRUNERS: Registry[type] = Registry("pruner")
register_pruner = PRUNERS.register
