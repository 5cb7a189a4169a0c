"""A refusal that only the thinning epoch can see does not lose the run: the model is saved first."""

from __future__ import annotations

import pytest
import torch

from edgeprune.errors import EdgepruneError
from edgeprune.models.checkpoint import load_checkpoint, model_from_checkpoint
from edgeprune.train import TrainConfig
from edgeprune.train.run import train_model

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
