"""The ImageNet-class and Distiller CIFAR zoo: names, shapes and counts against published numbers.

Oracles, none of them edgeprune's own code: the per-parameter tables and headers Distiller printed into its
example schedules (examples/schedules/distiller_*.yaml, copied verbatim), torchvision's published parameter
counts and GFLOPS (its model documentation), and the MobileNet v1 paper's Table 6 (mult-adds, parameters).
"""

from __future__ import annotations

import math
import re
import warnings

import pytest
import torch
from torch import nn

from edgeprune.models import create_model
from edgeprune.models.checkpoint import CheckpointNotice, load_checkpoint, save_checkpoint
from edgeprune.models.naming import normalize_module_name
from edgeprune.models.resolve import resolve_model
from edgeprune.models.summary import model_summary
from edgeprune.schedule.config import ScheduleError, load_schedule
from edgeprune.schedule.scheduler import CompressionScheduler

from .conftest import REPO, run_cli

SCHEDULES = REPO / "examples" / "schedules"
_ROW = re.compile(r"^#\s*\|\s*[\d.]+\s*\|\s*(\S+\.weight)\s*\|\s*\(([\d, ]+)\)\s*\|\s*(\d+)\s*\|")


def published_table(schedule: str) -> dict[str, tuple[int, ...]]:
    """``{weight name: shape}`` from the per-parameter table in a Distiller schedule's header."""
    rows = {}
    for line in (SCHEDULES / schedule).read_text().splitlines():
        m = _ROW.match(line)
        if m:
            rows[normalize_module_name(m.group(1))] = tuple(int(s) for s in m.group(2).split(","))
    assert rows, f"no parameter table in {schedule}"
    return rows


def weight_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {f"{n}.weight": tuple(m.weight.shape) for n, m in model.named_modules()
            if isinstance(m, (nn.Conv2d, nn.Linear))}


# ------------------------------------------------------------------------------------------ counts
@pytest.mark.parametrize(("arch", "weights", "macs"), [
    ("resnet50", 25_502_912, 4_089_184_256),  # every Distiller ResNet-50 schedule header: "(of 25,502,912)"
    ("resnet18", 11_678_912, None),           # agp-pruning/resnet18.schedule_agp.yaml, table total
    ("alexnet", 61_090_496, None),            # agp-pruning/alexnet.schedule_agp.yaml, table total
    ("mobilenet", 4_209_088, None),           # agp-pruning/mobilenet.imagenet.schedule_agp.yaml, table total
    ("vgg16_cifar", 14_715_584, 313_201_664),  # ssl/vgg16_cifar...: "313M MACs ... parameters from 14.7M"
])
def test_distiller_weight_and_mac_counts(arch: str, weights: int, macs: int | None) -> None:
    s = model_summary(create_model(arch))
    assert s.weight_params == weights
    if macs is not None:
        assert s.macs == macs if arch == "resnet50" else round(s.macs / 1e6) == round(macs / 1e6)


@pytest.mark.parametrize(("arch", "params", "gflops"), [
    ("resnet18", 11_689_512, 1.81), ("resnet34", 21_797_672, 3.66), ("resnet50", 25_557_032, 4.09),
    ("resnet101", 44_549_160, 7.80), ("mobilenet_v2", 3_504_872, 0.30), ("vgg16", 138_357_544, 15.47),
    ("vgg16_bn", 138_365_992, 15.47), ("alexnet", 61_100_840, 0.71),
])
def test_torchvision_published_parameter_counts_and_gflops(arch: str, params: int, gflops: float) -> None:
    """torchvision's documented ``num_params`` exactly, and its GFLOPS (multiply-adds) to its two decimals."""
    s = model_summary(create_model(arch))
    assert s.params == params
    assert round(s.macs / 1e9, 2) == pytest.approx(gflops, abs=0.006)


