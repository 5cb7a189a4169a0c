"""edgeprune.data: every format from tiny self-made fixtures, the cache, BatchLoader, and bad input."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edgeprune.data import BatchLoader, ImageDataset, channel_stats, imagefolder, load_dataset, loading
from edgeprune.errors import DataError

REPO = Path(__file__).resolve().parents[1]
REAL_ARCHIVE = REPO.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


# ----------------------------------------------------------------------------------------- fixtures
def _tar(src: Path, out: Path, arcname: str | None = None, fmt: int = tarfile.PAX_FORMAT) -> Path:
    with tarfile.open(out, "w:gz" if out.name.endswith("gz") else "w", format=fmt) as tf:
        tf.add(src, arcname=arcname if arcname is not None else src.name)
    return out


def _pickle(path: Path, obj: object) -> None:
    path.write_bytes(pickle.dumps(obj, protocol=2))  # what Python 3 writes at the official batches' protocol


class _Py2Pickler(pickle._Pickler):  # type: ignore[name-defined]
    """Writes pickles like the official CIFAR batches (Python 2, protocol 2): every str and bytes as a
    Python-2 ``str`` (BINSTRING), numpy globals under their numpy 1.x module name."""

    dispatch = pickle._Pickler.dispatch.copy()  # type: ignore[attr-defined]

    def save_py2_str(self, obj: str | bytes) -> None:
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        head = pickle.SHORT_BINSTRING + bytes([len(data)]) if len(data) < 256 else pickle.BINSTRING
        self.write(head + (b"" if len(data) < 256 else struct.pack("<i", len(data))) + data)

    dispatch[str] = save_py2_str
    dispatch[bytes] = save_py2_str


def _py2_pickle(path: Path, obj: object) -> None:
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    path.write_bytes(buf.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n"))


def _cifar_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)


@pytest.fixture
def cifar10_dir(tmp_path: Path) -> Path:
    """A CIFAR-10 python layout one level down (like cifar-10-batches-py/): 5 x 4 train, 6 test."""
    rng = np.random.default_rng(0)
    root = tmp_path / "cifar" / "cifar-10-batches-py"
    root.mkdir(parents=True)
    for b in range(1, 6):
        labels = [(b + i) % 10 for i in range(4)]
        _py2_pickle(
            root / f"data_batch_{b}",
            {
                b"batch_label": b"x",
                b"labels": labels,
                b"data": _cifar_rows(rng, 4),
                b"filenames": [b"f.png"] * 4,
            },
        )
    _py2_pickle(root / "test_batch", {b"labels": [0, 1, 2, 3, 4, 9], b"data": _cifar_rows(rng, 6)})
    _py2_pickle(
        root / "batches.meta", {b"label_names": [n.encode() for n in CIFAR10_NAMES], b"num_vis": 3072}
    )
    (root / "readme.html").write_text("not data")
    return tmp_path / "cifar"


@pytest.fixture
def cifar100_dir(tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    root = tmp_path / "cifar-100-python"
    root.mkdir()
    _pickle(
        root / "train",
        {b"fine_labels": [5, 99, 0], b"coarse_labels": [1, 2, 3], b"data": _cifar_rows(rng, 3)},
    )
    _pickle(root / "test", {b"fine_labels": [42, 7], b"coarse_labels": [0, 0], b"data": _cifar_rows(rng, 2)})
    _pickle(
        root / "meta",
        {
            b"fine_label_names": [f"c{i}".encode() for i in range(100)],
            b"coarse_label_names": [f"s{i}".encode() for i in range(20)],
        },
    )
    return root


def _png(path: Path, array: np.ndarray, fmt: str = "PNG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format=fmt)


@pytest.fixture
def folder_dir(tmp_path: Path) -> Path:
    """root/{train,test}/{cat,dog,emu}/*.png, 6x5 RGB; test has no 'emu' (labels must stay aligned)."""
    rng = np.random.default_rng(2)
    root = tmp_path / "pets"
    counts = {"train": {"cat": 3, "dog": 2, "emu": 1}, "test": {"cat": 1, "dog": 2}}
    for split, per_class in counts.items():
        for cls, k in per_class.items():
            for i in range(k):
                _png(root / split / cls / f"{i:03d}.png", rng.integers(0, 256, (5, 6, 3), dtype=np.uint8))
    (root / "train" / "cat" / "notes.txt").write_text("ignored")
    (root / "train" / ".hidden").mkdir()
    return root


def _write_idx(root: Path, prefix: str, images: np.ndarray, labels: np.ndarray, gz: bool) -> None:
    root.mkdir(parents=True, exist_ok=True)
    n, h, w = images.shape
    img = (0x803).to_bytes(4, "big") + b"".join(v.to_bytes(4, "big") for v in (n, h, w)) + images.tobytes()
    lab = (0x801).to_bytes(4, "big") + n.to_bytes(4, "big") + labels.astype(np.uint8).tobytes()
    for name, data in ((f"{prefix}-images-idx3-ubyte", img), (f"{prefix}-labels-idx1-ubyte", lab)):
        if gz:
            (root / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (root / name).write_bytes(data)


@pytest.fixture
def idx_arrays() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(3)
    return {
        "train": (rng.integers(0, 256, (7, 4, 3), dtype=np.uint8), rng.integers(0, 10, 7)),
        "t10k": (rng.integers(0, 256, (5, 4, 3), dtype=np.uint8), rng.integers(0, 10, 5)),
    }


def _idx_dir(root: Path, arrays: dict[str, tuple[np.ndarray, np.ndarray]], gz: bool) -> Path:
    for prefix, (x, y) in arrays.items():
        _write_idx(root, prefix, x, y, gz)
    return root


# ------------------------------------------------------------------------------------------ formats
def test_cifar10_directory_and_tar_gz(cifar10_dir: Path, tmp_path: Path) -> None:
    ds = load_dataset(cifar10_dir, "train", cache_dir=tmp_path / "c")
    assert (ds.name, ds.split, len(ds), ds.input_shape) == ("cifar10", "train", 20, (3, 32, 32))
    assert ds.images.dtype == np.uint8 and ds.images.shape == (20, 32, 32, 3)
    assert ds.labels.dtype == np.int64 and ds.labels[:4].tolist() == [1, 2, 3, 4]
    assert ds.classes == CIFAR10_NAMES and ds.num_classes == 10
    # rows are 1024 R, then G, then B values in row-major order
    batch = pickle.loads(
        (cifar10_dir / "cifar-10-batches-py" / "data_batch_1").read_bytes(), encoding="bytes"
    )
    row = batch[b"data"][2]
    assert ds.images[2, 0, 1, 0] == row[1] and ds.images[2, 0, 1, 1] == row[1025]
    assert ds.images[2, 31, 30, 2] == row[2048 + 31 * 32 + 30]

    test = load_dataset(cifar10_dir, "test", cache_dir=tmp_path / "c")
    assert len(test) == 6 and test.labels.tolist() == [0, 1, 2, 3, 4, 9]

    archive = _tar(cifar10_dir / "cifar-10-batches-py", tmp_path / "cifar-10-python.tar.gz")
    from_tar = load_dataset(archive, "train", cache_dir=tmp_path / "c2")
    np.testing.assert_array_equal(from_tar.images, ds.images)
    np.testing.assert_array_equal(from_tar.labels, ds.labels)
    assert from_tar.source == str(archive) and from_tar.name == "cifar10"


def test_cifar100_fine_labels(cifar100_dir: Path, tmp_path: Path) -> None:
    ds = load_dataset(str(cifar100_dir), "train", cache_dir=tmp_path / "c")
    assert (ds.name, len(ds), ds.num_classes) == ("cifar100", 3, 100)
    assert ds.labels.tolist() == [5, 99, 0] and ds.classes[99] == "c99"
    test = load_dataset(cifar100_dir, "test", cache_dir=tmp_path / "c")
    assert test.labels.tolist() == [42, 7] and test.images.shape == (2, 32, 32, 3)


def test_image_folder_directory_and_archive(folder_dir: Path, tmp_path: Path) -> None:
    ds = load_dataset(folder_dir, "train", cache_dir=tmp_path / "c")
    assert (ds.name, len(ds), ds.input_shape) == ("imagefolder", 6, (3, 5, 6))
    assert ds.classes == ["cat", "dog", "emu"]
    assert ds.labels.tolist() == [0, 0, 0, 1, 1, 2]
    expected = np.asarray(Image.open(folder_dir / "train" / "dog" / "001.png"))
    np.testing.assert_array_equal(ds.images[4], expected)
    test = load_dataset(folder_dir, "test", cache_dir=tmp_path / "c")
    assert test.classes == ["cat", "dog", "emu"] and test.labels.tolist() == [0, 1, 1]

    # a .tar.gz with one top-level directory, and a plain .tar without one, read without extracting
    for archive in (_tar(folder_dir, tmp_path / "pets.tar.gz"), _tar(folder_dir, tmp_path / "pets.tar", ".")):
        for split, ref in (("train", ds), ("test", test)):
            got = load_dataset(archive, split, cache_dir=tmp_path / archive.name)
            np.testing.assert_array_equal(got.images, ref.images)
            np.testing.assert_array_equal(got.labels, ref.labels)
            assert got.classes == ref.classes


def test_image_folder_gray_jpeg_and_rgba_palette(tmp_path: Path) -> None:
    gray = tmp_path / "gray"
    _png(gray / "train" / "a" / "0.jpg", np.full((4, 4), 200, np.uint8), fmt="JPEG")
    _png(gray / "train" / "b" / "0.png", np.full((4, 4), 10, np.uint8))
    ds = load_dataset(gray, cache_dir=tmp_path / "c")
    assert ds.images.shape == (2, 4, 4, 1) and ds.input_shape == (1, 4, 4)
    assert abs(int(ds.images[0, 0, 0, 0]) - 200) <= 2 and ds.images[1].max() == 10

    mixed = tmp_path / "mixed"
    rgba = np.zeros((3, 3, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 128
    _png(mixed / "train" / "red" / "0.png", rgba)
    Image.fromarray(np.full((3, 3), 7, np.uint8)).convert("P").save(mixed / "train" / "red" / "1.png")
    _png(mixed / "train" / "gray" / "0.png", np.full((3, 3), 50, np.uint8))
    ds = load_dataset(mixed, cache_dir=tmp_path / "c")
    assert ds.images.shape == (3, 3, 3, 3)  # any colour image makes the split RGB
    assert ds.images[0].tolist() == [[[50, 50, 50]] * 3] * 3  # gray replicated
    assert ds.images[1, 0, 0].tolist() == [255, 0, 0]  # alpha dropped


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx(tmp_path: Path, idx_arrays: dict, gz: bool) -> None:
    root = _idx_dir(tmp_path / "mnist", idx_arrays, gz)
    ds = load_dataset(root, "train", cache_dir=tmp_path / "c")
    assert (ds.name, ds.images.shape, ds.input_shape) == ("mnist", (7, 4, 3, 1), (1, 4, 3))
    np.testing.assert_array_equal(ds.images[..., 0], idx_arrays["train"][0])
    np.testing.assert_array_equal(ds.labels, idx_arrays["train"][1])
    assert ds.classes == [str(i) for i in range(10)]
    test = load_dataset(root, "test", cache_dir=tmp_path / "c")
    np.testing.assert_array_equal(test.images[..., 0], idx_arrays["t10k"][0])
    archive = _tar(root, tmp_path / "mnist.tgz")
    np.testing.assert_array_equal(load_dataset(archive, "test", cache_dir=tmp_path / "c").labels, test.labels)


@pytest.mark.skipif(
    not DEBIAN_FASHION_MNIST.is_dir(), reason="Debian package dataset-fashion-mnist not installed"
)
def test_debian_fashion_mnist(tmp_path: Path) -> None:
    ds = load_dataset(DEBIAN_FASHION_MNIST, "test", cache_dir=tmp_path)
    assert ds.images.shape == (10000, 28, 28, 1) and ds.name == "mnist"
    assert np.bincount(ds.labels).tolist() == [1000] * 10


def test_digits_split_is_disjoint_stratified_and_deterministic() -> None:
    train, test = load_dataset("digits"), load_dataset("digits", "test")
    assert train.split == "train" and test.split == "test" and train.name == "digits"
    assert len(train) + len(test) == 1797 and (len(train), len(test)) == (1438, 359)
    assert train.images.shape[1:] == (8, 8, 1) and train.images.max() == 255 and train.source == "digits"
    from sklearn.datasets import load_digits

    raw = load_digits()
    full = np.rint(raw.images * 255 / 16).astype(np.uint8)
    # every sample is in exactly one split: match rows back to the original
    keys = {full[i].tobytes() + bytes([raw.target[i]]) for i in range(1797)}
    got = [
        x[..., 0].tobytes() + bytes([y])
        for ds in (train, test)
        for x, y in zip(ds.images, ds.labels, strict=True)
    ]
    assert len(got) == 1797 and set(got) <= keys
    per_class_total = np.bincount(raw.target)
    np.testing.assert_array_equal(np.bincount(test.labels), np.rint(0.2 * per_class_total).astype(int))
    again = load_dataset("digits", "test")
    np.testing.assert_array_equal(again.images, test.images)


# -------------------------------------------------------------------------------------------- cache
def test_cache_hit_skips_decoding_and_returns_identical_arrays(
    folder_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache_dir = tmp_path / "cache"
    first = load_dataset(folder_dir, "train", cache_dir=cache_dir)
    assert len(list(cache_dir.glob("*.npz"))) == 1 and not list(cache_dir.glob("*.tmp"))

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("decoded again although the cache should have been used")

    monkeypatch.setattr(loading, "_decode", boom)
    second = load_dataset(folder_dir, "train", cache_dir=cache_dir)
    np.testing.assert_array_equal(second.images, first.images)
    np.testing.assert_array_equal(second.labels, first.labels)
    assert (second.classes, second.name, second.split) == (first.classes, first.name, first.split)
    monkeypatch.undo()

    # changing a file invalidates the entry (size/mtime are part of the key)
    target = folder_dir / "train" / "cat" / "000.png"
    _png(target, np.zeros((5, 6, 3), np.uint8))
    os.utime(target, ns=(1, 1))
    third = load_dataset(folder_dir, "train", cache_dir=cache_dir)
    assert third.images[0].max() == 0


def test_cache_env_default(folder_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEPRUNE_CACHE", str(tmp_path / "envcache"))
    load_dataset(folder_dir, "test")
    assert len(list((tmp_path / "envcache").glob("pets-test-*.npz"))) == 1


def test_corrupt_cache_is_ignored_and_rebuilt(cifar10_dir: Path, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    good = load_dataset(cifar10_dir, "test", cache_dir=cache_dir)
    (entry,) = cache_dir.glob("*.npz")
    entry.write_bytes(b"PK\x03\x04 definitely not a zip")
    again = load_dataset(cifar10_dir, "test", cache_dir=cache_dir)
    np.testing.assert_array_equal(again.images, good.images)
    with np.load(entry) as npz:  # rewritten as a valid file
        np.testing.assert_array_equal(npz["images"], good.images)


def test_unwritable_cache_dir_is_not_fatal(folder_dir: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    ds = load_dataset(folder_dir, "test", cache_dir=blocker / "sub")  # cannot mkdir below a file
    assert len(ds) == 3


# -------------------------------------------------------------------------------- archive internals
def test_gnu_and_pax_long_names(folder_dir: Path, tmp_path: Path) -> None:
    deep = folder_dir / "train" / "cat" / ("d" * 120)
    _png(deep / "long.png", np.ones((5, 6, 3), np.uint8))
    ref = load_dataset(folder_dir, "train", cache_dir=tmp_path / "ref")
    assert len(ref) == 7
    for fmt in (tarfile.GNU_FORMAT, tarfile.PAX_FORMAT):  # long names: ././@LongLink / pax "path"
        archive = _tar(folder_dir, tmp_path / f"f{fmt}.tar", fmt=fmt)
        got = load_dataset(archive, "train", cache_dir=tmp_path / f"c{fmt}")
        np.testing.assert_array_equal(got.images, ref.images)


def test_process_pool_decoding_matches_sequential(
    folder_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = load_dataset(folder_dir, "train", cache_dir=tmp_path / "a")
    monkeypatch.setattr(imagefolder, "PARALLEL_MIN", 0)
    monkeypatch.setenv("EDGEPRUNE_DECODE_WORKERS", "2")
    got = load_dataset(_tar(folder_dir, tmp_path / "p.tar.gz"), "train", cache_dir=tmp_path / "b")
    np.testing.assert_array_equal(got.images, ref.images)


# ---------------------------------------------------------------------------------- dataset helpers
def _toy(n: int = 10, h: int = 8, w: int = 8, c: int = 3, seed: int = 0) -> ImageDataset:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, h, w, c), dtype=np.uint8)
    return ImageDataset(images, np.arange(n) % 4, ["a", "b", "c", "d"], "toy", "train", "toy")


def test_subset_and_channel_stats() -> None:
    ds = _toy(10)
    first = ds.subset(4)
    assert len(first) == 4 and np.array_equal(first.images, ds.images[:4]) and first.classes == ds.classes
    assert len(ds.subset(100)) == 10 and len(ds.subset()) == 10
    picked = ds.subset(indices=[7, 2])
    assert picked.labels.tolist() == [3, 2] and np.array_equal(picked.images[0], ds.images[7])
    with pytest.raises(ValueError):
        ds.subset(2, indices=[1])
    mean, std = channel_stats(ds)
    scaled = ds.images.astype(np.float64) / 255
    np.testing.assert_allclose(mean, scaled.mean(axis=(0, 1, 2)), atol=1e-12)
    np.testing.assert_allclose(std, scaled.std(axis=(0, 1, 2)), atol=1e-12)
    assert "n=10" in repr(ds) and ds.input_shape == (3, 8, 8)


# ------------------------------------------------------------------------------------- BatchLoader
MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


def _batches(loader: BatchLoader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x.clone(), y.clone()) for x, y in loader]


def test_eval_loader_is_exact_normalisation_in_order() -> None:
    ds = _toy(10)
    for channels_last in (False, True):
        loader = BatchLoader(
            ds, 4, shuffle=False, augment=False, mean=MEAN, std=STD, channels_last=channels_last
        )
        got = _batches(loader)
        assert len(loader) == 3 and [len(y) for _, y in got] == [4, 4, 2]
        x = torch.cat([b[0] for b in got])
        assert x.dtype == torch.float32 and x.shape == (10, 3, 8, 8)
        assert x.is_contiguous(
            memory_format=torch.channels_last if channels_last else torch.contiguous_format
        )
        mean, std = np.array(MEAN)[:, None, None], np.array(STD)[:, None, None]
        expected = (ds.images.transpose(0, 3, 1, 2) / 255 - mean) / std
        np.testing.assert_allclose(x.numpy(), expected, atol=1e-5)
        assert torch.cat([b[1] for b in got]).tolist() == ds.labels.tolist()
        assert got[0][1].dtype == torch.int64
    assert len(BatchLoader(ds, 4, shuffle=True, augment=False, mean=MEAN, std=STD, drop_last=True)) == 2


def test_shuffle_and_augmentation_are_a_function_of_seed_and_epoch() -> None:
    ds = _toy(50)
    loader = BatchLoader(ds, 16, shuffle=True, augment=True, mean=MEAN, std=STD, seed=3)
    loader.set_epoch(2)
    a, b = _batches(loader), _batches(loader)
    fresh = BatchLoader(ds, 16, shuffle=True, augment=True, mean=MEAN, std=STD, seed=3)
    fresh.set_epoch(2)  # a resumed run
    c = _batches(fresh)
    for (xa, ya), (xb, yb), (xc, yc) in zip(a, b, c, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb) and torch.equal(xa, xc) and torch.equal(ya, yc)
    assert sorted(torch.cat([y for _, y in a]).tolist()) == sorted(ds.labels.tolist())  # a permutation
    loader.set_epoch(3)
    d = _batches(loader)
    assert not torch.equal(torch.cat([y for _, y in a]), torch.cat([y for _, y in d]))
    assert not torch.equal(a[0][0], d[0][0])
    other_seed = BatchLoader(ds, 16, shuffle=True, augment=True, mean=MEAN, std=STD, seed=4)
    other_seed.set_epoch(2)
    assert not torch.equal(_batches(other_seed)[0][1], a[0][1])


def _window(padded: torch.Tensor, dy: int, dx: int, flip: bool) -> torch.Tensor:
    crop = padded[:, dy : dy + 8, dx : dx + 8]
    return crop.flip(2) if flip else crop


def test_augmentation_is_pad4_crop_plus_flip() -> None:
    ds = _toy(64, h=8, w=8, seed=5)
    plain = torch.cat([x for x, _ in BatchLoader(ds, 64, shuffle=False, augment=False, mean=MEAN, std=STD)])
    aug_loader = BatchLoader(ds, 64, shuffle=False, augment=True, mean=MEAN, std=STD)
    aug = torch.cat([x for x, _ in aug_loader])
    assert aug.shape == plain.shape == (64, 3, 8, 8)
    # every augmented sample is exactly one of the 81 crops of the zero-padded image, maybe flipped
    mean, std = torch.tensor(MEAN)[:, None, None], torch.tensor(STD)[:, None, None]

    def norm(u8: torch.Tensor) -> torch.Tensor:
        return (u8.float() / 255 - mean) / std

    flips = shifts = 0
    for i in range(64):
        padded = torch.zeros(3, 16, 16, dtype=torch.uint8)
        padded[:, 4:12, 4:12] = torch.from_numpy(ds.images[i]).permute(2, 0, 1)
        matches = [
            (dy, dx, f)
            for dy in range(9)
            for dx in range(9)
            for f in (False, True)
            if torch.allclose(norm(_window(padded, dy, dx, f)), aug[i], atol=1e-5)
        ]
        assert matches, f"sample {i} is not a pad-4 crop/flip of the original"
        dy, dx, f = matches[0]
        flips += f
        shifts += (dy, dx) != (4, 4)
    assert 10 < flips < 54 and shifts > 50  # the augmentation really changes pixels
    assert not torch.allclose(aug, plain)


def test_loader_gray_and_bad_arguments() -> None:
    ds = _toy(5, c=1)
    ((x, y),) = list(BatchLoader(ds, 8, shuffle=True, augment=True, mean=[0.5], std=[0.5]))
    assert x.shape == (5, 1, 8, 8) and y.shape == (5,)
    from edgeprune.errors import ConfigError

    with pytest.raises(ConfigError, match="3 values but the images have 1"):
        BatchLoader(ds, 8, shuffle=False, augment=False, mean=MEAN, std=STD)
    with pytest.raises(ConfigError, match="batch_size"):
        BatchLoader(ds, 0, shuffle=False, augment=False, mean=[0.5], std=[0.5])
    with pytest.raises(ConfigError, match="positive"):
        BatchLoader(ds, 1, shuffle=False, augment=False, mean=[0.5], std=[0.0])


# ---------------------------------------------------------------------------------------- bad input
def _error(source: object, split: str = "train", **kwargs: object) -> str:
    with pytest.raises(DataError) as info:
        load_dataset(source, split, **kwargs)  # type: ignore[arg-type]
    return str(info.value)


def test_missing_path_and_unknown_name(tmp_path: Path) -> None:
    msg = _error(tmp_path / "nope" / "data.tar.gz")
    assert "does not exist" in msg and "nope/data.tar.gz" in msg and "digits" in msg
    msg = _error("digts")
    assert "Unknown data set 'digts'" in msg and "Did you mean 'digits'?" in msg
    msg = _error("cifar10")
    assert "never downloads" in msg and "cifar-10-python.tar.gz" in msg
    msg = _error("digits", "validation")
    assert "Unknown split 'validation'" in msg


def test_wrong_layout_lists_what_was_found_and_expected(tmp_path: Path) -> None:
    root = tmp_path / "junk"
    (root / "stuff").mkdir(parents=True)
    (root / "notes.txt").write_text("x")
    msg = _error(root, cache_dir=tmp_path / "c")
    assert str(root) in msg and "directories stuff/" in msg and "files notes.txt" in msg
    assert "data_batch_1..5 + test_batch" in msg and "train-images-idx3-ubyte[.gz]" in msg
    assert "<root>/train|test/<class>/*.png|jpg|jpeg" in msg
    (tmp_path / "empty").mkdir()
    assert "it is empty" in _error(tmp_path / "empty")
    not_archive = tmp_path / "x.npz"
    not_archive.write_bytes(b"abc")
    assert "not a tar archive" in _error(not_archive)


def test_truncated_gz_inputs(tmp_path: Path, folder_dir: Path, idx_arrays: dict) -> None:
    archive = _tar(folder_dir, tmp_path / "pets.tar.gz")
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    msg = _error(cut, cache_dir=tmp_path / "c")
    assert "cut.tar.gz" in msg and "truncated or corrupt" in msg
    garbage = tmp_path / "garbage.tgz"
    garbage.write_bytes(b"\x1f\x8b" + os.urandom(300))
    assert "truncated or corrupt" in _error(garbage, cache_dir=tmp_path / "c")

    root = _idx_dir(tmp_path / "mnist", idx_arrays, gz=True)
    gz = root / "train-images-idx3-ubyte.gz"
    gz.write_bytes(gz.read_bytes()[:-12])
    msg = _error(root, cache_dir=tmp_path / "c")
    assert "train-images-idx3-ubyte.gz is a truncated or corrupt gzip file" in msg


def test_damaged_plain_tar_is_an_error_not_a_silently_shorter_data_set(
    tmp_path: Path, folder_dir: Path
) -> None:
    archive = _tar(folder_dir, tmp_path / "pets.tar")
    with tarfile.open(archive) as tf:
        offset = tf.getmembers()[5].offset  # a header in the middle
    data = bytearray(archive.read_bytes())
    data[offset + 3] ^= 0x55  # damage the member name: checksum no longer matches
    archive.write_bytes(bytes(data))
    msg = _error(archive, cache_dir=tmp_path / "c")
    assert f"damaged member header at byte {offset}" in msg
    data[offset + 257 : offset + 262] = b"xxxxx"  # not even a ustar header any more
    archive.write_bytes(bytes(data))
    assert f"damaged member header at byte {offset}" in _error(archive, cache_dir=tmp_path / "c")


def test_bad_idx_files(tmp_path: Path, idx_arrays: dict) -> None:
    root = _idx_dir(tmp_path / "m", idx_arrays, gz=False)
    images = root / "t10k-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-1])
    msg = _error(root, "test", cache_dir=tmp_path / "c")
    assert "wrong size" in msg and "5 x 4 x 3 images" in msg
    images.write_bytes(b"\x00\x00\x08\x01" + bytes(20))
    assert "expected magic number 0x00000803" in _error(root, "test", cache_dir=tmp_path / "c")
    (root / "train-labels-idx1-ubyte").unlink()
    assert "no train-labels-idx1-ubyte[.gz]" in _error(root, cache_dir=tmp_path / "c")


def test_image_folder_problems(tmp_path: Path, folder_dir: Path) -> None:
    _png(folder_dir / "train" / "dog" / "big.png", np.zeros((9, 7, 3), np.uint8))
    msg = _error(folder_dir, cache_dir=tmp_path / "c")
    assert "same size" in msg and "6x5" in msg and "7x9" in msg and "train/dog/big.png" in msg

    only_train = tmp_path / "only"
    _png(only_train / "train" / "a" / "0.png", np.zeros((2, 2), np.uint8))
    msg = _error(only_train, "test", cache_dir=tmp_path / "c")
    assert "without a 'test' split" in msg and "found directories train/" in msg

    (only_train / "train" / "empty").mkdir()
    (only_train / "train" / "empty" / "x.txt").write_text("no image")
    msg = _error(only_train, cache_dir=tmp_path / "c")
    assert "class directories without any .png/.jpg/.jpeg image: train/empty/ (has x.txt)" in msg

    flat = tmp_path / "flat"
    _png(flat / "train" / "0.png", np.zeros((2, 2), np.uint8))
    assert "1 images directly in train/ and no class directories" in _error(flat, cache_dir=tmp_path / "c")

    broken = tmp_path / "broken"
    _png(broken / "train" / "a" / "0.png", np.zeros((2, 2), np.uint8))
    (broken / "train" / "a" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    msg = _error(broken, cache_dir=tmp_path / "c")
    assert "cannot decode train/a/1.png" in msg


def test_cifar_problems(tmp_path: Path, cifar10_dir: Path) -> None:
    root = cifar10_dir / "cifar-10-batches-py"
    (root / "test_batch").unlink()
    assert "no test_batch for split 'test'" in _error(cifar10_dir, "test", cache_dir=tmp_path / "c")
    (root / "data_batch_2").write_bytes((root / "data_batch_2").read_bytes()[:100])
    assert "data_batch_2 is truncated or corrupt" in _error(cifar10_dir, cache_dir=tmp_path / "c")

    class Evil:
        def __reduce__(self) -> tuple:
            return (os.system, ("echo pwned",))

    (root / "data_batch_2").write_bytes(pickle.dumps({b"data": Evil()}, protocol=2))
    msg = _error(cifar10_dir, cache_dir=tmp_path / "c")
    assert f"contains code edgeprune will not run: its pickle calls {os.system.__module__}.system" in msg
    _pickle(root / "data_batch_2", {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]})
    assert "expected a dict with b'data' a uint8 array of shape (n, 3072)" in _error(
        cifar10_dir, cache_dir=tmp_path / "c"
    )


def test_ambiguous_archive(tmp_path: Path, cifar100_dir: Path, idx_arrays: dict) -> None:
    both = tmp_path / "both"
    both.mkdir()
    cifar100_dir.rename(both / "cifar-100-python")
    _idx_dir(both / "mnist", idx_arrays, gz=True)
    msg = _error(_tar(both, tmp_path / "both.tar", "."), cache_dir=tmp_path / "c")
    assert "more than one data set" in msg and "cifar-100-python/ (cifar100)" in msg


# -------------------------------------------------------------------------------- the real archive
@pytest.mark.slow
def _must_not_be_called(*args: object, **kwargs: object) -> None:
    raise AssertionError("the archive was read again although its decoded split is cached")


def test_real_cifar10_jpeg_archive(tmp_path: Path) -> None:
    if not REAL_ARCHIVE.exists():
        pytest.skip(f"{REAL_ARCHIVE} is absent (../shared/data holds the real CIFAR-10 JPEG archive)")
    ds = load_dataset(REAL_ARCHIVE, "test", cache_dir=tmp_path)
    assert ds.images.shape == (10000, 32, 32, 3) and ds.images.dtype == np.uint8
    assert ds.classes == CIFAR10_NAMES and np.bincount(ds.labels).tolist() == [1000] * 10
    with pytest.MonkeyPatch.context() as patch:  # a cache hit never opens the archive (no timing involved)
        patch.setattr(loading, "read_archive", _must_not_be_called)
        again = load_dataset(REAL_ARCHIVE, "test", cache_dir=tmp_path)
    np.testing.assert_array_equal(again.images, ds.images)
    mean, _ = channel_stats(ds)
    assert all(0.4 < m < 0.5 for m in mean)


def test_evenly_spaced_samples_cover_a_class_sorted_split() -> None:
    """An image folder lists its images class by class: the first N are one class, N evenly spaced are all."""
    from edgeprune.data import ImageDataset, evenly_spaced

    labels = np.repeat(np.arange(10), 100)
    ds = ImageDataset(np.zeros((1000, 4, 4, 3), dtype=np.uint8), labels, [str(i) for i in range(10)], "sorted",
                      "test", "memory")
    assert set(ds.subset(50).labels.tolist()) == {0}
    picked = evenly_spaced(ds, 50)
    assert len(picked) == 50 and set(picked.labels.tolist()) == set(range(10))
    assert np.array_equal(evenly_spaced(ds, 50).labels, picked.labels)  # deterministic
    assert len(evenly_spaced(ds, 5000)) == 1000


def test_hold_out_splits_off_the_evenly_spaced_images_and_trains_on_none_of_them() -> None:
    from edgeprune.data import ImageDataset, evenly_spaced, hold_out
    from edgeprune.errors import DataError

    labels = np.repeat(np.arange(10), 100)
    images = np.zeros((1000, 4, 4, 3), dtype=np.uint8)
    images[:, 0, 0, 0] = np.arange(1000) % 256  # with the label, an id per image: (id, label) is unique
    ds = ImageDataset(images, labels, [str(i) for i in range(10)], "sorted", "train", "memory")
    rest, held = hold_out(ds, 100)
    assert (len(rest), len(held), held.split, rest.split) == (900, 100, "holdout", "train")
    assert set(held.labels.tolist()) == set(range(10))  # every class, although the split is sorted by class
    np.testing.assert_array_equal(held.labels, evenly_spaced(ds, 100).labels)
    seen = {(int(i), int(lab)) for i, lab in zip(rest.images[:, 0, 0, 0], rest.labels, strict=True)}
    kept = {(int(i), int(lab)) for i, lab in zip(held.images[:, 0, 0, 0], held.labels, strict=True)}
    assert not seen & kept and len(seen | kept) == 1000
    for n in (0, 1000):
        with pytest.raises(DataError, match=f"Cannot hold out {n} of the 1000 images of memory"):
            hold_out(ds, n)
