"""A training script written for `wandb agent`: it reads wandb.config and calls wandb.log, nothing else.

`edgeprune sweep wandb_program.yaml` runs it unchanged (offline, no W&B account needed); so would
`wandb sweep wandb_program.yaml && wandb agent SWEEP_ID` with a W&B server.
"""

import wandb

import edgeprune as ep
from edgeprune.training.hooks import TrainingHooks

run = wandb.init()
cfg = wandb.config
train, test = ep.load_dataset("digits", "train"), ep.load_dataset("digits", "test")
model = ep.create_model("resnet20_cifar", num_classes=10, in_channels=1)
trainer = ep.Trainer(
    model, train, test, ep.TrainConfig(epochs=cfg.epochs, batch_size=64, lr=cfg.lr, momentum=cfg.optimizer["momentum"],
                                       progress=False),
    f"{run.dir}/train", arch="resnet20_cifar", arch_kwargs={"in_channels": 1}, normalize={"mean": [0.5], "std": [0.25]})


class LogEpochs(TrainingHooks):
    def on_epoch_end(self, epoch, optimizer, metrics):
        wandb.log({"val_top1": metrics["top1"], "val_loss": metrics["loss"], "epoch": epoch})


trainer.add_hook(LogEpochs())
trainer.fit()
wandb.finish()
