"""The sweep file: WandB's sweep grammar plus edgeprune's pipeline keys, checked before any trial runs.

A WandB sweep file runs as it is (``program``/``command``, ``method``, ``metric``, ``parameters``,
``early_terminate``, ``run_cap``, ``name``, ``description``, ``project``, ``entity``). Without a program,
edgeprune's own pipeline is the trial: ``model``, ``data``, ``pretrain``, a Distiller ``schedule_template``
whose ``${param}`` placeholders take the trial's values, ``retrain``, ``export``, ``benchmark``, and
``objectives`` for a multi-objective (Pareto) search. ``constraints`` (bounds on recorded metrics, see
:mod:`edgeprune.sweep.constraints`), ``tracking``, ``seed`` and ``sampler`` apply to both.

Every mistake is a :class:`SweepError` located at ``file:line:col: key.path`` (the same YAML position
machinery as compression schedules), with the closest allowed key or distribution suggested.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, StrictStr, ValidationError

from edgeprune.distillation import DENSE, DistillConfig, distill_config
from edgeprune.errors import ConfigError, closest
from edgeprune.fileio import read_config_text
from edgeprune.runtime.backends.ov_backend import OPSET_2022_3
from edgeprune.schedule.config import (
    KeyPath,
    ScheduleError,
    ScheduleSource,
    check_keys,
    format_key_path,
    load_yaml,
    pydantic_error,
)
from edgeprune.sweep.constraints import ConstraintSpec, parse_constraints
from edgeprune.sweep.space import BOUNDED, GRID_KINDS, KINDS, QUANTISED, ParamSpec, SearchSpace, param_key_path
from edgeprune.sweep.template import check_template
from edgeprune.tracking.settings import MlflowSettings, TrackingSettings, WandbSettings

METHODS = ("grid", "random", "bayes")
# What one trial of the built-in pipeline measures; EPOCH_METRICS are also reported after every retraining epoch.
EPOCH_METRICS = ("top1", "top5", "loss")
PIPELINE_METRICS = (*EPOCH_METRICS, "top1_pruned", "macs", "weight_params", "latency_ms", "e2e_latency_ms",
                    "throughput_fps")
PIPELINE_KEYS = ("model", "data", "pretrain", "schedule_template", "retrain", "export", "benchmark")
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")  # WandB's parameter-name pattern


class SweepError(ScheduleError):
    """A mistake in a sweep file, located like a schedule mistake: ``file:line:col: key.path: message``."""


class SweepSource(ScheduleSource):
    """Positions of a sweep file's keys; its errors are :class:`SweepError`."""

    def error(self, path: KeyPath, message: str, hint: str | None = None) -> SweepError:
        line, column = self.locate(path) or (None, None)
        return SweepError(message, file=self.filename, key_path=format_key_path(path), line=line, column=column,
                          hint=hint)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class MetricSpec(_Section):
    """WandB's ``metric``: what the sweep optimises and, with ``target``, when it is done."""

    name: StrictStr
    goal: Literal["minimize", "maximize"] = "minimize"  # WandB's default
    target: float | None = None


class ObjectiveSpec(_Section):
    """One objective of a multi-objective search; trials no other beats on all objectives form the Pareto front."""

    name: StrictStr
    goal: Literal["minimize", "maximize"]


class HyperbandSpec(_Section):
    """WandB's ``early_terminate``: bands from ``max_iter``/``s`` (backwards) or ``min_iter`` (forwards), eta."""

    type: Literal["hyperband"]
    min_iter: int | None = Field(default=None, ge=1)
    max_iter: int | None = Field(default=None, ge=1)
    s: int | None = Field(default=None, ge=1)
    eta: float = Field(default=3.0, gt=1)
    strict: bool = True  # in WandB's schema but unused by its implementation; accepted for compatibility

    def bands(self) -> list[int]:
        """The iteration indices at which runs are compared, exactly as WandB computes them."""
        if self.max_iter is not None:
            bands, band = [], float(self.max_iter)
            for _ in range(self.s or 0):
                band /= self.eta
                if band < 1:
                    break
                bands.append(int(band))
            return sorted(bands)
        band, bands = float(self.min_iter or 1), []
        for _ in range(100):
            bands.append(int(band))
            band *= self.eta
        return bands


