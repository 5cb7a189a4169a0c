"""What distillation costs in training: images/s of the training loop with and without a teacher, side by side.

The student is resnet20_cifar, the teacher a second (dense) resnet20_cifar, as when a pruned ResNet-20 learns
from its dense parent (a pruned student is cheaper, so the teacher's share of the time is larger then). Both
sides run ``Trainer.fit()`` for one epoch on the same synthetic CIFAR-sized batches, interleaved A/B/A/B so
drift of the machine hits both alike; the report is the median of the repeats, and the teacher's own forward
time as the distillation hook measures it inside the same epochs.

    python benchmarks/distill_cost.py [--batches 20] [--repeats 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

from edgeprune.data import ImageDataset
from edgeprune.distillation import DistillConfig
from edgeprune.models import create_model
from edgeprune.training import TrainConfig, Trainer
from edgeprune.training.distill import Distillation, Teacher

BATCH = 128  # the CIFAR-10 experiment's batch size
KD = DistillConfig("dense", temperature=5.0, distill_wt=0.7, student_wt=0.3)  # its distillation settings


def epoch_images_per_s(data: ImageDataset, teacher: Teacher | None) -> tuple[float, float]:
    """Images/s of one ``fit()`` epoch (64-image validation and checkpoint included), and the teacher's share."""
    hooks = [Distillation(teacher, KD)] if teacher is not None else []
    config = TrainConfig(epochs=1, batch_size=BATCH, lr=0.05, device="cpu", lr_schedule="constant", progress=False)
    trainer = Trainer(create_model("resnet20_cifar"), data, data.subset(64), config, "/tmp/edgeprune-bench-kd",
                      arch="resnet20_cifar", normalize={"mean": [0.5] * 3, "std": [0.25] * 3}, hooks=hooks)
    start = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - start
    share = hooks[0].cost[0]["teacher_s"] / hooks[0].cost[0]["train_s"] if hooks else 0.0
    return len(data) / seconds, share


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=20, help="batches of 128 per epoch")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    n = args.batches * BATCH
    data = ImageDataset(rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n),
                        [str(c) for c in range(10)], "synthetic", "train", "synthetic")
    teacher = Teacher(create_model("resnet20_cifar").eval().requires_grad_(False), path="(in memory)", sha256="",
                      arch="resnet20_cifar")
    epoch_images_per_s(data, None), epoch_images_per_s(data, teacher)  # warm-up
    plain, distilled, shares = [], [], []
    for _ in range(args.repeats):
        plain.append(epoch_images_per_s(data, None)[0])
        ips, share = epoch_images_per_s(data, teacher)
        distilled.append(ips)
        shares.append(share)
    print(json.dumps({
        "batch_size": BATCH, "threads": args.threads, "images_per_repeat": n, "repeats": args.repeats,
        "images_per_s_without_teacher": round(statistics.median(plain), 1),
        "images_per_s_with_teacher": round(statistics.median(distilled), 1),
        "ratio": round(statistics.median(d / p for d, p in zip(distilled, plain, strict=True)), 3),
        "teacher_share_of_training": round(statistics.median(shares), 3),
    }, indent=2))


if __name__ == "__main__":
    main()
