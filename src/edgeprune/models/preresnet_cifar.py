"""Pre-activation ResNet for CIFAR (He et al. 2016, "Identity Mappings") in Distiller's layout and names.

Each block is BN - ReLU - conv1 - BN - ReLU - conv2, plus the shortcut (``pre_bn``, ``pre_relu``,
``conv1``, ``bn``, ``relu``, ``conv2``); the network ends with ``final_bn`` - ``final_relu`` - pool - ``fc``.
Where the shape changes, Distiller's default shortcut has no parameters: a 2x2 average pool and zero
channels padded on both sides (``downsample.0``/``.1``); ``conv_downsample=True`` gives its
``*_conv_ds`` variant, a strided 1x1 conv on the pre-activated input. Distiller's per-block "gates"
(for layer removal experiments) are always open and therefore omitted; like the plain CIFAR ResNets
here, the final pool is adaptive (identical on 32x32 inputs).
"""

from __future__ import annotations

import torch
from torch import nn

from edgeprune.models import register_model
from edgeprune.models.resnet_cifar import conv3x3, init_distiller


class PreactBasicBlock(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 preact_downsample: bool = False) -> None:
        super().__init__()
        self.pre_bn = nn.BatchNorm2d(inplanes)
        self.pre_relu = nn.ReLU(inplace=False)
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=False)
        self.conv2 = conv3x3(planes, planes)
        self.downsample = downsample
        self.preact_downsample = preact_downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        preact = self.pre_relu(self.pre_bn(x))
        out = self.conv2(self.relu(self.bn(self.conv1(preact))))
        if self.downsample is not None:
            x = self.downsample(preact if self.preact_downsample else x)
        return out + x


class PreactResNetCifar(nn.Module):
    def __init__(self, blocks: int, num_classes: int = 10, in_channels: int = 3,
                 conv_downsample: bool = False) -> None:
        super().__init__()
        self.input_shape = (in_channels, 32, 32)
        self.inplanes = 16
        self.conv1 = nn.Conv2d(in_channels, 16, kernel_size=3, stride=1, padding=1, bias=False)
        self.layer1 = self._make_layer(16, blocks, 1, conv_downsample)
        self.layer2 = self._make_layer(32, blocks, 2, conv_downsample)
        self.layer3 = self._make_layer(64, blocks, 2, conv_downsample)
        self.final_bn = nn.BatchNorm2d(64)
        self.final_relu = nn.ReLU(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)
        init_distiller(self)

    def _make_layer(self, planes: int, blocks: int, stride: int, conv_downsample: bool) -> nn.Sequential:
        downsample: nn.Module | None = None
        if stride != 1 or self.inplanes != planes:
            if conv_downsample:
                downsample = nn.Conv2d(self.inplanes, planes, kernel_size=1, stride=stride, bias=False)
            else:
                pad = self.inplanes // 2
                downsample = nn.Sequential(nn.AvgPool2d(2), nn.ConstantPad3d((0, 0, 0, 0, pad, pad), 0.0))
        layers = [PreactBasicBlock(self.inplanes, planes, stride, downsample, conv_downsample)]
        self.inplanes = planes
        layers += [PreactBasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        x = self.final_relu(self.final_bn(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _register_depth(depth: int) -> None:
    blocks = (depth - 2) // 6

    def factory(num_classes: int = 10, in_channels: int = 3, conv_downsample: bool = False) -> PreactResNetCifar:
        return PreactResNetCifar(blocks, num_classes, in_channels, conv_downsample)

    factory.__name__ = f"preact_resnet{depth}_cifar"
    factory.__doc__ = (f"Pre-activation ResNet-{depth} for 32x32 inputs ({blocks} blocks per stage), Distiller's "
                       "names; conv_downsample=True for its 1x1-conv shortcuts.")
    register_model()(factory)


for _depth in (20, 32, 44, 56, 110):
    _register_depth(_depth)