class TrainSettings(_Section):
    """Training hyper-parameters of each trial's retraining (fine-tuning of the pruned, thinned network)."""

    model_config = ConfigDict(extra="forbid", strict=False)
    epochs: int = Field(default=1, ge=0)
    batch_size: int = Field(default=64, ge=1)
    lr: float = Field(default=0.01, gt=0)
    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_schedule: Literal["constant", "cosine", "step"] = "cosine"


class RetrainSettings(TrainSettings):
    """Each trial's retraining, optionally distilled from a teacher (Distiller's ``--kd-*``, see
    :mod:`edgeprune.training.distill`): ``kd_teacher: dense`` learns from the dense model the trial was pruned from."""

    kd_teacher: str | None = None
    kd_temp: float | None = None
    kd_distill_wt: float | None = None
    kd_student_wt: float | None = None
    kd_teacher_wt: float | None = None
    kd_start_epoch: int | None = None

    def distill(self) -> DistillConfig | None:
        """The distillation of every trial's retraining, or None."""
        return distill_config(self.kd_teacher, temperature=self.kd_temp, distill_wt=self.kd_distill_wt,
                              student_wt=self.kd_student_wt, teacher_wt=self.kd_teacher_wt,
                              start_epoch=self.kd_start_epoch)


class PretrainSettings(TrainSettings):
    """Training of the dense model, once per study, when ``model`` is a zoo name (0 epochs: prune it untrained)."""

    epochs: int = Field(default=0, ge=0)
    lr: float = Field(default=0.05, gt=0)


class ExportSettings(_Section):
    """ONNX export of each retrained trial (the artifact its measurement runs)."""

    model_config = ConfigDict(extra="forbid", strict=False)
    exporter: Literal["dynamo", "torchscript"] = "torchscript"  # ~4x faster to export; the parity check guards it
    # The hand-over: an opset every consumer's runtime reads, OpenVINO 2022.3 LTS (the Neural Compute Stick 2's) too.
    opset: int | None = OPSET_2022_3
    parity_images: int = Field(default=64, ge=1)


class BenchmarkSettings(_Section):
    """How each trial's ONNX model is measured: :func:`edgeprune.jobs.bench.bench_model`'s protocol, kept short."""

    model_config = ConfigDict(extra="forbid", strict=False)
    backend: Literal["onnxruntime", "openvino"] = "onnxruntime"  # both run the ONNX artifact
    device: str = "CPU"
    threads: int = Field(default=1, ge=1)
    batch: int = Field(default=1, ge=1)
    niter: int = Field(default=100, ge=1)
    warmup: int = Field(default=10, ge=0)
    budget_s: float = Field(default=5.0, ge=0)


SECTION_MODELS: dict[str, type[BaseModel]] = {
    "metric": MetricSpec, "early_terminate": HyperbandSpec, "pretrain": PretrainSettings, "retrain": RetrainSettings,
    "export": ExportSettings, "benchmark": BenchmarkSettings, "tracking": TrackingSettings,
}
NESTED_MODELS: dict[str, dict[str, type[BaseModel]]] = {"tracking": {"wandb": WandbSettings, "mlflow": MlflowSettings}}
UNSUPPORTED = {
    "controller": "edgeprune's study is the controller; there is no W&B cloud or local controller to choose",
    "job": "W&B Launch jobs are not run by edgeprune; name the script as 'program' instead",
    "image_uri": "W&B Launch images are not run by edgeprune; name the script as 'program' instead",
}
TOP_KEYS = ("name", "description", "program", "command", "method", "metric", "parameters", "early_terminate",
            "run_cap", "project", "entity", "apiVersion", "kind", *UNSUPPORTED, "objectives", *PIPELINE_KEYS,
            "constraints", "tracking", "seed", "sampler")


