"""The job queue between producers and consumers: one small interface, a backend per URL scheme.

Why an interface of our own rather than a task framework: the semantics the sweep needs are few and
must be exact — at-least-once delivery, a visibility timeout after which an unacknowledged job goes
to another consumer, an explicit *release* (failed attempt, retry later) and *dead letter* (give up,
keep the reason) — and both backends give them directly: SQLite rows on one machine, Redis Streams
with a consumer group across machines. The queue is only the mechanism; how many attempts a job gets
is the consumer's policy (:mod:`edgeprune.agents.consumer`), and what a job means is the message's
(:mod:`edgeprune.agents.messages`).

Each sweep has its own namespace (its own stream or rows), so several sweeps share one queue and one
consumer serves them all. The queue also keeps two small registries the agents need: the sweeps
registered by their producers (so a consumer or a second producer can join by name) and the
producers' heartbeats (``edgeprune status`` shows who is alive). Jobs that ask a question rather than
finish a trial — a search's latency measurements (:mod:`edgeprune.agents.latency_jobs`) — get their
answer back as a *reply* under a key the asker chose.

``get_queue(None | url | queue)`` normalises like Optuna's ``get_storage``: ``None`` is the embedded
default, a URL picks the backend by its scheme, a queue object is used as it is.
"""

from __future__ import annotations

import abc
import os
import re
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from edgeprune.errors import EdgepruneError, UnknownNameError
from edgeprune.registry import Registry

DEFAULT_DIR = Path("runs/agents")
DEFAULT_QUEUE_URL = f"sqlite:///{DEFAULT_DIR / 'queue.db'}"
VISIBILITY_TIMEOUT_S = 60.0
HEARTBEAT_S = 3.0  # a producer beats this often, whatever it is doing (preparing, producing, waiting)
PRODUCER_LEASE_S = 15.0  # five missed beats and it counts as gone: a `kill -9` shows within seconds


def default_name() -> str:
    """``host:pid``: unique among the agents of a machine, and the owner the sweep writes into a trial's lease."""
    return f"{socket.gethostname()}:{os.getpid()}"


def safe_name(sweep: str) -> str:
    """A sweep name as one path component (a sweep's name may hold any character)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", sweep)


class QueueError(EdgepruneError):
    """A queue URL that is malformed, lacks its driver, or names something that is not a queue."""


class QueueUnavailableError(QueueError):
    """The queue's server cannot be reached right now; agents wait and try again."""


@dataclass(frozen=True)
class Delivery:
    """One delivery of a job to a consumer. ``deliveries`` counts this one; ``last_error`` is the
    reason the previous attempt gave when it released the job."""

    sweep: str
    message_id: str
    body: str
    deliveries: int
    consumer: str
    last_error: str | None = None


@dataclass(frozen=True)
class InFlight:
    message_id: str
    consumer: str
    since: float  # epoch seconds of this delivery
    deliveries: int
    body: str


@dataclass(frozen=True)
class DeadLetter:
    message_id: str
    body: str
    reason: str
    deliveries: int
    at: float


@dataclass(frozen=True)
class QueueCounts:
    queued: int
    dead: int
    in_flight: list[InFlight] = field(default_factory=list)


@dataclass(frozen=True)
class ProducerBeat:
    name: str
    beat: float
    info: dict[str, Any]

    @property
    def lease_s(self) -> float:
        """How long after its last beat the producer counts as alive (it says so in each beat)."""
        return float(self.info.get("lease_s", PRODUCER_LEASE_S))

    def age(self, now: float | None = None) -> float:
        """Seconds since the last beat."""
        return (now or time.time()) - self.beat

    def alive(self, now: float | None = None) -> bool:
        return self.age(now) < self.lease_s


