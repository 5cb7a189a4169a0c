"""Images/s of edgeprune's training loop vs a plain hand-written PyTorch loop, paired epoch by epoch.

Both sides train the *same* resnet20_cifar with the *same* optimizer on the *same* ``BatchLoader``
(batch size, threads, pad-4 crop + flip, the epoch's shuffle): each pair is one plain epoch and one
``Trainer.fit()`` epoch back to back, the order alternating (plain first, then edgeprune first) so a
drift of the machine hits both alike. The figure is the median of the per-pair ratios
(edgeprune images/s ÷ plain images/s) with their quartiles and range: a noisy neighbour slows one
pair, not one side. Each side is timed twice: wall clock, and the CPU time of this process (all its
threads, progress-bar refresh included), which on a machine shared with other jobs is the figure that
holds still — wall time there measures the neighbours' load as much as the loop.

edgeprune's side is timed from the epoch's first hook call to its last optimizer step, which is the
loop a user's epoch runs (hooks, on-device meters, progress bar, AMP plumbing); what ``fit()`` adds
once per epoch after it (validation, the epoch checkpoint, history) is reported separately in ms.

    python benchmarks/train_loop.py [--pairs 10] [--batches 3] [--batch-size 128] [--threads 1]
                                    [--bar terminal|log|off]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from typing import Any

import numpy as np
import torch
from rich.console import Console
from torch.nn import functional as F

from edgeprune.data import BatchLoader, ImageDataset
from edgeprune.models import create_model
from edgeprune.training import TrainConfig, Trainer, TrainingHooks


def synthetic_cifar(n: int, seed: int = 0) -> ImageDataset:
    rng = np.random.default_rng(seed)
    return ImageDataset(images=rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
                        labels=rng.integers(0, 10, n).astype(np.int64), classes=[str(i) for i in range(10)],
                        name="synthetic", split="train", source="synthetic")


def plain_epoch(model: torch.nn.Module, loader: BatchLoader, optimizer: torch.optim.Optimizer, epoch: int) -> None:
    model.train()
    loader.set_epoch(epoch)
    for x, y in loader:
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def now() -> tuple[float, float]:
    """(wall clock, CPU time of this process), in seconds."""
    return time.perf_counter(), time.process_time()


class LoopClock(TrainingHooks):
    """Times the training loop inside ``fit()``: first hook of the epoch to the last minibatch's end."""

    def __init__(self) -> None:
        self.start = self.end = (0.0, 0.0)

    def on_epoch_begin(self, epoch: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.start = now()

    def on_minibatch_end(self, epoch: int, step: int, steps_per_epoch: int,
                         optimizer: torch.optim.Optimizer | None = None) -> None:
        if step == steps_per_epoch - 1:
            self.end = now()


def rates(images: int, start: tuple[float, float], end: tuple[float, float]) -> tuple[float, float]:
    """Images/s by wall clock and by CPU time."""
    return images / (end[0] - start[0]), images / (end[1] - start[1])


def spread(values: list[float]) -> dict[str, Any]:
    """Median, quartiles and range of the paired ratios."""
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return {"median": round(statistics.median(values), 4), "quartiles": [round(q1, 4), round(q3, 4)],
            "range": [round(min(values), 4), round(max(values), 4)]}


def run(pairs: int, batches: int, batch_size: int, threads: int, bar: str = "terminal") -> dict[str, Any]:
    torch.set_num_threads(threads)
    data = synthetic_cifar(batches * batch_size)
    norm = {"mean": [0.5] * 3, "std": [0.25] * 3}
    cfg = TrainConfig(epochs=1, batch_size=batch_size, lr=0.05, device="cpu", seed=0, lr_schedule="constant",
                      augment=True, progress=bar != "off")
    clock = LoopClock()
    with tempfile.TemporaryDirectory(prefix="edgeprune-bench-loop-") as out_dir, open(os.devnull, "w") as sink:
        # "terminal": the bar is drawn as in an interactive shell; "log": stderr is a file, as in a batch job
        console = Console(file=sink, force_terminal=bar == "terminal", width=100)
        trainer = Trainer(create_model("resnet20_cifar"), data, data.subset(64), cfg, out_dir, arch="resnet20_cifar",
                          normalize=norm, hooks=[clock], console=console)

        def ours(epoch: int) -> tuple[float, float, float]:
            """One ``fit()`` epoch: loop images/s (wall, CPU) and the wall ms fit() spent after the loop."""
            trainer.start_epoch, trainer.cfg.epochs = epoch, epoch + 1
            trainer.fit()
            done = time.perf_counter()
            return *rates(len(data), clock.start, clock.end), 1000 * (done - clock.end[0])

        def plain(epoch: int) -> tuple[float, float]:
            start = now()
            plain_epoch(trainer.model, trainer.train_loader, trainer.optimizer, epoch)
            return rates(len(data), start, now())

        plain(0), ours(1)  # warm-up: allocator, thread pool, first checkpoint write
        rows = []
        for i in range(pairs):
            first, second = 2 + 2 * i, 3 + 2 * i
            if i % 2 == 0:
                p = plain(first)
                o = ours(second)
            else:
                o = ours(first)
                p = plain(second)
            rows.append({"plain_images_per_s": [round(p[0], 1), round(p[1], 1)],
                         "edgeprune_images_per_s": [round(o[0], 1), round(o[1], 1)],
                         "ratio_wall": round(o[0] / p[0], 4), "ratio_cpu": round(o[1] / p[1], 4),
                         "fit_extra_ms": round(o[2], 1)})
    return {
        "batch_size": batch_size, "threads": threads, "images_per_epoch": len(data), "pairs": pairs,
        "progress_bar": bar,
        "ratio_cpu": spread([r["ratio_cpu"] for r in rows]), "ratio_wall": spread([r["ratio_wall"] for r in rows]),
        "plain_images_per_cpu_s_median": round(statistics.median(r["plain_images_per_s"][1] for r in rows), 1),
        "fit_extra_ms_median": round(statistics.median(r["fit_extra_ms"] for r in rows), 1),
        "pairs_measured": rows,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=10, help="Paired epochs (plain + edgeprune) to measure.")
    ap.add_argument("--batches", type=int, default=3, help="Minibatches per epoch.")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--bar", choices=("terminal", "log", "off"), default="terminal",
                    help="Progress bar drawn as in a terminal; stderr a log file (no bar drawn); progress=False.")
    args = ap.parse_args()
    print(json.dumps(run(args.pairs, args.batches, args.batch_size, args.threads, args.bar), indent=2))


if __name__ == "__main__":
    main()
