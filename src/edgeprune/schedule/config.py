"""Reading a Distiller compression schedule: YAML with positions, pydantic schema, policy timing.

Distiller loaded schedules with ``yaml.Loader`` (arbitrary Python objects) and reported mistakes as a
bare ``KeyError`` or ``AssertionError`` from deep inside. Here the YAML is read with a safe loader that
remembers where every key and list item starts, so every error points at ``file:line:col`` and the
key path (``pruners.p1.weights[2]``), and the schema is checked before anything is built.

Distiller's grammar is kept: every file it accepted is accepted here, plus one common copy-paste form
(policy keys flattened to the level of ``pruner:``), which is read as what it obviously means, with a
warning that shows the canonical indentation.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
)

from edgeprune.errors import ConfigError, EdgepruneError, closest
from edgeprune.fileio import read_config_text

KeyPath = tuple[str | int, ...]

SECTIONS = ("version", "pruners", "regularizers", "quantizers", "lr_schedulers", "extensions", "policies")
# Policy kind -> the top-level section that defines its instances.
POLICY_KINDS = {"pruner": "pruners", "regularizer": "regularizers", "quantizer": "quantizers",
                "lr_scheduler": "lr_schedulers", "extension": "extensions"}
RANGE_KEYS = ("starting_epoch", "ending_epoch", "frequency")
POLICY_KEYS = (*POLICY_KINDS, "epochs", *RANGE_KEYS)
TARGET_KEYS = ("instance_name", "args")


class ScheduleWarning(UserWarning):
    """Something in a schedule that edgeprune accepts but that should be written differently."""


def format_key_path(path: KeyPath) -> str:
    """``('pruners', 'p1', 'weights', 2)`` -> ``pruners.p1.weights[2]``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


class ScheduleError(ConfigError):
    """A mistake in a compression schedule, located as ``file:line:col: key.path: message``."""

    def __init__(self, message: str, *, file: str, key_path: str = "", line: int | None = None,
                 column: int | None = None, hint: str | None = None) -> None:
        self.file, self.key_path, self.line, self.column = file, key_path, line, column
        where = file if line is None else f"{file}:{line}" + ("" if column is None else f":{column}")
        super().__init__(f"{where}: {key_path}: {message}" if key_path else f"{where}: {message}", hint=hint)


@dataclass
class ScheduleSource:
    """The file a schedule came from and where each of its keys and list items starts (1-based)."""

    filename: str
    positions: dict[KeyPath, tuple[int, int]] = field(default_factory=dict)

    def locate(self, path: KeyPath) -> tuple[int, int] | None:
        """The position of ``path``, else of its nearest ancestor that has one (e.g. a missing key)."""
        for end in range(len(path), 0, -1):
            if path[:end] in self.positions:
                return self.positions[path[:end]]
        return None

    def warn(self, path: KeyPath, message: str) -> None:
        """A :class:`ScheduleWarning` located like an error (the CLI shows warnings; tests can catch them)."""
        line, column = self.locate(path) or (None, None)
        where = self.filename if line is None else f"{self.filename}:{line}:{column}"
        warnings.warn(f"{where}: {format_key_path(path)}: {message}", ScheduleWarning, stacklevel=3)

    def error(self, path: KeyPath, message: str, hint: str | None = None) -> ScheduleError:
        line, column = self.locate(path) or (None, None)
        return ScheduleError(message, file=self.filename, key_path=format_key_path(path), line=line, column=column,
                             hint=hint)

    @contextlib.contextmanager
    def blame(self, path: KeyPath, *extra: type[Exception]) -> Iterator[None]:
        """Re-raise an edgeprune error (and the ``extra`` exception types) as located at ``path``.

        Why: a pruner or LR scheduler that rejects its YAML arguments knows *what* is wrong but not
        *where* in the file; the builder and the policies know where.
        """
        try:
            yield
        except ScheduleError:
            raise
        except EdgepruneError as exc:
            raise self.error(path, exc.message, exc.hint) from exc
        except extra as exc:
            raise self.error(path, f"{type(exc).__name__}: {exc}") from exc


