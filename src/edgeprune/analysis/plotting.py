"""What every edgeprune picture shares: a headless figure, and an atomic PNG/SVG save chosen by suffix.

Why ``matplotlib.figure.Figure`` and not ``pyplot``: pyplot keeps global state (current figure, a
GUI backend picked at import) that leaks between pictures made in one process and can fail on a
machine without a display. A bare ``Figure`` renders with Agg (PNG) or the SVG backend, chosen by
``savefig``'s format, and is garbage-collected like any object.
"""

from __future__ import annotations

import io
from pathlib import Path

from matplotlib import rc_context
from matplotlib.figure import Figure

from edgeprune.errors import ConfigError
from edgeprune.fileio import atomic_path

FORMATS = {".png": "png", ".svg": "svg"}
DPI = 110


def picture_format(path: str | Path) -> str:
    """The file format a picture path asks for; anything but .png/.svg is refused before any work is done."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ConfigError(f"Cannot write a picture to {str(path)!r}: the file name must end in .png or .svg.",
                          hint="For example: -o docs/images/filters.png")
    return FORMATS[suffix]


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` atomically (a half-written PNG never replaces a good one) as PNG or SVG by suffix."""
    fmt = picture_format(path)
    path = Path(path)
    # SVG text stays text (not glyph outlines), so weight names can be searched for and copied from it; a fixed
    # hash salt makes SVG element ids, and so the file, the same every time.
    with atomic_path(path) as tmp, rc_context({"svg.fonttype": "none", "svg.hashsalt": "edgeprune"}):
        fig.savefig(tmp, format=fmt, dpi=DPI, bbox_inches="tight", metadata=_metadata(fmt))
    return path


def _metadata(fmt: str) -> dict[str, str | None]:
    """No creation date in the file, so the same picture made twice is byte-identical (reviewable in git)."""
    return {"Software": None} if fmt == "png" else {"Date": None, "Creator": None}


def figure_svg(fig: Figure) -> str:
    """``fig`` as inline SVG text for a one-file HTML report (no date: the same figure gives the same text)."""
    buf = io.StringIO()
    with rc_context({"svg.hashsalt": "edgeprune"}):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    return text[text.index("<svg"):]
