"""Loading ``.pth`` files from outside without executing anything they contain.

First choice is ``torch.load(weights_only=True)``, PyTorch's own restricted unpickler. Distiller
checkpoints cannot pass it: they pickle Distiller objects (``distiller.thinning.ThinningRecipe``)
and class references (``torch.optim.sgd.SGD`` as ``optimizer_type``), and the ``distiller``
package is not installed anyway. For those, a second restricted unpickler accepts tensors,
containers and numpy scalars, turns every class reference from a known checkpoint-writing
library into an inert :class:`OpaqueObject` (its arguments and state recorded, nothing called),
and refuses everything else — ``os.system``, ``builtins.eval`` and the like — with a
:class:`CheckpointError` naming the offending global. Any pickle PyTorch's loader rejects (a global it does
not allow, or an opcode it does not implement, such as protocol 4's framing) goes through the second one,
so a refusal always names what the file would have run instead of calling it corrupt.
"""

from __future__ import annotations

import io
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from edgeprune.errors import CheckpointError

# Globals that reconstruct data, never run user code.
_DATA_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): __import__("collections").OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice,
    ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch", "Size"): torch.Size,
    ("torch", "device"): torch.device,
}
# Modules whose classes Distiller-era checkpoints refer to; they become inert placeholders.
_OPAQUE_PREFIXES = ("distiller.", "torch.optim.", "argparse", "apputils.", "numpy.")


class OpaqueObject:
    """An object from a checkpoint whose class is not imported: arguments and state, inert."""

    qualname = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> OpaqueObject:
        obj = super().__new__(cls)
        obj.args, obj.state = args, None
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # REDUCE calls cls(*args); keep them
        self.args = args

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<opaque {self.qualname}>"


def _opaque_class(module: str, name: str) -> type[OpaqueObject]:
    return type(name, (OpaqueObject,), {"qualname": f"{module}.{name}", "__module__": "edgeprune.opaque"})


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle names a global that is neither data nor a known checkpoint class: loading it could run code."""

    def __init__(self, module: str, name: str) -> None:
        self.global_name = f"{module}.{name}"
        super().__init__(f"unexpected global {self.global_name}")


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _DATA_GLOBALS:
            return _DATA_GLOBALS[(module, name)]
        if (module == "numpy.core.multiarray" and name == "scalar") or (module == "numpy" and name == "dtype"):
            import numpy

            return numpy.core.multiarray.scalar if name == "scalar" else numpy.dtype
        if module.startswith(_OPAQUE_PREFIXES) or module in {"distiller", "argparse"}:
            return _opaque_class(module, name)
        raise RefusedGlobal(module, name)


class _RestrictedPickleModule:
    """The ``pickle_module`` handed to ``torch.load``: only ``load`` and ``Unpickler`` are used."""

    Unpickler = _RestrictedUnpickler
    UnpicklingError = pickle.UnpicklingError

    @staticmethod
    def load(file: Any, **kwargs: Any) -> Any:
        return _RestrictedUnpickler(file, **kwargs).load()


def safe_torch_load(path: str | Path) -> Any:
    """Load a ``.pth``/``.pth.tar`` file on the CPU without executing code from it."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{str(path)!r} is a folder, not a checkpoint file.",
                              hint="Give the .pth file inside it (a training run keeps checkpoint.pth).")
    if not path.is_file():
        raise CheckpointError(f"Checkpoint {str(path)!r} does not exist.",
                              hint="Check the path; zoo names need no file (see `edgeprune summary --help`).")
    try:
        with warnings.catch_warnings():  # "Detected pickle protocol 4": the fallback below reads any protocol
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        pass  # a global or an opcode PyTorch's loader does not take: the restricted unpickler tells which
    except Exception as exc:
        raise _corrupt(path, exc) from None
    try:
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_RestrictedPickleModule)
    except RefusedGlobal as exc:
        raise CheckpointError(
            f"Checkpoint {str(path)!r} contains code edgeprune will not run: its pickle calls {exc.global_name}, "
            "which is neither a tensor nor plain data, and loading it could run arbitrary code.",
            hint="Load checkpoints only from sources you trust. If you trust this one, load it where it was made "
                 "and re-save the weights as a plain state_dict (torch.save(model.state_dict(), ...)).",
        ) from None
    except Exception as exc:
        raise _corrupt(path, exc) from None


def _corrupt(path: Path, exc: BaseException) -> CheckpointError:
    detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    kind = "truncated" if isinstance(exc, (EOFError, zipfile.BadZipFile)) or "EOF" in detail else "corrupt"
    return CheckpointError(
        f"Checkpoint {str(path)!r} could not be read: it looks {kind} or is not a PyTorch file ({detail}).",
        hint="Re-copy or re-save the file; partial downloads and interrupted writes cause this.",
    )


def is_zip_checkpoint(data: bytes) -> bool:
    return zipfile.is_zipfile(io.BytesIO(data))
