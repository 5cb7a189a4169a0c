"""What travels through the queue, and what a trial records when its job is handed to the queue.

An :class:`AgentJob` is the sweep's own :class:`~edgeprune.sweep.job.TrialJob` (everything the MEASURE half
needs) plus the claim check of its artifact and who produced it; plain JSON, so any consumer on any
machine can read it without the producer's files.

``QUEUED_ATTR`` is the hand-off mark: once a producer has enqueued a trial's job it records the message id
with the trial and stops renewing the trial's lease — from then on the queue, not the producer, keeps the
trial alive, and the janitor asks the queue (not the lease) whether anybody still owns it. It is defined by
the study engine (:mod:`edgeprune.sweep.engine`), whose own reclaiming must leave handed-off trials alone.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from edgeprune.agents.artifacts import ArtifactRef
from edgeprune.sweep.engine import QUEUED_ATTR
from edgeprune.sweep.job import TrialJob

__all__ = ["QUEUED_ATTR", "AgentJob"]


class AgentJob(BaseModel):
    """A produced trial waiting to be measured: the trial's job, its artifact's claim check, its producer."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    job: TrialJob
    artifact: ArtifactRef
    producer: str
    produced_at: float

    @property
    def sweep(self) -> str:
        return self.job.study_name

    @property
    def trial_number(self) -> int:
        return self.job.trial_number
