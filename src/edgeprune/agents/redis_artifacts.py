"""Artifacts kept in Redis: for machines that share no file system, with a size cap and a TTL.

``redis://[:PASSWORD@]HOST:6379/DB[?prefix=NAME&ttl_s=SECONDS&max_mb=MB]``. Each artifact is one string key,
``PREFIX:artifact:SWEEP/0007-<sha>.onnx``, written with ``SET ... EX ttl_s``. Why a cap (default 64 MB):
Redis keeps every byte in memory, and a pruned CNN for the edge is a few MB — something far larger is
better on a shared directory, and the error says so. Why a TTL (default 7 days): an artifact whose job
was dead-lettered or whose consumer never came would otherwise stay in memory for ever. A ref is the
store's URL without password or options, with the key as fragment: ``redis://HOST:6379/0#KEY``; a consumer
reads it with its own ``--artifacts`` URL (and credentials) when that is a Redis store too.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from edgeprune.agents.artifacts import ARTIFACT_STORES, ArtifactRef, ArtifactStore, artifact_name
from edgeprune.agents.redis_client import connect, split_options, translated
from edgeprune.sweep.job import ArtifactError, sha256_file

DEFAULT_TTL_S = 7 * 24 * 3600
DEFAULT_MAX_MB = 64.0
READ_TIMEOUT_S = 60.0


@ARTIFACT_STORES.register("redis")
@ARTIFACT_STORES.register("rediss")
@ARTIFACT_STORES.register("unix")
class RedisArtifactStore(ArtifactStore):
    """Artifacts as Redis strings with a TTL, refused above ``max_mb``."""

    schemes = ("redis", "rediss", "unix")

    def __init__(self, uri: str) -> None:
        plain, options = split_options(uri.split("#", 1)[0], ("prefix", "ttl_s", "max_mb"))
        self.prefix = options.get("prefix") or "edgeprune"
        self.ttl_s = int(options.get("ttl_s", DEFAULT_TTL_S))
        self.max_bytes = int(float(options.get("max_mb", DEFAULT_MAX_MB)) * 1024 * 1024)
        self.url = plain
        parts = urlsplit(plain)
        self.public = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2], query=""))
        self._redis = connect(plain, decode=False, read_timeout_s=READ_TIMEOUT_S)

    def put(self, path: Path, sweep: str, trial: int | str) -> ArtifactRef:
        size = path.stat().st_size
        if size > self.max_bytes:
            raise ArtifactError(f"{path} has {size / 2**20:.1f} MB, more than the Redis artifact store takes "
                                f"({self.max_bytes / 2**20:.0f} MB).",
                                hint="Raise the cap (?max_mb=N in --artifacts) or use a shared directory.")
        sha256 = sha256_file(path)
        key = f"{self.prefix}:artifact:{artifact_name(sweep, trial, sha256, path.suffix)}"
        with translated(self.url):
            self._redis.set(key, path.read_bytes(), ex=self.ttl_s)
        return ArtifactRef(uri=f"{self.public}#{key}", sha256=sha256, size=size)

    def _download(self, ref: ArtifactRef, dest: Path) -> None:
        with translated(self.url):
            data = self._redis.get(ref.uri.split("#", 1)[1])
        if data is None:
            raise ArtifactError(f"The artifact {ref.uri} is no longer in Redis (its TTL of {self.ttl_s} s passed, "
                                "or the server evicted or lost it).",
                                hint="Produce the trial again; give the store a longer ?ttl_s= or more memory.")
        dest.write_bytes(data)

    def discard(self, ref: ArtifactRef) -> None:
        with translated(self.url):
            self._redis.delete(ref.uri.split("#", 1)[1])
