"""MobileNet (v1) for CIFAR: depthwise-separable blocks, the test bed for depthwise thinning.

Removing a filter of a pointwise conv must remove the matching depthwise filter of the next block
(and its ``groups``); this model exists so that path is exercised end to end.
"""

from __future__ import annotations

import torch
from torch import nn

from edgeprune.models import register_model

# (out_channels, stride) of each depthwise-separable block, as in Howard et al. 2017 for 32×32.
MOBILENET_CFG: list[tuple[int, int]] = [
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1),
]


class DepthwiseSeparable(nn.Module):
    """3×3 depthwise conv (groups = channels) - BN - ReLU - 1×1 pointwise conv - BN - ReLU."""

    def __init__(self, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__()
        self.dw = nn.Conv2d(in_planes, in_planes, 3, stride, 1, groups=in_planes, bias=False)
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.pw = nn.Conv2d(in_planes, out_planes, 1, 1, 0, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.relu2 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu2(self.bn2(self.pw(self.relu1(self.bn1(self.dw(x))))))


class MobileNetCifar(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 3, width_mult: float = 1.0) -> None:
        super().__init__()
        self.input_shape = (in_channels, 32, 32)

        def width(c: int) -> int:
            return max(8, int(c * width_mult))

        self.conv1 = nn.Conv2d(in_channels, width(32), 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width(32))
        self.relu = nn.ReLU(inplace=True)
        blocks, planes = [], width(32)
        for out, stride in MOBILENET_CFG:
            blocks.append(DepthwiseSeparable(planes, width(out), stride))
            planes = width(out)
        self.layers = nn.Sequential(*blocks)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.relu(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


@register_model()
def mobilenet_cifar(num_classes: int = 10, in_channels: int = 3, width_mult: float = 1.0) -> MobileNetCifar:
    """MobileNet v1 (13 depthwise-separable blocks) for 32×32 inputs; ``width_mult`` scales widths."""
    return MobileNetCifar(num_classes, in_channels, width_mult)
