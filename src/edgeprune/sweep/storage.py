"""Where a study lives: a storage URL -> an Optuna storage, or one clear error when it cannot be reached.

* ``sqlite:///RUN_DIR/study.db`` (the default): embedded, nothing to run, fine for one machine.
* any SQLAlchemy URL Optuna's ``RDBStorage`` takes (``postgresql://user:pw@host/db``, ``mysql://...``) to
  share one study between machines.
* ``redis://host:port/db`` (or ``rediss://``, ``unix://``): Optuna's ``JournalStorage`` over
  ``JournalRedisBackend`` — an append-only log, the storage Optuna recommends for many workers.

A wrong or unreachable URL is a user error, so it becomes a :class:`StorageError` (password hidden)
instead of a driver traceback.

Several processes may open a fresh database at the same moment (the producers of one sweep): Optuna's
``RDBStorage`` creates its tables and stamps their version without a lock, so all but one lose that race
with "table ... already exists" or a unique-constraint error on the version row. Those two errors, and
only those, are retried after a short random backoff — by then the winner has created everything. SQLite
connections also wait up to ``SQLITE_BUSY_S`` for another process's write instead of failing at once.
"""

from __future__ import annotations

import random
import sqlite3
import time
import warnings
from contextlib import closing
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from optuna.exceptions import ExperimentalWarning
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages.journal import JournalRedisBackend, JournalStorage

from edgeprune.errors import EdgepruneError

REDIS_SCHEMES = ("redis", "rediss", "unix")
CONNECT_TIMEOUT_S = 10
SQLITE_BUSY_S = 30.0
CREATE_ATTEMPTS = 8


class StorageError(EdgepruneError):
    """A study storage URL that is malformed, lacks its driver, or cannot be reached."""


def default_url(run_dir: str | Path) -> str:
    return f"sqlite:///{Path(run_dir) / 'study.db'}"


def redact(url: str) -> str:
    """The URL with its password replaced by ``***`` (safe to print and to store in reports)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def open_storage(url: str) -> BaseStorage:
    """An Optuna storage for ``url``; creates the SQLite file's directory; raises :class:`StorageError`."""
    scheme = urlsplit(url).scheme.split("+")[0]
    if scheme in REDIS_SCHEMES:
        return _redis(url)
    if not scheme:
        raise StorageError(f"Storage {url!r} is not a URL.",
                           hint="Use e.g. sqlite:///runs/sweep/study.db, postgresql://user@host/db or "
                                "redis://localhost:6379/0.")
    engine_kwargs: dict = {"pool_pre_ping": True}
    if scheme == "sqlite":
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            write_ahead_log(Path(path))
        engine_kwargs["connect_args"] = {"timeout": SQLITE_BUSY_S}
    elif scheme == "postgresql":
        engine_kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
    try:
        return _rdb(url, engine_kwargs)
    except ImportError as exc:
        raise StorageError(f"The database driver for {redact(url)!r} is not installed: {exc}.",
                           hint="pip install 'edgeprune[distributed]' (psycopg for PostgreSQL).") from None
    except Exception as exc:  # sqlalchemy.exc.OperationalError/ArgumentError and driver errors differ per backend
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StorageError(f"Cannot open the study storage {redact(url)!r}: {reason}",
                           hint="Check the URL, that the database server is running and reachable, and the "
                                "credentials.") from None


def write_ahead_log(path: Path) -> None:
    """Put the SQLite file in WAL mode (a setting the file keeps): readers then never block a writer.

    Why: in SQLite's default rollback-journal mode one open read — ``edgeprune sweep status``, a report, or
    the sweep's own progress poll cut short by Ctrl-C — makes every write wait up to ``SQLITE_BUSY_S`` and
    then fail with "database is locked", exactly when interrupted agents hand their trials back.
    Processes opening a fresh file together race to switch it, and SQLite answers the losers "database is
    locked" at once rather than waiting: they retry, and find the file switched.
    """
    for attempt in range(1, CREATE_ATTEMPTS + 1):
        try:
            with closing(sqlite3.connect(path, timeout=SQLITE_BUSY_S)) as db:
                if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if attempt == CREATE_ATTEMPTS or "locked" not in str(exc):
                raise
        time.sleep(random.uniform(0.05, 0.1) * attempt)


def lost_creation_race(exc: Exception) -> bool:
    """Whether ``exc`` says another process created the same tables or version row first."""
    from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

    if isinstance(exc, IntegrityError):  # the version row (alembic_version, version_info) stamped twice
        return True
    return isinstance(exc, (OperationalError, ProgrammingError)) and "already exists" in str(exc).lower()


def _rdb(url: str, engine_kwargs: dict) -> RDBStorage:
    attempt = 1
    while True:
        try:
            return RDBStorage(url, engine_kwargs=engine_kwargs)
        except Exception as exc:
            if attempt >= CREATE_ATTEMPTS or not lost_creation_race(exc):
                raise
        time.sleep(random.uniform(0.05, 0.1) * attempt)
        attempt += 1


def _redis(url: str) -> BaseStorage:
    try:
        import redis
    except ImportError:
        raise StorageError("Storage URLs redis:// need the 'redis' package.",
                           hint="pip install 'edgeprune[distributed]'.") from None
    try:  # JournalRedisBackend connects lazily and without a timeout: fail fast and in words here instead
        redis.Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT_S, socket_timeout=CONNECT_TIMEOUT_S).ping()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)  # Optuna's recommended storage for many workers
            return JournalStorage(JournalRedisBackend(url))
    except (redis.exceptions.RedisError, ValueError, OSError) as exc:
        raise StorageError(f"Cannot reach the Redis study storage {redact(url)!r}: {exc}",
                           hint="Check that redis-server is running there (redis-cli -u URL ping).") from None
