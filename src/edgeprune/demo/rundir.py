"""The demo's run directory: where every artifact goes, and what makes a rerun continue rather than start over.

Why one directory with fixed names: every phase composes with the next through plain files (a checkpoint, a
CSV, a schedule, a sweep file, a study), so a rerun only has to look whether a phase's file is there, and a
user can pick any of them up by hand (``edgeprune sweep runs/demo/sweep.yaml``, ``edgeprune report runs/demo``).
The sweep's own files (``study.db``, ``queue.db``, ``artifacts/``, ``trials/``, ``measured/``, ``logs/``) sit at the top
so that ``edgeprune report`` finds the sensitivity pictures beside its study.

``demo.json`` records the inputs (model, data, settings). A rerun with other
inputs is refused instead of mixing two jobs' results; ``--fresh`` deletes a directory only when that file
marks it as a demo run, so ``-o`` pointed at the wrong place never deletes anything.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeprune.errors import ConfigError
from edgeprune.fileio import write_json

STATE_FILE = "demo.json"
FORMAT = "edgeprune.demo"


@dataclass(frozen=True)
class RunDir:
    """The paths of one demo run."""

    root: Path
    state_file: Path
    baseline_dir: Path
    sensitivity_dir: Path
    suggested: Path
    sweep_file: Path
    template: Path
    study_db: Path
    logs: Path  # the agents' output
    report: Path
    summary: Path

    @classmethod
    def at(cls, root: str | Path) -> RunDir:
        r = Path(root).resolve()
        return cls(r, r / STATE_FILE, r / "baseline", r / "sensitivity", r / "suggested.yaml", r / "sweep.yaml",
                   r / "sweep_template.yaml", r / "study.db", r / "logs", r / "report.html", r / "summary.json")

    def read_state(self) -> dict[str, Any]:
        try:
            state = json.loads(self.state_file.read_text(encoding="utf-8"))
            if state.get("format") == FORMAT:
                return state
        except (OSError, ValueError, AttributeError):  # unreadable, not JSON, not an object
            pass
        raise ConfigError(f"{self.state_file} is not a readable edgeprune demo record, so the demo neither "
                          "continues nor deletes that directory.",
                          hint="Pass another --output (-o) directory, or delete that one yourself.")

    def write_state(self, state: dict[str, Any]) -> None:
        write_json(self.state_file, {"format": FORMAT, **state})


def open_run_dir(path: str | Path, inputs: dict[str, Any], *, fresh: bool = False) -> tuple[RunDir, bool]:
    """The run directory for ``inputs``, created or checked; True when it continues an earlier run.

    An existing directory is continued only if its ``demo.json`` holds the same inputs; one without a record
    must be empty (a demo does not scatter its files into an unrelated directory).
    """
    rd = RunDir.at(path)
    if rd.root.exists() and not rd.root.is_dir():
        raise ConfigError(f"The demo's output {rd.root} is a file, not a directory.",
                          hint="Pass another --output (-o) directory.")
    marked = rd.state_file.is_file()
    if fresh and marked:
        rd.read_state()  # only a directory our record marks is deleted
        shutil.rmtree(rd.root)
        marked = False
    if rd.root.is_dir() and not marked and any(rd.root.iterdir()):
        raise ConfigError(f"{rd.root} exists and is not an edgeprune demo directory (no {STATE_FILE}); the demo "
                          "will not mix its files with what is there.",
                          hint="Pass an empty or new --output (-o) directory.")
    if marked:
        saved = rd.read_state().get("inputs")
        if saved != inputs:
            changed = sorted(k for k in {*inputs, *(saved or {})} if (saved or {}).get(k) != inputs.get(k))
            raise ConfigError(f"{rd.root} holds a demo run with other inputs ({', '.join(changed)} differ), so it "
                              "cannot be continued.",
                              hint="Rerun with the same options, add --fresh to start over there, or pass another "
                                   "--output (-o).")
        return rd, True
    rd.root.mkdir(parents=True, exist_ok=True)
    rd.write_state({"inputs": inputs})
    return rd, False
