"""The two plain-JSON messages of a trial: what to PRODUCE, and the produced job to MEASURE.

Why messages rather than function arguments: the two halves of a trial may run in different processes
or on different machines (a producer next to the GPUs, a consumer on the edge device), so everything
one half needs from the other travels as a small, validated, self-contained JSON document. The artifact
itself travels by path plus SHA-256, which the measuring side checks before it trusts a file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from edgeprune.errors import EdgepruneError
from edgeprune.fileio import sha256_file, write_text
from edgeprune.sweep.config import BenchmarkSettings, ExportSettings, RetrainSettings

JOB_FILE = "job.json"  # a TrialJob's name in its trial directory


class ArtifactError(EdgepruneError):
    """A trial artifact that is missing or differs from the one its job was produced with."""


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def write(self, path: str | Path) -> Path:
        write_text(path, self.model_dump_json(indent=2) + "\n")
        return Path(path)

    @classmethod
    def read(cls, path: str | Path) -> Any:
        return cls.model_validate_json(Path(path).read_text(encoding="utf-8"))


class TrialRequest(_Message):
    """Everything the PRODUCE half needs: the trial's values, the schedule template, model, data, settings."""

    study_name: str
    trial_number: int
    values: dict[str, Any]
    template: str
    model: str
    data: str
    retrain: RetrainSettings
    export: ExportSettings
    benchmark: BenchmarkSettings
    out_dir: str
    seed: int = 0
    threads: int = 1


class ArtifactFormat(_Message):
    """What the artifact is, so a consumer whose runtime cannot read it can say exactly why."""

    format: str = "onnx"
    opset: int
    exporter: str


class TrialJob(_Message):
    """A produced trial, ready to be measured: the ONNX artifact (path + SHA-256), metrics so far, settings."""

    study_name: str
    trial_number: int
    values: dict[str, Any]
    artifact: str
    artifact_sha256: str
    checkpoint: str
    schedule: str
    input_shape: list[int]
    metrics: dict[str, float]
    history: list[dict[str, float]]
    benchmark: BenchmarkSettings
    host: str
    artifact_format: ArtifactFormat | None = None  # None in jobs of earlier versions

    def verified_artifact(self) -> Path:
        """The artifact's path, after checking it is the very file that was produced."""
        path = Path(self.artifact)
        if not path.is_file():
            raise ArtifactError(f"Trial {self.trial_number}'s artifact {path} does not exist here.",
                                hint="Measure on a machine that shares the run directory, or copy the file there.")
        if sha256_file(path) != self.artifact_sha256:
            raise ArtifactError(f"Trial {self.trial_number}'s artifact {path} has changed since it was produced "
                                "(SHA-256 differs).", hint="Produce the trial again.")
        return path
