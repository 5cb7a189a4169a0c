"""BatchNorm statistics re-estimated for a pruned network, without training it ("adaptive BN").

Pruning changes what every BatchNorm after a pruned layer sees, so the running statistics the dense network
learnt no longer normalise it: a pruned network evaluated as it is can look far worse than it is, and worse by
amounts that say little about how well it fine-tunes. Li et al. (EagleEye, ECCV 2020) measured this: the
accuracy of pruned candidates as they are hardly correlated with their accuracy after fine-tuning, while their
accuracy after re-estimating the BatchNorm statistics on a few training batches correlated strongly. Only the
statistics change: no weight, no affine parameter is touched.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

_BatchNorm = nn.modules.batchnorm._BatchNorm


def adapt_batchnorm(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> int:
    """Replace the running mean and variance of every BatchNorm of ``model`` with the exact average over
    ``batches`` (in place; every other layer stays in eval mode, so dropout and the like do not run). Returns the
    number of BatchNorm layers re-estimated; the model is left in eval mode."""
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    if not norms:
        return 0
    momenta = [m.momentum for m in norms]
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    model.eval()
    try:
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over every batch, not an exponential one
            m.train()
        with torch.no_grad():
            for x, _ in batches:
                model(x.to(device))
    finally:
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        model.eval()
    return len(norms)
