"""The demo's knobs, chosen so the whole job takes about a minute on 2 idle CPU cores with the built-in digits.

Why these values (timed on 2 cores; the README's demo section has the measured phases):

* **baseline** — 20 epochs of ResNet-20 on the 1,438 digits: ~98.3 % top-1 in ~6 s (10 epochs stop at ~98.0 %).
* **threads** — the demo's own training and analysis run one torch thread. On 8x8 images a second thread
  gains nothing measurable on an idle machine, but when anything else wants a core, OpenMP threads waiting
  for each other made these phases 2-5x slower (measured); the sweep's agents use one thread each too.
* **sensitivity** — every conv at 0, 0.05, ..., 0.9 on up to 1,024 test images (digits has 359): ~6 s,
  because evaluation is the only cost, and the suggestion needs the fine steps.
* **suggestion** — at most 2 top-1 points per conv, the README's rule of thumb.
* **sweep** — one sparsity per group of suggested convs (ResNet stages), each at 0.5, 1 and 1.5 times the
  suggested level: up to 27 trials (fewer where 1.5x clips at 0.9), from gentler to harsher than the
  suggestion, so the front shows the trade-off around it. Each trial fine-tunes 3 epochs (~1.5 s produced on
  one thread) and is measured at batch 1 by OpenVINO on one thread, the edge setting: 1,000 timed runs per
  round keep the median of a ~0.05 ms inference steady, within a 1 s budget per trial (~1 s measured).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from edgeprune.distillation import DistillConfig
from edgeprune.errors import ConfigError


@dataclass(frozen=True)
class DemoSettings:
    """Everything that decides the demo's numbers; a rerun in the same directory must use the same."""

    epochs: int = 20
    lr: float = 0.05
    batch_size: int = 64
    sensitivity_range: str = "0:0.95:0.05"
    sensitivity_images: int = 1024
    max_drop: float = 2.0
    multipliers: tuple[float, ...] = (0.5, 1.0, 1.5)
    min_trials: int = 6
    max_trials: int = 27
    producers: int = 2
    retrain_epochs: int = 3
    retrain_lr: float = 0.01
    bench: dict[str, Any] = field(default_factory=lambda: {
        "backend": "openvino", "device": "CPU", "threads": 1, "batch": 1, "niter": 1000, "warmup": 100,
        "budget_s": 1.0})
    threads: int = 1  # torch threads of the baseline and sensitivity phases
    seed: int = 0
    distill: DistillConfig | None = None  # trials retrain distilled from the dense baseline (teacher 'dense')
    search: str | None = None  # a latency budget (0.7x): the demo ends with edgeprune search on the baseline

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.retrain_epochs < 0:
            raise ConfigError(f"--epochs must be at least 1 and --retrain-epochs at least 0, got {self.epochs} and "
                              f"{self.retrain_epochs}.")
        if not self.multipliers or min(self.multipliers) <= 0:
            raise ConfigError(f"The sweep's multipliers of the suggested sparsities must be positive, got "
                              f"{self.multipliers!r}.")
        if self.max_trials < 1 or self.producers < 1 or self.threads < 1:
            raise ConfigError(f"The demo needs at least one sweep trial (--trials), producer and thread, got "
                              f"{self.max_trials}, {self.producers} and {self.threads}.")

    def retrain(self) -> dict[str, Any]:
        """The sweep file's ``retrain`` section: each trial's fine-tuning, distilled if asked."""
        section: dict[str, Any] = {"epochs": self.retrain_epochs, "lr": self.retrain_lr,
                                   "batch_size": self.batch_size}
        if self.distill is not None:
            d = self.distill
            section.update(kd_teacher=d.teacher, kd_temp=d.temperature, kd_distill_wt=d.distill_wt,
                           kd_student_wt=d.student_wt, kd_teacher_wt=d.teacher_wt, kd_start_epoch=d.start_epoch)
        return section

    def to_dict(self) -> dict[str, Any]:
        """JSON form, recorded in the run directory so a rerun can tell whether it continues the same job."""
        d = asdict(self)
        d["multipliers"] = list(self.multipliers)
        for optional in ("distill", "search"):
            if d[optional] is None:
                del d[optional]  # a run directory from before these options existed continues
        return d