@pytest.mark.parametrize(("arch", "mult_adds_m", "params_m"), [
    ("mobilenet", 569, 4.2), ("mobilenet_075", 325, 2.6), ("mobilenet_050", 149, 1.3), ("mobilenet_025", 41, 0.5),
])
def test_mobilenet_width_multipliers_match_the_paper(arch: str, mult_adds_m: int, params_m: float) -> None:
    """Howard et al. 2017, Table 6 (million mult-adds and parameters at 224x224, 1000 classes)."""
    s = model_summary(create_model(arch))
    assert round(s.macs / 1e6) == mult_adds_m
    assert round(s.params / 1e6, 1) == params_m


# ------------------------------------------------------------------------------------------ names and shapes
@pytest.mark.parametrize(("arch", "schedule"), [
    ("resnet18", "distiller_resnet18.schedule_agp.yaml"),
    ("alexnet", "distiller_alexnet.schedule_agp.yaml"),
    ("mobilenet", "distiller_mobilenet.imagenet.schedule_agp.yaml"),
])
def test_every_weight_name_and_shape_is_distillers(arch: str, schedule: str) -> None:
    """Distiller's tables list every conv/linear weight of the dense network (names without ``module.``)."""
    assert weight_shapes(create_model(arch)) == published_table(schedule)


def test_vgg16_cifar_has_no_batchnorm_and_distillers_conv_indices() -> None:
    """Distiller's SSL table names features.0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28 and classifier."""
    model = create_model("vgg16_cifar")
    assert set(weight_shapes(model)) == set(published_table("distiller_vgg16_cifar_ssl_channels_training.yaml"))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    bn = create_model("vgg16_bn_cifar")
    assert isinstance(bn.features[21], nn.BatchNorm2d) and isinstance(bn.features[20], nn.Conv2d)


def test_resnet50_state_dict_layout_is_torchvisions() -> None:
    """53 convs + 53 BNs (5 entries each) + fc: torchvision's 320 keys; downsample only in each stage's block 0."""
    sd = create_model("resnet50").state_dict()
    assert len(sd) == 320
    downsample = sorted({k.rsplit(".", 2)[0] for k in sd if ".downsample." in k})
    assert downsample == [f"layer{i}.0.downsample" for i in range(1, 5)]
    assert sd["layer2.0.conv2.weight"].shape == (128, 128, 3, 3) and sd["fc.weight"].shape == (1000, 2048)
    stride = create_model("resnet50").layer2[0]
    assert (stride.conv1.stride, stride.conv2.stride) == ((1, 1), (2, 2))  # torchvision's "v1.5"


def test_mobilenet_v2_state_dict_layout_is_torchvisions() -> None:
    sd = create_model("mobilenet_v2").state_dict()
    assert sd["features.0.0.weight"].shape == (32, 3, 3, 3)
    assert sd["features.1.conv.0.0.weight"].shape == (32, 1, 3, 3)  # first block: no expansion, depthwise first
    assert sd["features.1.conv.1.weight"].shape == (16, 32, 1, 1)
    assert sd["features.2.conv.0.0.weight"].shape == (96, 16, 1, 1)
    assert sd["features.2.conv.1.0.weight"].shape == (96, 1, 3, 3)
    assert sd["features.2.conv.3.running_var"].shape == (24,)
    assert sd["features.18.0.weight"].shape == (1280, 320, 1, 1)
    assert sd["classifier.1.weight"].shape == (1000, 1280)
    assert sum(".conv." in k and k.endswith("weight") and sd[k].dim() == 4 for k in sd) == 2 + 16 * 3  # 17 blocks


# ------------------------------------------------------------------------------------------ loading
def test_distiller_checkpoint_of_resnet50_loads(tmp_path) -> None:
    """Distiller saved ``module.``-prefixed names under DataParallel, with its own bookkeeping keys."""
    torch.manual_seed(0)
    source = create_model("resnet50", num_classes=7)
    sd = {f"module.{k}": v for k, v in source.state_dict().items()}
    torch.save({"arch": "resnet50", "state_dict": sd, "best_top1": 76.1, "epoch": 3,
                "compression_sched": {"masks_dict": {}}}, tmp_path / "r50.pth.tar")
    loaded = resolve_model(str(tmp_path / "r50.pth.tar"))
    assert loaded.arch == "resnet50" and loaded.model.fc.out_features == 7
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded.model.eval()(x), source.eval()(x))


