"""ResNet for CIFAR (He et al. 2016, §4.2) in Distiller's exact layout and parameter names.

Names matter: Distiller schedules refer to weights such as ``layer2.0.downsample.0.weight``, and
Distiller checkpoints must load without renaming. ``downsample`` exists only where the shape
changes (option B projection shortcut), as in Distiller. The one deliberate difference is the
pooling: ``AdaptiveAvgPool2d(1)`` instead of ``AvgPool2d(8)``; identical on 32×32 inputs, and it
lets the same network run on other input sizes (e.g. 8×8 digits).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from edgeprune.models import register_model


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """conv1-bn1-relu1-conv2-bn2 (+ residual) - relu2; ``residual=False`` gives the plain block."""

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
        residual: bool = True,
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU(inplace=False)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU(inplace=False)
        self.downsample = downsample
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.residual:
            out = out + (self.downsample(x) if self.downsample is not None else x)
        return self.relu2(out)


class ResNetCifar(nn.Module):
    """Three stages of ``blocks`` BasicBlocks with 16/32/64 planes; stride 2 at stages 2 and 3."""

    def __init__(
        self, layers: list[int], num_classes: int = 10, in_channels: int = 3, residual: bool = True,
    ) -> None:
        super().__init__()
        self.input_shape = (in_channels, 32, 32)
        self.residual = residual
        self.inplanes = 16
        self.conv1 = nn.Conv2d(in_channels, 16, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(16, layers[0], stride=1)
        self.layer2 = self._make_layer(32, layers[1], stride=2)
        self.layer3 = self._make_layer(64, layers[2], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)
        init_distiller(self)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if self.residual and (stride != 1 or self.inplanes != planes):
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )
        layers = [BasicBlock(self.inplanes, planes, stride, downsample, residual=self.residual)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes, residual=self.residual) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


def init_distiller(model: nn.Module) -> None:
    """Distiller's initialisation: conv ~ N(0, sqrt(2/(k·k·out))), BN weight 1 / bias 0."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            m.weight.data.normal_(0, math.sqrt(2.0 / n))
        elif isinstance(m, nn.BatchNorm2d):
            m.weight.data.fill_(1)
            m.bias.data.zero_()


def _register_depth(depth: int) -> None:
    blocks = (depth - 2) // 6

    def factory(num_classes: int = 10, in_channels: int = 3) -> ResNetCifar:
        return ResNetCifar([blocks] * 3, num_classes=num_classes, in_channels=in_channels)

    factory.__name__ = f"resnet{depth}_cifar"
    factory.__doc__ = f"ResNet-{depth} for 32×32 inputs ({blocks} BasicBlocks per stage), Distiller names."
    register_model()(factory)


for _depth in (20, 32, 44, 56, 110):
    _register_depth(_depth)
