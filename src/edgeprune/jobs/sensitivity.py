"""The sensitivity verb: resolve model and data, cache the evaluation batches, run the analysis into a directory."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from edgeprune.analysis.sensitivity import (
    DEFAULT_RANGE,
    SensitivityOutput,
    SensitivitySettings,
    analyse_to_dir,
    check_group,
    parse_sparsities,
    sensitivity_weights,
)
from edgeprune.data import BatchLoader, evenly_spaced, load_dataset
from edgeprune.errors import ConfigError
from edgeprune.jobs.inputs import load_model_for_data, normalization_for
from edgeprune.training.loop import resolve_device
from edgeprune.training.metrics import evaluate
from edgeprune.training.seeding import seed_everything


def run_sensitivity(model_spec: str, data: str, out_dir: str | Path, *, group: str = "filter",
                    sparsities: str = DEFAULT_RANGE, layers: str | None = None, eval_batches: int | None = None,
                    batch_size: int = 256, device: str = "auto", module_prefix: bool = False, restart: bool = False,
                    arch: str | None = None, seed: int = 0, console: Console | None = None,
                    progress: bool = True) -> SensitivityOutput:
    """``edgeprune sensitivity``: resolve model and data, cache the evaluation batches, analyse into ``out_dir``.

    ``eval_batches`` limits the evaluation to ``eval_batches * batch_size`` test images spaced evenly over the
    split (a fixed subset, the same on every run; not the first ones, which in an image folder are all of one
    class). The normalisation is the checkpoint's, else the training split's.
    """
    group = check_group(group)
    values = parse_sparsities(sparsities)  # bad arguments fail before anything heavy is loaded
    if batch_size < 1 or (eval_batches is not None and eval_batches < 1):
        raise ConfigError("--batch-size and --eval-batches must be at least 1.")
    test = load_dataset(data, "test")
    seed_everything(seed)  # a zoo model's random weights are the same on every run, so it can resume
    if eval_batches is not None:
        test = evenly_spaced(test, eval_batches * batch_size)
    loaded = load_model_for_data(model_spec, test, arch)
    normalize = loaded.normalize or normalization_for(loaded, load_dataset(data, "train"))
    dev = resolve_device(device)
    model = loaded.model.to(dev).eval()
    weights = sensitivity_weights(model, group, layers)
    loader = BatchLoader(test, batch_size, shuffle=False, augment=False, mean=normalize["mean"], std=normalize["std"])
    batches = [(x.to(dev), y.to(dev)) for x, y in loader]
    settings = SensitivitySettings.of(model, weights, values, group, batches,
                                      {k: list(v) for k, v in normalize.items()})
    provenance = {"model": model_spec, "arch": loaded.arch, "data": str(data), "split": "test"}
    return analyse_to_dir(model, out_dir, settings, lambda m: evaluate(m, batches, dev),
                          module_prefix=module_prefix, restart=restart, console=console, progress=progress,
                          provenance=provenance)
