"""A read-only view of "a directory tree" that is either a real directory or a tar archive.

Why: every supported layout (CIFAR pickles, MNIST idx, image folders) can arrive as a directory or as
the ``.tar.gz`` of one. Format detection and the format readers only ask "which files/dirs are at this
relative path" and "give me this file's bytes", so they work unchanged on both.

Archives are read in one pass with the standard ``tarfile`` module, without extracting anything to
disk. Only the members the caller's ``wanted`` predicate selects are kept in memory, the rest are listed
by name only. (``tarfile`` spends ~1.4 s on the 60k members of the CIFAR-10 JPEG archive; decoded
splits are cached, so that cost is paid once.)
"""

from __future__ import annotations

import lzma
import os
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path

from edgeprune.errors import DataError

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


def is_hidden(part: str) -> bool:
    """Dot-files and macOS archive litter (``__MACOSX/``, ``._x.png``) are never data."""
    return part.startswith(".") or part == "__MACOSX"


class Tree:
    """Interface shared by :class:`DirTree` and :class:`TarTree`; paths are POSIX and relative."""

    label: str

    def entries(self, rel: str) -> tuple[list[str], list[str]]:
        """Sorted (file names, directory names) directly inside ``rel`` (``""`` is the root)."""
        raise NotImplementedError

    def walk(self, rel: str) -> list[str]:
        """Relative paths of all non-hidden files below directory ``rel``, recursively."""
        raise NotImplementedError

    def read(self, rel: str) -> bytes:
        raise NotImplementedError

    def blob(self, rel: str) -> bytes | str:
        """What an image decoder needs for ``rel``: the bytes, or a filesystem path to open itself."""
        raise NotImplementedError


def join(*parts: str) -> str:
    return "/".join(p for p in parts if p)


class DirTree(Tree):
    """A directory on disk."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.label = str(root)

    def _abs(self, rel: str) -> Path:
        return self.root / rel if rel else self.root

    def entries(self, rel: str) -> tuple[list[str], list[str]]:
        files: list[str] = []
        dirs: list[str] = []
        try:
            with os.scandir(self._abs(rel)) as it:
                for entry in it:
                    if is_hidden(entry.name):
                        continue
                    try:
                        if entry.is_dir():
                            dirs.append(entry.name)
                        elif entry.is_file():
                            files.append(entry.name)
                    except OSError:  # dangling symlink, permission problem: not data
                        continue
        except OSError:
            return [], []
        return sorted(files), sorted(dirs)

    def walk(self, rel: str) -> list[str]:
        base = self._abs(rel)
        out: list[str] = []
        for dirpath, dirnames, filenames in os.walk(base, followlinks=True):
            dirnames[:] = [d for d in dirnames if not is_hidden(d)]
            sub = os.path.relpath(dirpath, self.root).replace(os.sep, "/")
            sub = "" if sub == "." else sub
            out.extend(join(sub, f) for f in filenames if not is_hidden(f))
        return out

    def read(self, rel: str) -> bytes:
        try:
            return self._abs(rel).read_bytes()
        except OSError as exc:
            raise DataError(f"Cannot read {self._abs(rel)}: {exc.strerror or exc}.") from None

    def blob(self, rel: str) -> str:
        return str(self._abs(rel))

    def stamp(self, rels: list[str]) -> list[tuple[str, int, int]]:
        """(path, size, mtime_ns) of each file: the cache key of a directory source."""
        out = []
        for rel in rels:
            try:
                st = os.stat(self._abs(rel))
            except OSError as exc:
                raise DataError(f"Cannot read {self._abs(rel)}: {exc.strerror or exc}.") from None
            out.append((rel, st.st_size, st.st_mtime_ns))
        return out


class TarTree(Tree):
    """The regular files of a tar archive; only the members selected when reading have contents."""

    def __init__(self, label: str, files: dict[str, bytes | None], dirs: set[str]) -> None:
        self.label = label
        self.files = files
        children: dict[str, tuple[set[str], set[str]]] = {}

        def add(path: str, is_dir: bool) -> None:
            parent, _, name = path.rpartition("/")
            slot = children.setdefault(parent, (set(), set()))
            (slot[1] if is_dir else slot[0]).add(name)

        all_dirs = set(dirs)
        for path in files:
            parent = path.rpartition("/")[0]
            while parent and parent not in all_dirs:
                all_dirs.add(parent)
                parent = parent.rpartition("/")[0]
        for d in all_dirs:
            add(d, True)
        for f in files:
            add(f, False)
        self._children = children

    def entries(self, rel: str) -> tuple[list[str], list[str]]:
        files, dirs = self._children.get(rel, (set(), set()))
        return sorted(f for f in files if not is_hidden(f)), sorted(d for d in dirs if not is_hidden(d))

    def walk(self, rel: str) -> list[str]:
        prefix = rel + "/" if rel else ""
        return [
            f
            for f in self.files
            if f.startswith(prefix) and not any(is_hidden(p) for p in f[len(prefix) :].split("/"))
        ]

    def read(self, rel: str) -> bytes:
        data = self.files.get(rel)
        if data is None:  # not selected by `wanted` when the archive was read: a bug, not bad input
            raise RuntimeError(f"archive member {rel!r} of {self.label} was not loaded")
        return data

    blob = read


def normalise_member(name: str) -> str | None:
    """``./a//b/`` -> ``a/b``; names that climb out of the archive (``..``) are ignored."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        return None
    return "/".join(parts)


def looks_like_archive(path: Path) -> bool:
    if path.name.lower().endswith(ARCHIVE_SUFFIXES):
        return True
    try:
        return tarfile.is_tarfile(path)
    except (OSError, EOFError, zlib.error, lzma.LZMAError, ValueError):
        return False


def read_archive(path: Path, wanted: Callable[[str], bool]) -> TarTree:
    """Read the tar archive at ``path``, keeping the contents of members for which ``wanted(name)``."""
    label = str(path)
    try:
        with tarfile.open(path, mode="r:*") as tf:
            files, dirs = _read_members(tf, wanted)
            _check_fully_read(tf, path)
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError, ValueError) as exc:
        # OSError also covers gzip.BadGzipFile; EOFError is what a truncated .gz raises.
        raise DataError(
            f"Cannot read the archive {label}: it is truncated or corrupt "
            f"({type(exc).__name__}: {exc or 'unexpected end of data'}).",
            hint="Download or re-create the archive, or pass the extracted directory instead.",
        ) from None
    return TarTree(label, files, dirs)


def _read_members(tf: tarfile.TarFile, wanted: Callable[[str], bool]) -> tuple[dict[str, bytes | None], set[str]]:
    files: dict[str, bytes | None] = {}
    dirs: set[str] = set()
    for member in tf:
        rel = normalise_member(member.name)
        if not rel:
            continue
        if member.isdir():
            dirs.add(rel)
        elif member.isfile():
            fh = tf.extractfile(member) if wanted(rel) else None
            files[rel] = fh.read() if fh is not None else None
    return files, dirs


def _check_fully_read(tf: tarfile.TarFile, path: Path) -> None:
    """``tarfile`` treats a damaged header in the middle of an archive as its end and silently drops
    the rest; after the last member only zero padding may follow, so anything else means damage."""
    fileobj = tf.fileobj
    fileobj.seek(tf.offset)
    while chunk := fileobj.read(1 << 20):
        if chunk.strip(b"\0"):
            raise tarfile.ReadError(f"damaged member header at byte {tf.offset} of the uncompressed archive {path}")
