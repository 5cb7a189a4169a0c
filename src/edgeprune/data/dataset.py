"""The in-memory dataset every loader returns, and the statistics a model's input normalisation needs.

Why one plain container of uint8 arrays instead of a torch ``Dataset`` per format: the data sets
edgeprune targets (CIFAR, MNIST, small image folders) fit in memory many times over, and a single
``(N, H, W, C)`` uint8 array can be cached as one ``.npz``, indexed per batch without worker
processes, and sliced for calibration/evaluation subsets deterministically.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeprune.errors import DataError

SPLITS = ("train", "test")


@dataclass(eq=False, repr=False)
class ImageDataset:
    """Decoded images and integer labels of one split of one data set.

    ``images`` is uint8 ``(N, H, W, C)`` with ``C`` 1 (gray) or 3 (RGB); ``labels`` is int64 ``(N,)``
    with values in ``[0, len(classes))``. ``source`` is the path (or built-in name) it was loaded from.
    ``crop``, when set, is the side of the square a model sees (ImageNet-style transforms, see
    :class:`~edgeprune.data.batches.BatchLoader`); the stored images are larger.
    """

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    name: str
    split: str
    source: str
    crop: int | None = None

    def __post_init__(self) -> None:
        # Constructed by edgeprune's loaders and by tests/user code: shape mistakes here are programming
        # errors, so they are ValueErrors, not DataErrors.
        images = np.asarray(self.images)
        labels = np.asarray(self.labels)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] not in (1, 3):
            raise ValueError(
                "ImageDataset.images must be uint8 (N, H, W, C) with C in (1, 3); "
                f"got {images.dtype} {images.shape}"
            )
        if labels.ndim != 1 or len(labels) != len(images) or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(
                f"ImageDataset.labels must be an integer (N,) array with N={len(images)}; "
                f"got {labels.dtype} {labels.shape}"
            )
        if self.crop is not None and not 0 < self.crop <= min(images.shape[1:3]):
            raise ValueError(f"ImageDataset.crop {self.crop} does not fit images of {images.shape[1:3]}")
        self.images = images
        self.labels = labels.astype(np.int64, copy=False)
        self.classes = [str(c) for c in self.classes]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)``: the shape of one sample as a model sees it (NCHW without N)."""
        _, h, w, c = self.images.shape
        if self.crop is not None:
            return (int(c), self.crop, self.crop)
        return (int(c), int(h), int(w))

    @property
    def model_images(self) -> np.ndarray:
        """The images as a model is evaluated on them: the centre ``crop`` square when set (a view)."""
        return self.images if self.crop is None else centre_square(self.images, self.crop)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __repr__(self) -> str:
        return (
            f"ImageDataset(name={self.name!r}, split={self.split!r}, n={len(self)}, "
            f"input_shape={self.input_shape}, num_classes={self.num_classes}, source={self.source!r})"
        )

    def subset(self, n: int | None = None, indices: Sequence[int] | np.ndarray | None = None) -> ImageDataset:
        """The first ``n`` samples, or the samples at ``indices`` (in that order).

        "First n" rather than a random sample so that calibration and quick-evaluation subsets are the
        same on every machine and every run without having to pass a seed around. With neither
        argument, returns a copy of the whole split.
        """
        if n is not None and indices is not None:
            raise ValueError("subset() takes n or indices, not both")
        if indices is not None:
            idx = np.asarray(indices)
            idx = np.flatnonzero(idx) if idx.dtype == bool else idx.astype(np.int64).reshape(-1)
            if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
                raise IndexError(f"subset indices out of range for a data set of {len(self)} samples")
            images, labels = self.images[idx], self.labels[idx]
        else:
            if n is not None and n < 0:
                raise ValueError(f"subset(n={n}): n must be >= 0")
            stop = len(self) if n is None else min(int(n), len(self))
            images, labels = self.images[:stop].copy(), self.labels[:stop].copy()
        return ImageDataset(images, labels, list(self.classes), self.name, self.split, self.source, self.crop)


def evenly_spaced(ds: ImageDataset, n: int) -> ImageDataset:
    """``n`` samples spaced evenly over ``ds`` (all of it if smaller), deterministic like ``subset(n)``.

    Why not the first ``n``: image folders and archives list their images class by class, so the first
    samples of a split are all of one class — an evaluation or an importance estimate on them is biased.
    """
    count = min(int(n), len(ds))
    return ds.subset(indices=_spread(len(ds), count)) if count else ds.subset(0)


def hold_out(ds: ImageDataset, n: int) -> tuple[ImageDataset, ImageDataset]:
    """``(rest, held)``: ``n`` samples spaced evenly over ``ds`` (as :func:`evenly_spaced` takes them) split off
    as ``held``, split ``holdout``: a validation set drawn from a training split, which ``rest`` never sees."""
    if not 0 < n < len(ds):
        raise DataError(f"Cannot hold out {n} of the {len(ds)} images of {ds.source} ({ds.split}): it must be "
                        f"between 1 and {len(ds) - 1}.")
    chosen = np.zeros(len(ds), dtype=bool)
    chosen[_spread(len(ds), n)] = True
    held = ds.subset(indices=chosen)
    held.split = "holdout"
    return ds.subset(indices=~chosen), held


def _spread(size: int, count: int) -> np.ndarray:
    """``count`` distinct indices spaced evenly over ``range(size)``, the first and last included."""
    return np.linspace(0, size - 1, count).round().astype(np.int64)


def centre_square(images: Any, side: int) -> Any:
    """The centre ``side`` x ``side`` square of a ``(N, H, W, C)`` array or tensor (a view, no copy)."""
    h, w = images.shape[1:3]
    top, left = (h - side) // 2, (w - side) // 2
    return images[:, top : top + side, left : left + side]


def channel_stats(ds: ImageDataset) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of the pixels scaled to ``[0, 1]``.

    Computed exactly from a 256-bin histogram per channel instead of a float copy of the data: on the
    CIFAR-10 train split that is ~150 M pixels, and a float64 copy would need 1.2 GB. ``torch.bincount``
    on uint8 is used because numpy's converts to int64 first (0.25 s instead of 1 s on CIFAR-10 train).
    """
    import torch

    if len(ds) == 0:
        raise DataError(f"Cannot compute channel statistics of {ds.source!r} ({ds.split}): it has no images.")
    images = ds.images if ds.images.flags.writeable else ds.images.copy()  # from_numpy warns on read-only
    flat = torch.from_numpy(np.ascontiguousarray(images)).view(-1, images.shape[3])
    levels = np.arange(256, dtype=np.float64) / 255.0
    means, stds = [], []
    for c in range(flat.shape[1]):
        counts = torch.bincount(flat[:, c].contiguous(), minlength=256).numpy().astype(np.float64)
        total = counts.sum()
        mean = float((counts * levels).sum() / total)
        var = float((counts * (levels - mean) ** 2).sum() / total)
        means.append(mean)
        stds.append(var**0.5)
    return tuple(means), tuple(stds)
