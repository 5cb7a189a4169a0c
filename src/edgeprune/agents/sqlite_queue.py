"""The embedded queue: one SQLite file, nothing to run, durable across restarts — the default on one machine.

``sqlite:///runs/agents/queue.db`` (or just a path). A job is a row: ``queued`` until a consumer claims it,
then ``inflight`` with a ``visible_at`` deadline the consumer keeps pushing forward (:meth:`extend`); once the
deadline passes, the next :meth:`get` of any consumer claims it again (redelivery). An acknowledged job is
deleted; a dead-lettered one stays as ``dead`` with its reason.

Why SQLite: the producers and the consumer are separate processes (a crashed trial must not take the
queue with it), so the queue has to live outside them; SQLite's ``BEGIN IMMEDIATE`` serialises claims
between processes, WAL lets readers (``edgeprune status``) run beside them, and a committed row survives
a killed process or a reboot. Each call opens its own connection, which keeps it safe from threads (the
consumer's keep-alive) and from forks.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
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
    QueueError,
)

POLL_S = 0.2
SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sweep TEXT NOT NULL,
    body TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued', 'inflight', 'dead')),
    consumer TEXT,
    deliveries INTEGER NOT NULL DEFAULT 0,
    visible_at REAL NOT NULL,
    claimed_at REAL,
    error TEXT,
    dead_at REAL
);
CREATE INDEX IF NOT EXISTS jobs_ready ON jobs (sweep, state, visible_at);
CREATE TABLE IF NOT EXISTS sweeps (name TEXT PRIMARY KEY, document TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS producers (sweep TEXT NOT NULL, name TEXT NOT NULL, beat REAL NOT NULL,
                                      info TEXT NOT NULL, PRIMARY KEY (sweep, name));
CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, body TEXT NOT NULL, at REAL NOT NULL);
"""
COLUMNS = "id, sweep, body, deliveries, error"


