"""MNIST-style idx files (MNIST, Fashion-MNIST, KMNIST ...), plain or gzip-compressed.

An idx file is a big-endian header ``0x00 0x00 <type> <ndim>`` followed by ``ndim`` uint32 sizes and the
raw values. Images are ``type 0x08`` (uint8) with 3 dimensions (magic 2051), labels uint8 with one
dimension (magic 2049). Both are validated, because a truncated download otherwise turns into a
confusing reshape error much later.

The files do not say whether they are MNIST or Fashion-MNIST, so the data set is called "mnist" and the
classes are "0".."9" (or as many as the labels need).
"""

from __future__ import annotations

import gzip
import zlib

import numpy as np

from edgeprune.data.layouts import Plan
from edgeprune.data.tree import Tree
from edgeprune.errors import DataError

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801


def _read(tree: Tree, rel: str) -> bytes:
    data = tree.read(rel)
    if rel.endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(
                f"{tree.label}: {rel} is a truncated or corrupt gzip file ({type(exc).__name__}: "
                f"{exc or 'unexpected end of data'}).",
                hint="Re-download it, or replace it by the uncompressed idx file.",
            ) from None
    return data


def _parse(tree: Tree, rel: str, magic: int, ndim: int) -> np.ndarray:
    data = _read(tree, rel)
    what = "images" if ndim == 3 else "labels"
    head = 4 + 4 * ndim
    if len(data) < head or int.from_bytes(data[:4], "big") != magic:
        found = f"0x{int.from_bytes(data[:4], 'big'):08x}" if len(data) >= 4 else f"only {len(data)} bytes"
        raise DataError(
            f"{tree.label}: {rel} is not an idx {what} file: expected magic number 0x{magic:08x} "
            f"(uint8, {ndim} dimensions), found {found}."
        )
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    expected = head + int(np.prod(dims, dtype=np.int64))
    if len(data) != expected:
        raise DataError(
            f"{tree.label}: {rel} has the wrong size: its header says {' x '.join(map(str, dims))} {what}, "
            f"which is {expected} bytes, but it has {len(data)} bytes (truncated or corrupt)."
        )
    return np.frombuffer(data, dtype=np.uint8, offset=head).reshape(dims)


def load_idx(tree: Tree, plan: Plan) -> tuple[np.ndarray, np.ndarray, list[str], str]:
    """Images ``(N, H, W, 1)``, labels, class names and the data set name ("mnist")."""
    images_rel, labels_rel = plan.files
    images = _parse(tree, images_rel, IMAGES_MAGIC, 3)
    labels = _parse(tree, labels_rel, LABELS_MAGIC, 1).astype(np.int64)
    if len(images) != len(labels):
        raise DataError(
            f"{tree.label}: {images_rel} holds {len(images)} images but {labels_rel} holds {len(labels)} "
            "labels; they must match (are they from the same data set and split?)."
        )
    n_classes = max(10, int(labels.max()) + 1) if len(labels) else 10
    return images[..., None].copy(), labels, [str(i) for i in range(n_classes)], "mnist"