class SweepConfig(BaseModel):
    """A whole, checked sweep file. ``space`` is the parameter search space; paths are absolute."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    name: str | None = None
    description: str | None = None
    program: str | None = None
    command: list[Any] | None = None
    method: Literal["grid", "random", "bayes"]
    metric: MetricSpec | None = None
    objectives: list[ObjectiveSpec] = []
    constraints: list[ConstraintSpec] = []
    early_terminate: HyperbandSpec | None = None
    run_cap: int | None = Field(default=None, gt=0)
    project: str | None = None
    entity: str | None = None
    model: str | None = None
    data: str = "digits"
    pretrain: PretrainSettings = PretrainSettings()
    schedule_template: str | None = None
    retrain: RetrainSettings = RetrainSettings()
    export: ExportSettings = ExportSettings()
    benchmark: BenchmarkSettings = BenchmarkSettings()
    tracking: TrackingSettings = TrackingSettings()
    seed: int = 0
    sampler: Literal["gp", "tpe"] = "gp"
    raw: dict[str, Any] = Field(default_factory=dict, exclude=True)
    _space: SearchSpace | None = PrivateAttr(default=None)
    _source: SweepSource | None = PrivateAttr(default=None)
    _template: str | None = PrivateAttr(default=None)

    @property
    def space(self) -> SearchSpace:
        assert self._space is not None
        return self._space

    @property
    def source(self) -> SweepSource:
        assert self._source is not None
        return self._source

    @property
    def template_text(self) -> str | None:
        """The schedule template's text (pipeline sweeps), read once at load time."""
        return self._template

    @property
    def is_program(self) -> bool:
        return self.program is not None or self.command is not None

    @property
    def study_name(self) -> str:
        return self.name or Path(self.source.filename).stem

    @property
    def directions(self) -> list[ObjectiveSpec]:
        """The study's objectives: ``objectives`` if given, else WandB's single ``metric``."""
        if self.objectives:
            return list(self.objectives)
        assert self.metric is not None
        return [ObjectiveSpec(name=self.metric.name, goal=self.metric.goal)]


# ----------------------------------------------------------------------------------------------- parameters
PARAM_KEYS: dict[str, tuple[str, ...]] = {
    "constant": ("value",),
    "categorical": ("values", "probabilities"),
    "categorical_w_probabilities": ("values", "probabilities"),
    **{k: ("min", "max") for k in BOUNDED},
    **{k: ("mu", "sigma") for k in ("normal", "q_normal", "log_normal", "q_log_normal")},
    "beta": ("a", "b"), "q_beta": ("a", "b"),
}
DEFAULTS = {"mu": 0.0, "sigma": 1.0, "a": 1, "b": 1, "q": 1.0}  # WandB's schema defaults (q=1.0: floats)
POSITIVE_MIN = ("log_uniform_values", "q_log_uniform_values", "inv_log_uniform_values")


def _infer_kind(raw: Mapping[str, Any]) -> str | None:
    """WandB's order of inference when ``distribution`` is left out."""
    if "value" in raw:
        return "constant"
    if "values" in raw:
        return "categorical_w_probabilities" if "probabilities" in raw else "categorical"
    if "min" in raw and "max" in raw:
        ints = all(isinstance(raw[k], int) and not isinstance(raw[k], bool) for k in ("min", "max"))
        return "int_uniform" if ints else "uniform"
    return None


def _number(raw: Mapping[str, Any], key: str, path: KeyPath, source: SweepSource) -> float:
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise source.error((*path, key), f"{key!r} must be a number, got {value!r}")
    return value


def parse_param(path: KeyPath, raw: Any, source: SweepSource) -> ParamSpec:
    """One leaf of ``parameters`` (WandB's grammar), checked and with WandB's defaults filled in."""
    name_path = tuple(str(p) for p in path[1::2])  # ("parameters", "a", "parameters", "b") -> ("a", "b")
    if not isinstance(raw, Mapping):
        raise source.error(path, f"a parameter is a mapping such as {{values: [...]}} or {{min: 0, max: 1}}, "
                           f"got {raw!r}", hint=f"For a constant write '{{value: {raw!r}}}'.")
    kind = raw.get("distribution")
    if kind is None:
        kind = _infer_kind(raw)
        if kind is None:
            raise source.error(path, "cannot tell the distribution: give 'value', 'values', 'min' and 'max', or "
                               "'distribution'", hint=f"Distributions: {', '.join(KINDS)}.")
    elif kind not in KINDS:
        close = closest(str(kind), KINDS)
        raise source.error((*path, "distribution"), f"unknown distribution {kind!r}"
                           + (f"; did you mean {close[0]!r}?" if close else ""), hint=f"Known: {', '.join(KINDS)}.")
    if kind == "categorical" and "probabilities" in raw:
        kind = "categorical_w_probabilities"
    allowed = ("distribution", *PARAM_KEYS[kind], *(("q",) if kind in QUANTISED else ()))
    check_keys(raw, allowed, path, source, f"{kind} parameter")
    config = {k: raw[k] for k in allowed if k in raw and k != "distribution"}
    required = {"constant": ("value",), "categorical": ("values",)}.get(kind, ())
    required += ("values", "probabilities") if kind == "categorical_w_probabilities" else ()
    required += ("min", "max") if kind in BOUNDED else ()
    for key in required:
        if key not in raw:
            raise source.error(path, f"a {kind} parameter needs {key!r}")
    for key, default in DEFAULTS.items():
        if key in PARAM_KEYS[kind] or (key == "q" and kind in QUANTISED):
            config.setdefault(key, default)
    for key in ("min", "max", "mu", "sigma", "a", "b", "q"):
        if key in config:
            _number(config, key, path, source)
    if "values" in config:
        _check_values(config, path, source)
    if kind in BOUNDED:
        _check_bounds(kind, config, path, source)
    if config.get("q", 1) <= 0:
        raise source.error((*path, "q"), f"q must be > 0, got {config['q']!r}")
    if config.get("sigma", 1) < 0:
        raise source.error((*path, "sigma"), f"sigma must be >= 0, got {config['sigma']!r}")
    for key in ("a", "b"):
        if config.get(key, 1) <= 0:
            raise source.error((*path, key), f"the beta distribution needs {key} > 0, got {config[key]!r}")
    return ParamSpec(name_path, kind, config)


