"""Thinning refusals: what is knowable fails when the schedule is built; what is not saves the run first."""

from __future__ import annotations

import pytest
import torch

from edgeprune.errors import EdgepruneError
from edgeprune.jobs.train import train_model
from edgeprune.models import create_model
from edgeprune.models.checkpoint import load_checkpoint, model_from_checkpoint
from edgeprune.schedule.config import ScheduleError, parse_schedule
from edgeprune.schedule.scheduler import CompressionScheduler
from edgeprune.training import TrainConfig

SCHEDULE = """
version: 1
pruners:
  everything:
    class: SparsityLevelParameterPruner
    levels: {block.conv_a.weight: 1.0}
extensions:
  thinner:
    class: FilterRemover
    thinning_func_str: remove_filters
policies:
  - pruner: {instance_name: everything}
    epochs: [1]
  - extension: {instance_name: thinner}
    epochs: [1]
"""


def test_thinning_refused_at_its_epoch_saves_the_model_and_says_where(tmp_path) -> None:
    """Fine-grained pruning zeroed every filter of conv_a by epoch 1 (what weights look like is known only then)."""
    schedule = tmp_path / "s.yaml"
    schedule.write_text(SCHEDULE)
    cfg = TrainConfig(epochs=2, batch_size=64, lr=0.05, device="cpu", progress=False, augment=False)
    with pytest.raises(EdgepruneError) as info:
        train_model("tests.tiny_nets:tiny_resnet", "digits", tmp_path / "run", cfg, schedule=schedule)
    text = str(info.value)
    assert "all 8 filters of layer 'block.conv_a'" in text and "s.yaml" in text
    assert f"the run through epoch 0 is in {tmp_path / 'run' / 'checkpoint.pth'}" in text
    assert f"saved to {tmp_path / 'run' / 'stopped.pth'}" in text
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pth").epoch == 0
    stopped = model_from_checkpoint(load_checkpoint(tmp_path / "run" / "stopped.pth"))
    assert tuple(stopped.block.conv_a.weight.shape) == (8, 8, 3, 3)  # not thinned: every change was undone
    assert not stopped.block.conv_a.weight.any() and stopped.conv1.weight.any()
    assert torch.isfinite(stopped(torch.randn(2, 1, 8, 8))).all()


def _structure_schedule(weights: str, sparsity: float, thinner: str = "") -> str:
    return f"""version: 1
pruners:
  p:
    class: L1RankedStructureParameterPruner
    group_type: Filters
    desired_sparsity: {sparsity}
    weights: [{weights}]
extensions:
  thinner:
    class: FilterRemover
    thinning_func_str: remove_filters
    {thinner}
policies:
  - pruner: {{instance_name: p}}
    epochs: [0]
  - extension: {{instance_name: thinner}}
    epochs: [3]
"""


def test_a_structure_target_of_one_is_refused_when_the_schedule_is_built() -> None:
    """Thinning cannot remove every filter of a layer (Distiller: ValueError at the thinning epoch)."""
    text = _structure_schedule("layer1.0.conv1.weight", 1.0)
    with pytest.raises(ScheduleError, match=r"s.yaml:3:3: pruners.p: its target sparsity 1.0 zeroes all 16 filters "
                                            r"of 'layer1.0.conv1.weight'.*extension 'thinner' \(epoch 3\)"):
        CompressionScheduler(create_model("resnet20_cifar"), parse_schedule(text, "s.yaml"))
    below = _structure_schedule("layer1.0.conv1.weight", 0.9)
    CompressionScheduler(create_model("resnet20_cifar"), parse_schedule(below, "s.yaml"))


class OutputConvNet(torch.nn.Module):
    """A fully convolutional net whose last conv's filters are the model's output channels."""

    def __init__(self) -> None:
        super().__init__()
        self.input_shape = (1, 8, 8)
        self.body = torch.nn.Conv2d(1, 6, 3, padding=1)
        self.head = torch.nn.Conv2d(6, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.body(x)))


def test_pruning_filters_that_are_the_model_output_is_refused_when_the_schedule_is_built() -> None:
    with pytest.raises(ScheduleError, match=r"pruners.p: it prunes filters of 'head.weight', which also reach the "
                                            r"model output"):
        CompressionScheduler(OutputConvNet(), parse_schedule(_structure_schedule("head.weight", 0.5), "s.yaml"))
    # with auto_group the thinner keeps them (masks only there), so the schedule is fine
    CompressionScheduler(OutputConvNet(), parse_schedule(_structure_schedule("head.weight", 0.5, "auto_group: true"),
                                                         "s.yaml"))
    CompressionScheduler(OutputConvNet(), parse_schedule(_structure_schedule("body.weight", 0.5), "s.yaml"))