# ---------------------------------------------------------------------------------------------------- YAML
class _PositionLoader(yaml.SafeLoader):
    """A safe loader (never ``yaml.Loader``: a schedule must not be able to construct Python objects)."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        """Report a value its explicit tag cannot hold (``!!int abc``, ``!!bool 7``) as YAML does its own errors.

        Why: PyYAML's constructors let ``int()``/``float()``/``datetime`` errors escape unlocated.
        """
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except (ValueError, KeyError, TypeError, OverflowError) as exc:
            detail = "" if isinstance(exc, KeyError) else f" ({exc})"
            raise yaml.constructor.ConstructorError(
                None, None, f"{node.value!r} is not a valid {node.tag.rsplit(':', 1)[-1]}{detail}",
                node.start_mark) from None


def _index_positions(node: yaml.Node, path: KeyPath, source: ScheduleSource,
                     active: frozenset[int] = frozenset()) -> None:
    """Record the start of every mapping key and sequence item under ``node``, keyed by its path."""
    if id(node) in active:  # a recursive alias
        return
    active = active | {id(node)}
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            key, mark = key_node.value, key_node.start_mark
            source.positions[(*path, key)] = (mark.line + 1, mark.column + 1)
            if key in seen:
                source.warn((*path, key), "duplicate key; YAML keeps only the last one")
            seen.add(key)
            _index_positions(value_node, (*path, key), source, active)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            source.positions[(*path, i)] = (item.start_mark.line + 1, item.start_mark.column + 1)
            _index_positions(item, (*path, i), source, active)


def _path_at_error(text: str) -> KeyPath:
    """The key path the YAML parser had reached when it failed, replayed from its event stream."""
    frames: list[dict[str, Any]] = []  # {"map": bool, "at": key or index, "want_key": bool, "is_key": bool}
    try:
        for event in yaml.parse(text, Loader=_PositionLoader):
            if isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                done = frames.pop()
                if frames and frames[-1]["map"] and not done["is_key"]:
                    frames[-1]["want_key"] = True
                continue
            if not isinstance(event, (yaml.NodeEvent, yaml.CollectionStartEvent)):
                continue
            top = frames[-1] if frames else None
            is_key = bool(top and top["map"] and top["want_key"])
            if is_key:
                top["at"] = event.value if isinstance(event, yaml.ScalarEvent) else None  # type: ignore[index]
                top["want_key"] = False  # type: ignore[index]
            elif top is not None and not top["map"]:
                top["at"] += 1
            if isinstance(event, yaml.CollectionStartEvent):
                is_map = isinstance(event, yaml.MappingStartEvent)
                frames.append({"map": is_map, "at": None if is_map else -1, "want_key": is_map, "is_key": is_key})
            elif top is not None and top["map"] and not is_key:
                top["want_key"] = True
    except yaml.YAMLError:
        pass
    return tuple(f["at"] for f in frames if f["at"] is not None and f["at"] != -1)


def load_yaml(text: str, filename: str) -> tuple[Any, ScheduleSource]:
    """The document in ``text`` and its key positions; any YAML error is a :class:`ScheduleError` at file:line:col.

    PyYAML's whole error family is caught here: the reader (control characters such as byte 0x07), the
    scanner and parser (indentation, brackets), the composer (undefined aliases) and the constructor
    (values their tag cannot hold), plus nesting too deep for its recursive composer.
    """
    source = ScheduleSource(filename)
    try:
        loader = _PositionLoader(text)  # the reader checks every character here
    except yaml.reader.ReaderError as exc:
        raise _reader_error(exc, text, filename) from None
    try:
        node = loader.get_single_node()
        data = None if node is None else loader.construct_document(node)
    except yaml.reader.ReaderError as exc:
        raise _reader_error(exc, text, filename) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = " ".join(p for p in (exc.context, exc.problem) if p)
        syntax = isinstance(exc, (yaml.scanner.ScannerError, yaml.parser.ParserError))
        raise ScheduleError(f"invalid YAML: {problem}", file=filename, key_path=format_key_path(_path_at_error(text)),
                            line=mark.line + 1 if mark else None, column=mark.column + 1 if mark else None,
                            hint="Check the indentation and the ':' / '-' / brackets around this position." if syntax
                            else "Check the value, tag ('!!...') or alias ('*name') at this position.") from None
    except yaml.YAMLError as exc:
        raise ScheduleError(f"invalid YAML: {exc}", file=filename) from None
    except RecursionError:
        raise ScheduleError("invalid YAML: brackets or indentation nested too deeply to read", file=filename,
                            hint="A schedule needs a few levels of nesting; look for unclosed '[' or '{'.") from None
    finally:
        loader.dispose()
    if node is not None:
        _index_positions(node, (), source)
    return data, source


def _reader_error(exc: yaml.reader.ReaderError, text: str, filename: str) -> ScheduleError:
    """A character YAML does not allow (a control character, a lone surrogate), located at line:column."""
    at = min(max(exc.position, 0), len(text))
    line_start = text.rfind("\n", 0, at) + 1
    code = exc.character if isinstance(exc.character, int) else exc.character[0]  # bytes only from a byte stream
    return ScheduleError(f"invalid YAML: unacceptable character #x{code:04x} ({exc.reason})", file=filename,
                         line=text.count("\n", 0, at) + 1, column=at - line_start + 1,
                         hint="Delete it (control characters often come from a paste or a binary file), or write "
                              "it as an escape such as \"\\a\" inside a double-quoted string.")


# -------------------------------------------------------------------------------------------------- schema
class ComponentSpec(BaseModel):
    """One ``pruners:``/``regularizers:``/... entry: ``class`` plus the constructor's keywords."""

    model_config = ConfigDict(extra="allow")
    class_name: StrictStr = Field(alias="class")

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class PolicyTarget(BaseModel):
    """The ``pruner: {instance_name, args}`` part of a policy."""

    model_config = ConfigDict(extra="forbid")
    instance_name: StrictStr
    args: dict[StrictStr, Any] | None = None


