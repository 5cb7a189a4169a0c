"""Per-layer MACs and weight counts, exactly as Distiller counts them.

Distiller's rule (model_summaries.model_performance_summary): forward hooks on every ``Conv2d``
and ``Linear`` with a batch-1 input; conv MACs = Cout·Hout·Wout·(Cin/groups)·kh·kw; linear MACs =
in·out; BatchNorm, biases, activations and pooling are not counted. "Parameters" in Distiller's
YAML headers is the number of conv + linear *weight* elements (``weight_params`` here); ``params``
is every trainable parameter. A module called twice is counted twice, as in Distiller.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from edgeprune.errors import ConfigError
from edgeprune.models.naming import normalize_module_name


@dataclass
class LayerSummary:
    name: str
    type: str
    weight_shape: list[int]
    ifm: list[int]
    ofm: list[int]
    macs: int
    weight_params: int
    attrs: str = ""


@dataclass
class ModelSummary:
    arch: str
    params: int
    weight_params: int
    macs: int
    input_shape: list[int]
    layers: list[LayerSummary] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def input_shape_of(model: nn.Module, input_shape: tuple[int, ...] | None = None) -> tuple[int, ...]:
    """The (C, H, W) input a model expects: explicit, else its ``input_shape`` attribute."""
    shape = input_shape or getattr(model, "input_shape", None)
    if shape is None:
        raise ConfigError(
            f"Cannot tell the input shape of {type(model).__name__}.",
            hint="Pass input_shape=(C, H, W) (CLI: --input-shape 3,32,32) or set model.input_shape.",
        )
    return tuple(int(s) for s in shape)


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """``model.eval()`` inside, the previous ``model.train(model.training)`` after, as the counting passes did.

    A model whose modules are all in eval mode already is left alone: ``eval()`` and ``train(False)`` would
    only set every module's flag to what it is, and on resnet56 those ~200 ``Module.__setattr__`` calls cost
    about as much as the forward pass they wrap.
    """
    if not any(m.training for m in model.modules()):
        yield
        return
    was_training = model.training
    try:
        model.eval()
        yield
    finally:
        model.train(was_training)


class LayerCounter:
    """Forward hooks on every ``Conv2d`` / ``Linear`` that record Distiller's per-layer counts of one pass.

    ``batch`` is the batch size of the pass. Distiller counts one image; a pass over ``batch`` images gives the
    same per-image counts (MACs divided by the batch, ``ifm``/``ofm`` with a batch of 1) as long as every
    counted layer sees the batch as its first dimension, which :attr:`per_image` says. Why: the channel trace
    of thinning already runs the model on two images, so it also gives the dense counts, one forward pass
    fewer than counting them apart.
    """

    def __init__(self, model: nn.Module, batch: int = 1) -> None:
        self.model = model
        self.batch = batch
        self.layers: list[LayerSummary] = []
        self.per_image = True
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def __enter__(self) -> LayerCounter:
        names = {m: normalize_module_name(n) for n, m in self.model.named_modules()
                 if isinstance(m, (nn.Conv2d, nn.Linear))}

        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            ifm, ofm = list(inputs[0].shape), list(output.shape)
            if self.batch != 1:
                if ifm[0] != self.batch or ofm[0] != self.batch:
                    self.per_image = False
                    return
                ifm[0] = ofm[0] = 1
            weight = module.weight
            if isinstance(module, nn.Conv2d):
                kh, kw = module.kernel_size
                macs = output.numel() // self.batch * (module.in_channels // module.groups) * kh * kw
                attrs = f"k={module.kernel_size!s}"
            else:
                macs = weight.numel()
                attrs = ""
            self.layers.append(LayerSummary(
                name=names[module], type=type(module).__name__, weight_shape=list(weight.shape),
                ifm=ifm, ofm=ofm, macs=int(macs), weight_params=int(weight.numel()), attrs=attrs,
            ))

        self._handles = [m.register_forward_hook(hook) for m in names]
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


def summarize(model: nn.Module, shape: tuple[int, ...], layers: list[LayerSummary],
              arch: str | None = None) -> ModelSummary:
    """The :class:`ModelSummary` of ``model`` from the per-layer counts of a pass (see :class:`LayerCounter`)."""
    weight_params = sum(
        m.weight.numel() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))
    )
    return ModelSummary(
        arch=arch or type(model).__name__,
        params=sum(p.numel() for p in model.parameters() if p.requires_grad),
        weight_params=int(weight_params),
        macs=sum(layer.macs for layer in layers),
        input_shape=list(shape),
        layers=layers,
    )


def model_summary(
    model: nn.Module, input_shape: tuple[int, ...] | None = None, arch: str | None = None,
) -> ModelSummary:
    """Run one batch-1 forward pass on zeros and collect Distiller's per-layer counts."""
    shape = input_shape_of(model, input_shape)
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    try:
        with LayerCounter(model) as counter, eval_mode(model), torch.no_grad():
            model(torch.zeros((1, *shape), device=device))
    except RuntimeError as exc:
        raise ConfigError(
            f"A forward pass of {type(model).__name__} on input (1, {', '.join(map(str, shape))}) failed: "
            f"{str(exc).splitlines()[0]}",
            hint="Check the input shape (--input-shape C,H,W) matches what the model was built for.",
        ) from None
    return summarize(model, shape, counter.layers, arch)
