"""Model zoo: registry behaviour and Distiller-exact weight/MAC counts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgeprune.errors import ConfigError, UnknownNameError
from edgeprune.models import create_model, list_models
from edgeprune.models.summary import model_summary

# (weight_params, MACs) from Distiller's YAML headers / docs (reference §5.2).
DISTILLER_COUNTS = {
    "resnet20_cifar": (270_896, 40_813_184),
    "resnet32_cifar": (464_432, 69_124_736),
    "resnet44_cifar": (657_968, 97_436_288),
    "resnet56_cifar": (851_504, 125_747_840),
}


@pytest.mark.parametrize("arch", sorted(DISTILLER_COUNTS))
def test_resnet_counts_match_distiller(arch: str) -> None:
    s = model_summary(create_model(arch))
    assert (s.weight_params, s.macs) == DISTILLER_COUNTS[arch]


def test_resnet20_per_layer_macs() -> None:
    layers = {layer.name: layer.macs for layer in model_summary(create_model("resnet20_cifar")).layers}
    assert layers["conv1"] == 442_368
    assert layers["layer1.0.conv1"] == 2_359_296
    assert layers["layer2.0.conv1"] == 1_179_648
    assert layers["layer2.0.downsample.0"] == 131_072
    assert layers["layer3.0.conv1"] == 1_179_648
    assert layers["layer3.0.downsample.0"] == 131_072
    assert layers["fc"] == 640


def test_resnet_names_follow_distiller() -> None:
    model = create_model("resnet20_cifar")
    names = [n for n, _ in model.named_parameters()]
    assert len(names) == 65
    assert len([k for k in model.state_dict() if not k.endswith("num_batches_tracked")]) == 107
    assert "layer2.0.downsample.0.weight" in names and "layer3.0.downsample.1.bias" in names
    assert not any(n.startswith("layer1.0.downsample") for n in names)
    assert names[0] == "conv1.weight" and names[-1] == "fc.bias"


def test_simplenet_cifar_macs() -> None:
    assert [layer.macs for layer in model_summary(create_model("simplenet_cifar")).layers] == [
        352800, 240000, 48000, 10080, 840]


def test_plain20_has_no_shortcut_and_mobilenet_is_depthwise() -> None:
    plain = create_model("plain20_cifar")
    assert not any("downsample" in n for n, _ in plain.named_modules())
    mobile = create_model("mobilenet_cifar")
    dw = [m for m in mobile.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert dw and all(m.groups == m.in_channels == m.out_channels for m in dw)


@pytest.mark.parametrize("arch", list_models())
def test_every_model_runs_with_configured_io(arch: str) -> None:
    in_channels = 1 if arch == "simplenet_mnist" else 3
    model = create_model(arch, num_classes=7, in_channels=in_channels).eval()
    x = torch.randn(2, *model.input_shape)
    assert model(x).shape == (2, 7)


def test_list_models_pattern() -> None:
    assert list_models("resnet*_cifar") == ["resnet110_cifar", "resnet20_cifar", "resnet32_cifar",
                                            "resnet44_cifar", "resnet56_cifar"]


def test_unknown_architecture_suggests_close_names() -> None:
    with pytest.raises(UnknownNameError, match=r"Unknown architecture 'resnet20_cifr'\. Did you mean 'resnet20_cifar'"):
        create_model("resnet20_cifr")


def test_bad_constructor_keyword_lists_accepted_ones() -> None:
    with pytest.raises(ConfigError, match="(?s)does not accept 'classes'.*num_classes, in_channels"):
        create_model("resnet20_cifar", classes=10)


def test_user_factory_by_module_path(tmp_path, monkeypatch) -> None:
    (tmp_path / "mynets.py").write_text(
        "from torch import nn\n"
        "def tiny(num_classes=10):\n"
        "    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, num_classes))\n"
        "    m.input_shape = (3, 8, 8)\n"
        "    return m\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    s = model_summary(create_model("mynets:tiny", num_classes=5))
    assert s.macs == 4 * 6 * 6 * 3 * 9 + 144 * 5
    with pytest.raises(UnknownNameError, match="Did you mean 'tiny'"):
        create_model("mynets:tinyy")
    with pytest.raises(ConfigError, match="Cannot import module 'nosuchmodule'"):
        create_model("nosuchmodule:f")
