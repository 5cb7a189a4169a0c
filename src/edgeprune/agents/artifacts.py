"""Artifact stores: the claim check between producer and consumer.

A queued job never carries the model itself, only an :class:`ArtifactRef` — where the ONNX file is, its
SHA-256 and size. The producer *puts* the file into a store; the consumer *fetches* a private copy and
verifies hash and size before it benchmarks anything, so a truncated copy, a file replaced on the share, or
an entry evicted from Redis is caught as a failed delivery instead of being measured.

* a directory (the default; ``file:///shared/artifacts`` or a plain path): on one machine, or a share
  mounted at the same path on every machine. Artifacts stay there: they are the sweep's results.
* Redis (``redis://HOST:6379/DB?ttl_s=86400&max_mb=64``): no shared file system needed; each artifact is
  one key with a TTL, refused above the size cap (Redis holds everything in memory), and deleted once
  measured (:meth:`ArtifactStore.discard`).

``get_artifact_store(None | uri | store)`` normalises like :func:`edgeprune.agents.queue.get_queue`.
"""

from __future__ import annotations

import abc
import shutil
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict

from edgeprune.agents.queue import DEFAULT_DIR, safe_name
from edgeprune.errors import UnknownNameError
from edgeprune.fileio import atomic_path
from edgeprune.registry import Registry
from edgeprune.sweep.job import ArtifactError, sha256_file

DEFAULT_ARTIFACTS = DEFAULT_DIR / "artifacts"


class ArtifactRef(BaseModel):
    """Where an artifact is (``uri``) and what it must be (``sha256``, ``size`` in bytes)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    uri: str
    sha256: str
    size: int

    @property
    def scheme(self) -> str:
        return urlsplit(self.uri).scheme


def artifact_name(sweep: str, trial: int | str, sha256: str, suffix: str) -> str:
    """``SWEEP/0007-1a2b3c4d5e6f.onnx``: per sweep, per trial (or ``dense``, the reference model), and never the
    same name for different bytes."""
    label = f"{trial:04d}" if isinstance(trial, int) else safe_name(trial)
    return f"{safe_name(sweep)}/{label}-{sha256[:12]}{suffix}"


class ArtifactStore(abc.ABC):
    """Put files in, fetch verified copies out."""

    schemes: tuple[str, ...]

    @abc.abstractmethod
    def put(self, path: Path, sweep: str, trial: int | str) -> ArtifactRef:
        """Store the file at ``path`` for trial ``trial`` of ``sweep`` (a name for what is not a trial)."""

    @abc.abstractmethod
    def _download(self, ref: ArtifactRef, dest: Path) -> None:
        """Write the stored bytes of ``ref`` to ``dest`` (raise :class:`ArtifactError` if they are gone)."""

    @abc.abstractmethod
    def discard(self, ref: ArtifactRef) -> None:
        """The artifact was measured: drop it if this store only holds it in transit."""

    def delete(self, ref: ArtifactRef) -> None:
        """Drop the artifact whatever the store: for files that are never results (a search's latency probes)."""
        self.discard(ref)

    def fetch(self, ref: ArtifactRef, dest: Path) -> Path:
        """A copy of ``ref`` at ``dest``, verified against its size and SHA-256; nothing is left on a mismatch."""
        with atomic_path(dest) as tmp:
            self._download(ref, tmp)
            size, digest = tmp.stat().st_size, sha256_file(tmp)
            if (size, digest) != (ref.size, ref.sha256):
                raise ArtifactError(
                    f"The artifact {ref.uri} is not the one that was produced: {size} bytes with SHA-256 "
                    f"{digest[:16]}..., expected {ref.size} bytes with SHA-256 {ref.sha256[:16]}... (corrupt, "
                    "truncated or replaced).", hint="Produce the trial again; check the store's disk or network.")
        return dest


class DirectoryStore(ArtifactStore):
    """Artifacts as files under ``root``; refs are ``file://`` URIs of absolute paths."""

    schemes = ("file", "")

    def __init__(self, root: str | Path = DEFAULT_ARTIFACTS) -> None:
        self.root = Path(root).expanduser().resolve()

    def put(self, path: Path, sweep: str, trial: int | str) -> ArtifactRef:
        sha256 = sha256_file(path)
        dest = self.root / artifact_name(sweep, trial, sha256, path.suffix)
        with atomic_path(dest) as tmp:
            shutil.copyfile(path, tmp)
        return ArtifactRef(uri=dest.as_uri(), sha256=sha256, size=dest.stat().st_size)

    def _download(self, ref: ArtifactRef, dest: Path) -> None:
        src = Path(unquote(urlsplit(ref.uri).path))
        if not src.is_file():
            raise ArtifactError(f"The artifact {src} does not exist on this machine.",
                                hint="Mount the shared artifact directory at the same path on every machine, or "
                                     "use a Redis artifact store (--artifacts redis://HOST:6379/0).")
        shutil.copyfile(src, dest)

    def discard(self, ref: ArtifactRef) -> None:
        """Kept: the files in a directory store are the sweep's results."""

    def delete(self, ref: ArtifactRef) -> None:
        Path(unquote(urlsplit(ref.uri).path)).unlink(missing_ok=True)


StoreFactory = Callable[..., ArtifactStore]
ARTIFACT_STORES: Registry[StoreFactory] = Registry("artifact store URL scheme")
ARTIFACT_STORES.register("file")(lambda uri: DirectoryStore(unquote(urlsplit(uri).path)))


def get_artifact_store(store: str | Path | ArtifactStore | None = None) -> ArtifactStore:
    """A store for ``None`` (the default directory), a URI or directory, or a store object (returned as it is)."""
    if isinstance(store, ArtifactStore):
        return store
    if store is None or "://" not in str(store):
        return DirectoryStore(store or DEFAULT_ARTIFACTS)
    from edgeprune.agents import redis_artifacts  # noqa: F401  (registers redis://)

    uri = str(store)
    scheme = urlsplit(uri).scheme
    try:
        factory = ARTIFACT_STORES.get(scheme)
    except UnknownNameError as exc:
        raise UnknownNameError(exc.kind, scheme, exc.known,
                               hint="Use a directory shared by all machines, or redis://HOST:6379/0.") from None
    return factory(uri)


class StoreResolver:
    """The store that can fetch a given ref: the configured one when it speaks the ref's scheme, else one
    opened from the ref itself (cached), so a consumer needs no ``--artifacts`` for a shared directory."""

    def __init__(self, configured: ArtifactStore) -> None:
        self.configured = configured
        self._opened: dict[str, ArtifactStore] = {}

    def __call__(self, ref: ArtifactRef) -> ArtifactStore:
        if ref.scheme in self.configured.schemes:
            return self.configured
        location = ref.uri.split("#", 1)[0]
        if location not in self._opened:
            self._opened[location] = get_artifact_store(None if ref.scheme == "file" else location)
        return self._opened[location]

