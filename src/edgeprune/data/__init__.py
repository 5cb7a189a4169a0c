"""Data sets for edgeprune: loading (offline only), caching, statistics and the batch pipeline.

``load_dataset(source, split)`` recognises, from the files themselves:

* ``"digits"`` — scikit-learn's bundled 8x8 digits (needs nothing; see :mod:`edgeprune.data.digits`
  for the fixed stratified 80/20 split).
* CIFAR-10 / CIFAR-100 "python version" pickles: ``data_batch_1..5`` + ``test_batch`` + ``batches.meta``,
  or ``train`` + ``test`` + ``meta`` (fine labels), in a directory, one level down in it (e.g.
  ``cifar-10-batches-py/``), or in the official ``.tar.gz``.
* Image-folder trees ``<root>/<split>/<class>/*.png|jpg|jpeg`` (classes = sorted directory names) and
  tar archives of them, read member by member without extracting; e.g. ``shared/data/cifar10-jpeg.tar.gz``.
* MNIST-style idx files ``train-images-idx3-ubyte[.gz]`` etc.; split "test" is the ``t10k`` files. On
  Debian, ``apt-get install dataset-fashion-mnist`` puts Fashion-MNIST at
  ``/usr/share/datasets/fashion-mnist`` (gzip-compressed idx files), which loads as it is.

Loading needs no torch (a measuring host reads a model's test images with numpy alone); the batch
pipeline, :class:`BatchLoader`, loads torch when it is first used (PEP 562).

Nothing is ever downloaded. Decoded path-based splits are cached as ``.npz`` in ``$EDGEPRUNE_CACHE``
(default ``~/.cache/edgeprune``); see :mod:`edgeprune.data.cache`. Every unreadable input raises
:class:`edgeprune.errors.DataError` with a one-paragraph explanation.
"""

from __future__ import annotations

from typing import Any

from edgeprune.data.dataset import ImageDataset, channel_stats, evenly_spaced, hold_out
from edgeprune.data.loading import load_dataset


def __getattr__(name: str) -> Any:
    if name == "BatchLoader":
        from edgeprune.data.batches import BatchLoader

        return BatchLoader
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["BatchLoader", "ImageDataset", "channel_stats", "evenly_spaced", "hold_out", "load_dataset"]
