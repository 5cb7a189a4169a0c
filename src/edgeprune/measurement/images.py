"""The images a benchmark feeds: files from ``--images DIR``, the model's own data set, or generated.

The seed protocol passes the same 4 images for every iteration, so the numbers measure the model, not
a data pipeline; which source was used is recorded with the result, because JPEG decoding differences
do not matter to latency but a wrong size or channel count would.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeprune.data import load_dataset
from edgeprune.errors import DataError, EdgepruneError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm")
DEFAULT_IMAGES = 4


@dataclass(frozen=True)
class BenchImages:
    images: np.ndarray  # uint8 (N, H, W, C)
    source: str  # "images" | "dataset" | "generated"
    detail: str


def prepare(images: np.ndarray, normalize: dict[str, Any] | None) -> np.ndarray:
    """uint8 NHWC -> float32 NCHW ``(x/255 - mean)/std``, the model's input (identity scaling without stats)."""
    channels = images.shape[3]
    mean = np.resize(np.asarray((normalize or {}).get("mean", [0.0]), dtype=np.float32), channels)
    std = np.resize(np.asarray((normalize or {}).get("std", [1.0]), dtype=np.float32), channels)
    x = images.astype(np.float32) * np.float32(1.0 / 255.0)
    x -= mean
    x /= std
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def select(images: np.ndarray, start: int, batch: int) -> np.ndarray:
    """``batch`` images starting at ``start``, cycling through the set (iteration i uses i*batch ...)."""
    return images[[(start + k) % len(images) for k in range(batch)]]


def benchmark_images(images_dir: str | Path | None, metadata: dict[str, Any], shape: tuple[int, int, int],
                     n: int = DEFAULT_IMAGES) -> BenchImages:
    """``n`` uint8 images of ``shape`` (C, H, W): from ``images_dir``, else the model's data set, else generated."""
    if images_dir is not None:
        return _from_dir(Path(images_dir), shape, n)
    dataset = metadata.get("dataset") or {}
    source = dataset.get("source") or dataset.get("name")
    reason = "the model names no data set"
    if source:
        try:
            return _from_dataset(str(source), shape, n)
        except EdgepruneError as exc:
            reason = f"its data set {source!r} is not usable here ({exc.message})"
        except ImportError as exc:  # "digits" needs scikit-learn, which a measuring host may not have
            reason = f"its data set {source!r} needs a package this host lacks ({exc})"
    rng = np.random.default_rng(0)
    c, h, w = shape
    return BenchImages(rng.integers(0, 256, size=(n, h, w, c), dtype=np.uint8), "generated",
                       f"{n} generated images (seeded uniform noise): {reason}")


def _from_dir(directory: Path, shape: tuple[int, int, int], n: int) -> BenchImages:
    from PIL import Image

    if not directory.is_dir():
        raise DataError(f"--images {directory} is not a directory.", hint="Give a directory of PNG/JPEG files.")
    files = sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:n]
    if not files:
        raise DataError(f"--images {directory} holds no image files ({', '.join(IMAGE_SUFFIXES)}).")
    c, h, w = shape
    arrays = []
    for f in files:
        try:
            with Image.open(f) as img:
                picture = img.convert("RGB" if c == 3 else "L").resize((w, h), Image.Resampling.BILINEAR)
        except OSError as exc:
            raise DataError(f"Cannot read image {f}: {exc}.") from None
        arrays.append(np.asarray(picture, dtype=np.uint8).reshape(h, w, c))
    images = np.stack([arrays[i % len(arrays)] for i in range(n)])
    return BenchImages(images, "images", f"{len(files)} image files from {directory} resized to {w}x{h}")


def _from_dataset(source: str, shape: tuple[int, int, int], n: int) -> BenchImages:
    data = load_dataset(source, "test").subset(n)
    if data.input_shape != tuple(shape):
        raise DataError(f"its images are {data.input_shape}, the model takes {tuple(shape)}")
    return BenchImages(data.model_images, "dataset", f"first {n} test images of {source}")
