"""Redis connections of the agents (queue and artifact store): URL options, one reachability check, errors in words.

Our own options travel in the URL's query (``redis://host:6379/0?prefix=team-a``) so one string configures
every machine alike; redis-py would pass unknown query keys on to its connection class, so they are split
off here first. A server that cannot be reached becomes :class:`QueueUnavailableError` — agents wait and
retry on it (a Redis restart is an outage, not a failure) — and anything else Redis refuses becomes a
:class:`QueueError`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from edgeprune.agents.queue import QueueError, QueueUnavailableError
from edgeprune.sweep.storage import redact

CONNECT_TIMEOUT_S = 10.0


def split_options(url: str, names: tuple[str, ...]) -> tuple[str, dict[str, str]]:
    """``url`` without the query keys in ``names``, and those keys' values."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    ours = {k: v for k, v in query if k in names}
    rest = [(k, v) for k, v in query if k not in names]
    return urlunsplit(parts._replace(query=urlencode(rest))), ours


def connect(url: str, *, decode: bool, read_timeout_s: float) -> Any:
    """A checked client for ``url`` (``read_timeout_s`` must exceed the longest blocking read)."""
    try:
        import redis
    except ImportError:
        raise QueueError(f"{redact(url)} needs the 'redis' package.",
                         hint="pip install 'edgeprune[distributed]'.") from None
    try:
        client = redis.Redis.from_url(url, decode_responses=decode, socket_connect_timeout=CONNECT_TIMEOUT_S,
                                      socket_timeout=read_timeout_s, health_check_interval=30)
    except (ValueError, TypeError) as exc:
        raise QueueError(f"{redact(url)} is not a Redis URL redis-py accepts: {exc}.",
                         hint="Use redis://[:PASSWORD@]HOST:6379/DB (rediss:// for TLS, unix:///PATH.sock).") from None
    with translated(url):
        client.ping()
    return client


@contextmanager
def translated(url: str) -> Iterator[None]:
    """Redis exceptions as edgeprune errors that say which server and what to check."""
    import redis

    try:
        yield
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        raise QueueUnavailableError(f"Redis at {redact(url)} cannot be reached: {exc}",
                                    hint="Check that redis-server runs there (redis-cli -u URL ping).") from None
    except redis.exceptions.RedisError as exc:
        raise QueueError(f"Redis at {redact(url)} refused a command: {exc}",
                         hint="The agents need Redis >= 6.2 (XAUTOCLAIM) and a user allowed stream commands.") from None
