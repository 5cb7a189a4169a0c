"""The built-in "digits" data set: scikit-learn's bundled 8x8 handwritten digits (1,797 images).

Why it exists: it ships inside scikit-learn, so every install can train, prune and evaluate a model
end-to-end without downloading anything (tests, examples, CI).

Pixels are 0..16 in the original; they become uint8 ``round(v * 255 / 16)``. The train/test split is a
deterministic stratified 80/20 split made here rather than with ``train_test_split`` so that it cannot
change with the scikit-learn version: for each class (in label order) its indices are permuted with
``numpy.random.default_rng(SPLIT_SEED)`` (one generator, drawn class after class),
``round(0.2 * count)`` of them go to "test" and the rest to "train"; each split keeps the original
sample order. This gives 1,438 train and 359 test images.
"""

from __future__ import annotations

import numpy as np

from edgeprune.data.dataset import ImageDataset

SPLIT_SEED = 0
TEST_FRACTION = 0.2


def split_indices(labels: np.ndarray) -> dict[str, np.ndarray]:
    """The deterministic stratified train/test indices (sorted) for ``labels``."""
    rng = np.random.default_rng(SPLIT_SEED)
    test: list[np.ndarray] = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        test.append(rng.permutation(idx)[: round(TEST_FRACTION * len(idx))])
    test_idx = np.sort(np.concatenate(test))
    train_idx = np.setdiff1d(np.arange(len(labels)), test_idx)
    return {"train": train_idx, "test": test_idx}


def load_digits_dataset(split: str) -> ImageDataset:
    from sklearn.datasets import load_digits  # imported lazily: scikit-learn takes ~1 s to import

    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)[..., None]
    labels = bunch.target.astype(np.int64)
    idx = split_indices(labels)[split]
    classes = [str(i) for i in range(10)]
    return ImageDataset(images[idx], labels[idx], classes, "digits", split, "digits")
