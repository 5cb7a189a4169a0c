"""Artifact stores: the claim check (URI + SHA-256 + size) and its verification, on disk and in a real Redis."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from edgeprune.agents.artifacts import ArtifactRef, DirectoryStore, StoreResolver, get_artifact_store
from edgeprune.sweep.job import ArtifactError

pytest_plugins = ["tests.services"]


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "work" / "model.onnx"
    path.parent.mkdir()
    path.write_bytes(b"onnx" * 1000)
    return path


def test_directory_store_puts_a_copy_and_fetches_a_verified_one(model_file: Path, tmp_path: Path) -> None:
    store = get_artifact_store(tmp_path / "share")
    assert isinstance(store, DirectoryStore)
    ref = store.put(model_file, "my sweep/1", 7)
    assert ref.uri.startswith("file://") and "/my-sweep-1/0007-" in ref.uri and ref.size == 4000
    fetched = store.fetch(ref, tmp_path / "consumer" / "model.onnx")
    assert fetched.read_bytes() == model_file.read_bytes()


def test_a_changed_or_missing_artifact_is_refused_and_nothing_is_left(model_file: Path, tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path / "share")
    ref = store.put(model_file, "s", 1)
    stored = next((tmp_path / "share").rglob("*.onnx"))
    stored.write_bytes(b"onnx" * 999 + b"xxxx")  # same size, other bytes
    dest = tmp_path / "consumer" / "model.onnx"
    with pytest.raises(ArtifactError, match="not the one that was produced"):
        store.fetch(ref, dest)
    assert not dest.exists() and not list(dest.parent.iterdir())
    stored.unlink()
    with pytest.raises(ArtifactError, match="does not exist on this machine"):
        store.fetch(ref, dest)


@pytest.mark.redis
def test_redis_store_caps_size_expires_and_discards(model_file: Path, tmp_path: Path, redis_url: str,
                                                    redis_prefix: str) -> None:
    store = get_artifact_store(f"{redis_url}?prefix={redis_prefix}&ttl_s=1&max_mb=0.01")
    ref = store.put(model_file, "s", 3)
    assert ref.uri.startswith(redis_url.rsplit("/", 1)[0]) and "#" in ref.uri and "ttl_s" not in ref.uri
    consumer = StoreResolver(DirectoryStore(tmp_path / "unused"))  # a consumer without --artifacts
    assert consumer(ref).fetch(ref, tmp_path / "a.onnx").read_bytes() == model_file.read_bytes()
    store.discard(ref)
    with pytest.raises(ArtifactError, match="no longer in Redis"):
        store.fetch(ref, tmp_path / "b.onnx")
    ref = store.put(model_file, "s", 4)
    time.sleep(1.2)
    with pytest.raises(ArtifactError, match="TTL"):
        store.fetch(ref, tmp_path / "c.onnx")
    big = tmp_path / "big.onnx"
    big.write_bytes(b"0" * 20_000)
    with pytest.raises(ArtifactError, match="more than the Redis artifact store takes"):
        store.put(big, "s", 5)


def test_a_ref_is_plain_json(model_file: Path, tmp_path: Path) -> None:
    ref = DirectoryStore(tmp_path).put(model_file, "s", 0)
    assert ArtifactRef.model_validate_json(ref.model_dump_json()) == ref
