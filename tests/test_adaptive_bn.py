"""Adaptive BN: a pruned network's BatchNorm statistics re-estimated exactly over the given batches, nothing else."""

from __future__ import annotations

import torch
from torch import nn

from edgeprune.training.adaptive_bn import adapt_batchnorm


def test_running_statistics_become_the_exact_average_over_the_batches_and_nothing_else_changes() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Dropout(0.5), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                          nn.LazyLinear(2))
    model(torch.randn(1, 3, 6, 6))
    bn = model[2]
    bn.running_mean.fill_(7.0)  # statistics of some other network
    bn.running_var.fill_(0.01)
    weights = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k and "num_batches" not in k}
    batches = [(torch.randn(5, 3, 6, 6) * 2 + 1, torch.zeros(5, dtype=torch.long)) for _ in range(3)]

    assert adapt_batchnorm(model.train(), batches) == 1

    with torch.no_grad():  # what the BatchNorm sees: the conv's output (dropout does not run)
        seen = torch.cat([model[0](x) for x, _ in batches]).transpose(0, 1).flatten(1)
    assert torch.allclose(bn.running_mean, seen.mean(1), atol=1e-5)
    per_batch_var = torch.stack([model[0](x).detach().transpose(0, 1).flatten(1).var(1) for x, _ in batches])
    assert torch.allclose(bn.running_var, per_batch_var.mean(0), atol=1e-5)  # PyTorch's average of unbiased ones
    assert bn.momentum == 0.1 and not model.training and not bn.training
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in weights.items())


def test_a_model_without_batchnorm_is_left_alone() -> None:
    model = nn.Linear(3, 2)
    before = model.weight.clone()
    assert adapt_batchnorm(model, [(torch.randn(4, 3), torch.zeros(4))]) == 0
    assert torch.equal(model.weight, before)
