"""The scale-out queue: Redis Streams with one consumer group per sweep.

``redis://[:PASSWORD@]HOST:6379/DB[?prefix=NAME]`` (also ``rediss://``, ``unix://``). Keys, per sweep
``S`` under the prefix (default ``edgeprune``): ``PREFIX:sweep:S:jobs`` (the stream, group ``consumers``),
``...:dead`` (dead letters, a stream), ``...:errors`` (last error per job), ``...:inflight`` (who took a job
when), ``...:producers`` (heartbeats); ``PREFIX:sweeps`` maps sweep names to their documents; ``PREFIX:reply:K``
holds the reply to a job under the asker's key ``K`` (a day's TTL).

Why these semantics:

* **Streams, not lists or pub/sub.** A stream entry stays in the group's pending entries list (PEL) from
  XREADGROUP until XACK, so a job taken by a consumer that dies is not lost; a list pop would lose it, and
  pub/sub delivers only to whoever listens at that moment. Pub/sub is never used for jobs.
* **XACK only after the result is stored.** The consumer tells the study, then acknowledges; a crash in
  between redelivers the job, and the consumer finds the trial already finished and only acknowledges —
  at-least-once delivery made idempotent by the study, which accepts one result per trial.
* **Recovery.** A restarted consumer first re-reads its own pending entries (XREADGROUP with ID ``0``);
  entries of a consumer that stopped are taken over with XAUTOCLAIM once idle longer than the
  visibility timeout. A working consumer keeps its entry's idle time low (XCLAIM ... JUSTID, which does
  not count as a delivery) so nobody takes over a long benchmark.
* **Dead letters.** The PEL counts deliveries; the consumer's policy moves a job that used up its
  attempts to ``...:dead`` with the reason (XADD + XACK + XDEL in one MULTI).
* **Acknowledged entries are deleted**, so the stream holds exactly the unfinished jobs and
  "queued" is XLEN minus the pending count. Nothing newer than Redis 7.0 is used (XAUTOCLAIM: 6.2).

Durability is the server's: with ``appendonly yes`` queued and pending jobs survive a restart (with the
default ``appendfsync everysec``, a crash of the server host can lose the last second).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from edgeprune.agents.queue import (
    QUEUES,
    VISIBILITY_TIMEOUT_S,
    DeadLetter,
    Delivery,
    InFlight,
    JobQueue,
    ProducerBeat,
    QueueCounts,
)
from edgeprune.agents.redis_client import connect, split_options, translated
from edgeprune.sweep.storage import redact

GROUP = "consumers"
REPLY_TTL_S = 86400
READ_TIMEOUT_S = 60.0
# Take over ARGV[3] for consumer ARGV[2] only if it is still that consumer's: XCLAIM with min-idle 0 would
# otherwise steal back a job another consumer took over after this one stalled.
EXTEND_LUA = """
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if #p == 0 or p[1][2] ~= ARGV[2] then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
return 1
"""


@QUEUES.register("redis")
@QUEUES.register("rediss")
@QUEUES.register("unix")
class RedisStreamsQueue(JobQueue):
    """Jobs as stream entries; a consumer group per sweep gives at-least-once delivery across machines."""

    def __init__(self, url: str, *, visibility_timeout_s: float = VISIBILITY_TIMEOUT_S) -> None:
        plain, options = split_options(url, ("prefix",))
        self.url = redact(url)
        self.prefix = options.get("prefix") or "edgeprune"
        self.visibility_timeout_s = visibility_timeout_s
        self._redis = connect(plain, decode=True, read_timeout_s=READ_TIMEOUT_S)
        self._extend = self._redis.register_script(EXTEND_LUA)
        self._grouped: set[str] = set()
        self._cursors: dict[str, str] = {}
        self._buffer: dict[str, list[Delivery]] = {}

    def _key(self, sweep: str, part: str) -> str:
        return f"{self.prefix}:sweep:{sweep}:{part}"

    def _ensure_groups(self, sweeps: Sequence[str]) -> None:
        import redis

        for sweep in sweeps:
            if sweep in self._grouped:
                continue
            try:  # from ID 0: jobs added before the group existed are delivered too
                self._redis.xgroup_create(self._key(sweep, "jobs"), GROUP, id="0", mkstream=True)
            except redis.exceptions.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            self._grouped.add(sweep)

    def _grouped_call(self, sweeps: Sequence[str], call: Any) -> Any:
        """``call()`` with the groups in place; once more if the server lost them (restarted without persistence)."""
        import redis

        with translated(self.url):
            self._ensure_groups(sweeps)
            try:
                return call()
            except redis.exceptions.ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                self._grouped.clear()
                self._ensure_groups(sweeps)
                return call()

    # ------------------------------------------------------------------------------------------ jobs
    def put(self, sweep: str, body: str) -> str:
        return self._grouped_call([sweep], lambda: self._redis.xadd(self._key(sweep, "jobs"), {"body": body}))

    def _delivered(self, sweep: str, message_id: str, fields: dict[str, str], consumer: str,
                   deliveries: int) -> Delivery:
        pipe = self._redis.pipeline(transaction=False)
        pipe.hset(self._key(sweep, "inflight"), message_id, json.dumps({"consumer": consumer, "since": time.time()}))
        pipe.hget(self._key(sweep, "errors"), message_id)
        _, last_error = pipe.execute()
        return Delivery(sweep, message_id, fields["body"], deliveries, consumer, last_error)

    def _deliveries(self, sweep: str, message_id: str) -> int:
        rows = self._redis.xpending_range(self._key(sweep, "jobs"), GROUP, message_id, message_id, 1)
        return int(rows[0]["times_delivered"]) if rows else 1

    def pending(self, consumer: str, sweeps: Sequence[str]) -> list[Delivery]:
        def read() -> list[Delivery]:
            found = []
            for sweep in sweeps:
                key = self._key(sweep, "jobs")
                for _, entries in self._redis.xreadgroup(GROUP, consumer, {key: "0"}, count=1000) or []:
                    for message_id, fields in entries:
                        if not fields:  # deleted from the stream behind the group's back: nothing to do
                            self._redis.xack(key, GROUP, message_id)
                            continue
                        found.append(self._delivered(sweep, message_id, fields, consumer,
                                                     self._deliveries(sweep, message_id)))
            return found

        return self._grouped_call(sweeps, read)

    def get(self, consumer: str, sweeps: Sequence[str], block_s: float) -> Delivery | None:
        """XAUTOCLAIM first (jobs of stopped consumers), then XREADGROUP ``>`` blocking on every sweep's stream.

        COUNT 1 is per stream, so one read can deliver a job of each sweep; the extra ones wait here, and are
        handed out only if they are still this consumer's (their idle time restarts then)."""
        buffered = self._buffer.setdefault(consumer, [])

        def read() -> Delivery | None:
            while buffered:
                delivery = buffered.pop(0)
                if delivery.sweep in sweeps and self.extend(delivery):
                    return delivery
            for sweep in sweeps:
                claimed = self._autoclaim(consumer, sweep)
                if claimed is not None:
                    return claimed
            streams = {self._key(s, "jobs"): ">" for s in sweeps}
            reply = self._redis.xreadgroup(GROUP, consumer, streams, count=1, block=max(1, int(block_s * 1000)))
            for stream, entries in reply or []:
                sweep = next(s for s in sweeps if self._key(s, "jobs") == stream)
                buffered.extend(self._delivered(sweep, mid, fields, consumer, 1) for mid, fields in entries)
            return buffered.pop(0) if buffered else None

        return self._grouped_call(sweeps, read)

    def _autoclaim(self, consumer: str, sweep: str) -> Delivery | None:
        """One entry idle past the visibility timeout, walking the PEL with a cursor kept between calls."""
        start = self._cursors.get(sweep, "0-0")
        cursor, claimed, _deleted = self._redis.xautoclaim(self._key(sweep, "jobs"), GROUP, consumer,
                                                           int(self.visibility_timeout_s * 1000), start_id=start,
                                                           count=1)
        self._cursors[sweep] = cursor
        for message_id, fields in claimed:
            return self._delivered(sweep, message_id, fields, consumer, self._deliveries(sweep, message_id))
        return None

    def extend(self, delivery: Delivery) -> bool:
        with translated(self.url):
            return bool(self._extend(keys=[self._key(delivery.sweep, "jobs")],
                                     args=[GROUP, delivery.consumer, delivery.message_id]))

    def _finish(self, delivery: Delivery, dead: dict[str, Any] | None) -> None:
        """XACK + XDEL (+ XADD to the dead letters) in one MULTI: the job is either done or still pending."""
        sweep, message_id = delivery.sweep, delivery.message_id
        with translated(self.url):
            pipe = self._redis.pipeline(transaction=True)
            if dead is not None:
                pipe.xadd(self._key(sweep, "dead"), dead)
            pipe.xack(self._key(sweep, "jobs"), GROUP, message_id)
            pipe.xdel(self._key(sweep, "jobs"), message_id)
            pipe.hdel(self._key(sweep, "errors"), message_id)
            pipe.hdel(self._key(sweep, "inflight"), message_id)
            pipe.execute()

    def ack(self, delivery: Delivery) -> None:
        self._finish(delivery, None)

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        self._finish(delivery, {"message_id": delivery.message_id, "body": delivery.body, "reason": reason,
                                "deliveries": delivery.deliveries, "consumer": delivery.consumer, "at": time.time()})

    def release(self, delivery: Delivery, reason: str, delay_s: float) -> None:
        """Remember the reason and backdate the entry's idle time so XAUTOCLAIM takes it after ``delay_s``."""
        idle_ms = max(0, int((self.visibility_timeout_s - delay_s) * 1000))
        with translated(self.url):
            pipe = self._redis.pipeline(transaction=True)
            pipe.hset(self._key(delivery.sweep, "errors"), delivery.message_id, reason)
            pipe.hdel(self._key(delivery.sweep, "inflight"), delivery.message_id)
            pipe.xclaim(self._key(delivery.sweep, "jobs"), GROUP, delivery.consumer, 0, [delivery.message_id],
                        idle=idle_ms, justid=True)
            pipe.execute()

    def contains(self, sweep: str, message_id: str) -> bool:
        with translated(self.url):
            return bool(self._redis.xrange(self._key(sweep, "jobs"), message_id, message_id, count=1))

    def counts(self, sweep: str) -> QueueCounts:
        jobs = self._key(sweep, "jobs")
        with translated(self.url):
            dead = self._redis.xlen(self._key(sweep, "dead"))
            if not self._redis.exists(jobs):
                return QueueCounts(queued=0, dead=dead)
            length = self._redis.xlen(jobs)
            pending = self._redis.xpending_range(jobs, GROUP, "-", "+", max(1, length)) if length else []
            started = self._redis.hgetall(self._key(sweep, "inflight"))
            now = time.time()
            flying = []
            for row in pending:
                message_id = row["message_id"]
                entry = self._redis.xrange(jobs, message_id, message_id, count=1)
                since = json.loads(started[message_id])["since"] if message_id in started else \
                    now - row["time_since_delivered"] / 1000
                flying.append(InFlight(message_id, row["consumer"], since, int(row["times_delivered"]),
                                       entry[0][1].get("body", "") if entry else ""))
        return QueueCounts(queued=length - len(pending), dead=dead, in_flight=flying)

    def dead_letters(self, sweep: str) -> list[DeadLetter]:
        with translated(self.url):
            entries = self._redis.xrange(self._key(sweep, "dead"))
        return [DeadLetter(f["message_id"], f["body"], f["reason"], int(f["deliveries"]), float(f["at"]))
                for _, f in entries]

    # --------------------------------------------------------------------------------------- replies
    def put_reply(self, key: str, body: str) -> None:
        with translated(self.url):
            self._redis.set(f"{self.prefix}:reply:{key}", body, ex=REPLY_TTL_S)

    def take_replies(self, keys: Sequence[str]) -> dict[str, str]:
        if not keys:
            return {}
        with translated(self.url):
            pipe = self._redis.pipeline(transaction=True)
            for key in keys:
                pipe.getdel(f"{self.prefix}:reply:{key}")
            bodies = pipe.execute()
        return {key: body for key, body in zip(keys, bodies, strict=True) if body is not None}

    # ---------------------------------------------------------------------------------------- sweeps
    def register_sweep(self, name: str, document: str) -> None:
        with translated(self.url):
            self._redis.hsetnx(f"{self.prefix}:sweeps", name, document)

    def sweep_document(self, name: str) -> str | None:
        with translated(self.url):
            return self._redis.hget(f"{self.prefix}:sweeps", name)

    def sweeps(self) -> list[str]:
        with translated(self.url):
            return sorted(self._redis.hkeys(f"{self.prefix}:sweeps"))

    # ------------------------------------------------------------------------------------- producers
    def beat(self, sweep: str, producer: str, info: dict[str, Any]) -> None:
        with translated(self.url):
            self._redis.hset(self._key(sweep, "producers"), producer, json.dumps({"beat": time.time(), "info": info}))

    def forget_producer(self, sweep: str, producer: str) -> None:
        with translated(self.url):
            self._redis.hdel(self._key(sweep, "producers"), producer)

    def producers(self, sweep: str) -> list[ProducerBeat]:
        with translated(self.url):
            rows = self._redis.hgetall(self._key(sweep, "producers"))
        beats = [(name, json.loads(value)) for name, value in sorted(rows.items())]
        return [ProducerBeat(name, float(v["beat"]), v["info"]) for name, v in beats]
