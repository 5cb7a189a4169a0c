"""Images/s of edgeprune's training loop vs a plain hand-written PyTorch loop, side by side.

Both loops train resnet20_cifar on the same batches (same BatchLoader, batch size, threads and
augmentation), interleaved A/B/A/B so drift of the machine hits both alike; the report is the
median of the repeats. The question answered: what does the loop (hooks, meters, progress bar,
AMP plumbing) cost on top of forward/backward/step?

    python benchmarks/train_loop.py [--batches 40] [--repeats 5] [--batch-size 128] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch
from torch.nn import functional as F

from edgeprune.data import BatchLoader, ImageDataset
from edgeprune.models import create_model
from edgeprune.training import TrainConfig, Trainer


def synthetic_cifar(n: int, seed: int = 0) -> ImageDataset:
    rng = np.random.default_rng(seed)
    return ImageDataset(images=rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
                        labels=rng.integers(0, 10, n).astype(np.int64), classes=[str(i) for i in range(10)],
                        name="synthetic", split="train", source="synthetic")


def plain_epoch(model: torch.nn.Module, loader: BatchLoader, optimizer: torch.optim.Optimizer) -> None:
    model.train()
    for x, y in loader:
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = synthetic_cifar(args.batches * args.batch_size)
    norm = {"mean": [0.5] * 3, "std": [0.25] * 3}
    cfg = TrainConfig(epochs=1, batch_size=args.batch_size, lr=0.05, device="cpu", seed=0, lr_schedule="constant",
                      progress=True)

    def our_run() -> float:
        """One full ``Trainer.fit()`` epoch: loop, 64-image validation and the epoch checkpoint."""
        trainer = Trainer(create_model("resnet20_cifar"), data, data.subset(64), cfg, "/tmp/edgeprune-bench-loop",
                          arch="resnet20_cifar", normalize=norm)
        t = time.perf_counter()
        trainer.fit()
        return len(data) / (time.perf_counter() - t)

    plain_model = create_model("resnet20_cifar")
    plain_opt = torch.optim.SGD(plain_model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    plain_loader = BatchLoader(data, args.batch_size, shuffle=True, augment=True, mean=norm["mean"],
                               std=norm["std"], seed=0)

    def plain_run() -> float:
        t = time.perf_counter()
        plain_epoch(plain_model, plain_loader, plain_opt)
        return len(data) / (time.perf_counter() - t)

    plain_run(), our_run()  # warm-up
    ours, plain = [], []
    for _ in range(args.repeats):
        plain.append(plain_run())
        ours.append(our_run())
    result = {
        "batch_size": args.batch_size, "threads": args.threads, "images_per_repeat": len(data),
        "plain_images_per_s": round(statistics.median(plain), 1),
        "edgeprune_images_per_s": round(statistics.median(ours), 1),
        "ratio": round(statistics.median(ours) / statistics.median(plain), 3),
        "plain_all": [round(v, 1) for v in plain], "edgeprune_all": [round(v, 1) for v in ours],
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
