"""Latency measurements through the agents' queue: ``edgeprune search --queue URL`` here, a consumer at the device.

A search sends every ONNX file it needs timed — first a probe for the device's fingerprint, then the kernels of its
latency table, then whole networks, each timed paired with the dense one (a ``ratio`` job carries both files:
:meth:`~edgeprune.measurement.target.Target.latency_ratio`) — as a :class:`LatencyJob` in the queue's ``@latency``
namespace: the file goes into the artifact store (a claim check the consumer verifies) and the job names a reply key
of the search's own. Every consumer serves that namespace beside its sweeps: it fetches the file, runs the same
:class:`~edgeprune.measurement.target.Target` code a local search runs (with its own ``--backend/--device/
--threads`` over the requested ones, as for sweeps) and puts a :class:`LatencyReply` under the key: the latency, the
ratio or the fingerprint, the fingerprint of what measured, and who. The search takes replies as they come, so a
table fills in any order and each entry is saved the moment it arrives.

Every reply's fingerprint is checked against the one the search's table was opened with: two consumers at
different devices serving one queue would otherwise mix their latencies in one table.

A job that fails for good is dead-lettered by the consumer with an error reply, so the search stops with the
consumer's reason instead of waiting; one that leaves the queue without any reply is reported as lost.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from rich.console import Console

from edgeprune.agents.artifacts import ArtifactRef, ArtifactStore
from edgeprune.agents.queue import JobQueue, default_name
from edgeprune.errors import ConfigError, EdgepruneError
from edgeprune.measurement.target import Target
from edgeprune.signals import raise_if_interrupted

LATENCY_JOBS = "@latency"  # the queue namespace every consumer serves (no sweep file can be named so)
POLL_S = 0.05
WAITING_NOTE_S = 10.0  # no reply for this long: say that a consumer is needed
LOST_CHECK_S = 5.0  # how often the outstanding jobs are looked for in the queue


class LatencyJob(BaseModel):
    """Time ``artifact`` on ``target`` (``ratio``: as a fraction of ``reference``'s latency, the two timed in
    alternating rounds; ``fingerprint``: read the device's fingerprint with it); answer under ``reply``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["latency", "ratio", "fingerprint"]
    target: dict[str, Any]
    artifact: ArtifactRef
    reference: ArtifactRef | None = None  # a ratio job's
    reply: str
    label: str
    requester: str


class LatencyReply(BaseModel):
    """A consumer's answer: the latency (ms), the ratio, or nothing for a fingerprint job; or the error it gave
    up with."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    consumer: str
    fingerprint: dict[str, Any] | None = None
    latency_ms: float | None = None
    ratio: float | None = None
    error: str | None = None


class LatencyJobError(EdgepruneError):
    """A latency job the consumer could not measure, or one that left the queue without an answer."""


def answer(job: LatencyJob, path: Path, consumer: str, machine: dict[str, Any],
           fingerprints: dict[str, dict[str, Any]], reference: Path | None = None) -> LatencyReply:
    """The consumer's side: measure ``path`` (the job's fetched artifact; ``reference``, a ratio job's other one)
    on the job's target with this machine's ``--backend/--device/--threads`` over it. ``fingerprints`` caches the
    fingerprint per target (reading it opens the file once more)."""
    try:
        target = Target.from_dict(job.target).with_machine(machine)
    except (ValueError, TypeError, EdgepruneError) as exc:
        raise ConfigError(f"latency job {job.label!r} from {job.requester} has an invalid target: {exc}") from None
    key = json.dumps(target.to_dict(), sort_keys=True, default=str)
    if key not in fingerprints:
        fingerprints[key] = target.fingerprint(path)
    fingerprint = fingerprints[key]
    if job.kind == "fingerprint":
        return LatencyReply(consumer=consumer, fingerprint=fingerprint)
    if job.kind == "ratio":
        if reference is None:
            raise ConfigError(f"latency job {job.label!r} from {job.requester} asks for a ratio without a reference "
                              "file")
        return LatencyReply(consumer=consumer, fingerprint=fingerprint, ratio=target.latency_ratio(path, reference))
    return LatencyReply(consumer=consumer, fingerprint=fingerprint, latency_ms=target.latency_ms(path))


class QueuedMeasurer:
    """The search's side: a :class:`~edgeprune.budget_search.latency.Measurer` whose files are measured by
    whichever consumer serves ``queue`` (``edgeprune agent consumer --queue URL`` at the device)."""

    def __init__(self, target: Target, queue: JobQueue, artifacts: ArtifactStore, *, name: str | None = None,
                 console: Console | None = None) -> None:
        self.target, self.queue, self.artifacts = target, queue, artifacts
        self.name = name or default_name()
        self.console = console or Console(stderr=True)
        self.expected: dict[str, Any] | None = None  # the fingerprint the table was opened with
        self.measured_by: set[str] = set()

    def fingerprint(self, probe: str | Path) -> dict[str, Any]:
        replies: list[LatencyReply] = []
        self._run([Path(probe)], "fingerprint", lambda i, reply: replies.append(reply))
        assert replies[0].fingerprint is not None
        self.expected = replies[0].fingerprint
        return self.expected

    def latency_ms(self, onnx_path: str | Path) -> float:
        out: list[float] = []
        self.latencies([Path(onnx_path)], lambda i, ms: out.append(ms))
        return out[0]

    def latency_ratio(self, onnx_path: str | Path, reference: str | Path) -> float:
        out: list[float] = []

        def take(i: int, reply: LatencyReply) -> None:
            self._check_device(Path(onnx_path), reply)
            assert reply.ratio is not None
            out.append(reply.ratio)

        self._run([Path(onnx_path)], "ratio", take, reference=Path(reference))
        return out[0]

    def _check_device(self, path: Path, reply: LatencyReply) -> None:
        if self.expected is not None and reply.fingerprint != self.expected:
            raise ConfigError(
                f"{path.name} was measured by consumer {reply.consumer} on another device than the table's "
                f"({_differences(self.expected, reply.fingerprint or {})}).",
                hint=f"Serve {self.queue.url} with consumers at one device only, or give each device a queue "
                     "of its own (another Redis database or ?prefix=).")

    def latencies(self, paths: Sequence[Path], done: Callable[[int, float], None]) -> None:
        def check(i: int, reply: LatencyReply) -> None:
            self._check_device(paths[i], reply)
            assert reply.latency_ms is not None
            done(i, reply.latency_ms)

        self._run(list(paths), "latency", check)

    def _run(self, paths: list[Path], kind: Literal["latency", "ratio", "fingerprint"],
             on_reply: Callable[[int, LatencyReply], None], *, reference: Path | None = None) -> None:
        """Queue one job per file (each naming ``reference`` too, stored once), then hand each reply to
        ``on_reply`` as it arrives."""
        shared = None if reference is None else self.artifacts.put(reference, LATENCY_JOBS,
                                                                    f"reference-{reference.stem}")
        try:
            self._run_jobs(paths, kind, on_reply, shared)
        finally:
            if shared is not None:
                self.artifacts.delete(shared)

    def _run_jobs(self, paths: list[Path], kind: Literal["latency", "ratio", "fingerprint"],
                  on_reply: Callable[[int, LatencyReply], None], reference: ArtifactRef | None) -> None:
        waiting: dict[str, tuple[int, ArtifactRef, str]] = {}
        for i, path in enumerate(paths):
            ref = self.artifacts.put(path, LATENCY_JOBS, f"{kind}-{path.stem}")
            key = uuid.uuid4().hex
            job = LatencyJob(kind=kind, target=self.target.to_dict(), artifact=ref, reference=reference, reply=key,
                             label=path.name, requester=self.name)
            waiting[key] = (i, ref, self.queue.put(LATENCY_JOBS, job.model_dump_json()))
        start = last_reply = last_check = time.monotonic()
        noted = False

        def take(keys: list[str]) -> int:
            replies = self.queue.take_replies(keys)
            for key, body in replies.items():
                i, ref, _ = waiting.pop(key)
                self.artifacts.delete(ref)
                reply = LatencyReply.model_validate_json(body)
                if reply.error is not None:
                    raise LatencyJobError(f"Consumer {reply.consumer} could not measure {paths[i].name}: {reply.error}",
                                          hint="Its log says more; `edgeprune status` lists the queue's dead letters.")
                self.measured_by.add(reply.consumer)
                on_reply(i, reply)
            return len(replies)

        while waiting:
            raise_if_interrupted()
            answered = take(list(waiting))
            now = time.monotonic()
            if answered:
                last_reply, noted = now, False
                continue
            if now - last_check > LOST_CHECK_S:
                last_check = now
                self._check_lost(waiting, take)
            if not noted and now - last_reply > WAITING_NOTE_S:
                noted = True
                self.console.print(f"waiting {now - start:.0f} s for a consumer to measure {len(waiting)} file(s) "
                                   f"queued in {self.queue.url}: start one at the device with "
                                   f"`edgeprune agent consumer --queue {self.queue.url}`", highlight=False)
            time.sleep(POLL_S)

    def _check_lost(self, waiting: dict[str, tuple[int, ArtifactRef, str]], take: Callable[[list[str]], int]) -> None:
        """A job neither in the queue any more nor answered was dead-lettered without a reply (or the queue lost
        it). A consumer puts its reply before it acknowledges, so one more look for the replies settles it."""
        gone = [key for key, (_, _, message_id) in waiting.items() if not self.queue.contains(LATENCY_JOBS, message_id)]
        take(gone)
        lost = [waiting[key][2] for key in gone if key in waiting]
        if lost:
            reasons = {d.message_id: d.reason for d in self.queue.dead_letters(LATENCY_JOBS)}
            shown = f": dead-lettered, {reasons[lost[0]]}" if lost[0] in reasons else ""
            raise LatencyJobError(f"Latency job {lost[0]} left {self.queue.url} without an answer{shown}.",
                                  hint="Check the consumers' logs; run the search again (measured entries are kept).")


def _differences(expected: dict[str, Any], got: dict[str, Any]) -> str:
    keys = sorted(k for k in set(expected) | set(got) if expected.get(k) != got.get(k))
    return "; ".join(f"{k}: {got.get(k)!r} instead of {expected.get(k)!r}" for k in keys) or "same fields"
