"""An on-disk cache of decoded splits as uncompressed ``.npz`` files.

Why: decoding the 60k CIFAR-10 JPEGs takes seconds and every prune/fine-tune/evaluate command loads
the data again; reading one uncompressed array back is a memcpy (tens of ms). Uncompressed because
the pixels of natural images hardly compress and zlib would make the hit path 10x slower.

The key is a hash of (absolute path, size and mtime_ns of the archive — or of every file a directory
split reads —, split, :data:`FORMAT_VERSION`): touching or replacing the data invalidates the entry,
and bumping the version invalidates every entry after a change to how a format is decoded. Files are
written to a temporary name in the same directory and renamed, so a crash or a concurrent writer never
leaves a half-written entry under the real name. A file that cannot be read back for any reason is
ignored (and rewritten): the cache can always be deleted safely.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgeprune.data.dataset import ImageDataset

log = logging.getLogger(__name__)

#: Bump when decoding changes in a way that makes existing cache entries wrong.
FORMAT_VERSION = 1


def default_cache_dir() -> Path:
    env = os.environ.get("EDGEPRUNE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "edgeprune"


def cache_file(cache_dir: Path, source: Path, split: str, stamp: Any) -> tuple[Path, str]:
    """The cache path for this (source, split, stamp) and the full key stored inside it."""
    key_text = json.dumps(
        {"path": str(source), "split": split, "stamp": stamp, "version": FORMAT_VERSION}, sort_keys=True
    )
    key = hashlib.sha256(key_text.encode("utf-8", "surrogateescape")).hexdigest()
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", source.name)[:60] or "data"
    return cache_dir / f"{stem}-{split}-{key[:20]}.npz", key


def load(path: Path, key: str, source: str) -> ImageDataset | None:
    """The cached split, or ``None`` when there is none or it is unreadable/stale (then it is rebuilt)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            meta = json.loads(str(npz["meta"]))
            if meta.get("key") != key:
                return None
            ds = ImageDataset(
                npz["images"],
                npz["labels"],
                [str(c) for c in npz["classes"]],
                meta["name"],
                meta["split"],
                source,
                meta.get("crop"),
            )
    except Exception as exc:  # corrupt/truncated/foreign file: any failure just means "not cached"
        log.warning(
            "ignoring unreadable cache file %s (%s: %s); rebuilding it", path, type(exc).__name__, exc
        )
        return None
    return ds


def save(path: Path, key: str, ds: ImageDataset) -> None:
    """Write atomically; failure to cache (read-only home, full disk) is logged, never fatal."""
    meta = json.dumps({"key": key, "name": ds.name, "split": ds.split, "crop": ds.crop, "version": FORMAT_VERSION})
    tmp_name = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=path.stem + ".", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            np.savez(
                fh,
                images=ds.images,
                labels=ds.labels,
                classes=np.array(ds.classes, dtype=str),
                meta=np.array(meta),
            )
        os.replace(tmp_name, path)
        tmp_name = None
    except OSError as exc:
        log.warning("could not write the data cache %s (%s); continuing without it", path, exc)
    finally:
        if tmp_name is not None:
            try:
                os.unlink(tmp_name)
            except OSError:
                pass