def _check_values(config: dict[str, Any], path: KeyPath, source: SweepSource) -> None:
    values = config["values"]
    if not isinstance(values, list) or not values:
        raise source.error((*path, "values"), f"'values' must be a non-empty list, got {values!r}")
    if "probabilities" not in config:
        return
    probs = config["probabilities"]
    if not isinstance(probs, list) or len(probs) != len(values):
        raise source.error((*path, "probabilities"), f"'probabilities' must be a list as long as 'values' "
                           f"({len(values)}), got {probs!r}")
    if any(isinstance(p, bool) or not isinstance(p, (int, float)) or p < 0 for p in probs):
        raise source.error((*path, "probabilities"), f"probabilities must be numbers >= 0, got {probs!r}")
    if not np.isclose(sum(probs), 1.0):
        raise source.error((*path, "probabilities"), f"probabilities sum to {sum(probs):g}, not 1")


def _check_bounds(kind: str, config: dict[str, Any], path: KeyPath, source: SweepSource) -> None:
    lo, hi = config["min"], config["max"]
    if kind == "int_uniform":
        for key in ("min", "max"):
            if not isinstance(config[key], int):
                raise source.error((*path, key), f"int_uniform needs integer bounds, got {key} {config[key]!r}",
                                   hint="Use 'distribution: uniform' for real numbers.")
    if lo >= hi:
        raise source.error((*path, "min"), f"min {lo!r} is not less than max {hi!r}",
                           hint="Swap the bounds: min is the lower end of the range.")
    if kind in POSITIVE_MIN and lo <= 0:
        raise source.error((*path, "min"), f"{kind} takes the values themselves as bounds, so min must be > 0, "
                           f"got {lo!r}", hint="For natural-log exponents as bounds use 'log_uniform'.")


def parse_parameters(raw: Any, source: SweepSource, path: KeyPath = ("parameters",)) -> list[ParamSpec]:
    """Flatten WandB's (possibly nested) ``parameters`` into leaf specs with dotted names."""
    if not isinstance(raw, Mapping) or not raw:
        raise source.error(path, "'parameters' must be a non-empty mapping of parameter names to distributions")
    specs: list[ParamSpec] = []
    for key, value in raw.items():
        if not isinstance(key, str) or not NAME_RE.match(key):
            raise source.error((*path, key), f"parameter name {key!r} must match {NAME_RE.pattern}")
        if isinstance(value, Mapping) and "parameters" in value:
            check_keys(value, ("parameters",), (*path, key), source, "nested parameter")
            specs += parse_parameters(value["parameters"], source, (*path, key, "parameters"))
        else:
            specs.append(parse_param((*path, key), value, source))
    return specs


# --------------------------------------------------------------------------------------------- the whole file
def _section(data: Mapping[str, Any], key: str, source: SweepSource) -> Any:
    """Check a section's keys (with suggestions) before pydantic sees it, so typos name the closest key."""
    value = data[key]
    model = SECTION_MODELS[key]
    for unsupported in ("impute", "impute_while_running"):
        if key == "metric" and isinstance(value, Mapping) and unsupported in value:
            raise source.error((key, unsupported), f"metric.{unsupported} is not supported: Optuna's samplers leave "
                               "failed trials out of their model instead of imputing a value for them",
                               hint=f"Remove '{unsupported}'.")
    if isinstance(value, Mapping):
        check_keys(value, tuple(model.model_fields), (key,), source, f"{key!r}")
        for sub, sub_model in NESTED_MODELS.get(key, {}).items():
            if isinstance(value.get(sub), Mapping):
                check_keys(value[sub], tuple(sub_model.model_fields), (key, sub), source, f"{key}.{sub}")
    return {} if value is None and key == "tracking" else value


