"""The sensitivity CSV against a committed golden file, on a network whose every number is worked out by hand.

HandNet: a 1x1 conv with four filters of weights 1, 2, 3, 4 (so L1 ranks filter i at place i), summed by the
fc into the logit of class 0; class 1 has the constant logit 8.5. Inputs are the 1x1 images v = 1, 2, 3, 4, all
labelled 0. Pruning a fraction s of the conv's filters removes the floor(4s) smallest, leaving S of the weight
sum 10, so sample v is right when S*v > 8.5 and its loss is log(1 + exp(8.5 - S*v)):

  s      pruned    S    right (v)     top1
  0      -         10   1, 2, 3, 4    100
  0.25   w=1        9   1, 2, 3, 4    100
  0.5    w=1, 2     7   2, 3, 4        75
  0.75   w=1, 2, 3  4   3, 4           50
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from edgeprune.analysis.sensitivity import read_sensitivity_csv

from .test_sensitivity import _analyse

GOLDEN = Path(__file__).parent / "data" / "sensitivity_golden.csv"


class HandNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.input_shape = (1, 1, 1)
        self.conv = nn.Conv2d(1, 4, 1, bias=False)
        self.fc = nn.Linear(4, 2)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([1.0, 2.0, 3.0, 4.0]).view(4, 1, 1, 1))
            self.fc.weight.copy_(torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]]))
            self.fc.bias.copy_(torch.tensor([0.0, 8.5]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.conv(x), 1))


def batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(torch.tensor([1.0, 2.0, 3.0, 4.0]).view(4, 1, 1, 1), torch.zeros(4, dtype=torch.long))]


def test_sensitivity_csv_matches_the_golden_file_worked_out_by_hand(tmp_path) -> None:
    out = _analyse(HandNet().eval(), batches(), tmp_path, sparsities="0:1:0.25")
    assert out.csv.read_bytes() == GOLDEN.read_bytes()
    golden = read_sensitivity_csv(GOLDEN)["conv.weight"]
    for s, kept_sum, top1 in ((0.0, 10, 100.0), (0.25, 9, 100.0), (0.5, 7, 75.0), (0.75, 4, 50.0)):
        assert golden[s]["top1"] == top1 and golden[s]["top5"] == 100.0
        loss = sum(math.log1p(math.exp(8.5 - kept_sum * v)) for v in (1, 2, 3, 4)) / 4
        assert math.isclose(golden[s]["loss"], loss, rel_tol=1e-6), s
