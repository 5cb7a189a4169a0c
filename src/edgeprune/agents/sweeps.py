"""Sweeps known to a queue: a producer registers its sweep file there, so others can join by name.

Why the queue keeps them: a consumer is started with a queue and a storage only, and must open each
sweep's study (its objectives decide what is told); a second producer on another machine should not need
a copy of the files. The registered document is the sweep file's text plus the schedule template it names,
written back into a local directory and loaded with :func:`edgeprune.sweep.config.load_sweep` — the very
same text, so the study's fingerprint check accepts it. Names in the sweep (``model``, ``data``) must
mean the same on every machine: zoo names, ``digits``, or paths on a shared mount.
"""

from __future__ import annotations

import json
from pathlib import Path

from edgeprune.agents.queue import JobQueue, safe_name
from edgeprune.errors import ConfigError, UnknownNameError
from edgeprune.fileio import write_text
from edgeprune.sweep.config import SweepConfig, load_sweep
from edgeprune.sweep.engine import SweepStudy

SWEEP_SUFFIXES = (".yaml", ".yml", ".json")


def sweep_document(cfg: SweepConfig) -> str:
    """The sweep file's text and the relatively named template, as one JSON document."""
    source = Path(cfg.source.filename)
    template = str(cfg.raw["schedule_template"])
    return json.dumps({"file": source.name, "text": source.read_text(encoding="utf-8"),
                       "files": {template: cfg.template_text}}, sort_keys=True)


def materialize(document: str, directory: Path) -> SweepConfig:
    """Write a registered sweep into ``directory`` and load it (templates named by absolute path must exist)."""
    doc = json.loads(document)
    directory = directory.resolve()
    for name, text in doc["files"].items():
        target = (directory / name).resolve()
        if Path(name).is_absolute():
            continue  # the sweep names a path every machine is expected to have
        if not target.is_relative_to(directory):
            raise ConfigError(f"The registered sweep names {name!r}, outside its own directory.",
                              hint="Name the schedule template relative to the sweep file, without '..'.")
        write_text(target, text)
    path = directory / doc["file"]
    write_text(path, doc["text"])
    return load_sweep(path)


def looks_like_a_path(spec: str) -> bool:
    """Whether ``spec`` names a file rather than a registered sweep: a directory part or a file suffix."""
    return Path(spec).suffix.lower() in SWEEP_SUFFIXES or "/" in spec or "\\" in spec


def resolve_sweep(spec: str, queue: JobQueue, work_dir: Path) -> SweepConfig:
    """``spec`` is a sweep file (registered in the queue on the way) or the name of a registered sweep."""
    if Path(spec).is_file():
        cfg = load_sweep(spec)
        if cfg.is_program:
            raise ConfigError(f"{spec} runs a program; agents run edgeprune's built-in pipeline only.",
                              hint="Run program sweeps with `edgeprune sweep`.")
        queue.register_sweep(cfg.study_name, sweep_document(cfg))
        return cfg
    document = queue.sweep_document(spec)
    if document is None and looks_like_a_path(spec):
        known = queue.sweeps()
        raise ConfigError(f"The sweep file {spec} does not exist (looked in {Path.cwd()}).",
                          hint="Check the path" + (f", or name a sweep registered in {queue.url}: {', '.join(known)}."
                                                   if known else "."))
    if document is None:
        raise UnknownNameError("sweep", spec, queue.sweeps(),
                               hint=f"Give a sweep file, or start one producer with the file first: it registers "
                                    f"the sweep in {queue.url}.")
    return materialize(document, work_dir / "sweeps" / safe_name(spec))


class SweepStudies:
    """The studies of a queue's sweeps, each opened once (from its registered document) and kept."""

    def __init__(self, queue: JobQueue, storage_url: str, work_dir: Path) -> None:
        self.queue, self.storage_url, self.work_dir = queue, storage_url, work_dir
        self.opened: dict[str, SweepStudy] = {}

    def __getitem__(self, sweep: str) -> SweepStudy:
        if sweep not in self.opened:
            self.opened[sweep] = SweepStudy(resolve_sweep(sweep, self.queue, self.work_dir), self.storage_url)
        return self.opened[sweep]