class PrunerArgs(BaseModel):
    """Per-policy ``args`` of a pruner policy (Distiller's ``pruner_args``), with Distiller's defaults."""

    model_config = ConfigDict(extra="forbid", strict=True)
    levels: dict[StrictStr, float] | None = None
    keep_mask: StrictBool = False
    mini_batch_pruning_frequency: StrictInt = Field(default=0, ge=0)
    mask_on_forward_only: StrictBool = False
    mask_gradients: StrictBool = False
    use_double_copies: StrictBool = False
    discard_masks_at_minibatch_end: StrictBool = False
    skip_first_minibatch: StrictBool = False
    fold_batchnorm: StrictBool = False

    @field_validator("levels", mode="before")
    @classmethod
    def _int_levels(cls, value: Any) -> Any:
        """YAML writes ``0`` and ``1`` as ints; a sparsity level is a float."""
        if isinstance(value, Mapping):
            return {k: float(v) if isinstance(v, int) and not isinstance(v, bool) else v for k, v in value.items()}
        return value


class RegularizerArgs(BaseModel):
    """Per-policy ``args`` of a regularizer policy (Distiller passes them as ``RegularizationPolicy(**args)``)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    keep_mask: StrictBool = False


class PolicySpec(BaseModel):
    """One entry of ``policies:``: the instance it drives and the epochs it fires in."""

    model_config = ConfigDict(extra="forbid")
    pruner: PolicyTarget | None = None
    regularizer: PolicyTarget | None = None
    quantizer: PolicyTarget | None = None
    lr_scheduler: PolicyTarget | None = None
    extension: PolicyTarget | None = None
    epochs: list[StrictInt] | None = None
    starting_epoch: StrictInt | None = None
    ending_epoch: StrictInt | None = None
    frequency: StrictInt | None = None
    # Typed per-policy args, filled in by validation (pruner and regularizer policies only).
    options: PrunerArgs | RegularizerArgs | None = Field(default=None, exclude=True)

    @property
    def kind(self) -> str:
        return next(k for k in POLICY_KINDS if getattr(self, k) is not None)

    @property
    def target(self) -> PolicyTarget:
        return getattr(self, self.kind)

    @property
    def epoch_list(self) -> list[int]:
        """The epochs the policy fires in (Distiller: ``range(S, E, F)``, E exclusive, or the list)."""
        if self.epochs is not None:
            return list(self.epochs)
        return list(range(self.starting_epoch, self.ending_epoch, self.frequency))  # type: ignore[arg-type]

    @property
    def metadata(self) -> dict[str, int | None]:
        """Distiller's ``sched_metadata``: a list ``[a, ..., z]`` reads as (a, z + 1, None)."""
        if self.epochs is not None:
            return {"starting_epoch": self.epochs[0], "ending_epoch": self.epochs[-1] + 1, "frequency": None}
        return {"starting_epoch": self.starting_epoch, "ending_epoch": self.ending_epoch, "frequency": self.frequency}


