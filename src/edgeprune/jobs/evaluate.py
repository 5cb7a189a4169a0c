"""``edgeprune eval model.onnx|model.xml``: top-1/top-5/loss of an exported model on real data.

The exported model runs in ONNX Runtime (.onnx) or OpenVINO f32 (.xml) behind a thin ``nn.Module``
adapter, so the very same metric code as for PyTorch models computes the numbers — a difference
between the two is the export's, not the evaluation's. Normalisation comes from the model's metadata.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from edgeprune.data import BatchLoader, channel_stats, load_dataset
from edgeprune.errors import ConfigError
from edgeprune.runtime.backends import Runner, RunSettings, open_runner
from edgeprune.runtime.backends.base import shape_text
from edgeprune.runtime.devices import available_cpus
from edgeprune.runtime.errors import ShapeError
from edgeprune.runtime.modelfile import model_kind
from edgeprune.training.metrics import evaluate


class RuntimeModule(nn.Module):
    """Runs a batch through an exported model's runtime; pads a short last batch for a fixed-batch model."""

    def __init__(self, runner: Runner) -> None:
        super().__init__()
        self.runner = runner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        n, step = len(batch), self.runner.static_batch
        if step and n % step:
            batch = np.concatenate([batch, np.zeros((step - n % step, *batch.shape[1:]), dtype=np.float32)])
        return torch.from_numpy(self.runner.infer_all(batch)[:n])


def evaluate_exported(path: str, data: str, *, split: str = "test", batch_size: int = 512,
                      limit: int | None = None) -> tuple[dict[str, float], int, dict[str, list[float]]]:
    """Metrics, number of images and the normalisation used, for an exported model on ``data``."""
    backend = "onnxruntime" if model_kind(path) == "onnx" else "openvino"
    runner = open_runner(backend, path, RunSettings(threads=available_cpus(), precision="f32"))
    test = load_dataset(data, split)
    if limit:
        test = test.subset(limit)
    expected = tuple(runner.input_shape[1:])
    if expected != test.input_shape:
        raise ShapeError(f"Model {path} expects input of shape {shape_text(runner.input_shape)} (N, C, H, W) but "
                         f"{data!r} has {list(test.input_shape)} images.",
                         hint="Evaluate on data of the model's image size and channels.")
    normalize = runner.io.metadata.get("normalize")
    if not normalize:  # a model exported from a zoo name: the data's own statistics, as for checkpoints
        mean, std = channel_stats(load_dataset(data, "train"))
        normalize = {"mean": list(mean), "std": list(std)}
    loader = BatchLoader(test, runner.static_batch or batch_size, shuffle=False, augment=False,
                         mean=normalize["mean"], std=normalize["std"])
    module = RuntimeModule(runner)
    classes = module(torch.zeros(1, *expected)).shape[1]
    if classes != test.num_classes:
        raise ConfigError(f"Model {path} predicts {classes} classes but data {data!r} ({split}) has "
                          f"{test.num_classes}.", hint="Evaluate on the data the model was trained for.")
    return evaluate(module, loader), len(test), {k: list(v) for k, v in normalize.items()}
