"""Unpickling of CIFAR batch files without running arbitrary code.

Why: the official CIFAR "python version" is a set of Python 2 pickles, and ``pickle.load`` on a file
someone handed you can execute anything. The batches only ever contain dicts, lists, bytes/str, ints
and numpy arrays, so everything else is refused.
"""

from __future__ import annotations

import importlib
import io
import pickle
from typing import Any

import numpy as np

# numpy moved its internals from numpy.core to numpy._core in 2.0; old pickles name the former.
_NUMPY_CORE = "numpy._core" if hasattr(np, "_core") else "numpy.core"

_ALLOWED: dict[tuple[str, str], Any] = {
    ("builtins", "dict"): dict,
    ("builtins", "list"): list,
    ("builtins", "tuple"): tuple,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "bytearray"): bytearray,
    ("__builtin__", "set"): set,
    ("__builtin__", "frozenset"): frozenset,
    ("__builtin__", "bytearray"): bytearray,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


def _numpy_global(submodule: str, name: str) -> Any:
    return getattr(importlib.import_module(f"{_NUMPY_CORE}.{submodule}"), name)


class SafeUnpicklingError(pickle.UnpicklingError):
    """A pickle that asks for something other than containers and numpy arrays (``global_name``)."""

    def __init__(self, global_name: str) -> None:
        self.global_name = global_name
        super().__init__(f"refusing to load global {global_name}")


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name in (
            "_reconstruct",
            "scalar",
        ):
            return _numpy_global("multiarray", name)
        if module in ("numpy.core.numeric", "numpy._core.numeric") and name == "_frombuffer":
            return _numpy_global("numeric", name)  # numpy's protocol-5 array pickles
        if (module, name) == ("_codecs", "encode"):
            # Python 3 writes bytes in protocol <= 2 as _codecs.encode(str, "latin1"): pure data.
            import _codecs

            return _codecs.encode
        raise SafeUnpicklingError(f"{module}.{name}")


def safe_loads(data: bytes) -> Any:
    """``pickle.loads(data, encoding="bytes")`` limited to builtin containers and numpy arrays."""
    return _RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
