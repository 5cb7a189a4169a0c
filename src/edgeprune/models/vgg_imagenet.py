"""VGG-11/13/16/19 (``vggN`` and ``vggN_bn``) for ImageNet with torchvision's names, shapes and forward.

``features`` as in :func:`~edgeprune.models.vgg_cifar.make_features`, a 7x7 adaptive average pool, and
``classifier`` = Linear(25088, 4096) - ReLU - Dropout - Linear(4096, 4096) - ReLU - Dropout - Linear
(``classifier.0``, ``.3``, ``.6``), so torchvision's and Distiller's checkpoints load unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from edgeprune.models import register_model
from edgeprune.models.resnet_imagenet import IMAGENET_INPUT
from edgeprune.models.vgg_cifar import VGG_CFGS, init_vgg, make_features


class VGG(nn.Module):
    def __init__(self, cfg: list[int | str], batch_norm: bool, num_classes: int = 1000, in_channels: int = 3,
                 dropout: float = 0.5) -> None:
        super().__init__()
        self.input_shape = (in_channels, *IMAGENET_INPUT[1:])
        self.features = make_features(cfg, batch_norm, in_channels)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(4096, num_classes),
        )
        init_vgg(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def _register(depth: int, batch_norm: bool) -> None:
    def factory(num_classes: int = 1000, in_channels: int = 3) -> VGG:
        return VGG(VGG_CFGS[depth], batch_norm, num_classes, in_channels)

    factory.__name__ = f"vgg{depth}{'_bn' if batch_norm else ''}"
    factory.__doc__ = (f"VGG-{depth} for 224x224 inputs {'with' if batch_norm else 'without'} BatchNorm, "
                       "torchvision's names.")
    register_model()(factory)


for _depth in VGG_CFGS:
    _register(_depth, False)
    _register(_depth, True)
