"""One exception hierarchy for everything a user can get wrong.

Every error raised towards a user says *what* is wrong, *where* (file, key, layer) and *how to fix
it*. The CLI prints these as one paragraph and exits non-zero; anything that is not an
``EdgepruneError`` is a bug in edgeprune and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class EdgepruneError(Exception):
    """Base class of all user-facing errors."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message}\n{hint}")


def add_hint(exc: EdgepruneError, text: str) -> EdgepruneError:
    """``exc`` with ``text`` appended to its hint, for a caller that knows more (e.g. where work was saved)."""
    exc.hint = f"{exc.hint}\n{text}" if exc.hint else text
    exc.args = (f"{exc.message}\n{exc.hint}",)
    return exc


class UnknownNameError(EdgepruneError, KeyError):
    """A name (architecture, class, layer, ...) that is not known; suggests the closest matches."""

    def __init__(self, kind: str, name: str, known: Iterable[str], *, hint: str | None = None) -> None:
        known = sorted(set(known))
        self.kind, self.name, self.known = kind, name, known
        close = closest(name, known)
        message = f"Unknown {kind} {name!r}."
        if close:
            message += " Did you mean " + " or ".join(repr(c) for c in close) + "?"
        elif known:
            shown = ", ".join(known[:12]) + (" ..." if len(known) > 12 else "")
            message += f" Known {kind}s: {shown}."
        super().__init__(message, hint=hint)

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return self.args[0]


class DataError(EdgepruneError):
    """A dataset path that does not exist or does not have a layout edgeprune can read."""


class CheckpointError(EdgepruneError):
    """A checkpoint that is missing, corrupt, unsafe, or does not fit the architecture."""


class ConfigError(EdgepruneError):
    """A bad option or configuration value (CLI flag, YAML key, ...)."""


def closest(name: str, candidates: Iterable[str], n: int = 3, cutoff: float = 0.6) -> list[str]:
    """The few candidates most similar to ``name`` (case-insensitive), best first.

    ``name`` may be any value read from a file (a number where a name was expected, say).
    """
    name = str(name)
    candidates = list(candidates)
    lowered = {c.lower(): c for c in candidates}
    matches = difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=cutoff)
    return [lowered[m] for m in matches]
