"""Reading a sweep's study back (for the report and ``sweep status``), from a run directory or a storage URL."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from edgeprune.errors import ConfigError, UnknownNameError
from edgeprune.sweep.constraints import ConstraintSpec, specs_from_attr
from edgeprune.sweep.storage import open_storage, redact


def is_study_target(target: str) -> bool:
    """A storage URL, a ``study.db`` file, or a directory holding one (a sweep's run directory)."""
    path = Path(target)
    return "://" in target or (path.is_file() and path.suffix == ".db") or (path / "study.db").is_file()


def storage_url_for(target: str) -> tuple[str, Path | None]:
    """The storage URL of ``target`` and the run directory (None for a remote storage)."""
    if "://" in target:
        return target, None
    path = Path(target).resolve()
    db = path if path.is_file() else path / "study.db"
    return f"sqlite:///{db}", db.parent


def metric_value(trial: Any, name: str) -> float | None:
    """A trial's recorded metric ``name`` as a finite float, or None when it was not measured."""
    value = trial.user_attrs.get("metrics", {}).get(name)
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


@dataclass
class StudyData:
    """Everything the report draws, read once from the storage."""

    name: str
    storage: str
    run_dir: Path | None
    attrs: dict[str, Any]
    trials: list[Any]
    objectives: list[dict[str, str]] = field(default_factory=list)

    @property
    def complete(self) -> list[Any]:
        return [t for t in self.trials if t.state.name == "COMPLETE" and "metrics" in t.user_attrs]

    @property
    def constraints(self) -> list[ConstraintSpec]:
        """The sweep's constraints, as recorded with the study (none for a sweep without them)."""
        return specs_from_attr(self.attrs.get("constraints"))

    @property
    def params(self) -> list[str]:
        return list(self.attrs.get("params") or sorted({k for t in self.trials for k in t.params}))

    def front_axes(self) -> tuple[tuple[str, str], tuple[str, str]] | None:
        """(x name, goal), (y name, goal) of the front: top-1 vs latency when measured, else the two objectives."""
        if self.complete and all(metric_value(t, "top1") is not None and metric_value(t, "latency_ms") is not None
                                 for t in self.complete):
            return ("latency_ms", "minimize"), ("top1", "maximize")
        if len(self.objectives) == 2:
            (a, b) = self.objectives
            return (b["name"], b["goal"]), (a["name"], a["goal"])
        return None


def open_study(target: str, study_name: str | None = None) -> tuple[Any, str, Path | None]:
    """The Optuna study at ``target`` (run directory, study.db or storage URL), its URL and run directory.

    A storage that does not exist is not created, and one that holds no study says so, so a mistyped path or
    database name is reported rather than answered with an empty sweep.
    """
    import optuna


    url, run_dir = storage_url_for(target)
    if run_dir is not None and not (run_dir / "study.db").is_file() and not Path(target).is_file():
        raise ConfigError(f"{target} holds no sweep (no study.db there).",
                          hint="Give the run directory of `edgeprune sweep` (-o), its study.db, or a storage URL.")
    if urlsplit(url).scheme.split("+")[0] == "sqlite" and not Path(url.split(":///", 1)[-1]).is_file():
        raise ConfigError(f"{redact(url)} does not exist.",
                          hint="Give the study.db that `edgeprune sweep` wrote (sqlite:///RUN_DIR/study.db).")
    storage = open_storage(url)
    names = optuna.get_all_study_names(storage)
    if not names:
        raise ConfigError(f"{redact(url)} holds no study: no sweep has started there.",
                          hint="Check the URL and the database name, or start the sweep with --storage URL first.")
    if study_name is None:
        if len(names) != 1:
            raise ConfigError(f"{redact(url)} holds {len(names)} studies; say which one with --study.",
                              hint=f"Studies: {', '.join(names)}.")
        study_name = names[0]
    elif study_name not in names:
        raise UnknownNameError("study", study_name, names)
    return optuna.load_study(study_name=study_name, storage=storage), url, run_dir


def study_data(study: Any, url: str, run_dir: Path | None = None) -> StudyData:
    """What the report and the live views draw, read once from an open Optuna study."""
    attrs = dict(study.user_attrs)
    objectives = attrs.get("objectives") or [{"name": f"objective {i}", "goal": d.name.lower()}
                                             for i, d in enumerate(study.directions)]
    return StudyData(study.study_name, redact(url), run_dir, attrs, study.get_trials(deepcopy=False), objectives)


def load_study_data(target: str, study_name: str | None = None) -> StudyData:
    study, url, run_dir = open_study(target, study_name)
    return study_data(study, url, run_dir)