def test_old_vgg16_cifar_checkpoint_with_batchnorm_loads_as_vgg16_bn_cifar(tmp_path) -> None:
    model = create_model("vgg16_bn_cifar")
    save_checkpoint(tmp_path / "old.pth", model, arch="vgg16_cifar")  # the name edgeprune once used
    with pytest.warns(CheckpointNotice, match="'vgg16_cifar' .*is called 'vgg16_bn_cifar' now"):
        loaded = resolve_model(str(tmp_path / "old.pth"))
    assert loaded.arch == "vgg16_bn_cifar"
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.model.eval()(x), model.eval()(x))
    result = run_cli("summary", str(tmp_path / "old.pth"))
    assert result.returncode == 0, result.stderr
    notices = [line for line in result.stderr.splitlines() if "vgg16_bn_cifar" in line]
    assert len(notices) == 1 and notices[0].startswith("warning:")


def test_a_vgg16_cifar_checkpoint_without_batchnorm_loads_without_notice(tmp_path) -> None:
    save_checkpoint(tmp_path / "plain.pth", create_model("vgg16_cifar"), arch="vgg16_cifar")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ckpt = load_checkpoint(tmp_path / "plain.pth")
    assert ckpt.arch == "vgg16_cifar"


# ------------------------------------------------------------------------------------------ schedules
def test_distillers_vgg16_ssl_schedule_regularizes_convs() -> None:
    """Its GroupLasso names features.21.weight and 12 others: all convs of vgg16_cifar; a BN in vgg16_bn_cifar."""
    spec = load_schedule(SCHEDULES / "distiller_vgg16_cifar_ssl_channels_training.yaml")
    model = create_model("vgg16_cifar")
    sched = CompressionScheduler(model, spec)
    (regularizer,) = [p.regularizer for p in sched.policies if hasattr(p, "regularizer")]
    modules = dict(model.named_modules())
    names = regularizer.params_names
    assert len(names) == 13 and "features.21.weight" in names
    assert all(isinstance(modules[n.rsplit(".", 1)[0]], nn.Conv2d) for n in names)
    params = dict(model.named_parameters())
    assert all(regularizer.loss(params[n], n).item() > 0 for n in names)
    with pytest.raises(ScheduleError, match=r"features\.21\.weight.*needs a 4D weight"):
        CompressionScheduler(create_model("vgg16_bn_cifar"), spec)


def test_preact_resnet_layout_and_forward() -> None:
    """Distiller's preact_resnet20_cifar: no stem BN, pre_bn/bn per block, parameter-free padded shortcuts."""
    model = create_model("preact_resnet20_cifar")
    names = {n for n, _ in model.named_parameters()}
    assert {"conv1.weight", "layer1.0.pre_bn.weight", "layer1.0.bn.weight", "final_bn.weight", "fc.weight"} <= names
    assert "bn1.weight" not in names and not any("downsample" in n for n in names)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    conv_ds = create_model("preact_resnet20_cifar", conv_downsample=True)
    assert conv_ds.layer2[0].downsample.weight.shape == (32, 16, 1, 1)
    assert conv_ds(torch.randn(2, 3, 32, 32)).shape == (2, 10)


# ------------------------------------------------------------------------------ Distiller's ResNet-50 schedules
_HEADER = re.compile(r"No\. of Parameters: ([\d,]+) \(of ([\d,]+)\).*\n.*Total MACs: ([\d,]+) \(of ([\d,]+)\)")


def published_counts(schedule: str) -> tuple[int, int, int, int]:
    """(non-zero weights after, dense weights before, MACs after, MACs before) from the schedule's header."""
    m = _HEADER.search((SCHEDULES / schedule).read_text())
    assert m, f"no published counts in {schedule}"
    return tuple(int(g.replace(",", "")) for g in m.groups())  # type: ignore[return-value]


