"""MobileNet v1 as Distiller builds it (``mobilenet``, ``mobilenet_025/050/075``) and torchvision's MobileNet v2.

Both keep their origin's parameter names so their checkpoints load unchanged:

* Distiller's ``mobilenet`` is one ``model`` Sequential: ``model.0`` the stem (conv, BN, ReLU), ``model.1``
  .. ``model.13`` depthwise-separable blocks (``.0`` depthwise conv, ``.1`` BN, ``.3`` pointwise conv,
  ``.4`` BN), ``model.14`` the pooling, then ``fc``. Widths are ``max(floor(c * multiplier), 8)``, as in
  Distiller. Distiller pools with ``AvgPool2d(7)``; here it is ``AdaptiveAvgPool2d(1)``, identical at
  224x224 (a 7x7 map) and usable at other input sizes.
* torchvision's ``mobilenet_v2``: ``features.0`` the stem (``.0`` conv, ``.1`` BN, ReLU6),
  ``features.1`` .. ``features.17`` inverted residuals (``conv.0`` expand 1x1, ``conv.1`` depthwise 3x3,
  each a conv/BN/ReLU6 Sequential, then ``conv.2`` the linear 1x1 projection and ``conv.3`` its BN; the
  first block has no expansion, so its depthwise is ``conv.0``), ``features.18`` the 1x1 to 1280, and
  ``classifier.1`` the Linear after dropout. Widths round to multiples of 8 as torchvision's do.
"""

from __future__ import annotations

from math import floor

import torch
from torch import nn

from edgeprune.errors import ConfigError
from edgeprune.models import register_model
from edgeprune.models.resnet_imagenet import IMAGENET_INPUT


def _conv_bn_act(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1,
                 act: type[nn.Module] = nn.ReLU) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout), act(inplace=True)]


# (output width index, stride) of Distiller's 13 depthwise-separable blocks; widths 32,64,128,256,512,1024.
_V1_BLOCKS = [(1, 1), (2, 2), (2, 1), (3, 2), (3, 1), (4, 2), (4, 1), (4, 1), (4, 1), (4, 1), (4, 1), (5, 2), (5, 1)]


class MobileNet(nn.Module):
    """MobileNet v1 (Howard et al. 2017) with Distiller's layout and ``channel_multiplier``."""

    def __init__(self, channel_multiplier: float = 1.0, num_classes: int = 1000, in_channels: int = 3,
                 min_channels: int = 8) -> None:
        super().__init__()
        if not channel_multiplier > 0:
            raise ConfigError(f"MobileNet channel_multiplier must be > 0, got {channel_multiplier}.")
        self.input_shape = (in_channels, *IMAGENET_INPUT[1:])
        self.channels = [max(floor(c * channel_multiplier), min_channels) for c in (32, 64, 128, 256, 512, 1024)]
        layers: list[nn.Module] = [nn.Sequential(*_conv_bn_act(in_channels, self.channels[0], 3, stride=2))]
        cin = self.channels[0]
        for width, stride in _V1_BLOCKS:
            cout = self.channels[width]
            layers.append(nn.Sequential(*_conv_bn_act(cin, cin, 3, stride, groups=cin), *_conv_bn_act(cin, cout, 1)))
            cin = cout
        layers.append(nn.AdaptiveAvgPool2d(1))
        self.model = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.model(x), 1))


def _register_v1(name: str, multiplier: float) -> None:
    def factory(num_classes: int = 1000, in_channels: int = 3, channel_multiplier: float = multiplier) -> MobileNet:
        return MobileNet(channel_multiplier, num_classes, in_channels)

    factory.__name__ = name
    factory.__doc__ = (f"MobileNet v1 for 224x224 inputs, width multiplier {multiplier}, Distiller's names "
                       "(model.N.M, fc).")
    register_model()(factory)


for _name, _mult in (("mobilenet", 1.0), ("mobilenet_025", 0.25), ("mobilenet_050", 0.5), ("mobilenet_075", 0.75)):
    _register_v1(_name, _mult)


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a width to the nearest multiple of ``divisor`` without going more than 10 % down (MobileNet's rule)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class InvertedResidual(nn.Module):
    """Expand 1x1 (ReLU6) - depthwise 3x3 (ReLU6) - linear 1x1 projection; residual when shapes allow."""

    def __init__(self, cin: int, cout: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = round(cin * expand_ratio)
        self.use_res_connect = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(nn.Sequential(*_conv_bn_act(cin, hidden, 1, act=nn.ReLU6)))
        layers += [nn.Sequential(*_conv_bn_act(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6)),
                   nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


# t (expansion), c (output channels), n (repeats), s (stride of the first repeat): Sandler et al. 2018, Table 2.
_V2_SETTING = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
               (6, 320, 1, 1)]


class MobileNetV2(nn.Module):
    """MobileNet v2 with torchvision's layout, initialisation and ``width_mult``."""

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, width_mult: float = 1.0,
                 dropout: float = 0.2) -> None:
        super().__init__()
        if not width_mult > 0:
            raise ConfigError(f"MobileNetV2 width_mult must be > 0, got {width_mult}.")
        self.input_shape = (in_channels, *IMAGENET_INPUT[1:])
        cin = make_divisible(32 * width_mult)
        self.last_channel = make_divisible(1280 * max(1.0, width_mult))
        features: list[nn.Module] = [nn.Sequential(*_conv_bn_act(in_channels, cin, 3, 2, act=nn.ReLU6))]
        for t, c, n, s in _V2_SETTING:
            cout = make_divisible(c * width_mult)
            for i in range(n):
                features.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        features.append(nn.Sequential(*_conv_bn_act(cin, self.last_channel, 1, act=nn.ReLU6)))
        self.features = nn.Sequential(*features)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.last_channel, num_classes))
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


@register_model()
def mobilenet_v2(num_classes: int = 1000, in_channels: int = 3, width_mult: float = 1.0) -> MobileNetV2:
    """MobileNet v2 for 224x224 inputs, torchvision's names (features.N.conv.M, classifier.1)."""
    return MobileNetV2(num_classes, in_channels, width_mult)