class ScheduleSpec(BaseModel):
    """A whole schedule file; ``source`` maps key paths back to file positions for error messages."""

    model_config = ConfigDict(extra="forbid")
    version: Any = None  # Distiller parses it and never checks it
    pruners: dict[StrictStr, ComponentSpec] = {}
    regularizers: dict[StrictStr, ComponentSpec] = {}
    quantizers: dict[StrictStr, ComponentSpec] = {}
    lr_schedulers: dict[StrictStr, ComponentSpec] = {}
    extensions: dict[StrictStr, ComponentSpec] = {}
    policies: list[PolicySpec]
    _source: ScheduleSource = PrivateAttr(default_factory=lambda: ScheduleSource("<schedule>"))

    @field_validator("pruners", "regularizers", "quantizers", "lr_schedulers", "extensions", mode="before")
    @classmethod
    def _empty_section(cls, value: Any) -> Any:
        """``pruners:`` with nothing under it is YAML null: an empty section."""
        return {} if value is None else value

    @property
    def source(self) -> ScheduleSource:
        return self._source

    def section(self, kind: str) -> dict[str, ComponentSpec]:
        """The instances a policy of ``kind`` (``pruner``, ``lr_scheduler``, ...) may name."""
        return getattr(self, POLICY_KINDS[kind])


# ----------------------------------------------------------------------------------------------- validation
def check_keys(data: Mapping[Any, Any], allowed: tuple[str, ...], path: KeyPath, source: ScheduleSource,
                what: str) -> None:
    for key in data:
        if key not in allowed:
            close = closest(str(key), allowed)
            suggestion = f"; did you mean {close[0]!r}?" if close else ""
            raise source.error((*path, key), f"unknown {what} key {key!r}{suggestion}",
                               hint=f"Allowed keys: {', '.join(allowed)}.")


def _yaml_lines(mapping: Mapping[str, Any], indent: str) -> list[str]:
    """Block-style mappings with flow-style values, the way Distiller's examples are written."""
    lines = []
    for key, value in mapping.items():
        if isinstance(value, Mapping):
            lines += [f"{indent}{key}:", *_yaml_lines(value, indent + "  ")]
        else:
            flow = yaml.safe_dump(value, default_flow_style=True, width=10**6).removesuffix("...\n").strip()
            lines.append(f"{indent}{key}: {flow}")
    return lines


def _canonical_policy_text(policy: Mapping[str, Any]) -> str:
    lines = _yaml_lines(policy, "    ")
    return "\n".join(["  - " + lines[0].lstrip(), *lines[1:]])


