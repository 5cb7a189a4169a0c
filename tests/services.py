"""Real Redis and PostgreSQL for the agent tests — never fakes. Load with ``pytest_plugins = ["tests.services"]``.

* ``redis_url``: the server on 127.0.0.1:6379 if it answers PING, else a throwaway ``redis-server`` (no
  persistence) on a free port when the binary exists, else the test is skipped, saying so loudly.
* ``redis_prefix``: a fresh ``?prefix=`` for queue and artifact keys, whose keys are deleted afterwards, so
  tests never see each other's (or anybody else's) data on a shared server.
* ``start_redis(*options)``: a private ``redis-server`` with chosen options in ``tmp_path`` — the AOF restart
  test kills and restarts one; stopped at the end of the test.
* ``postgres_url``: a throwaway database on 127.0.0.1:5432 (users ``postgres`` or ``root``, trust auth),
  created once per session and dropped afterwards; skipped loudly when the server is unreachable.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
PG_HOST, PG_PORT, PG_USERS = "127.0.0.1", 5432, ("postgres", "root")
LOUD = "NOT TESTED — "


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pings(port: int) -> bool:
    import redis

    try:
        return bool(redis.Redis(host=REDIS_HOST, port=port, socket_connect_timeout=1).ping())
    except (redis.exceptions.RedisError, OSError):
        return False


class RedisServer:
    """A private redis-server process; ``kill()`` + ``start()`` is a crash and a restart on the same port and dir."""

    def __init__(self, directory: Path, *args: str) -> None:
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            pytest.skip(f"{LOUD}redis-server is not installed, so no private Redis server can be started")
        self.port = free_port()
        self.dir = directory
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://{REDIS_HOST}:{self.port}/0"

    def start(self) -> RedisServer:
        assert self.binary is not None
        self.proc = subprocess.Popen([self.binary, "--port", str(self.port), "--bind", REDIS_HOST, "--dir",
                                      str(self.dir), *self.args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not _pings(self.port):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"redis-server {' '.join(self.args)} did not start on port {self.port}")
            time.sleep(0.05)
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            self.proc.wait(timeout=10)


@pytest.fixture
def start_redis(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """``start_redis(*options)``: a started private server with its own directory; all are stopped afterwards."""
    servers: list[RedisServer] = []

    def start(*args: str) -> RedisServer:
        servers.append(RedisServer(tmp_path / f"redis-{len(servers)}", *args).start())
        return servers[-1]

    yield start
    for server in servers:
        server.kill(signal.SIGTERM)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    pytest.importorskip("redis", reason=f"{LOUD}the redis package is missing: pip install 'edgeprune[distributed]'")
    if _pings(REDIS_PORT):
        yield f"redis://{REDIS_HOST}:{REDIS_PORT}/0"
        return
    server = RedisServer(tmp_path_factory.mktemp("redis"), "--save", "", "--appendonly", "no").start()
    try:
        yield server.url
    finally:
        server.kill(signal.SIGTERM)


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A namespace of its own on the shared server; its keys are deleted afterwards."""
    import redis

    prefix = f"edgeprune-test-{uuid.uuid4().hex[:10]}"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    psycopg = pytest.importorskip("psycopg", reason=f"{LOUD}psycopg (3) is missing: pip install "
                                                    "'edgeprune[distributed]'")
    admin, user, errors = None, None, []
    for user in PG_USERS:
        try:
            admin = psycopg.connect(host=PG_HOST, port=PG_PORT, user=user, dbname="postgres", connect_timeout=3,
                                    autocommit=True)
            break
        except psycopg.OperationalError as exc:
            errors.append(f"{user}: {str(exc).strip()}")
    if admin is None:
        pytest.skip(f"{LOUD}PostgreSQL at {PG_HOST}:{PG_PORT} is unreachable ({'; '.join(errors)})")
    name = f"edgeprune_test_{uuid.uuid4().hex[:10]}"
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://{user}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
