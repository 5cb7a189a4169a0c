"""``load_dataset``: one entry point that recognises the source, uses the cache, and decodes.

Why auto-detection instead of a ``--format`` flag: every supported layout is unambiguous from its file
names, and users pass whatever they downloaded (a directory, the official ``.tar.gz``, an extracted
sub-directory); detection plus a precise error when nothing matches is friendlier than making them
name the format.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np

from edgeprune.data import cache
from edgeprune.data.cifar import load_cifar
from edgeprune.data.dataset import SPLITS, ImageDataset
from edgeprune.data.digits import load_digits_dataset
from edgeprune.data.idx import load_idx
from edgeprune.data.imagefolder import decode_images, resize_array
from edgeprune.data.layouts import EXPECTED, Plan, archive_wanted, plan_split
from edgeprune.data.options import DataOptions, split_data_spec
from edgeprune.data.tree import DirTree, Tree, looks_like_archive, read_archive
from edgeprune.errors import DataError, closest

log = logging.getLogger(__name__)

BUILTIN = ("digits",)
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
#: Well-known data sets that are not bundled: what to tell someone who types their name.
_WHERE_TO_GET = {
    "cifar10": "download the 'CIFAR-10 python version' (cifar-10-python.tar.gz) and pass its path",
    "cifar100": "download the 'CIFAR-100 python version' (cifar-100-python.tar.gz) and pass its path",
    "mnist": "download the four idx files (train-images-idx3-ubyte.gz ...) into a directory and pass it",
    "fashion-mnist": "download the four idx files into a directory and pass it",
}


def load_dataset(
    source: str | os.PathLike[str], split: str = "train", *, cache_dir: str | os.PathLike[str] | None = None
) -> ImageDataset:
    """Load one split of a data set from ``source``; see :mod:`edgeprune.data` for the formats.

    ``source`` is the built-in name ``"digits"`` or a path to a directory or tar archive, optionally
    followed by loading options (``PATH?size=224&per_class=100``, see :mod:`edgeprune.data.options`).
    Decoded splits of paths are cached in ``cache_dir`` (default ``$EDGEPRUNE_CACHE`` or
    ``~/.cache/edgeprune``), one entry per set of options. Raises :class:`~edgeprune.errors.DataError`
    for anything unreadable.
    """
    if split not in SPLITS:
        near = closest(str(split), SPLITS)
        suggestion = f" Did you mean {near[0]!r}?" if near else ""
        raise DataError(f"Unknown split {split!r}: use 'train' or 'test'.{suggestion}")
    options = DataOptions()
    if isinstance(source, str) and not Path(source).expanduser().exists():
        source, options = split_data_spec(source)
    if isinstance(source, str) and source.strip().lower() in BUILTIN:
        return _with_options(load_digits_dataset(split), options)
    path = _existing_path(source)
    cache_root = Path(cache_dir).expanduser() if cache_dir is not None else cache.default_cache_dir()
    cache_split = f"{split}?{options.key()}" if options.key() else split
    start = time.perf_counter()
    if path.is_dir():
        directory = DirTree(path)
        plan = plan_split(directory, split)
        entry, key = cache.cache_file(cache_root, path, cache_split, directory.stamp(plan.files))
        ds = cache.load(entry, key, str(path))
        if ds is None:
            ds = _decode(directory, plan, split, str(path), options)
            cache.save(entry, key, ds)
    elif path.is_file() and looks_like_archive(path):
        st = path.stat()
        entry, key = cache.cache_file(cache_root, path, cache_split, [st.st_size, st.st_mtime_ns])
        ds = cache.load(entry, key, str(path))
        if ds is None:
            archive = read_archive(path, archive_wanted(split))
            ds = _decode(archive, plan_split(archive, split), split, str(path), options)
            cache.save(entry, key, ds)
    else:
        raise DataError(f"{path} is a file but not a tar archive (.tar, .tar.gz, .tgz). " + EXPECTED)
    log.info("loaded %r in %.2f s", ds, time.perf_counter() - start)
    return ds


def _existing_path(source: str | os.PathLike[str]) -> Path:
    path = Path(source).expanduser()
    if path.exists():
        return path.resolve()
    text = os.fspath(source)
    looks_like_name = isinstance(source, str) and "/" not in text and os.sep not in text and "." not in text
    if not looks_like_name:
        raise DataError(
            f"Data set path {path.absolute()} does not exist.",
            hint=f"Pass an existing directory or archive, or the built-in name 'digits'. {EXPECTED}",
        )
    message = (
        f"Unknown data set {text!r}: it is neither a built-in name nor an existing path "
        f"(no {path.absolute()})."
    )
    near = closest(text, BUILTIN)
    if near:
        message += f" Did you mean {near[0]!r}?"
    known = closest(text.replace("_", "-"), _WHERE_TO_GET, n=1)
    hint = (
        f"Built-in data sets: {', '.join(BUILTIN)}. "
        "Anything else is given as a path (edgeprune never downloads)."
    )
    if known:
        name = known[0]
        hint += f" For {name}: {_WHERE_TO_GET[name]}."
        if name == "fashion-mnist" and DEBIAN_FASHION_MNIST.is_dir():
            hint += f" It is installed on this machine at {DEBIAN_FASHION_MNIST}."
    raise DataError(message, hint=hint)


def _decode(tree: Tree, plan: Plan, split: str, source: str, options: DataOptions) -> ImageDataset:
    if plan.fmt in ("cifar10", "cifar100", "idx"):
        images, labels, classes, name = (load_idx if plan.fmt == "idx" else load_cifar)(tree, plan)
        return _with_options(ImageDataset(images, labels, classes, name, split, source), options)
    files, labels = plan.files, np.asarray(plan.labels, dtype=np.int64)
    if options.per_class is not None:  # before decoding: a subset of a large tree costs only its own images
        keep = first_per_class(labels, options.per_class)
        files, labels = [files[i] for i in keep], labels[keep]
    images = decode_images([tree.blob(f) for f in files], files, tree.label, options.stored_side)
    return ImageDataset(images, labels, plan.classes, "imagefolder", split, source, options.size)


def _with_options(ds: ImageDataset, options: DataOptions) -> ImageDataset:
    """Apply the options to a split decoded as a whole array (CIFAR pickles, idx, digits)."""
    if options.per_class is not None:
        ds = ds.subset(indices=first_per_class(ds.labels, options.per_class))
    side = options.stored_side
    if side is None:
        return ds
    return ImageDataset(resize_array(ds.images, side), ds.labels, ds.classes, ds.name, ds.split, ds.source,
                        options.size)


def first_per_class(labels: np.ndarray, n: int) -> np.ndarray:
    """Indices of the first ``n`` samples of every class, in their original order (deterministic)."""
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    starts = np.searchsorted(sorted_labels, sorted_labels, side="left")
    return np.sort(order[np.arange(len(order)) - starts < n])
