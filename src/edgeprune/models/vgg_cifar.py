"""VGG-11/13/16/19 for CIFAR exactly as Distiller builds them: ``vggN_cifar`` without BatchNorm, ``vggN_bn_cifar`` with.

Distiller's layout: ``features`` is one Sequential of conv(3x3, bias) [- BN] - ReLU triples and max-pools,
``classifier`` a single ``Linear(512, num_classes)`` on the 1x1x512 map. The names matter: Distiller's
``ssl/vgg16_cifar_ssl_channels_training.yaml`` regularises ``features.21.weight``, which is a conv only
in the network without BN. (edgeprune's ``vgg16_cifar`` once had BN; such checkpoints still load, as
``vgg16_bn_cifar``, see :mod:`edgeprune.models.checkpoint`.)

:func:`make_features` is shared with the ImageNet VGGs, which torchvision builds the same way.
"""

from __future__ import annotations

import torch
from torch import nn

from edgeprune.models import register_model

# Simonyan & Zisserman 2015, Table 1, configurations A, B, D, E ("M": 2x2 max-pool).
VGG_CFGS: dict[int, list[int | str]] = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


def make_features(cfg: list[int | str], batch_norm: bool, in_channels: int = 3) -> nn.Sequential:
    """conv(3x3, padding 1, bias) [- BN] - ReLU per number, a 2x2 max-pool per "M" (torchvision's indices)."""
    layers: list[nn.Module] = []
    channels = in_channels
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        layers.append(nn.Conv2d(channels, int(v), kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(int(v)))
        layers.append(nn.ReLU(inplace=True))
        channels = int(v)
    return nn.Sequential(*layers)


def init_vgg(model: nn.Module) -> None:
    """The initialisation torchvision's and Distiller's VGGs share."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


class VGGCifar(nn.Module):
    def __init__(self, cfg: list[int | str], batch_norm: bool, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        self.input_shape = (in_channels, 32, 32)
        self.features = make_features(cfg, batch_norm, in_channels)
        self.classifier = nn.Linear(512, num_classes)
        init_vgg(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def _register(depth: int, batch_norm: bool) -> None:
    def factory(num_classes: int = 10, in_channels: int = 3) -> VGGCifar:
        return VGGCifar(VGG_CFGS[depth], batch_norm, num_classes, in_channels)

    factory.__name__ = f"vgg{depth}{'_bn' if batch_norm else ''}_cifar"
    factory.__doc__ = (f"VGG-{depth} for 32x32 inputs {'with' if batch_norm else 'without'} BatchNorm and one "
                       "Linear, as Distiller builds it.")
    register_model()(factory)


for _depth in VGG_CFGS:
    _register(_depth, False)
    _register(_depth, True)