def _check_objectives(cfg: SweepConfig, source: SweepSource) -> None:
    if cfg.metric is None and not cfg.objectives:
        raise source.error((), "the sweep names no 'metric' (or 'objectives') to rank its trials by",
                           hint="Add e.g. 'metric: {name: top1, goal: maximize}'.")
    names = [o.name for o in cfg.objectives]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise source.error(("objectives", i, "name"), f"objective {name!r} is listed twice")
    if cfg.early_terminate is not None and cfg.metric is None:
        raise source.error(("early_terminate",), "hyperband compares runs on 'metric', which is missing")
    et = cfg.early_terminate
    if et is not None and et.max_iter is None and et.min_iter is None:
        raise source.error(("early_terminate",), "hyperband needs 'min_iter', or 'max_iter' and 's'")
    if et is not None and et.max_iter is not None:
        if et.s is None:
            raise source.error(("early_terminate", "max_iter"), "hyperband with 'max_iter' needs 's' too")
        if not et.bands():
            raise source.error(("early_terminate",), "these settings give no band: increase s, decrease eta or "
                               "increase max_iter")
    if cfg.is_program:
        return
    checks: list[tuple[KeyPath, str]] = [(("objectives", i, "name"), n) for i, n in enumerate(names)]
    if cfg.metric is not None:
        checks.append((("metric", "name"), cfg.metric.name))
    for path, name in checks:
        if name not in PIPELINE_METRICS:
            close = closest(name, PIPELINE_METRICS)
            raise source.error(path, f"the pipeline does not measure {name!r}"
                               + (f"; did you mean {close[0]!r}?" if close else ""),
                               hint=f"Measured per trial: {', '.join(PIPELINE_METRICS)}.")
    if cfg.early_terminate is not None and cfg.metric is not None and cfg.metric.name not in EPOCH_METRICS:
        raise source.error(("metric", "name"), f"hyperband needs a metric reported every retraining epoch; "
                           f"{cfg.metric.name!r} is measured once per trial", hint=f"Use one of {EPOCH_METRICS}.")


def _check_mode(cfg: SweepConfig, data: Mapping[str, Any], source: SweepSource) -> None:
    if cfg.is_program:
        for key in PIPELINE_KEYS:
            if key in data:
                raise source.error((key,), f"{key!r} configures edgeprune's built-in pipeline, but this sweep runs "
                                   "'program'/'command'", hint="Remove one or the other.")
        uses_program = any("${program}" in str(c) for c in (cfg.command or ["${program}"]))
        if uses_program and cfg.program is None:
            raise source.error(("command",), "the command uses ${program} but 'program' is not set")
        return
    for key in ("model", "schedule_template"):
        if getattr(cfg, key) is None:
            raise source.error((), f"a pipeline sweep needs {key!r} (or a 'program' to run instead)",
                               hint="model: a zoo name or checkpoint; schedule_template: a Distiller schedule "
                                    "with ${param} placeholders.")
    if cfg.sampler != "gp" and cfg.method != "bayes":
        raise source.error(("sampler",), "'sampler' chooses the model of method 'bayes' only")


def _check_grid(cfg: SweepConfig, source: SweepSource) -> None:
    for p in cfg.space.params:
        if cfg.method == "grid" and p.kind not in GRID_KINDS:
            raise source.error(param_key_path(p), f"grid search walks categorical (without probabilities), constant, "
                               f"int_uniform and q_uniform parameters; {p.name!r} is {p.kind}",
                               hint="Use 'values: [...]', or method random/bayes.")


def _resolve(path: str, base: Path) -> str:
    p = Path(path).expanduser()
    return str(p if p.is_absolute() or not (base / p).exists() else (base / p).resolve())


