"""Reading a sweep's study back (for the report and ``sweep status``), from a run directory or a storage URL."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeprune.errors import ConfigError, UnknownNameError


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
    def params(self) -> list[str]:
        return list(self.attrs.get("params") or sorted({k for t in self.trials for k in t.params}))


def load_study_data(target: str, study_name: str | None = None) -> StudyData:
    import optuna

    from edgeprune.sweep.storage import open_storage, redact

    url, run_dir = storage_url_for(target)
    if run_dir is not None and not (run_dir / "study.db").is_file() and not Path(target).is_file():
        raise ConfigError(f"{target} holds no sweep (no study.db there).",
                          hint="Give the run directory of `edgeprune sweep` (-o), its study.db, or a storage URL.")
    storage = open_storage(url)
    names = optuna.get_all_study_names(storage)
    if study_name is None:
        if len(names) != 1:
            raise ConfigError(f"{redact(url)} holds {len(names)} studies; say which one with --study.",
                              hint=f"Studies: {', '.join(names) or 'none'}.")
        study_name = names[0]
    elif study_name not in names:
        raise UnknownNameError("study", study_name, names)
    study = optuna.load_study(study_name=study_name, storage=storage)
    attrs = dict(study.user_attrs)
    objectives = attrs.get("objectives") or [{"name": f"objective {i}", "goal": d.name.lower()}
                                             for i, d in enumerate(study.directions)]
    return StudyData(study_name, redact(url), run_dir, attrs, study.get_trials(deepcopy=False), objectives)
