"""AlexNet for ImageNet with torchvision's names ("one weird trick" variant, Krizhevsky 2014).

``features.0/3/6/8/10`` are the five convs, a 6x6 adaptive average pool follows, and ``classifier.1/4/6``
are the Linears (dropout before the first two), so torchvision's state_dicts and the layer names in
Distiller's AlexNet schedules (e.g. ``agp-pruning/alexnet.schedule_agp.yaml``) fit unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from edgeprune.models import register_model
from edgeprune.models.resnet_imagenet import IMAGENET_INPUT


class AlexNet(nn.Module):
    def __init__(self, num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.5) -> None:
        super().__init__()
        self.input_shape = (in_channels, *IMAGENET_INPUT[1:])
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


@register_model()
def alexnet(num_classes: int = 1000, in_channels: int = 3) -> AlexNet:
    """AlexNet for 224x224 inputs, torchvision's names (features.N, classifier.1/4/6)."""
    return AlexNet(num_classes, in_channels)
