"""A small decorator registry, shared by models, pruners, LR schedulers, backends and queues.

Why not ``globals()`` (as Distiller did): an explicit registry lists exactly what a YAML file or a
CLI flag may name, so an unknown name can be answered with the closest registered ones.
"""

from __future__ import annotations

import fnmatch
import importlib
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from edgeprune.errors import ConfigError, UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects (classes or factories) of one kind."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str | None = None) -> Callable[[T], T]:
        """Decorator: ``@REGISTRY.register()`` registers under the object's ``__name__``."""

        def decorate(obj: T) -> T:
            key = name or obj.__name__  # type: ignore[attr-defined]
            if key in self._entries and self._entries[key] is not obj:
                raise ConfigError(f"{self.kind} {key!r} is registered twice.")
            self._entries[key] = obj
            return obj

        return decorate

    def get(self, name: str) -> T:
        """The entry registered as ``name``, or the object a ``package.module:Name`` path names (not registered)."""
        if ":" in name:
            return import_object(name, self.kind)
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, self._entries) from None

    def names(self, pattern: str = "*") -> list[str]:
        return sorted(n for n in self._entries if fnmatch.fnmatchcase(n, pattern))

    def __contains__(self, name: object) -> bool:
        """Registered names only; a ``package.module:Name`` path is resolved by :meth:`get`."""
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))


def import_object(path: str, kind: str) -> Any:
    """Resolve ``package.module:Name``: how users bring their own model, pruner or regularizer without registering.

    Errors say which part failed (the path's form, the import, the name in the module, with close matches).
    """
    module_name, _, attr = path.partition(":")
    if not module_name or not attr or ":" in attr:
        raise ConfigError(f"The {kind} path {path!r} must look like 'package.module:Name'.")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"Cannot import module {module_name!r} for {kind} {path!r}: {exc}.",
                          hint="Make sure the module is on PYTHONPATH (e.g. run from its directory).") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        known = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")]
        raise UnknownNameError(f"{kind} in module {module_name!r}", attr, known) from None
