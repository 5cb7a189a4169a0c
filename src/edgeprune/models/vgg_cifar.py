"""VGG-16 with BatchNorm for CIFAR, in Distiller's layout (``features.N``, ``classifier``)."""

from __future__ import annotations

import torch
from torch import nn

from edgeprune.models import register_model

VGG16_CFG: list[int | str] = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
                              512, 512, 512, "M"]


class VGGCifar(nn.Module):
    def __init__(self, cfg: list[int | str], num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        self.input_shape = (in_channels, 32, 32)
        layers: list[nn.Module] = []
        channels = in_channels
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(channels, int(v), 3, padding=1), nn.BatchNorm2d(int(v)), nn.ReLU(inplace=True)]
                channels = int(v)
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


@register_model()
def vgg16_cifar(num_classes: int = 10, in_channels: int = 3) -> VGGCifar:
    """VGG-16 (13 convs with BN + one Linear) for 32×32 inputs."""
    return VGGCifar(VGG16_CFG, num_classes, in_channels)
