"""``edgeprune prune``: apply what a schedule does at epoch 0, without training, and save the result.

One-shot pruning is how most Distiller filter-ranking examples start (prune + thin at epoch 0, then
fine-tune), and it is the first half of every sweep trial. The output is an ordinary edgeprune
checkpoint whose (thin) architecture rebuilds from its recorded widths, and whose provenance names
the parent model and the schedule (with its SHA-256) that produced it.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from edgeprune.data import BatchLoader, evenly_spaced, load_dataset
from edgeprune.errors import ConfigError
from edgeprune.jobs.inputs import load_model_for_data, normalization_for
from edgeprune.models.checkpoint import save_checkpoint
from edgeprune.models.resolve import resolve_model
from edgeprune.models.sparsity import sparsity_table
from edgeprune.models.summary import ModelSummary, model_summary
from edgeprune.schedule.config import load_schedule
from edgeprune.schedule.scheduler import CompressionScheduler
from edgeprune.training.seeding import seed_everything

# Activation-ranked and feature-map pruners look at this many training images (Distiller's
# ``--act-stats`` default pass is a fraction of an epoch too).
STATS_IMAGES = 512


@dataclass
class LayerOutcome:
    """One weight the schedule touched: its shape before and after, and what is still zero in place."""

    name: str
    shape_before: tuple[int, ...]
    shape_after: tuple[int, ...]
    zero_filters_pct: float
    zero_channels_pct: float
    zero_elements_pct: float


@dataclass
class PruneResult:
    out: Path
    arch: str
    before: ModelSummary
    after: ModelSummary
    layers: list[LayerOutcome] = field(default_factory=list)
    thinned: bool = False  # filters or channels were removed, not only zeroed

    def to_dict(self) -> dict[str, Any]:
        """What ``edgeprune prune`` prints, as plain data (``--json``)."""
        totals = ("macs", "weight_params", "params")
        return {"checkpoint": str(self.out), "arch": self.arch, "thinned": self.thinned,
                "before": {k: getattr(self.before, k) for k in totals},
                "after": {k: getattr(self.after, k) for k in totals},
                "layers": [{**asdict(x), "shape_before": list(x.shape_before), "shape_after": list(x.shape_after)}
                           for x in self.layers]}


def prune_model(model_spec: str, schedule_path: str | Path, out: str | Path, *, thin: bool = False,
                data: str | None = None, arch: str | None = None, seed: int = 0,
                epochs: int | str | None = None) -> PruneResult:
    """Run every policy that fires at epoch 0 of ``schedule_path`` on MODEL; ``thin`` also removes all zeros.

    ``epochs`` replays epochs ``0 .. epochs-1`` instead (``"all"``: through the schedule's last pruning or
    thinning epoch), without training, which is how a gradual (AGP) schedule shows the shapes it ends with.
    ``seed`` fixes the initial weights of a zoo model and any randomised pruner (noise, random ranking).
    """
    spec = load_schedule(schedule_path)  # fail on the YAML before loading anything heavy
    seed_everything(seed)
    batches = None
    if data is None:
        loaded = resolve_model(model_spec, arch=arch)
    else:  # a few training batches for pruners that rank by activations or refit feature maps
        train = evenly_spaced(load_dataset(data, "train"), STATS_IMAGES)  # every class, not the first one's
        loaded = load_model_for_data(model_spec, train, arch)
        norm = normalization_for(loaded, train)
        batches = BatchLoader(train, 128, shuffle=False, augment=False, mean=norm["mean"], std=norm["std"])
    model = loaded.model.eval()
    scheduler = CompressionScheduler(model, spec, batches=batches)
    before = model_summary(model, arch=loaded.arch)
    if epochs is None:
        scheduler.apply_epoch_zero()
    else:
        scheduler.replay(scheduler.compression_epochs() if epochs == "all" else _epoch_count(epochs))
    if thin:
        scheduler.thin_all()
    after = model_summary(model, arch=loaded.arch)
    ckpt = loaded.checkpoint
    schedule_bytes = Path(schedule_path).read_bytes()
    out = save_checkpoint(
        out, model, arch=loaded.arch, arch_kwargs=loaded.arch_kwargs,
        dataset=ckpt.dataset if ckpt else {"input_shape": list(before.input_shape)},
        normalize=loaded.normalize, metrics={}, seed=seed,
        schedule={"compression": scheduler.state_dict()},
        provenance={"parent": ckpt.path if ckpt else model_spec, "schedule": str(schedule_path),
                    "schedule_sha256": hashlib.sha256(schedule_bytes).hexdigest(), "thin": thin},
    )
    layers = _outcomes(before, model)
    thinned = thin or any(x.shape_before != x.shape_after for x in layers)  # --thin, or a thinning extension
    return PruneResult(Path(out), loaded.arch, before, after, layers, thinned)


def _epoch_count(epochs: int | str) -> int:
    try:
        count = int(epochs)
    except ValueError:
        count = 0
    if count < 1:
        raise ConfigError(f"--epochs must be a positive number of epochs or 'all', got {epochs!r}.",
                          hint="'all' replays the schedule through its last pruning or thinning epoch.")
    return count


def _outcomes(before: ModelSummary, model: nn.Module) -> list[LayerOutcome]:
    shapes = {f"{layer.name}.weight": tuple(layer.weight_shape) for layer in before.layers}
    return [LayerOutcome(row.name, shapes.get(row.name, row.shape), row.shape, row.k3d_pct, row.ch_pct,
                         row.fine_pct)
            for row in sparsity_table(model)[0]
            if row.fine_pct or shapes.get(row.name, row.shape) != row.shape]
