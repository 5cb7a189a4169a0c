"""Producer and consumer agents: a sweep's trials produced on some machines and measured on others.

::

    PRODUCER (xN, any host)                  queue (per-sweep namespace)          CONSUMER (target device)
    ask study -> prune, retrain, ONNX  --->  embedded SQLite | Redis Streams  ---> fetch + verify artifact,
    put artifact (claim check), enqueue       visibility timeout, dead letters      benchmark, tell, ack

The pieces, each usable alone: :func:`get_queue` (:mod:`.queue`, backends :mod:`.sqlite_queue` and
:mod:`.redis_queue`), :func:`get_artifact_store` (:mod:`.artifacts`, :mod:`.redis_artifacts`),
:class:`Producer`, :class:`Consumer`, the janitor (:mod:`.janitor`) and ``edgeprune status``
(:mod:`.status`). Loaded on first use, so importing this package pulls in neither torch nor Redis.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "get_queue": "edgeprune.agents.queue",
    "JobQueue": "edgeprune.agents.queue",
    "get_artifact_store": "edgeprune.agents.artifacts",
    "ArtifactStore": "edgeprune.agents.artifacts",
    "Producer": "edgeprune.agents.producer",
    "Consumer": "edgeprune.agents.consumer",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'edgeprune.agents' has no attribute {name!r}")
