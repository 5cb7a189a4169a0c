"""Knowledge distillation while retraining (Hinton et al. 2015), with Distiller's semantics and defaults.

A pruned network recovers more of its accuracy in few epochs when it learns from a trained teacher's
softened outputs as well as from the labels. Distiller's ``KnowledgeDistillationPolicy`` (and its
``--kd-*`` options) define what that means here:

* distillation loss = KL(softmax(teacher / T) || softmax(student / T)), averaged over the batch and
  multiplied by T² so its gradients keep their size when T changes; its gradient with respect to the
  student is that of the soft cross-entropy (the two differ by the teacher's entropy, a constant);
* overall loss = ``student_wt`` × (the loss the schedule's policies made of the labels' cross-entropy)
  + ``distill_wt`` × distillation loss; defaults T = 1, 0.5 / 0.5, teacher weight 0, from epoch 0;
* the teacher's own loss against the labels (``teacher_wt``) only matters when the teacher trains too.
  Distiller refuses a non-zero weight and so do we: the teacher here is frozen.

The teacher runs in eval mode without gradients on the student's exact (augmented, normalised) batch,
so it must have been trained on the same classes, input shape and normalisation: that is checked
before the first batch. Its forward time is measured, so every epoch shows what the teacher costs.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch import nn
from torch.nn import functional as F

from edgeprune.data import ImageDataset
from edgeprune.distillation import DENSE, DistillConfig
from edgeprune.errors import CheckpointError, ConfigError
from edgeprune.fileio import sha256_file
from edgeprune.models.checkpoint import load_checkpoint
from edgeprune.models.resolve import resolve_model
from edgeprune.training.hooks import TrainingHooks

_MAX_ANCESTORS = 64  # provenance chains are short; this only stops a cycle of files naming each other


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL divergence of the student's softened distribution from the teacher's, averaged over the batch.

    Unscaled (without T²), as Distiller logs it, so runs at different temperatures compare.
    """
    log_p_student = F.log_softmax(student_logits.float() / temperature, dim=1)
    p_teacher = F.softmax(teacher_logits.float() / temperature, dim=1)
    return F.kl_div(log_p_student, p_teacher, reduction="batchmean")


