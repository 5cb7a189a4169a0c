"""The queue's delivery semantics, the same on both backends: real SQLite files and a real Redis server."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edgeprune.agents.consumer import Consumer
from edgeprune.agents.queue import JobQueue, get_queue
from edgeprune.agents.sqlite_queue import EmbeddedQueue
from edgeprune.errors import UnknownNameError

pytest_plugins = ["tests.services"]


@pytest.fixture(params=["embedded", pytest.param("redis", marks=pytest.mark.redis)])
def queue_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "embedded":
        return f"sqlite:///{tmp_path / 'queue.db'}"
    return f"{request.getfixturevalue('redis_url')}?prefix={request.getfixturevalue('redis_prefix')}"


def test_jobs_come_out_per_sweep_in_order_and_leave_when_acknowledged(queue_url: str) -> None:
    q = get_queue(queue_url)
    first, second = q.put("a", "a1"), q.put("a", "a2")
    q.put("b", "b1")
    d1 = q.get("c1", ["a"], 0.1)
    assert d1 is not None and (d1.message_id, d1.body, d1.deliveries, d1.sweep) == (first, "a1", 1, "a")
    counts = q.counts("a")
    assert counts.queued == 1
    assert [(f.message_id, f.consumer, f.body) for f in counts.in_flight] == [(first, "c1", "a1")]
    q.ack(d1)
    assert not q.contains("a", first) and q.contains("a", second)
    d2 = q.get("c1", ["a", "b"], 0.1)
    d3 = q.get("c1", ["a", "b"], 0.1)
    assert {d2.body, d3.body} == {"a2", "b1"}  # type: ignore[union-attr]
    assert q.get("c1", ["a", "b"], 0.1) is None


def test_a_reply_is_taken_once_and_only_by_its_key(queue_url: str) -> None:
    q = get_queue(queue_url)
    q.put_reply("k1", "first")
    q.put_reply("k1", "again")  # a redelivered job answers again: the last answer stands
    q.put_reply("k2", "other")
    assert q.take_replies([]) == {}
    assert q.take_replies(["k1", "k3"]) == {"k1": "again"}
    assert q.take_replies(["k1"]) == {}
    assert get_queue(queue_url).take_replies(["k2"]) == {"k2": "other"}  # another process's handle sees it


class Clock:
    """Time that passes only when a test says so: the embedded queue reads it; on Redis, where the server keeps
    the time (a job's idle time), :meth:`advance` backdates every pending job's idle time by as much instead."""

    def __init__(self, queue_url: str) -> None:
        self.queue_url, self.now = queue_url, time.time()

    def __call__(self) -> float:
        return self.now

    def queue(self, **options: Any) -> JobQueue:
        if self.queue_url.startswith("sqlite"):
            options["clock"] = self
        return get_queue(self.queue_url, **options)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        if self.queue_url.startswith("sqlite"):
            return
        import redis

        from edgeprune.agents.redis_queue import GROUP

        client = redis.Redis.from_url(self.queue_url.split("?")[0], decode_responses=True)
        prefix = self.queue_url.split("prefix=")[1]
        for key in client.scan_iter(match=f"{prefix}:sweep:*:jobs"):
            for entry in client.xpending_range(key, GROUP, "-", "+", 1000):
                client.xclaim(key, GROUP, entry["consumer"], 0, [entry["message_id"]],
                              idle=entry["time_since_delivered"] + int(seconds * 1000), justid=True)


@pytest.fixture
def clock(queue_url: str) -> Clock:
    return Clock(queue_url)


def test_a_silent_consumers_job_goes_to_another_after_the_visibility_timeout(clock: Clock) -> None:
    q = clock.queue(visibility_timeout_s=60)
    message_id = q.put("s", "job")
    taken = q.get("dies", ["s"], 0.1)
    assert taken is not None and q.get("other", ["s"], 0.1) is None
    clock.advance(50)
    assert q.get("other", ["s"], 0.1) is None  # silent for 50 s of 60: still the first consumer's
    clock.advance(11)
    again = q.get("other", ["s"], 0.1)
    assert again is not None and (again.message_id, again.deliveries, again.consumer) == (message_id, 2, "other")
    assert not q.extend(taken)  # the job is no longer the silent consumer's: it cannot take it back
    assert q.extend(again)


def test_a_working_consumer_keeps_its_job_by_extending(clock: Clock) -> None:
    q = clock.queue(visibility_timeout_s=60)
    q.put("s", "long benchmark")
    taken = q.get("busy", ["s"], 0.1)
    assert taken is not None
    for _ in range(5):  # five minutes of work, extended every 50 s
        clock.advance(50)
        assert q.extend(taken)
        assert q.get("other", ["s"], 0.01) is None
    clock.advance(61)  # then it stops extending
    again = q.get("other", ["s"], 0.01)
    assert again is not None and again.deliveries == 2


def test_a_restarted_consumer_gets_its_own_unacknowledged_jobs_back_first(queue_url: str) -> None:
    q = get_queue(queue_url)
    message_id = q.put("s", "job")
    assert q.get("c1", ["s"], 0.1) is not None
    restarted = get_queue(queue_url)  # a new process: a new connection, nothing remembered
    assert restarted.pending("c2", ["s"]) == []
    [again] = restarted.pending("c1", ["s"])
    assert (again.message_id, again.deliveries) == (message_id, 2)


def test_released_jobs_come_back_after_the_delay_and_dead_letters_keep_the_reason(clock: Clock) -> None:
    q = clock.queue(visibility_timeout_s=60)
    message_id = q.put("s", "job")
    first = q.get("c1", ["s"], 0.1)
    assert first is not None
    q.release(first, "artifact hash differs", delay_s=30)
    assert q.get("c1", ["s"], 0.05) is None
    clock.advance(20)
    assert q.get("c1", ["s"], 0.05) is None
    clock.advance(11)
    second = q.get("c2", ["s"], 0.1)
    assert second is not None and (second.deliveries, second.last_error) == (2, "artifact hash differs")
    q.dead_letter(second, "gave up: artifact hash differs")
    [dead] = q.dead_letters("s")
    assert (dead.message_id, dead.body, dead.reason, dead.deliveries) == (message_id, "job",
                                                                           "gave up: artifact hash differs", 2)
    counts = q.counts("s")
    assert (counts.queued, counts.dead, counts.in_flight) == (0, 1, [])
    assert not q.contains("s", message_id) and q.get("c2", ["s"], 0.1) is None


def test_sweeps_and_producer_heartbeats_are_registered(queue_url: str) -> None:
    q = get_queue(queue_url)
    q.register_sweep("b", "first")
    q.register_sweep("b", "second")  # the first registration stays
    q.register_sweep("a", "doc")
    assert q.sweeps() == ["a", "b"] and q.sweep_document("b") == "first" and q.sweep_document("zz") is None
    q.beat("a", "host:1", {"state": "producing", "trial": 3})
    [beat] = q.producers("a")
    assert beat.name == "host:1" and beat.alive() and beat.info["trial"] == 3
    assert not beat.alive(now=beat.beat + 3600)
    q.forget_producer("a", "host:1")
    assert q.producers("a") == []


@pytest.mark.redis
def test_redis_killed_and_restarted_with_aof_loses_no_job(start_redis: Callable[..., Any]) -> None:
    """kill -9 of the server itself: every queued job, the in-flight one and the registry come back."""
    server = start_redis("--appendonly", "yes", "--appendfsync", "always", "--save", "")
    q = get_queue(server.url)
    q.register_sweep("a", "doc")
    ids = {q.put("a", f"a{i}") for i in range(3)} | {q.put("b", f"b{i}") for i in range(2)}
    in_flight = q.get("c1", ["a"], 0.1)
    assert in_flight is not None
    server.kill()
    server.start()
    q = get_queue(server.url)
    [recovered] = q.pending("c1", ["a", "b"])
    assert recovered.message_id == in_flight.message_id
    rest = [q.get("c2", ["a", "b"], 0.1) for _ in range(4)]
    assert {recovered.message_id, *(d.message_id for d in rest if d)} == ids
    assert q.get("c2", ["a", "b"], 0.1) is None and q.sweeps() == ["a"]


def test_get_queue_normalises_none_paths_urls_and_objects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    default = get_queue()
    assert isinstance(default, EmbeddedQueue) and default.path == Path("runs/agents/queue.db")
    by_path = get_queue(tmp_path / "q.db")
    assert isinstance(by_path, EmbeddedQueue) and get_queue(by_path) is by_path
    with pytest.raises(UnknownNameError, match="amqp") as info:
        get_queue("amqp://broker/")
    assert "redis" in str(info.value) and "sqlite" in str(info.value)


def test_queue_interface_is_small() -> None:
    """The whole contract a new backend implements (guards against the interface growing by accident)."""
    assert sorted(JobQueue.__abstractmethods__) == sorted([
        "put", "pending", "get", "extend", "ack", "release", "dead_letter", "contains", "counts", "dead_letters",
        "put_reply", "take_replies", "register_sweep", "sweep_document", "sweeps", "beat", "forget_producer",
        "producers"])


def test_consumer_measures_once_this_machines_producers_pause(tmp_path: Path) -> None:
    """The wait ends when the local producer's beat says it stopped producing, or at the cap; a producer on
    another machine never holds measurement back."""
    queue = get_queue(f"sqlite:///{tmp_path / 'queue.db'}")
    queue.register_sweep("s", "{}")
    host = socket.gethostname()
    queue.beat("s", "local", {"state": "producing", "host": host})
    queue.beat("s", "remote", {"state": "producing", "host": "another-machine"})
    consumer = Consumer(queue, f"sqlite:///{tmp_path / 'study.db'}", work_dir=tmp_path, quiet_wait_s=10.0)
    pause = threading.Timer(0.6, lambda: queue.beat("s", "local", {"state": "waiting", "host": host}))
    pause.start()
    waited = consumer.wait_for_quiet()
    pause.join()
    assert 0.55 <= waited < 3.0
    queue.beat("s", "local", {"state": "producing", "host": host})
    consumer.quiet_wait_s = 0.5
    assert 0.5 <= consumer.wait_for_quiet() < 2.0  # a producer that never pauses: measured after the cap
    queue.forget_producer("s", "local")
    assert consumer.wait_for_quiet() < 0.3