def _unflatten_policy(raw: Any, path: KeyPath, source: ScheduleSource) -> Any:
    """Read ``- pruner:\\n  instance_name: x`` (``pruner: null`` + siblings) as the nested form, with a warning."""
    if not isinstance(raw, Mapping):
        return raw
    nulls = [k for k in POLICY_KINDS if k in raw and raw[k] is None]
    if not nulls:
        return raw
    kind = nulls[0]
    if "instance_name" not in raw:
        raise source.error((*path, kind), f"a policy is defined with a null {kind}",
                           hint=f"Indent 'instance_name: <name>' under '{kind}:' (two more spaces).")
    target = {k: raw[k] for k in TARGET_KEYS if k in raw}
    fixed = {kind: target, **{k: v for k, v in raw.items() if k not in (kind, *TARGET_KEYS)}}
    for key in TARGET_KEYS:  # errors about the moved keys still point at where they are written
        for pos_path, pos in list(source.positions.items()):
            if pos_path[:len(path) + 1] == (*path, key):
                source.positions[(*path, kind, *pos_path[len(path):])] = pos
    source.warn(path, f"'instance_name' is not indented under '{kind}:', so YAML reads '{kind}: null'; edgeprune "
                f"reads it as the canonical form:\n{_canonical_policy_text(fixed)}")
    return fixed


def _check_timing(policy: PolicySpec, path: KeyPath, source: ScheduleSource) -> None:
    """Distiller's ``add_policy`` rules: ``epochs`` XOR a complete range, ``0 <= S < E``, ``0 < F <= E - S``."""
    given = [k for k in RANGE_KEYS if getattr(policy, k) is not None]
    if policy.epochs is not None:
        if given:
            raise source.error((*path, given[0]), "a policy takes either 'epochs' or starting_epoch/ending_epoch/"
                               "frequency, not both", hint="Remove the 'epochs' list or the range keys.")
        if not policy.epochs:
            raise source.error((*path, "epochs"), "'epochs' is empty, so the policy would never run")
        for i, epoch in enumerate(policy.epochs):
            if epoch < 0 or (i and epoch <= policy.epochs[i - 1]):
                raise source.error((*path, "epochs", i), f"epoch {epoch} is invalid: 'epochs' must be increasing "
                                   "numbers >= 0 without repeats")
        return
    if not given:
        raise source.error(path, "the policy says neither when it runs: give 'epochs: [...]' or "
                           "starting_epoch, ending_epoch and frequency")
    missing = [k for k in RANGE_KEYS if k not in given]
    if missing:
        raise source.error((*path, given[0]), f"a range needs all of starting_epoch, ending_epoch and frequency; "
                           f"missing {', '.join(missing)}")
    start, end, freq = policy.starting_epoch, policy.ending_epoch, policy.frequency
    if not 0 <= start < end:  # type: ignore[operator]
        raise source.error((*path, "ending_epoch"), f"need 0 <= starting_epoch < ending_epoch (ending_epoch is "
                           f"exclusive), got starting_epoch {start}, ending_epoch {end}")
    if not 0 < freq <= end - start:  # type: ignore[operator]
        raise source.error((*path, "frequency"), f"need 0 < frequency <= ending_epoch - starting_epoch "
                           f"({end - start}), got {freq}")  # type: ignore[operator]


def _check_policy(policy: PolicySpec, path: KeyPath, spec: ScheduleSpec) -> None:
    source = spec.source
    kinds = [k for k in POLICY_KINDS if getattr(policy, k) is not None]
    if not kinds:
        raise source.error(path, f"the policy names no instance; expected one of {', '.join(POLICY_KINDS)}")
    if len(kinds) > 1:
        raise source.error((*path, kinds[1]), f"a policy drives exactly one instance, got {' and '.join(kinds)}")
    kind = kinds[0]
    _check_timing(policy, path, source)
    name = policy.target.instance_name
    defined = spec.section(kind)
    if name not in defined:
        close = closest(name, defined)
        listed = ", ".join(map(repr, defined)) or "none"
        raise source.error((*path, kind, "instance_name"), f"{kind} {name!r} was not defined in "
                           f"'{POLICY_KINDS[kind]}'" + (f"; did you mean {close[0]!r}?" if close else ""),
                           hint=f"Defined {POLICY_KINDS[kind]}: {listed}.")
    args = policy.target.args or {}
    args_path = (*path, kind, "args")
    options_model = {"pruner": PrunerArgs, "regularizer": RegularizerArgs}.get(kind)
    if options_model is None:
        if args:
            source.warn(args_path, f"{kind} policies ignore 'args' (as in Distiller)")
        return
    check_keys(args, tuple(options_model.model_fields), args_path, source, f"{kind} policy args")
    try:
        policy.options = options_model.model_validate(args)
    except ValidationError as exc:
        raise pydantic_error(exc, args_path, source) from None
    if isinstance(policy.options, PrunerArgs):
        if policy.options.mask_gradients and not policy.options.mask_on_forward_only:
            raise source.error((*args_path, "mask_gradients"), "mask_gradients needs mask_on_forward_only: true "
                               "(Distiller: the two are mutually exclusive otherwise)")
        for key, level in (policy.options.levels or {}).items():
            check_sparsity(level, (*args_path, "levels", key), source)