class JobQueue(abc.ABC):
    """At-least-once job delivery per sweep, with a visibility timeout and a dead-letter list."""

    url: str  # for messages: passwords hidden
    visibility_timeout_s: float

    # ------------------------------------------------------------------------------------------ jobs
    @abc.abstractmethod
    def put(self, sweep: str, body: str) -> str:
        """Enqueue ``body`` for ``sweep``; returns its message id once the queue holds it (as durably as the
        backend keeps anything: SQLite commits to disk, Redis follows its persistence settings)."""

    @abc.abstractmethod
    def pending(self, consumer: str, sweeps: Sequence[str]) -> list[Delivery]:
        """The jobs ``consumer`` received earlier and never acknowledged (it restarted), delivered again."""

    @abc.abstractmethod
    def get(self, consumer: str, sweeps: Sequence[str], block_s: float) -> Delivery | None:
        """The next job of any of ``sweeps``: one whose consumer let its visibility timeout pass first,
        else a new one; waits up to ``block_s`` seconds."""

    @abc.abstractmethod
    def extend(self, delivery: Delivery) -> bool:
        """Still working: restart the visibility timeout. False when the job is no longer this consumer's."""

    @abc.abstractmethod
    def ack(self, delivery: Delivery) -> None:
        """Done: the job leaves the queue. Call it only after its result is stored."""

    @abc.abstractmethod
    def release(self, delivery: Delivery, reason: str, delay_s: float) -> None:
        """A failed attempt: deliver the job again after ``delay_s`` seconds, remembering ``reason``."""

    @abc.abstractmethod
    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        """Give up on the job: move it to the sweep's dead-letter list with ``reason``."""

    @abc.abstractmethod
    def contains(self, sweep: str, message_id: str) -> bool:
        """Whether the job is still queued or in flight (not acknowledged, dead-lettered or lost)."""

    @abc.abstractmethod
    def counts(self, sweep: str) -> QueueCounts:
        """Queued, in flight (by whom, since when) and dead-lettered jobs of ``sweep``."""

    @abc.abstractmethod
    def dead_letters(self, sweep: str) -> list[DeadLetter]:
        """The dead-lettered jobs of ``sweep``, oldest first."""

    # --------------------------------------------------------------------------------------- replies
    @abc.abstractmethod
    def put_reply(self, key: str, body: str) -> None:
        """Store the answer to a job under ``key`` for whoever asked (overwriting: a redelivered job answers
        again). Replies nobody takes expire after a day where the backend can expire keys (Redis)."""

    @abc.abstractmethod
    def take_replies(self, keys: Sequence[str]) -> dict[str, str]:
        """The replies stored under any of ``keys``, removed as they are returned."""

    # ---------------------------------------------------------------------------------------- sweeps
    @abc.abstractmethod
    def register_sweep(self, name: str, document: str) -> None:
        """Register a sweep's document unless one is registered under ``name`` already (the first one stays)."""

    @abc.abstractmethod
    def sweep_document(self, name: str) -> str | None:
        """The document registered under ``name``, if any."""

    @abc.abstractmethod
    def sweeps(self) -> list[str]:
        """Names of the registered sweeps, sorted."""

    # ------------------------------------------------------------------------------------- producers
    @abc.abstractmethod
    def beat(self, sweep: str, producer: str, info: dict[str, Any]) -> None:
        """Record that ``producer`` is alive, with what it is doing."""

    @abc.abstractmethod
    def forget_producer(self, sweep: str, producer: str) -> None:
        """``producer`` stopped cleanly."""

    @abc.abstractmethod
    def producers(self, sweep: str) -> list[ProducerBeat]:
        """Every producer's last beat (alive or not: see :meth:`ProducerBeat.alive`)."""


QueueFactory = Callable[..., JobQueue]
QUEUES: Registry[QueueFactory] = Registry("queue URL scheme")


def get_queue(queue: str | Path | JobQueue | None = None, **options: Any) -> JobQueue:
    """A queue for ``None`` (the embedded default), a URL or path, or a queue object (returned as it is).

    ``options`` (``visibility_timeout_s``) go to the backend; see :mod:`edgeprune.agents.sqlite_queue` and
    :mod:`edgeprune.agents.redis_queue` for each backend's URL.
    """
    if isinstance(queue, JobQueue):
        return queue
    from edgeprune.agents import redis_queue, sqlite_queue  # noqa: F401  (register the backends)

    url = DEFAULT_QUEUE_URL if queue is None else str(queue)
    if "://" not in url:
        url = f"sqlite:///{url}"
    scheme = urlsplit(url).scheme
    try:
        factory = QUEUES.get(scheme)
    except UnknownNameError as exc:
        raise UnknownNameError(exc.kind, scheme, exc.known,
                               hint="Use sqlite:///PATH/queue.db (one machine) or redis://HOST:6379/0 "
                                    "(several machines).") from None
    return factory(url, **options)
