"""Distiller's ``--kd-*`` options, checked: what knowledge distillation while retraining is asked to do.

Torch-free on purpose: sweep files carry these options in their ``retrain`` section and are read on the
measuring side too, which has no torch. The distillation itself is :mod:`edgeprune.training.distill`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from edgeprune.errors import ConfigError

DENSE = "dense"
OPTION_NAMES = {"teacher": "--kd-teacher", "temperature": "--kd-temp", "distill_wt": "--kd-distill-wt",
                "student_wt": "--kd-student-wt", "teacher_wt": "--kd-teacher-wt", "start_epoch": "--kd-start-epoch"}


@dataclass(frozen=True)
class DistillConfig:
    """Distiller's ``--kd-*`` options; ``teacher`` is a checkpoint path or ``dense`` (the run's dense parent)."""

    teacher: str
    temperature: float = 1.0
    distill_wt: float = 0.5
    student_wt: float = 0.5
    teacher_wt: float = 0.0
    start_epoch: int = 0

    def __post_init__(self) -> None:
        if not str(self.teacher).strip():
            raise ConfigError("--kd-teacher is empty; give a checkpoint file or 'dense'.")
        weights = {"--kd-distill-wt": self.distill_wt, "--kd-student-wt": self.student_wt,
                   "--kd-teacher-wt": self.teacher_wt}
        bad = [f"{name} {value}" for name, value in weights.items() if not math.isfinite(value) or value < 0]
        if bad:
            raise ConfigError(f"Distillation loss weights must be finite and not negative, got {', '.join(bad)}.",
                              hint="Distiller's defaults are --kd-distill-wt 0.5 --kd-student-wt 0.5 "
                                   "--kd-teacher-wt 0.")
        if self.teacher_wt != 0:
            raise ConfigError(f"--kd-teacher-wt {self.teacher_wt}: the teacher is frozen (eval mode, no gradients), "
                              "so a teacher-vs-labels loss would train nothing.",
                              hint="Leave --kd-teacher-wt at 0, as Distiller requires.")
        if self.distill_wt + self.student_wt == 0:
            raise ConfigError("Distillation loss weights sum to zero (--kd-distill-wt 0, --kd-student-wt 0): "
                              "the student would learn nothing.",
                              hint="Give --kd-distill-wt and/or --kd-student-wt a positive weight (Distiller: "
                                   "0.5 each; 0.7 and 0.3 in its CIFAR examples).")
        if not math.isfinite(self.temperature) or self.temperature <= 0:
            raise ConfigError(f"--kd-temp must be a positive number, got {self.temperature}.",
                              hint="1 is Distiller's default; Hinton et al. use 2 to 20.")
        if self.start_epoch < 0:
            raise ConfigError(f"--kd-start-epoch must be 0 or later, got {self.start_epoch}.")


def distill_config(teacher: str | None, *, switch: str = "--kd-teacher",
                   **options: float | int | None) -> DistillConfig | None:
    """A :class:`DistillConfig` from command-line options (None: not given), or None without a teacher.

    Options given without the one that turns distillation on (``switch``) are refused rather than ignored.
    """
    given = {k: v for k, v in options.items() if v is not None}
    if teacher is None:
        if given:
            names = ", ".join(OPTION_NAMES.get(k, k) for k in given)
            raise ConfigError(f"{names} given without {switch}: there is nothing to distil from.",
                              hint=f"Add {switch} dense (the run's dense parent) or {switch} CHECKPOINT."
                              if switch == OPTION_NAMES["teacher"] else f"Add {switch}.")
        return None
    return DistillConfig(teacher=teacher, **given)
