"""Recognising which on-disk layout a directory/archive has, and which of its files a split needs.

Why a separate step: the cache key of a directory is the (size, mtime) of exactly the files a split
reads, and an archive is read in one pass keeping only those members. Both need to know "which files"
before any decoding happens. Every "this is not what I expected" message is produced here, so they all
say the same thing about the accepted layouts.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from edgeprune.data.tree import Tree, join
from edgeprune.errors import DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
#: Directory names accepted for each split of an image-folder tree, in order of preference.
SPLIT_DIRS = {
    "train": ("train", "training"),
    "test": ("test", "testing", "val", "valid", "validation"),
}
IDX_PREFIX = {"train": "train", "test": "t10k"}
CIFAR100_FILE = {"train": "train", "test": "test"}

_CIFAR10_TRAIN = re.compile(r"data_batch_(\d+)")
_IDX = re.compile(r"(train|t10k)-(images-idx3|labels-idx1)-ubyte(\.gz)?")

EXPECTED = (
    "Expected one of: an image-folder tree <root>/train|test/<class>/*.png|jpg|jpeg; "
    "data_batch_1..5 + test_batch + batches.meta (CIFAR-10 python pickle); "
    "train + test + meta (CIFAR-100 python pickle); "
    "train-images-idx3-ubyte[.gz] + train-labels-idx1-ubyte[.gz] + t10k-images-idx3-ubyte[.gz] + "
    "t10k-labels-idx1-ubyte[.gz] (MNIST idx). Each may sit at the top level or one directory down, "
    "as a directory or as a .tar/.tar.gz/.tgz of one."
)


@dataclass
class Plan:
    """What to read for one split: the format, where its root is, and the exact files."""

    fmt: str  # "cifar10" | "cifar100" | "idx" | "imagefolder"
    root: str  # relative path of the layout's root inside the tree ("" = top level)
    files: list[str]  # every file whose contents the loader reads, in reading order
    classes: list[str] = field(default_factory=list)  # imagefolder only
    labels: list[int] = field(default_factory=list)  # imagefolder only: one per file


def is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _flat_file_wanted(name: str, split: str) -> bool:
    if name in ("batches.meta", "meta", CIFAR100_FILE[split]):
        return True
    if split == "train" and _CIFAR10_TRAIN.fullmatch(name):
        return True
    if split == "test" and name == "test_batch":
        return True
    m = _IDX.fullmatch(name)
    return bool(m and m.group(1) == IDX_PREFIX[split])


def archive_wanted(split: str) -> Callable[[str], bool]:
    """Predicate on archive member paths: is this member possibly read for ``split``?

    The layout is not known while the archive streams by, so this accepts what any layout would read
    for the split, rooted at the top level or one directory down.
    """
    split_dirs = SPLIT_DIRS[split]

    def wanted(rel: str) -> bool:
        parts = rel.split("/")
        for k in (0, 1):
            rest = parts[k:]
            if len(rest) == 1 and _flat_file_wanted(rest[0], split):
                return True
            if len(rest) >= 3 and rest[0].lower() in split_dirs and is_image(rest[-1]):
                return True
        return False

    return wanted


def _root_format(tree: Tree, root: str) -> str | None:
    files, dirs = tree.entries(root)
    names = set(files)
    if "test_batch" in names or any(_CIFAR10_TRAIN.fullmatch(f) for f in names):
        return "cifar10"
    if "meta" in names and names & {"train", "test"}:
        return "cifar100"
    if any(_IDX.fullmatch(f) for f in names):
        return "idx"
    if any(d.lower() in SPLIT_DIRS["train"] + SPLIT_DIRS["test"] for d in dirs):
        return "imagefolder"
    return None


def _describe(tree: Tree, root: str) -> str:
    files, dirs = tree.entries(root)
    if not files and not dirs:
        return "nothing (it is empty)"

    def show(items: list[str], suffix: str = "") -> str:
        shown = ", ".join(i + suffix for i in items[:8])
        return shown + (f" and {len(items) - 8} more" if len(items) > 8 else "")

    parts = []
    if dirs:
        parts.append("directories " + show(dirs, "/"))
    if files:
        parts.append("files " + show(files))
    return " and ".join(parts)


def find_layout(tree: Tree) -> tuple[str, str]:
    """(format, root) of the tree, looking at the top level first, then one directory down."""
    fmt = _root_format(tree, "")
    if fmt:
        return fmt, ""
    found = []
    for d in tree.entries("")[1]:
        sub_fmt = _root_format(tree, d)
        if sub_fmt:
            found.append((sub_fmt, d))
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        listed = ", ".join(f"{d}/ ({f})" for f, d in found)
        raise DataError(
            f"{tree.label} holds more than one data set ({listed}); edgeprune cannot tell which one to use.",
            hint="Pass the path of the one you mean (extract the archive first if it is one).",
        )
    raise DataError(
        f"{tree.label} does not have a data set layout edgeprune can read: found {_describe(tree, '')}. "
        + EXPECTED
    )


def plan_split(tree: Tree, split: str) -> Plan:
    """Detect the layout and list the files ``split`` needs, or explain what is missing."""
    fmt, root = find_layout(tree)
    where = f"{tree.label}" + (f" (in {root}/)" if root else "")
    files, dirs = tree.entries(root)
    names = set(files)
    if fmt == "cifar10":
        if split == "train":
            batches = sorted(
                (f for f in names if _CIFAR10_TRAIN.fullmatch(f)), key=lambda f: int(f.rsplit("_", 1)[1])
            )
            if not batches:
                raise DataError(
                    f"{where} looks like CIFAR-10 (it has test_batch) but has no training batches: expected "
                    "data_batch_1 .. data_batch_5 next to test_batch for split 'train'."
                )
        else:
            if "test_batch" not in names:
                raise DataError(
                    f"{where} looks like CIFAR-10 (it has data_batch_*) but has no test_batch "
                    "for split 'test'."
                )
            batches = ["test_batch"]
        meta = ["batches.meta"] if "batches.meta" in names else []
        return Plan(fmt, root, [join(root, f) for f in batches + meta])
    if fmt == "cifar100":
        wanted = CIFAR100_FILE[split]
        if wanted not in names:
            raise DataError(
                f"{where} looks like CIFAR-100 (it has meta) but has no '{wanted}' file for split '{split}': "
                "expected the files train, test and meta."
            )
        return Plan(fmt, root, [join(root, f) for f in [wanted, "meta"]])
    if fmt == "idx":
        prefix = IDX_PREFIX[split]
        picked = []
        for kind in ("images-idx3", "labels-idx1"):
            base = f"{prefix}-{kind}-ubyte"
            match = next((f for f in (base, base + ".gz") if f in names), None)
            if match is None:
                raise DataError(
                    f"{where} looks like MNIST idx but has no {base}[.gz] for split '{split}': expected "
                    "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and "
                    "t10k-labels-idx1-ubyte (each plain or .gz)."
                )
            picked.append(join(root, match))
        return Plan(fmt, root, picked)
    return _plan_image_folder(tree, root, dirs, split, where)


def _split_dir(dirs: list[str], split: str) -> str | None:
    by_lower = {d.lower(): d for d in dirs}
    return next((by_lower[a] for a in SPLIT_DIRS[split] if a in by_lower), None)


def _plan_image_folder(tree: Tree, root: str, dirs: list[str], split: str, where: str) -> Plan:
    split_dir = _split_dir(dirs, split)
    if split_dir is None:
        raise DataError(
            f"{where} is an image-folder tree without a '{split}' split: found directories "
            f"{', '.join(d + '/' for d in dirs)}; expected <root>/{split}/<class>/*.png|jpg|jpeg "
            f"(accepted names for '{split}': {', '.join(SPLIT_DIRS[split])})."
        )
    # Classes are the union over both splits, so a class missing from one split cannot shift the labels
    # of the others: label i means the same class in train and test.
    class_set: set[str] = set()
    for s in SPLIT_DIRS:
        d = _split_dir(dirs, s)
        if d is not None:
            class_set.update(tree.entries(join(root, d))[1])
    classes = sorted(class_set)
    base = join(root, split_dir)
    own_classes = tree.entries(base)[1]
    if not own_classes:
        loose = [f for f in tree.entries(base)[0] if is_image(f)]
        found = f"{len(loose)} images directly in {split_dir}/ and " if loose else ""
        raise DataError(
            f"{where}: {split_dir}/ has {found}no class directories; expected "
            f"<root>/{split_dir}/<class>/*.png|jpg|jpeg with one directory per class."
        )
    index = {c: i for i, c in enumerate(classes)}
    per_class: dict[str, list[str]] = {c: [] for c in own_classes}
    skipped: dict[str, str] = {}
    prefix_len = len(base) + 1
    for rel in tree.walk(base):
        parts = rel[prefix_len:].split("/")
        if len(parts) < 2:
            continue  # a loose file next to the class directories: not part of any class
        if is_image(parts[-1]):
            per_class[parts[0]].append(rel)
        else:
            skipped.setdefault(parts[0], parts[-1])
    empty = [c for c in own_classes if not per_class[c]]
    if empty:
        shown = ", ".join(
            f"{split_dir}/{c}/" + (f" (has {skipped[c]})" if c in skipped else "") for c in empty[:5]
        )
        more = f" and {len(empty) - 5} more" if len(empty) > 5 else ""
        raise DataError(
            f"{where}: class directories without any .png/.jpg/.jpeg image: {shown}{more}. Every directory "
            f"under {split_dir}/ is a class, so each needs at least one image (or remove the directory)."
        )
    files: list[str] = []
    labels: list[int] = []
    for c in own_classes:
        members = sorted(per_class[c])
        files.extend(members)
        labels.extend([index[c]] * len(members))
    return Plan("imagefolder", root, files, classes, labels)