def check_sparsity(value: Any, path: KeyPath, source: ScheduleSource) -> None:
    """A sparsity is a fraction of the weights: a number in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1 or math.isnan(value):
        raise source.error(path, f"sparsity must be a number in [0, 1], got {value!r}",
                           hint="Sparsities are fractions: write 0.6 for 60%.")


def pydantic_error(exc: ValidationError, prefix: KeyPath, source: ScheduleSource) -> ScheduleError:
    """The first problem pydantic found, as a located error in our wording (the rest are counted in the hint)."""
    first = exc.errors()[0]
    loc = tuple(first["loc"])
    if loc and loc[0] == "class_name":
        loc = ("class", *loc[1:])
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "missing":
        message = f"required key {loc[-1]!r} is missing"
    elif "input" in first:
        message += f", got {first['input']!r}"
    more = exc.error_count() - 1
    return source.error((*prefix, *loc), message, hint=f"({more} more problem(s) in the same entry)" if more else None)


def validate_schedule(data: Any, source: ScheduleSource) -> ScheduleSpec:
    """Check a loaded YAML document against Distiller's grammar; raise :class:`ScheduleError` at the culprit."""
    if not isinstance(data, Mapping):
        raise source.error((), "a schedule is a YAML mapping with keys such as 'pruners' and 'policies', got "
                           f"{'an empty file' if data is None else type(data).__name__}")
    check_keys(data, SECTIONS, (), source, "top-level")
    if "policies" not in data or not data["policies"]:
        raise source.error(("policies",), "the schedule has no policies, so nothing would run",
                           hint="Add a 'policies:' list saying which instance runs in which epochs.")
    data = dict(data)
    if isinstance(data["policies"], list):
        data["policies"] = [_unflatten_policy(raw, ("policies", i), source) for i, raw in enumerate(data["policies"])]
        for i, raw in enumerate(data["policies"]):
            if isinstance(raw, Mapping):
                kind = next((k for k in POLICY_KINDS if k in raw), "pruner")
                for key in TARGET_KEYS:
                    if key in raw:
                        raise source.error(("policies", i, key), f"{key!r} belongs under '{kind}:'",
                                           hint=f"Indent it two more spaces than '{kind}:'.")
                check_keys(raw, POLICY_KEYS, ("policies", i), source, "policy")
                for kind in POLICY_KINDS:
                    if isinstance(raw.get(kind), Mapping):
                        check_keys(raw[kind], TARGET_KEYS, ("policies", i, kind), source, f"{kind} policy")
    try:
        spec = ScheduleSpec.model_validate(data)
    except ValidationError as exc:
        raise pydantic_error(exc, (), source) from None
    spec._source = source
    for i, policy in enumerate(spec.policies):
        _check_policy(policy, ("policies", i), spec)
    return spec


def parse_schedule(text: str, filename: str = "<schedule>") -> ScheduleSpec:
    """Parse schedule YAML text; ``filename`` is what error messages call it."""
    data, source = load_yaml(text, filename)
    return validate_schedule(data, source)


def load_schedule(path: str | Path) -> ScheduleSpec:
    """Read and check a schedule file (Distiller's format, unchanged)."""
    path = Path(path)
    return parse_schedule(read_config_text(path, "schedule", ScheduleError), str(path))
