"""What distillation costs in training: images/s of the training loop with and without a teacher, side by side.

The student is resnet20_cifar, the teacher a second (dense) resnet20_cifar, as when a pruned ResNet-20 learns
from its dense parent (a pruned student is cheaper, so the teacher's share of the time is larger then). Both
sides run ``Trainer.fit()`` for one epoch on the same synthetic CIFAR-sized batches, interleaved A/B/A/B so
drift of the machine hits both alike; the report is the median of the repeats, and the teacher's own forward
time as the distillation hook measures it inside the same epochs.

    python benchmarks/distill_cost.py [--batches 20] [--repeats 5] [--batch-size 128] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from train_loop import synthetic_cifar

from edgeprune.models import create_model
from edgeprune.train import TrainConfig, Trainer
from edgeprune.train.distill import Distillation, DistillConfig, Teacher


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = synthetic_cifar(args.batches * args.batch_size)
    norm = {"mean": [0.5] * 3, "std": [0.25] * 3}
    cfg = TrainConfig(epochs=1, batch_size=args.batch_size, lr=0.05, device="cpu", seed=0, lr_schedule="constant",
                      progress=False)
    teacher_model = create_model("resnet20_cifar").eval().requires_grad_(False)
    teacher = Teacher(teacher_model, path="(in memory)", sha256="", arch="resnet20_cifar")

    def run(distil: bool) -> tuple[float, float]:
        """Images/s of one ``fit()`` epoch (64-image validation and checkpoint included), and the teacher's share."""
        hooks = [Distillation(teacher, DistillConfig("dense", temperature=5.0, distill_wt=0.7, student_wt=0.3))] \
            if distil else []
        trainer = Trainer(create_model("resnet20_cifar"), data, data.subset(64), cfg, "/tmp/edgeprune-bench-kd",
                          arch="resnet20_cifar", normalize=norm, hooks=hooks)
        start = time.perf_counter()
        trainer.fit()
        seconds = time.perf_counter() - start
        share = hooks[0].cost[0]["teacher_s"] / hooks[0].cost[0]["train_s"] if distil else 0.0
        return len(data) / seconds, share

    run(False), run(True)  # warm-up
    plain, distilled, shares = [], [], []
    for _ in range(args.repeats):
        plain.append(run(False)[0])
        ips, share = run(True)
        distilled.append(ips)
        shares.append(share)
    result = {
        "batch_size": args.batch_size, "threads": args.threads, "images_per_repeat": len(data),
        "repeats": args.repeats, "images_per_s_without_teacher": round(statistics.median(plain), 1),
        "images_per_s_with_teacher": round(statistics.median(distilled), 1),
        "ratio": round(statistics.median(d / p for d, p in zip(distilled, plain, strict=True)), 3),
        "teacher_share_of_training": round(statistics.median(shares), 3),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