def combined_loss(loss: torch.Tensor, student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                  config: DistillConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(overall loss, unscaled distillation loss) of one minibatch, as Distiller combines them."""
    distill = distillation_loss(student_logits, teacher_logits, config.temperature)
    overall = config.student_wt * loss + config.distill_wt * distill * config.temperature ** 2
    return overall, distill


# ------------------------------------------------------------------------------------------- the teacher
def dense_parent(model_spec: str) -> Path:
    """The dense checkpoint a run's model descends from, as its checkpoints' provenance records it.

    A checkpoint written by pruning (``edgeprune prune``, or training under a schedule) names its parent
    and the schedule; the dense parent is the parent of the oldest pruned ancestor. A checkpoint with no
    pruned ancestor is dense itself: a run that prunes it as it trains learns from the model it started as.
    """
    start = Path(model_spec)
    if not start.is_file():
        raise ConfigError(f"--kd-teacher dense: the model {model_spec!r} is not a checkpoint, so this run has no "
                          "trained dense parent to learn from.", hint="Give the teacher's checkpoint: --kd-teacher "
                                                                      "PATH.")
    dense: Path | None = None
    current = start
    for _ in range(_MAX_ANCESTORS):
        provenance = load_checkpoint(current).provenance or {}
        if provenance.get("schedule"):
            dense = None  # pruned: the dense parent is further up
        elif dense is None:
            dense = current
        parent = provenance.get("parent")
        if not parent:
            break
        if not Path(parent).is_file():
            raise ConfigError(f"--kd-teacher dense: {current} records its parent {parent!r}, which is not a checkpoint "
                              "file here, so this run cannot tell which dense model it descends from.",
                              hint="Give the dense teacher's checkpoint: --kd-teacher PATH.")
        current = Path(parent)
    if dense is None:
        raise ConfigError(f"--kd-teacher dense: {current} was pruned and records no parent checkpoint.",
                          hint="Give the dense teacher's checkpoint: --kd-teacher PATH.")
    return dense


@dataclass
class Teacher:
    """A frozen, checked teacher and where it came from (what checkpoints record as its provenance)."""

    model: nn.Module
    path: str
    sha256: str
    arch: str
    top1: float | None = None
    requested: str = ""

    def provenance(self) -> dict[str, Any]:
        return {"requested": self.requested, "path": self.path, "sha256": self.sha256, "arch": self.arch,
                "top1": self.top1}


def load_teacher(spec: str, model_spec: str, data: ImageDataset, normalize: dict[str, list[float]],
                 device: torch.device | str = "cpu") -> Teacher:
    """Resolve ``spec`` (a checkpoint or ``dense``), load it frozen, and check it fits the student's batches."""
    path = dense_parent(model_spec) if spec == DENSE else Path(spec)
    if not path.is_file():
        raise ConfigError(f"Teacher checkpoint {str(path)!r} does not exist.",
                          hint="--kd-teacher takes a trained checkpoint file, or 'dense' for the run's dense parent.")
    loaded = resolve_model(str(path))
    assert loaded.checkpoint is not None
    ckpt = loaded.checkpoint
    _check_teacher(path, ckpt.dataset, ckpt.normalize, loaded.model, data, normalize)
    model = loaded.model.to(device).eval()
    model.requires_grad_(False)
    top1 = ckpt.metrics.get("top1") if ckpt.metrics else ckpt.extra.get("top1")
    return Teacher(model, str(path), sha256_file(path), loaded.arch, float(top1) if top1 is not None else None,
                   requested=spec)


def _check_teacher(path: Path, recorded: dict[str, Any], teacher_norm: dict[str, list[float]] | None,
                   model: nn.Module, data: ImageDataset, normalize: dict[str, list[float]]) -> None:
    """Refuse, before the first batch, a teacher that would see inputs or predict classes unlike the student's."""
    where = f"Teacher {str(path)!r}"
    shape = tuple(data.input_shape)
    if recorded.get("input_shape") and tuple(recorded["input_shape"]) != shape:
        raise ConfigError(f"{where} was trained on inputs of shape {tuple(recorded['input_shape'])}, but the "
                          f"student trains on {data.source!r} with inputs of shape {shape}.",
                          hint="The teacher sees the student's exact batches: use a teacher trained on this data.")
    if teacher_norm is None:
        warnings.warn(f"{where} records no input normalisation; it is assumed to be the student's "
                      f"(mean {normalize['mean']}, std {normalize['std']}).", stacklevel=2)
    elif not _same(teacher_norm, normalize):
        raise ConfigError(f"{where} was trained with normalisation mean {list(teacher_norm['mean'])}, std "
                          f"{list(teacher_norm['std'])}, but the student's batches are normalised with mean "
                          f"{normalize['mean']}, std {normalize['std']}.",
                          hint="The teacher sees the student's exact batches: use a teacher trained with the "
                               "student's normalisation (e.g. the student's dense parent, --kd-teacher dense).")
    try:
        with torch.no_grad():
            out = model.eval()(torch.zeros(2, *shape))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{where} cannot take the student's inputs of shape {shape}: {first}",
                          hint="Use a teacher trained on this data.") from None
    if out.dim() != 2 or out.shape[1] != data.num_classes:
        raise ConfigError(f"{where} predicts {out.shape[1] if out.dim() == 2 else tuple(out.shape[1:])} classes but "
                          f"the student learns the {data.num_classes} classes of {data.source!r}.",
                          hint="Use a teacher trained on the same classes.")
    classes = recorded.get("classes")
    if classes and data.classes and list(classes) != list(data.classes):
        raise ConfigError(f"{where} was trained on classes {list(classes)}, the student on {list(data.classes)}.",
                          hint="Teacher and student must predict the same classes in the same order.")


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return all(len(a[k]) == len(b[k]) and all(abs(float(x) - float(y)) <= 1e-6 for x, y in zip(a[k], b[k],
                                                                                                strict=True))
               for k in ("mean", "std"))


