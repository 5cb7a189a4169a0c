"""Plain (no shortcut) CIFAR networks: the control group of He et al. for residual learning.

Same stages and names as ``resnet*_cifar`` minus the shortcut, so schedules written for one
largely apply to the other; without residual coupling every conv's filters prune independently.
"""

from __future__ import annotations

from edgeprune.models import register_model
from edgeprune.models.resnet_cifar import ResNetCifar


@register_model()
def plain20_cifar(num_classes: int = 10, in_channels: int = 3) -> ResNetCifar:
    """Plain-20: ResNet-20's layers without shortcuts (no ``downsample`` modules)."""
    return ResNetCifar([3, 3, 3], num_classes=num_classes, in_channels=in_channels, residual=False)
