"""Training, fine-tuning and evaluation: the loop the compression scheduler plugs into."""

from edgeprune.training.hooks import TrainingHooks
from edgeprune.training.loop import TrainConfig, Trainer, TrainResult
from edgeprune.training.metrics import evaluate

__all__ = ["TrainConfig", "TrainResult", "Trainer", "TrainingHooks", "evaluate"]