# --------------------------------------------------------------------------------------------- the hook
class Distillation(TrainingHooks):
    """The training hook: runs the teacher on each batch, combines the losses, and measures the teacher's cost.

    Put it after the compression scheduler (Distiller adds its policy last): the schedule's regularizers
    add to the labels' loss first, then distillation weighs the sum.
    """

    def __init__(self, teacher: Teacher, config: DistillConfig, console: Console | None = None) -> None:
        self.teacher, self.cfg, self.console = teacher, config, console
        self.active = False
        self._teacher_logits: torch.Tensor | None = None
        self._student_logits: torch.Tensor | None = None
        self._epoch_start = 0.0
        self._teacher_s = 0.0
        self._images = 0
        self._distill_sum: torch.Tensor | None = None
        self._steps = 0
        self.cost: list[dict[str, float]] = []  # one row per distilled epoch: the measured teacher cost

    def describe(self) -> dict[str, Any]:
        """What checkpoints record: the options and the teacher's provenance (file and SHA-256)."""
        return {**asdict(self.cfg), "teacher": self.teacher.provenance()}

    def on_epoch_begin(self, epoch: int, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.active = epoch >= self.cfg.start_epoch
        self._teacher_s, self._images, self._steps, self._distill_sum = 0.0, 0, 0, None
        self._epoch_start = time.perf_counter()

    def after_forward(self, epoch: int, step: int, steps_per_epoch: int, inputs: torch.Tensor,
                      logits: torch.Tensor) -> None:
        if not self.active:
            return
        start = time.perf_counter()
        with torch.no_grad():
            self._teacher_logits = self.teacher.model(inputs)
        if inputs.is_cuda:
            torch.cuda.synchronize(inputs.device)  # the measured time is the teacher's, not queued work
        self._teacher_s += time.perf_counter() - start
        self._student_logits = logits
        self._images += inputs.size(0)

    def before_backward_pass(self, epoch: int, step: int, steps_per_epoch: int, loss: torch.Tensor,
                             optimizer: torch.optim.Optimizer) -> torch.Tensor:
        if not self.active:
            return loss
        if self._teacher_logits is None or self._student_logits is None:
            raise RuntimeError("Distillation.before_backward_pass without after_forward: the training loop must "
                               "call after_forward with the student's batch and logits.")
        overall, distill = combined_loss(loss, self._student_logits, self._teacher_logits, self.cfg)
        self._teacher_logits = self._student_logits = None
        distill = distill.detach()
        self._distill_sum = distill if self._distill_sum is None else self._distill_sum + distill
        self._steps += 1
        return overall

    def on_minibatch_end(self, epoch: int, step: int, steps_per_epoch: int,
                         optimizer: torch.optim.Optimizer) -> None:
        if self.active and step == steps_per_epoch - 1:  # the training half of the epoch ends here
            self._record(epoch, time.perf_counter() - self._epoch_start)

    def _record(self, epoch: int, train_s: float) -> None:
        student_s = max(train_s - self._teacher_s, 1e-9)
        row = {"epoch": epoch, "images": self._images, "train_s": train_s, "teacher_s": self._teacher_s,
               "images_per_s": self._images / max(train_s, 1e-9), "images_per_s_without_teacher":
                   self._images / student_s,
               "distill_loss": float(self._distill_sum) / max(self._steps, 1) if self._distill_sum is not None
               else float("nan")}
        self.cost.append(row)
        if self.console is not None:
            self.console.print(cost_line(row, f"epoch {epoch} distillation"), highlight=False)

    def state_dict(self) -> dict[str, Any]:
        return {"distillation": self.describe(), "cost": list(self.cost)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.check_resumes(state.get("distillation"))
        self.cost = list(state.get("cost", []))

    def check_resumes(self, recorded: dict[str, Any] | None) -> None:
        """Refuse to continue a run under distillation other than the one it was trained with."""
        if recorded != self.describe():
            raise CheckpointError(
                f"This run was trained with distillation {_settings_text(recorded)}, not with "
                f"{_settings_text(self.describe())}; a resumed run must continue exactly as it started.",
                hint="Resume with the run's own --kd-* options (or none: they are read from its checkpoint), or "
                     "start a new run in another output directory.")


def _settings_text(d: dict[str, Any] | None) -> str:
    if not d:
        return "off"
    t = d["teacher"]
    return (f"(teacher {t['path']} sha256 {t['sha256'][:12]}, T {d['temperature']}, distill {d['distill_wt']}, "
            f"student {d['student_wt']}, teacher {d['teacher_wt']}, from epoch {d['start_epoch']})")


def cost_line(row: dict[str, float], label: str = "distillation") -> str:
    """One line a user reads to decide whether the teacher is worth its time."""
    share = 100.0 * row["teacher_s"] / max(row["train_s"], 1e-9)
    return (f"{label}: teacher forward {row['teacher_s']:.1f} s of {row['train_s']:.1f} s training ({share:.0f} %): "
            f"{row['images_per_s']:.0f} images/s with the teacher, {row['images_per_s_without_teacher']:.0f} without "
            f"(distillation loss {row['distill_loss']:.4f})")


def total_cost(rows: list[dict[str, float]]) -> dict[str, float] | None:
    """The cost rows of a run summed into one (images/s over all distilled epochs)."""
    if not rows:
        return None
    images = sum(r["images"] for r in rows)
    train_s = sum(r["train_s"] for r in rows)
    teacher_s = sum(r["teacher_s"] for r in rows)
    return {"epochs": len(rows), "images": images, "train_s": train_s, "teacher_s": teacher_s,
            "images_per_s": images / max(train_s, 1e-9),
            "images_per_s_without_teacher": images / max(train_s - teacher_s, 1e-9),
            "distill_loss": rows[-1]["distill_loss"]}


def recorded_distillation(checkpoint: str | Path) -> dict[str, Any] | None:
    """The distillation a training checkpoint was written under (its provenance), or None."""
    path = Path(checkpoint)
    if not path.is_file():
        return None
    return (load_checkpoint(path).provenance or {}).get("distillation")


def config_from_record(record: dict[str, Any]) -> DistillConfig:
    """The options a checkpoint recorded, to resume a distilled run given no ``--kd-*`` options."""
    keys = ("temperature", "distill_wt", "student_wt", "teacher_wt", "start_epoch")
    return DistillConfig(teacher=record["teacher"]["requested"] or record["teacher"]["path"],
                         **{k: record[k] for k in keys})
