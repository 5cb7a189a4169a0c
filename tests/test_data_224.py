"""Loading options (``PATH?size=..&resize=..&per_class=..``) and ImageNet-style transforms at any size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edgeprune.data import BatchLoader, batches, load_dataset
from edgeprune.data.options import DataOptions, split_data_spec
from edgeprune.errors import DataError

from .conftest import shared_file


def _tree(root: Path, sizes: dict[str, list[tuple[int, int]]]) -> Path:
    """``root/{train,test}/<class>/NNN.png``: one image per (width, height), filled with its index."""
    for split in ("train", "test"):
        for cls, whs in sizes.items():
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for i, (w, h) in enumerate(whs):
                value = 10 * i + (100 if cls == "b" else 0)
                Image.new("RGB", (w, h), (value, value, value)).save(root / split / cls / f"{i:03d}.png")
    return root


def test_options_parse_and_refuse_in_words() -> None:
    assert split_data_spec("x/y.tar.gz") == ("x/y.tar.gz", DataOptions())
    path, opts = split_data_spec("d?size=224&per_class=100")
    assert (path, opts.size, opts.per_class, opts.stored_side) == ("d", 224, 100, 256)  # ImageNet's 256 for 224
    assert split_data_spec("d?size=224&resize=224")[1].stored_side == 224
    with pytest.raises(DataError, match="'sise'.*Did you mean 'size'"):
        split_data_spec("d?sise=224")
    with pytest.raises(DataError, match="per_class='ten'.*positive whole number"):
        split_data_spec("d?per_class=ten")
    with pytest.raises(DataError, match="resize=200 is smaller than size=224"):
        split_data_spec("d?size=224&resize=200")


def test_mixed_sizes_load_resized_with_the_centre_square(tmp_path: Path) -> None:
    root = _tree(tmp_path / "imgs", {"a": [(40, 20), (20, 60)], "b": [(32, 32)]})
    with pytest.raises(DataError, match=r"same size.*\n.*\?resize=SIDE"):
        load_dataset(root, "train")
    ds = load_dataset(f"{root}?size=14", "train")
    assert ds.images.shape == (3, 16, 16, 3) and ds.input_shape == (3, 14, 14)  # stored at round(14 / 0.875)
    assert ds.crop == 14 and [int(v) for v in ds.images[:, 8, 8, 0]] == [0, 10, 100]  # solid images stay solid
    gradient = Image.fromarray(np.tile(np.arange(0, 200, 5, dtype=np.uint8), (20, 1)))  # 40x20, value = 5 * x
    (root / "train" / "a" / "000.png").unlink()
    gradient.convert("RGB").save(root / "train" / "a" / "000.png")
    row = load_dataset(f"{root}?resize=10", "train").images[0, 5, :, 0].astype(int)
    # 40x20 -> 20x10, centre 10 columns: original columns 10..29, i.e. values 5 * (10.5 + 2k) ± rounding
    assert np.allclose(row, 5 * (10.5 + 2 * np.arange(10)), atol=3)


def test_per_class_keeps_the_first_n_of_each_class_before_decoding(tmp_path: Path) -> None:
    root = _tree(tmp_path / "imgs", {"a": [(8, 8)] * 4, "b": [(8, 8)] * 3})
    (root / "train" / "b" / "002.png").write_bytes(b"not a png")  # never decoded: not among the first 2
    ds = load_dataset(f"{root}?per_class=2", "train")
    assert ds.labels.tolist() == [0, 0, 1, 1]
    assert [int(v) for v in ds.images[:, 0, 0, 0]] == [0, 10, 100, 110]
    digits = load_dataset("digits?per_class=3&size=8", "train")
    assert np.bincount(digits.labels).tolist() == [3] * 10 and digits.images.shape[1:] == (9, 9, 1)


def test_eval_is_the_centre_crop_and_train_a_seeded_random_resized_crop(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    root = _tree(tmp_path / "imgs", {"a": [(8, 8)] * 3, "b": [(8, 8)] * 3})
    ds = load_dataset(f"{root}?size=12&resize=16", "train")
    rng = np.random.default_rng(0)
    ds.images[:] = rng.integers(0, 256, ds.images.shape, dtype=np.uint8)
    norm = {"mean": [0.0], "std": [1 / 255]}  # x * 255 / 255: pixel values unchanged
    x, _ = next(iter(BatchLoader(ds, 6, shuffle=False, augment=False, **norm)))
    assert torch.equal(x, torch.from_numpy(ds.images[:, 2:14, 2:14]).permute(0, 3, 1, 2).float())

    train = BatchLoader(ds, 6, shuffle=True, augment=True, seed=3, **norm)
    first, again = next(iter(train)), next(iter(train))
    assert first[0].shape == (6, 3, 12, 12) and torch.equal(first[0], again[0])  # deterministic per epoch
    assert first[0].min() >= 0 and first[0].max() <= 255

    # With the whole image as the only box, the crop is the image itself, mirrored or not (exact resampling).
    monkeypatch.setattr(batches, "RRC_SCALE", (1.0, 1.0))
    monkeypatch.setattr(batches, "RRC_RATIO", (1.0, 1.0))
    same = load_dataset(f"{root}?size=12&resize=12", "train")
    same.images[:] = rng.integers(0, 256, same.images.shape, dtype=np.uint8)
    x, _ = next(iter(BatchLoader(same, 6, shuffle=False, augment=True, **norm)))
    src = torch.from_numpy(same.images).permute(0, 3, 1, 2).float()
    flipped = [torch.allclose(a, s.flip(-1), atol=1e-3) for a, s in zip(x, src, strict=True)]
    kept = [torch.allclose(a, s, atol=1e-3) for a, s in zip(x, src, strict=True)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True)) and any(flipped) and any(kept)


def test_options_are_part_of_the_cache_key(tmp_path: Path) -> None:
    root = _tree(tmp_path / "imgs", {"a": [(8, 8)] * 2, "b": [(8, 8)] * 2})
    cache = tmp_path / "cache"
    plain = load_dataset(root, "train", cache_dir=cache)
    sized = load_dataset(f"{root}?size=8", "train", cache_dir=cache)
    again = load_dataset(f"{root}?size=8", "train", cache_dir=cache)
    assert plain.images.shape == (4, 8, 8, 3) and plain.crop is None
    assert sized.images.shape == (4, 9, 9, 3) and again.crop == 8 and np.array_equal(again.images, sized.images)
    assert len(list(cache.glob("*.npz"))) == 2


@pytest.mark.slow
def test_cifar10_archive_resized_to_224_class_balanced() -> None:
    """The real CIFAR-10 JPEG archive, 20 images per class, at ImageNet's sizes: stored 256, model input 224."""
    archive = shared_file("data/cifar10-jpeg.tar.gz")
    ds = load_dataset(f"{archive}?size=224&per_class=20", "test")
    assert ds.images.shape == (200, 256, 256, 3) and ds.input_shape == (3, 224, 224)
    assert np.bincount(ds.labels).tolist() == [20] * 10
    x, _ = next(iter(BatchLoader(ds, 8, shuffle=True, augment=True, mean=[0.5] * 3, std=[0.25] * 3)))
    assert x.shape == (8, 3, 224, 224)


def test_export_parity_on_sized_data_uses_the_centre_crop(tmp_path: Path) -> None:
    """Parity inputs are the images as the model is evaluated on them: 32x32 centre squares of 36x36 ones."""
    from edgeprune.jobs.export import export_model

    root = _tree(tmp_path / "imgs", {"a": [(48, 40)] * 2, "b": [(40, 48)] * 2})
    data = f"{root}?size=32&resize=36"
    ds = load_dataset(data, "test")
    assert ds.model_images.shape == (4, 32, 32, 3) and np.shares_memory(ds.model_images, ds.images)
    result = export_model("resnet20_cifar", tmp_path / "r20.onnx", data=data, exporter="torchscript", samples=4)
    assert "4 test images" in result.parity[0].inputs and result.parity[0].ok
