"""Tiny networks for fast tests, importable as ``tests.tiny_nets:tiny_resnet`` (a MODEL spec) in and out of process.

``tiny_resnet`` has what the analysis, suggestion and pictures must handle in a real ResNet — a stem whose
channels are tied to a residual block's output (``conv1`` and ``block.conv_b`` are coupled), a
block-internal conv whose filters are independent (``block.conv_a``), an independent strided conv
feeding a Linear through pooling (``conv2``) — at a size that trains in a second on 8×8 digits.
"""

from __future__ import annotations

import torch
from torch import nn


class TinyBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv_a = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn_a = nn.BatchNorm2d(channels)
        self.relu_a = nn.ReLU()
        self.conv_b = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn_b = nn.BatchNorm2d(channels)
        self.relu_b = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn_b(self.conv_b(self.relu_a(self.bn_a(self.conv_a(x)))))
        return self.relu_b(out + x)


class TinyResNet(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 1, size: int = 8) -> None:
        super().__init__()
        self.input_shape = (in_channels, size, size)
        self.conv1 = nn.Conv2d(in_channels, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.block = TinyBlock(8)
        self.conv2 = nn.Conv2d(8, 12, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(12)
        self.relu2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(12, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block(self.relu(self.bn1(self.conv1(x))))
        x = self.relu2(self.bn2(self.conv2(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def tiny_resnet(num_classes: int = 10, in_channels: int = 1) -> TinyResNet:
    """conv1 → residual block (conv_a, conv_b) → strided conv2 → pool → fc, for 8×8 inputs."""
    return TinyResNet(num_classes, in_channels)