def validate_sweep(data: Any, source: SweepSource) -> SweepConfig:
    """Check a loaded sweep document; relative paths are taken from the sweep file's directory."""
    if not isinstance(data, Mapping):
        raise source.error((), "a sweep file is a YAML mapping with 'method', 'metric' and 'parameters', got "
                           f"{'an empty file' if data is None else type(data).__name__}")
    for key, why in UNSUPPORTED.items():
        if key in data:
            raise source.error((key,), f"{key!r} is not supported: {why}")
    check_keys(data, TOP_KEYS, (), source, "top-level")
    if "method" not in data:
        raise source.error((), "the sweep has no 'method'", hint=f"Add 'method: ' one of {', '.join(METHODS)}.")
    if "parameters" not in data:
        raise source.error((), "the sweep has no 'parameters' to search")
    fields = {k: v for k, v in data.items() if k not in ("apiVersion", "kind", "parameters", "constraints")}
    for key in SECTION_MODELS:
        if key in fields:
            fields[key] = _section(data, key, source)
    if isinstance(fields.get("objectives"), list):
        for i, obj in enumerate(fields["objectives"]):
            if isinstance(obj, Mapping):
                check_keys(obj, ("name", "goal"), ("objectives", i), source, "objective")
    try:
        cfg = SweepConfig.model_validate({**fields, "raw": dict(data)})
    except ValidationError as exc:
        raise pydantic_error(exc, (), source) from None
    cfg._source = source
    specs = parse_parameters(data["parameters"], source)
    try:
        cfg._space = SearchSpace(tuple(specs), cfg.method)
    except ValueError as exc:
        raise source.error(("parameters",), str(exc)) from None
    _check_mode(cfg, data, source)
    _check_objectives(cfg, source)
    cfg.constraints = parse_constraints(data.get("constraints"), source, None if cfg.is_program else PIPELINE_METRICS)
    _check_grid(cfg, source)
    if not cfg.space.searchable:
        raise source.error(("parameters",), "every parameter is a constant, so there is nothing to search")
    base = Path(source.filename).resolve().parent
    if cfg.program is not None:
        cfg.program = _resolve(cfg.program, base)
    if not cfg.is_program:
        assert cfg.model is not None and cfg.schedule_template is not None
        cfg.model = _resolve(cfg.model, base)
        cfg.data = _resolve(cfg.data, base)
        cfg.schedule_template = _resolve(cfg.schedule_template, base)
        cfg._template = check_template(Path(cfg.schedule_template), cfg.space, source, ("schedule_template",))
        _check_distillation(cfg, source, base)
    return cfg


def _check_distillation(cfg: SweepConfig, source: SweepSource, base: Path) -> None:
    """The retrain section's ``kd_*`` keys, refused as the command line refuses its ``--kd-*`` options."""
    r = cfg.retrain
    try:
        r.distill()
    except ConfigError as exc:
        as_keys = [re.sub(r"--kd-([a-z-]+)", lambda m: "kd_" + m.group(1).replace("-", "_"), text or "")
                   for text in (exc.message, exc.hint)]
        named = re.search(r"kd_[a-z_]+", as_keys[0])
        raise source.error(("retrain", named.group(0)) if named else ("retrain",), as_keys[0],
                           hint=as_keys[1] or None) from None
    if r.kd_teacher is None or r.kd_teacher == DENSE:
        if r.kd_teacher == DENSE and not Path(cfg.model or "").is_file() and cfg.pretrain.epochs == 0:
            raise source.error(("retrain", "kd_teacher"), f"kd_teacher: dense would distil from {cfg.model!r} with "
                               "its untrained initial weights (pretrain.epochs is 0)",
                               hint="Train the dense model first (pretrain.epochs > 0) or give a trained checkpoint "
                                    "as 'model' or as kd_teacher.")
        return
    r.kd_teacher = _resolve(r.kd_teacher, base)
    if not Path(r.kd_teacher).is_file():
        raise source.error(("retrain", "kd_teacher"), f"the teacher checkpoint {r.kd_teacher!r} does not exist",
                           hint="kd_teacher is a checkpoint file (relative to the sweep file) or 'dense'.")


def parse_sweep(text: str, filename: str = "<sweep>") -> SweepConfig:
    """Parse sweep YAML text; ``filename`` names it in errors and anchors its relative paths."""
    data, positions = load_yaml(text, filename)
    source = SweepSource(filename, positions.positions)
    return validate_sweep(data, source)


def load_sweep(path: str | Path) -> SweepConfig:
    """Read and check a sweep file."""
    path = Path(path)
    return parse_sweep(read_config_text(path, "sweep file", SweepError), str(path))
