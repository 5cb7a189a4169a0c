"""Training, fine-tuning and evaluation: the loop the compression scheduler plugs into."""

from edgeprune.train.hooks import TrainingHooks
from edgeprune.train.loop import TrainConfig, Trainer, TrainResult
from edgeprune.train.metrics import evaluate

__all__ = ["TrainConfig", "TrainResult", "Trainer", "TrainingHooks", "evaluate"]
