"""Parameter/module name canonicalisation across DataParallel (``module.``) and plain models.

Distiller wrote names with a ``module.`` prefix whenever the model ran under DataParallel, and
matched schedule ``weights`` by exact string, so a prefixed schedule silently pruned nothing on a
plain model. edgeprune canonicalises every name by Distiller's own rule before matching instead.
"""

from __future__ import annotations


def normalize_module_name(name: str) -> str:
    """Remove the first path component equal to ``module`` (Distiller's ``normalize_module_name``).

    ``module.features.0 -> features.0``, ``features.module.0 -> features.0``, ``module -> ''``.
    """
    parts = name.split(".")
    if "module" in parts:
        parts.remove("module")
    return ".".join(parts)


def normalize_state_dict_keys(state_dict: dict) -> dict:
    """A copy of ``state_dict`` with every key canonicalised (order preserved)."""
    return {normalize_module_name(k): v for k, v in state_dict.items()}