@QUEUES.register("sqlite")
class EmbeddedQueue(JobQueue):
    """Jobs as rows of one SQLite file; any number of local processes share it."""

    def __init__(self, url: str, *, visibility_timeout_s: float = VISIBILITY_TIMEOUT_S,
                 clock: Callable[[], float] = time.time) -> None:
        """``clock`` (epoch seconds) decides when a job becomes visible again; tests pass one they move by hand."""
        path = url.split(":///", 1)[1] if url.startswith("sqlite:///") else ""
        if not path or path == ":memory:":
            raise QueueError(f"Queue {url!r} names no file.",
                             hint="Use sqlite:///PATH/queue.db: the producers and the consumer are separate "
                                  "processes, so the queue must be a file they all open.")
        self.path = Path(path)
        self.url = url
        self.visibility_timeout_s = visibility_timeout_s
        self.clock = clock
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._db() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        try:
            with closing(sqlite3.connect(self.path, timeout=30.0, isolation_level=None)) as db:
                yield db
        except sqlite3.OperationalError as exc:
            raise QueueError(f"The queue {self.path} cannot be used: {exc}.",
                             hint="Check that the directory is writable and on a local disk (SQLite locking "
                                  "does not work over most network file systems; use Redis there).") from None

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE``: takes the write lock at once, so two claims never read the same free row."""
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    # ------------------------------------------------------------------------------------------ jobs
    def put(self, sweep: str, body: str) -> str:
        with self._db() as db:
            cursor = db.execute("INSERT INTO jobs (sweep, body, state, visible_at) VALUES (?, ?, 'queued', ?)",
                                (sweep, body, self.clock()))
        return str(cursor.lastrowid)

    def _claim(self, db: sqlite3.Connection, row: tuple[Any, ...], consumer: str) -> Delivery:
        now = self.clock()
        db.execute("UPDATE jobs SET state = 'inflight', consumer = ?, deliveries = deliveries + 1, visible_at = ?, "
                   "claimed_at = ? WHERE id = ?", (consumer, now + self.visibility_timeout_s, now, row[0]))
        return Delivery(sweep=row[1], message_id=str(row[0]), body=row[2], deliveries=row[3] + 1, consumer=consumer,
                        last_error=row[4])

    def pending(self, consumer: str, sweeps: Sequence[str]) -> list[Delivery]:
        marks = ",".join("?" * len(sweeps))
        with self._transaction() as db:
            rows = db.execute(f"SELECT {COLUMNS} FROM jobs WHERE state = 'inflight' AND consumer = ? "
                              f"AND sweep IN ({marks}) ORDER BY id", (consumer, *sweeps)).fetchall()
            return [self._claim(db, row, consumer) for row in rows]

    def get(self, consumer: str, sweeps: Sequence[str], block_s: float) -> Delivery | None:
        deadline = time.monotonic() + block_s
        marks = ",".join("?" * len(sweeps))
        while True:
            with self._transaction() as db:
                row = db.execute(f"SELECT {COLUMNS} FROM jobs WHERE sweep IN ({marks}) AND state != 'dead' "
                                 "AND visible_at <= ? ORDER BY id LIMIT 1", (*sweeps, self.clock())).fetchone()
                if row is not None:
                    return self._claim(db, row, consumer)
            if time.monotonic() >= deadline:
                return None
            time.sleep(min(POLL_S, max(0.0, deadline - time.monotonic())))

    def extend(self, delivery: Delivery) -> bool:
        with self._db() as db:
            cursor = db.execute("UPDATE jobs SET visible_at = ? WHERE id = ? AND state = 'inflight' AND consumer = ?",
                                (self.clock() + self.visibility_timeout_s, delivery.message_id, delivery.consumer))
        return cursor.rowcount == 1

    def ack(self, delivery: Delivery) -> None:
        with self._db() as db:
            db.execute("DELETE FROM jobs WHERE id = ? AND state != 'dead'", (delivery.message_id,))

    def release(self, delivery: Delivery, reason: str, delay_s: float) -> None:
        with self._db() as db:
            db.execute("UPDATE jobs SET state = 'queued', consumer = NULL, claimed_at = NULL, visible_at = ?, "
                       "error = ? WHERE id = ? AND state = 'inflight'",
                       (self.clock() + delay_s, reason, delivery.message_id))

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        with self._db() as db:
            db.execute("UPDATE jobs SET state = 'dead', error = ?, dead_at = ? WHERE id = ?",
                       (reason, self.clock(), delivery.message_id))

    def contains(self, sweep: str, message_id: str) -> bool:
        with self._db() as db:
            row = db.execute("SELECT 1 FROM jobs WHERE id = ? AND sweep = ? AND state != 'dead'",
                             (message_id, sweep)).fetchone()
        return row is not None

    def counts(self, sweep: str) -> QueueCounts:
        with self._db() as db:
            rows = db.execute("SELECT state, COUNT(*) FROM jobs WHERE sweep = ? GROUP BY state", (sweep,)).fetchall()
            flying = db.execute("SELECT id, consumer, claimed_at, deliveries, body FROM jobs WHERE sweep = ? AND "
                                "state = 'inflight' ORDER BY id", (sweep,)).fetchall()
        by_state = dict(rows)
        return QueueCounts(queued=by_state.get("queued", 0), dead=by_state.get("dead", 0),
                           in_flight=[InFlight(str(i), c, s, d, b) for i, c, s, d, b in flying])

    def dead_letters(self, sweep: str) -> list[DeadLetter]:
        with self._db() as db:
            rows = db.execute("SELECT id, body, error, deliveries, dead_at FROM jobs WHERE sweep = ? AND "
                              "state = 'dead' ORDER BY id", (sweep,)).fetchall()
        return [DeadLetter(str(i), b, e, d, t) for i, b, e, d, t in rows]

    # --------------------------------------------------------------------------------------- replies
    def put_reply(self, key: str, body: str) -> None:
        with self._db() as db:
            db.execute("INSERT OR REPLACE INTO replies (key, body, at) VALUES (?, ?, ?)", (key, body, self.clock()))

    def take_replies(self, keys: Sequence[str]) -> dict[str, str]:
        if not keys:
            return {}
        marks = ",".join("?" * len(keys))
        with self._transaction() as db:
            rows = db.execute(f"SELECT key, body FROM replies WHERE key IN ({marks})", tuple(keys)).fetchall()
            db.execute(f"DELETE FROM replies WHERE key IN ({marks})", tuple(keys))
        return dict(rows)

    # ---------------------------------------------------------------------------------------- sweeps
    def register_sweep(self, name: str, document: str) -> None:
        with self._db() as db:
            db.execute("INSERT OR IGNORE INTO sweeps (name, document) VALUES (?, ?)", (name, document))

    def sweep_document(self, name: str) -> str | None:
        with self._db() as db:
            row = db.execute("SELECT document FROM sweeps WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    def sweeps(self) -> list[str]:
        with self._db() as db:
            return [r[0] for r in db.execute("SELECT name FROM sweeps ORDER BY name")]

    # ------------------------------------------------------------------------------------- producers
    def beat(self, sweep: str, producer: str, info: dict[str, Any]) -> None:
        with self._db() as db:
            db.execute("INSERT OR REPLACE INTO producers (sweep, name, beat, info) VALUES (?, ?, ?, ?)",
                       (sweep, producer, self.clock(), json.dumps(info)))

    def forget_producer(self, sweep: str, producer: str) -> None:
        with self._db() as db:
            db.execute("DELETE FROM producers WHERE sweep = ? AND name = ?", (sweep, producer))

    def producers(self, sweep: str) -> list[ProducerBeat]:
        with self._db() as db:
            rows = db.execute("SELECT name, beat, info FROM producers WHERE sweep = ? ORDER BY name",
                              (sweep,)).fetchall()
        return [ProducerBeat(n, b, json.loads(i)) for n, b, i in rows]