def check_against_header(model: nn.Module, schedule: str) -> None:
    """Weights and MACs after thinning exactly; non-zeros up to the few exact zeros a random init holds
    (torch's normal sampler returns 0.0 with probability ~2**-24 per element: ~1 in 12 M weights)."""
    nnz, dense_before, macs, macs_before = published_counts(schedule)
    table = published_table(schedule)
    s = model_summary(model)
    assert s.macs == macs
    assert s.weight_params == sum(math.prod(shape) for shape in table.values())
    weights = [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert 0 <= nnz - sum(int(w.count_nonzero()) for w in weights) <= 4
    assert weight_shapes(model) == table  # every thinned shape of Distiller's table
    assert dense_before == 25_502_912 and macs_before == 4_089_184_256


@pytest.mark.parametrize("schedule", [
    "distiller_resnet50.schedule_agp.filters_3.yaml",
    pytest.param("distiller_resnet50.schedule_agp.filters.yaml", marks=pytest.mark.slow),
    pytest.param("distiller_resnet50.schedule_agp.filters_2.yaml", marks=pytest.mark.slow),
    pytest.param("distiller_resnet50.schedule_agp.filters_with_FC.yaml", marks=pytest.mark.slow),
])
def test_distiller_resnet50_filter_schedules_replayed_give_the_published_counts(tmp_path, schedule: str) -> None:
    """``edgeprune prune resnet50 -s SCHEDULE --epochs all``: the weights, MACs and every layer shape that
    Distiller printed in the schedule's header (filters_with_FC: its fc is 70 % sparse, counted as non-zeros)."""
    result = run_cli("prune", "resnet50", "-s", str(SCHEDULES / schedule), "-o", str(tmp_path / "p.pth"),
                     "--epochs", "all")
    assert result.returncode == 0, result.stderr
    check_against_header(resolve_model(str(tmp_path / "p.pth")).model, schedule)


@pytest.mark.slow
def test_distiller_resnet50_apoz_schedule_replayed_gives_the_published_counts() -> None:
    """The network-trimming schedule ranks filters by the average percentage of zero activations, so it needs
    batches; which filters go depends on them, how many (and so every count) does not."""
    torch.manual_seed(0)
    model = create_model("resnet50").eval()
    batches = [(torch.randn(2, 3, 224, 224), torch.randint(0, 1000, (2,)))]
    schedule = "distiller_resnet50.filters.activation_apoz_agp.yaml"
    sched = CompressionScheduler(model, load_schedule(SCHEDULES / schedule), batches=batches)
    sched.replay(sched.compression_epochs())
    check_against_header(model, schedule)


def test_a_bare_torchvision_style_state_dict_loads_with_arch(tmp_path) -> None:
    """torchvision saves ``model.state_dict()`` alone: names as they are, 100 classes inferred from fc."""
    torch.manual_seed(0)
    source = create_model("mobilenet_v2", num_classes=100)
    torch.save(source.state_dict(), tmp_path / "mobilenet_v2.pth")
    loaded = resolve_model(str(tmp_path / "mobilenet_v2.pth"), arch="mobilenet_v2")
    assert loaded.model.classifier[1].out_features == 100
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        assert torch.equal(loaded.model.eval()(x), source.eval()(x))


@pytest.mark.parametrize(("arch", "schedule"), [
    ("resnet18", "distiller_resnet18.schedule_agp.yaml"),
    ("alexnet", "distiller_alexnet.schedule_agp.yaml"),  # names like features.module.3.weight
    ("mobilenet", "distiller_mobilenet.imagenet.schedule_agp.yaml"),
])
def test_distillers_imagenet_agp_schedules_name_existing_weights(arch: str, schedule: str) -> None:
    """Every weight these schedules prune exists in the zoo network (an unknown name would be an error)."""
    sched = CompressionScheduler(create_model(arch), load_schedule(SCHEDULES / schedule))
    assert sched.policies
