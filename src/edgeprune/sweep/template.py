"""Schedule templates: a Distiller schedule whose ``${param}`` placeholders take each trial's values.

Why text substitution rather than editing parsed YAML: a placeholder may stand anywhere a value can
(a sparsity, a list of weights, a class name), and the rendered text is then checked by the very
same schedule parser as a hand-written file, so a trial that renders into an invalid schedule fails
with the usual located message — plus the trial's values, since they are what made it invalid.

Values are written as JSON, which is valid YAML flow syntax for numbers, booleans, strings, lists
and mappings alike.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgeprune.errors import closest
from edgeprune.schedule.config import KeyPath, ScheduleError, ScheduleSource, ScheduleSpec, parse_schedule
from edgeprune.sweep.space import SearchSpace, param_key_path

PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_.-]*)\}")
OPENING = "${"


class TemplateError(ScheduleError):
    """A schedule template that cannot be rendered, or that renders into an invalid schedule for a trial."""


def placeholders(text: str, filename: str) -> dict[str, list[tuple[int, int]]]:
    """Every placeholder name and the (line, column) positions it is written at; malformed ones are errors."""
    found: dict[str, list[tuple[int, int]]] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if line.lstrip().startswith("#"):
            continue
        start = 0
        while (col := line.find(OPENING, start)) >= 0:
            match = PLACEHOLDER.match(line, col)
            if match is None:
                raise TemplateError(f"malformed placeholder {line[col:col + 30]!r}", file=filename, line=lineno,
                                    column=col + 1, hint="Write ${name}, where name is a sweep parameter.")
            found.setdefault(match.group(1), []).append((lineno, col + 1))
            start = match.end()
    return found


def check_template(template: Path, space: SearchSpace, source: ScheduleSource, path: KeyPath) -> str:
    """Read the template and check it against the parameters: every placeholder defined, every parameter used.

    ``source`` locates the sweep file's own keys (``path`` is where the template is named) for the errors.
    """
    try:
        text = template.read_text(encoding="utf-8")
    except OSError as exc:
        raise source.error(path, f"cannot read the schedule template {str(template)!r}: "
                               f"{exc.strerror or exc}") from None
    found = placeholders(text, str(template))
    names = space.names
    for name, spots in found.items():
        if name not in names:
            line, column = spots[0]
            close = closest(name, names)
            raise TemplateError(f"placeholder ${{{name}}} has no sweep parameter"
                                + (f"; did you mean {close[0]!r}?" if close else ""), file=str(template),
                                line=line, column=column, hint=f"Sweep parameters: {', '.join(names)}.")
    for p in space.params:
        if p.name not in found:
            raise source.error(param_key_path(p), f"parameter {p.name!r} is never used: the schedule "
                                   f"template has no ${{{p.name}}}", hint="Use it in the template, or remove it.")
    render(text, space.preview(), str(template), label="the preview values")  # fails for every trial
    return text


def render_text(text: str, values: Mapping[str, Any]) -> str:
    """Substitute every ``${name}`` with the JSON form of ``values[name]``."""
    return PLACEHOLDER.sub(lambda m: json.dumps(values[m[1]]) if m[1] in values else m[0], text)


def render(text: str, values: Mapping[str, Any], filename: str, *, label: str) -> tuple[str, ScheduleSpec]:
    """Render and parse; a schedule error is re-raised with the values (``label``: which trial) that caused it."""
    rendered = render_text(text, values)
    try:
        return rendered, parse_schedule(rendered, filename)
    except ScheduleError as exc:
        where = exc.file if exc.line is None else f"{exc.file}:{exc.line}" + (f":{exc.column}" if exc.column else "")
        shown = ", ".join(f"{k}={v!r}" for k, v in values.items())
        raise TemplateError(f"{exc.message.removeprefix(where + ': ')} (rendered for {label}: {shown})",
                            file=filename, line=exc.line, column=exc.column, hint=exc.hint) from None
