"""CIFAR-10 / CIFAR-100 in the official "python version" pickle layout.

Each batch is a pickled dict ``{b"data": uint8 (n, 3072), b"labels" | b"fine_labels": [int] * n, ...}``
whose rows are the 1024 red, then green, then blue values of a 32x32 image in row-major order. CIFAR-100
is loaded with its 100 *fine* labels. Pickles are opened with :mod:`edgeprune.data.safe_pickle`, so a
tampered file cannot run code.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeprune.data.layouts import Plan
from edgeprune.data.safe_pickle import SafeUnpicklingError, safe_loads
from edgeprune.data.tree import Tree
from edgeprune.errors import DataError

CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip
_SIDE = 32
_ROW = 3 * _SIDE * _SIDE


def _unpickle(tree: Tree, rel: str) -> Any:
    where = f"{tree.label}: {rel}" if rel else tree.label
    data = tree.read(rel)
    try:
        return safe_loads(data)
    except SafeUnpicklingError as exc:
        raise DataError(
            f"{where} contains code edgeprune will not run: its pickle calls {exc.global_name}, which loading "
            "could run, so it is not a CIFAR python batch.",
            hint="The official batches contain only dicts, lists and numpy arrays; re-download the "
            "'CIFAR python version' archive from its publisher.",
        ) from None
    except Exception as exc:  # any failure to unpickle untrusted bytes means a damaged file
        raise DataError(f"{where} is truncated or corrupt ({type(exc).__name__}: {exc}).") from None


def _decode_names(raw: Any, key: bytes, n: int) -> list[str] | None:
    if not isinstance(raw, dict) or not isinstance(raw.get(key), list):
        return None
    names = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in raw[key]]
    return names if len(names) >= n else None


def load_cifar(tree: Tree, plan: Plan) -> tuple[np.ndarray, np.ndarray, list[str], str]:
    """Images ``(N, 32, 32, 3)``, labels, class names and the data set name ("cifar10"/"cifar100")."""
    is_100 = plan.fmt == "cifar100"
    label_key = b"fine_labels" if is_100 else b"labels"
    meta_rel = next((f for f in plan.files if f.rsplit("/", 1)[-1] in ("meta", "batches.meta")), None)
    batch_rels = [f for f in plan.files if f != meta_rel]
    images, labels = [], []
    for rel in batch_rels:
        batch = _unpickle(tree, rel)
        data = batch.get(b"data") if isinstance(batch, dict) else None
        lab = batch.get(label_key) if isinstance(batch, dict) else None
        if (
            not isinstance(data, np.ndarray)
            or data.dtype != np.uint8
            or data.ndim != 2
            or data.shape[1] != _ROW
        ):
            found = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
            raise DataError(
                f"{tree.label}: {rel} is not a CIFAR batch: expected a dict with b'data' a uint8 array of "
                f"shape (n, {_ROW}), found {found}."
            )
        lab_arr = np.asarray(lab if lab is not None else [], dtype=np.int64).reshape(-1)
        if lab is None or len(lab_arr) != len(data):
            key = label_key.decode()
            raise DataError(
                f"{tree.label}: {rel} is not a CIFAR-{'100' if is_100 else '10'} batch: expected "
                f"b'{key}' with one label per image ({len(data)}), found "
                f"{'none' if lab is None else len(lab_arr)}."
            )
        images.append(data)
        labels.append(lab_arr)
    x = np.concatenate(images).reshape(-1, 3, _SIDE, _SIDE).transpose(0, 2, 3, 1)
    y = np.concatenate(labels)
    n_classes = 100 if is_100 else 10
    classes = None
    if meta_rel is not None:
        meta = _unpickle(tree, meta_rel)
        classes = _decode_names(meta, b"fine_label_names" if is_100 else b"label_names", n_classes)
    if classes is None:
        classes = [str(i) for i in range(n_classes)] if is_100 else list(CIFAR10_CLASSES)
    if len(y) and (y.min() < 0 or y.max() >= len(classes)):
        raise DataError(
            f"{tree.label}: labels range over {y.min()}..{y.max()} but there are {len(classes)} classes."
        )
    return np.ascontiguousarray(x), y, classes, ("cifar100" if is_100 else "cifar10")
