"""The training / fine-tuning loop.

Why our own loop rather than Lightning: the compression schedule must run at exact points of
every minibatch (Distiller's callback order, see ``hooks.py``), optimizer state must be thinned
in place when layers shrink, and the loop has to stay within a few percent of a hand-written
PyTorch loop (``benchmarks/train_loop.py``). The loop is small; everything that steers it is a
:class:`~edgeprune.training.hooks.TrainingHooks`.

Resume is exact: data order and augmentation are pure functions of (seed, epoch), and the
checkpoint written after every epoch holds model, optimizer, LR scheduler, hook state and RNG
state. A run interrupted at any point and resumed ends with the same weights as one that was not.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from torch import nn
from torch.nn import functional as F

from edgeprune.data import BatchLoader, ImageDataset
from edgeprune.errors import CheckpointError, ConfigError, EdgepruneError, add_hint
from edgeprune.fileio import write_json
from edgeprune.models.checkpoint import load_checkpoint, load_state_dict_checked, save_checkpoint
from edgeprune.models.widths import apply_widths
from edgeprune.signals import raise_if_interrupted
from edgeprune.training.hooks import TrainingHooks
from edgeprune.training.metrics import ClassificationMeter, evaluate
from edgeprune.training.seeding import capture_rng, restore_rng, seed_everything

OPTIMIZERS = ("sgd", "adam", "adamw")
LR_SCHEDULES = ("constant", "cosine", "step")
LAST = "checkpoint.pth"
BEST = "best.pth"
STOPPED = "stopped.pth"  # the model as it was when a hook refused to go on (e.g. thinning at its epoch)


@dataclass
class TrainConfig:
    epochs: int = 1
    batch_size: int = 128
    lr: float = 0.1
    optimizer: str = "sgd"
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    lr_schedule: str = "cosine"  # ignored when a hook (compression schedule) owns the LR
    augment: bool | None = None  # None: on for colour images, off for grey ones (digits: a flip changes meaning)
    seed: int = 0
    device: str = "auto"
    amp: bool = True  # only on CUDA
    channels_last: bool = False
    eval_batch_size: int = 512
    progress: bool = True
    holdout: int = 0  # training images held out and validated on instead of the test split (0: the test split)

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"Unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}.")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"Unknown LR schedule {self.lr_schedule!r}; choose one of {', '.join(LR_SCHEDULES)}.")
        if self.epochs < 0 or self.batch_size < 1 or self.lr <= 0 or self.holdout < 0:
            raise ConfigError("epochs must be >= 0, batch_size >= 1, lr > 0 and holdout >= 0.")


@dataclass
class TrainResult:
    out_dir: Path
    epochs_run: int
    history: list[dict[str, float]] = field(default_factory=list)
    final: dict[str, float] = field(default_factory=dict)
    best_top1: float = 0.0


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"Unknown device {name!r}; use auto, cpu, cuda or cuda:N.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"Device {name!r} requested but CUDA is not available here; use --device cpu.")
    return device


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                               weight_decay=cfg.weight_decay)
    cls = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
    return cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def make_lr_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> Any:
    if cfg.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(cfg.epochs, 1))
    if cfg.lr_schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, math.ceil(cfg.epochs / 3)), gamma=0.1)
    return None


class Trainer:
    """Trains ``model`` on ``train_data``, validating on ``val_data`` after every epoch.

    ``arch``/``arch_kwargs`` go into every checkpoint so it rebuilds without the Python object.
    ``hooks`` are called in list order at each point of the loop (see :class:`TrainingHooks`).
    A hook that owns the learning rate sets ``owns_lr = True``; then no built-in LR schedule runs.
    """

    def __init__(
        self,
        model: nn.Module,
        train_data: ImageDataset,
        val_data: ImageDataset,
        config: TrainConfig,
        out_dir: str | Path,
        *,
        arch: str,
        arch_kwargs: dict[str, Any] | None = None,
        normalize: dict[str, Sequence[float]],
        hooks: Sequence[TrainingHooks] = (),
        console: Console | None = None,
        provenance: dict[str, Any] | None = None,
    ) -> None:
        self.cfg = config
        self.device = resolve_device(config.device)
        self.model = model.to(self.device)
        if config.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.arch, self.arch_kwargs = arch, dict(arch_kwargs or {})
        self.normalize = {"mean": list(normalize["mean"]), "std": list(normalize["std"])}
        self.train_data, self.val_data = train_data, val_data
        self.hooks = list(hooks)
        self.out_dir = Path(out_dir)
        self.console = console or Console(stderr=True)
        self.provenance = dict(provenance or {})
        self.optimizer = make_optimizer(self.model, config)
        owns_lr = any(getattr(h, "owns_lr", False) for h in self.hooks)
        self.lr_scheduler = None if owns_lr else make_lr_scheduler(self.optimizer, config)
        self.use_amp = config.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda") if self.use_amp else None
        common = {"mean": self.normalize["mean"], "std": self.normalize["std"], "seed": config.seed,
                  "channels_last": config.channels_last}
        augment = config.augment if config.augment is not None else train_data.input_shape[0] == 3
        self.train_loader = BatchLoader(train_data, config.batch_size, shuffle=True, augment=augment,
                                        **common)
        self.val_loader = BatchLoader(val_data, config.eval_batch_size, shuffle=False, augment=False, **common)
        self.start_epoch = 0
        self.resumed_hook_states: list[Any] = []
        self.history: list[dict[str, float]] = []
        self.best_top1 = -1.0

    def add_hook(self, hook: TrainingHooks) -> None:
        """Register a hook after construction (one that needs the trainer's loader or optimizer)."""
        self.hooks.append(hook)
        if getattr(hook, "owns_lr", False):
            self.lr_scheduler = None

    # ----------------------------------------------------------------------------------------- resume
    def resume(self, path: str | Path | None = None) -> bool:
        """Restore everything from ``path`` (default: this run's last checkpoint). False if none."""
        path = Path(path) if path else self.out_dir / LAST
        if not path.exists():
            return False
        ckpt = load_checkpoint(path)
        if ckpt.kind != "edgeprune" or ckpt.rng is None or ckpt.optimizer is None:
            raise CheckpointError(f"{str(path)!r} is not a resumable edgeprune training checkpoint.",
                                  hint="Start a new run in an empty output directory, or use it as MODEL.")
        if ckpt.widths:
            apply_widths(self.model, ckpt.widths)
            self.optimizer = make_optimizer(self.model, self.cfg)
            if self.lr_scheduler is not None:
                self.lr_scheduler = make_lr_scheduler(self.optimizer, self.cfg)
        load_state_dict_checked(self.model, ckpt.state_dict, source=str(path), arch=self.arch)
        self.model.to(self.device)
        self.optimizer.load_state_dict(ckpt.optimizer)
        if self.lr_scheduler is not None and ckpt.lr_scheduler:
            self.lr_scheduler.load_state_dict(ckpt.lr_scheduler)
        hook_states = (ckpt.schedule or {}).get("hooks", [])
        self.resumed_hook_states = list(hook_states)  # what the caller checks against the hooks it gave
        for hook, state in zip(self.hooks, hook_states, strict=False):
            hook.load_state_dict(state)
        restore_rng(ckpt.rng)
        self.start_epoch = (ckpt.epoch or 0) + 1
        self.history = list((ckpt.schedule or {}).get("history", []))
        self.best_top1 = max((h["top1"] for h in self.history), default=-1.0)
        return True

    # ------------------------------------------------------------------------------------------ train
    def fit(self) -> TrainResult:
        if self.start_epoch == 0:
            seed_everything(self.cfg.seed)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        epochs_run = 0
        with self._progress() as progress:
            for epoch in range(self.start_epoch, self.cfg.epochs):
                train_metrics = self._train_epoch(epoch, progress)
                val = evaluate(self.model, self.val_loader, self.device)
                for hook in self.hooks:
                    hook.on_epoch_end(epoch, self.optimizer, val)
                if self.lr_scheduler is not None:
                    self.lr_scheduler.step()
                record = {"epoch": epoch, **val, "train_loss": train_metrics["loss"],
                          "train_top1": train_metrics["top1"], "lr": self.optimizer.param_groups[0]["lr"]}
                self.history.append(record)
                self._save(epoch, val)
                epochs_run += 1
                self.console.print(
                    f"epoch {epoch}: top1 {val['top1']:.2f}  top5 {val['top5']:.2f}  loss {val['loss']:.4f}  "
                    f"(train loss {train_metrics['loss']:.4f})"
                )
        final = self.history[-1] if self.history else evaluate(self.model, self.val_loader, self.device)
        write_json(self.out_dir / "history.json", self.history)
        return TrainResult(self.out_dir, epochs_run, self.history, dict(final), max(self.best_top1, 0.0))

    def _train_epoch(self, epoch: int, progress: Progress | None) -> dict[str, float]:
        model, optimizer, hooks = self.model, self.optimizer, self.hooks
        model.train()
        self.train_loader.set_epoch(epoch)
        steps = len(self.train_loader)
        for hook in hooks:
            hook.on_epoch_begin(epoch, model, optimizer)
        meter = ClassificationMeter(topk=(1,))
        task = progress.add_task(f"epoch {epoch}", total=steps) if progress else None
        for step, (x, y) in enumerate(self.train_loader):
            raise_if_interrupted()
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            try:
                for hook in hooks:
                    hook.on_minibatch_begin(epoch, step, steps, optimizer)
            except EdgepruneError as exc:
                raise self._stopped(epoch, step, exc)  # noqa: B904  (the same error, with a longer hint)
            with torch.autocast("cuda", dtype=torch.float16) if self.use_amp else contextlib.nullcontext():
                logits = model(x)
                for hook in hooks:
                    hook.after_forward(epoch, step, steps, x, logits)
                loss = F.cross_entropy(logits, y)
            meter.update(logits.detach(), y, loss.detach() * y.size(0))
            for hook in hooks:
                loss = hook.before_backward_pass(epoch, step, steps, loss, optimizer)
            optimizer.zero_grad(set_to_none=True)
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
                self.scaler.unscale_(optimizer)
            else:
                loss.backward()
            for hook in hooks:
                hook.before_parameter_optimization(epoch, step, steps, optimizer)
            if self.scaler is not None:
                self.scaler.step(optimizer)
                self.scaler.update()
            else:
                optimizer.step()
            for hook in hooks:
                hook.on_minibatch_end(epoch, step, steps, optimizer)
            if task is not None:
                progress.advance(task)
        if task is not None:
            progress.remove_task(task)
        return meter.result()

    def _stopped(self, epoch: int, step: int, exc: EdgepruneError) -> EdgepruneError:
        """Save the model before a hook's refusal ends the run (what only the thinning epoch can tell, such as
        zeros that training produced), and say where the work is, so that fixing the schedule loses no epoch."""
        path = self.out_dir / STOPPED
        save_checkpoint(path, self.model, **self._checkpoint_fields(epoch - 1, self.history[-1] if self.history
                                                                          else {}))
        resumable = (f"the run through epoch {epoch - 1} is in {self.out_dir / LAST}: fix the schedule and run "
                     "the same command again to resume from it; " if (self.out_dir / LAST).exists() else "")
        return add_hint(exc, f"Nothing is lost: {resumable}the model as it stood at epoch {epoch}, minibatch {step} "
                             f"(pruned, not thinned) is saved to {path}.")

    def _checkpoint_fields(self, epoch: int, metrics: dict[str, float]) -> dict[str, Any]:
        return dict(
            arch=self.arch, arch_kwargs=self.arch_kwargs, epoch=epoch, metrics=metrics,
            dataset={"name": self.train_data.name, "source": self.train_data.source,
                     "num_classes": self.train_data.num_classes, "classes": list(self.train_data.classes),
                     "input_shape": list(self.train_data.input_shape)},
            normalize=self.normalize, seed=self.cfg.seed,
            provenance={**self.provenance, "train_config": asdict(self.cfg)},
        )

    def _save(self, epoch: int, metrics: dict[str, float]) -> None:
        common = self._checkpoint_fields(epoch, metrics)
        save_checkpoint(
            self.out_dir / LAST, self.model, optimizer=self.optimizer, lr_scheduler=self.lr_scheduler,
            schedule={"hooks": [h.state_dict() for h in self.hooks], "history": self.history},
            rng=capture_rng(), **common,
        )
        if metrics["top1"] > self.best_top1:
            self.best_top1 = metrics["top1"]
            save_checkpoint(self.out_dir / BEST, self.model, **common)

    def _progress(self) -> contextlib.AbstractContextManager[Progress | None]:
        """The epoch's progress bar; none where nothing would show it (a log file, a pipe).

        Why: the bar is transient, so a console that is not a terminal never displays it, yet Rich would still
        render it ten times a second; on a loaded machine that cost 4 % of the loop's CPU time.
        """
        if not self.cfg.progress or not (self.console.is_terminal or self.console.is_jupyter):
            return contextlib.nullcontext()
        return Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("batches"),
            TimeElapsedColumn(), TimeRemainingColumn(), console=self.console, transient=True,
        )

