"""Model zoo: a registry of architectures plus the loader for user-supplied factories.

Adding a model is one decorated function (``@register_model``) in any module imported here;
nothing central changes. Every factory accepts ``num_classes`` and ``in_channels`` and returns an
``nn.Module`` whose ``input_shape`` attribute (C, H, W) is the input it was designed for, which
the summary and export use for their dummy input.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from edgeprune.errors import ConfigError
from edgeprune.registry import Registry

MODELS: Registry[Callable[..., nn.Module]] = Registry("architecture")
register_model = MODELS.register


def list_models(pattern: str = "*") -> list[str]:
    """Registered architecture names matching a shell-style ``pattern``."""
    return MODELS.names(pattern)


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build an architecture by zoo name or ``package.module:factory`` path.

    Constructor keywords are checked against the factory's signature so that a typo gives the
    accepted keywords instead of a ``TypeError`` from deep inside.
    """
    factory = MODELS.get(name)  # a zoo name, or a package.module:factory path
    _check_kwargs(name, factory, kwargs)
    model = factory(**kwargs)
    if not isinstance(model, nn.Module):
        raise ConfigError(f"Model factory {name!r} returned {type(model).__name__}, not a torch.nn.Module.")
    return model


def _check_kwargs(name: str, factory: Callable[..., Any], kwargs: dict[str, Any]) -> None:
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise ConfigError(
            f"Model {name!r} does not accept {', '.join(map(repr, unknown))}.",
            hint=f"Accepted keywords: {', '.join(params) or '(none)'}.",
        )


# Importing the zoo modules registers their architectures.
from edgeprune.models import (  # noqa: E402,F401
    alexnet,
    mobilenet_cifar,
    mobilenet_imagenet,
    plain_cifar,
    preresnet_cifar,
    resnet_cifar,
    resnet_imagenet,
    simplenet,
    vgg_cifar,
    vgg_imagenet,
)
