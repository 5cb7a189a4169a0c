"""Distiller's small test networks (LeNet-like), with Distiller's layer names and sizes.

``simplenet_cifar`` per-layer MACs are [352800, 240000, 48000, 10080, 840] on 3×32×32, and
``simplenet_mnist`` is the network of Distiller's full-flow MNIST pruning test.
"""

from __future__ import annotations

import torch
from torch import nn

from edgeprune.models import register_model


class SimpleNetCifar(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        self.input_shape = (in_channels, 32, 32)
        self.conv1 = nn.Conv2d(in_channels, 6, 5)
        self.relu_conv1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.relu_conv2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2, 2)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.relu_fc1 = nn.ReLU()
        self.fc2 = nn.Linear(120, 84)
        self.relu_fc2 = nn.ReLU()
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu_conv1(self.conv1(x)))
        x = self.pool2(self.relu_conv2(self.conv2(x)))
        x = torch.flatten(x, 1)
        return self.fc3(self.relu_fc2(self.fc2(self.relu_fc1(self.fc1(x)))))


class SimpleNetMnist(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.input_shape = (in_channels, 28, 28)
        self.conv1 = nn.Conv2d(in_channels, 20, 5, 1)
        self.relu1 = nn.ReLU(inplace=False)
        self.pool1 = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(20, 50, 5, 1)
        self.relu2 = nn.ReLU(inplace=False)
        self.pool2 = nn.MaxPool2d(2, 2)
        self.fc1 = nn.Linear(4 * 4 * 50, 500)
        self.relu3 = nn.ReLU(inplace=False)
        self.fc2 = nn.Linear(500, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        x = torch.flatten(x, 1)
        return self.fc2(self.relu3(self.fc1(x)))


@register_model()
def simplenet_cifar(num_classes: int = 10, in_channels: int = 3) -> SimpleNetCifar:
    """Two 5×5 convs and three Linear layers for 32×32 inputs (Distiller's simplenet_cifar)."""
    return SimpleNetCifar(num_classes, in_channels)


@register_model()
def simplenet_mnist(num_classes: int = 10, in_channels: int = 1) -> SimpleNetMnist:
    """Two 5×5 convs and two Linear layers for 28×28 inputs (Distiller's simplenet_mnist)."""
    return SimpleNetMnist(num_classes, in_channels)
