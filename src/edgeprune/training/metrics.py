"""Top-1 / top-5 / loss, computed the way Distiller reports them (percentages, mean loss)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torch.nn import functional as F


class ClassificationMeter:
    """Accumulates correct-at-k counts and summed loss as tensors (no per-batch host sync)."""

    def __init__(self, topk: tuple[int, ...] = (1, 5)) -> None:
        self.topk = topk
        self.correct: torch.Tensor | None = None
        self.loss_sum: torch.Tensor | None = None
        self.count = 0

    def update(self, logits: torch.Tensor, target: torch.Tensor, loss_sum: torch.Tensor) -> None:
        k = min(max(self.topk), logits.size(1))
        pred = logits.topk(k, dim=1).indices
        hits = pred.eq(target.unsqueeze(1))
        correct = torch.stack([hits[:, : min(t, k)].any(dim=1).sum() for t in self.topk])
        self.correct = correct if self.correct is None else self.correct + correct
        loss_sum = loss_sum.detach().float()
        self.loss_sum = loss_sum if self.loss_sum is None else self.loss_sum + loss_sum
        self.count += target.size(0)

    def result(self) -> dict[str, float]:
        if not self.count:
            return {f"top{t}": 0.0 for t in self.topk} | {"loss": float("nan")}
        assert self.correct is not None and self.loss_sum is not None
        out = {f"top{t}": 100.0 * float(c) / self.count for t, c in zip(self.topk, self.correct.tolist(), strict=True)}
        out["loss"] = float(self.loss_sum) / self.count
        return out


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
             device: torch.device | str = "cpu", max_batches: int | None = None) -> dict[str, float]:
    """Top-1/top-5 (percent) and mean cross-entropy of ``model`` over ``batches``."""
    was_training = model.training
    model.eval()
    meter = ClassificationMeter()
    try:
        for i, (x, y) in enumerate(batches):
            if max_batches is not None and i >= max_batches:
                break
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            logits = model(x)
            meter.update(logits, y, F.cross_entropy(logits.float(), y, reduction="sum"))
    finally:
        model.train(was_training)
    return meter.result()
