"""``edgeprune prune`` / ``schedule check`` / ``train --schedule`` end to end, as a user runs them."""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edgeprune.data import load_dataset
from edgeprune.jobs.prune import prune_model
from edgeprune.jobs.train import train_model
from edgeprune.models import create_model
from edgeprune.models.checkpoint import load_checkpoint, model_from_checkpoint
from edgeprune.models.sparsity import sparsity_3d
from edgeprune.models.summary import model_summary
from edgeprune.schedule.config import ScheduleWarning
from edgeprune.schedule.scheduler import CompressionScheduler
from edgeprune.training import TrainConfig

from .conftest import REPO, run_cli, shared_file

FILTER_RANK = REPO / "examples" / "schedules" / "resnet56_cifar_filter_rank.yaml"
MNIST_SCHEDULE = REPO / "examples" / "schedules" / "simplenet_mnist_pruning.yaml"
AGP_DIR = REPO / "examples" / "cifar10_resnet20"


def _summary(path: Path) -> dict:
    result = run_cli("summary", str(path), "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_distiller_filter_rank_schedule_gives_distillers_counts_and_shapes(tmp_path) -> None:
    result = run_cli("prune", "resnet56_cifar", "--schedule", str(FILTER_RANK), "-o", str(tmp_path / "p.pth"))
    assert result.returncode == 0, result.stderr
    d = _summary(tmp_path / "p.pth")
    assert (d["weight_params"], d["macs"]) == (634_640, 78_856_832)
    shapes = {layer["name"]: layer["weight_shape"] for layer in d["layers"]}
    assert all(shapes[f"layer1.{i}.conv1"] == [7, 16, 3, 3] for i in range(9))
    assert all(shapes[f"layer2.{i}.conv1"] == [16, 32, 3, 3] for i in (1, 2, 3, 4, 6, 7))
    assert shapes["layer3.1.conv1"] == [58, 64, 3, 3]
    assert all(shapes[f"layer3.{i}.conv1"] == [45, 64, 3, 3] for i in (2, 3, 5, 6, 7, 8))
    assert shapes["layer2.0.conv1"] == [32, 16, 3, 3] and shapes["layer3.0.conv1"] == [64, 32, 3, 3]
    as_json = run_cli("prune", "resnet56_cifar", "--schedule", str(FILTER_RANK), "-o", str(tmp_path / "j.pth"),
                      "--json")
    table = json.loads(as_json.stdout)  # the printed table, as data
    assert (table["after"]["weight_params"], table["after"]["macs"], table["thinned"]) == (634_640, 78_856_832, True)
    layers = {x["name"]: x for x in table["layers"]}
    assert layers["layer3.1.conv1.weight"]["shape_after"] == [58, 64, 3, 3]
    assert layers["layer3.1.conv1.weight"]["shape_before"] == [64, 64, 3, 3]


@pytest.mark.parametrize(("schedule", "weights", "macs", "conv1s", "stream", "fc", "grouped"), [
    ("resnet20_filters.schedule_agp.yaml", 223_536, 30_655_104, (16, 16, 64), 16, [10, 64], True),
    ("resnet20_filters.schedule_agp_2.yaml", 246_704, 30_638_720, (10, 20, 64), 32, [10, 64], False),
    ("resnet20_filters.schedule_agp_4.yaml", 130_544, 24_723_776, (16, 16, 64), 16, [10, 32], True),
])
def test_distiller_resnet20_agp_schedules_replayed_give_distillers_published_counts(
        tmp_path, schedule: str, weights: int, macs: int, conv1s: tuple[int, ...], stream: int, fc: list[int],
        grouped: bool) -> None:
    """Distiller's published MACs and weights for its resnet20 AGP examples. agp and agp_4 rank layer2's
    residual stream without a Leader, which is grouped (a warning says so) instead of thinned with misaligned
    channels; agp_2 prunes only block conv1s, which nothing else reads."""
    result = run_cli("prune", "resnet20_cifar", "-s", str(AGP_DIR / schedule), "-o", str(tmp_path / "p.pth"),
                     "--epochs", "all")
    assert result.returncode == 0, result.stderr
    assert ("pruners.low_pruner: [layer2.0.conv2.weight" in result.stderr) == grouped
    d = _summary(tmp_path / "p.pth")
    assert (d["weight_params"], d["macs"]) == (weights, macs)
    shapes = {layer["name"]: layer["weight_shape"] for layer in d["layers"]}
    for stage, filters in enumerate(conv1s, start=1):
        assert all(shapes[f"layer{stage}.{i}.conv1"][0] == filters for i in range(3))
    assert all(shapes[f"layer2.{i}.conv2"][0] == stream for i in range(3))
    assert shapes["fc"] == fc
    model = model_from_checkpoint(load_checkpoint(tmp_path / "p.pth"))
    assert 1 - model.layer3[1].conv1.weight.count_nonzero().item() / model.layer3[1].conv1.weight.numel() == \
        pytest.approx(0.7, abs=1e-4)  # fine_pruner's AGP reached its final sparsity at its last epoch


def test_grouped_agp_schedule_thins_without_changing_the_outputs() -> None:
    """The filters removed from layer2's residual stream are the same in every coupled conv: thinning is exact."""
    torch.manual_seed(0)
    model = create_model("resnet20_cifar").eval()
    with pytest.warns(ScheduleWarning, match="ranks them independently"):
        sched = CompressionScheduler(model, AGP_DIR / "resnet20_filters.schedule_agp.yaml")
    sched.replay(30)  # low_pruner fired last at epoch 28; the thinner fires at epoch 30
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        masked = model(x)
        sched.thin_all()
        thinned = model(x)
    assert model.layer2[0].downsample[0].out_channels == model.layer2[2].conv2.out_channels == 16
    torch.testing.assert_close(thinned, masked, rtol=1e-4, atol=1e-5)


def test_seed_schedule_verbatim_zeroes_in_place_and_thins_with_flag(tmp_path) -> None:
    seed = shared_file("reference/seed-schedule.yaml")
    zeroed = run_cli("prune", "resnet56_cifar", "-s", str(seed), "-o", str(tmp_path / "z.pth"))
    assert zeroed.returncode == 0, zeroed.stderr
    assert "warning" in zeroed.stderr.lower() and "instance_name" in zeroed.stderr  # flattened policies
    model = model_from_checkpoint(load_checkpoint(tmp_path / "z.pth"))
    for block in (model.layer1[0], model.layer1[1]):
        assert block.conv1.weight.shape == (16, 16, 3, 3)
        assert sparsity_3d(block.conv1.weight) == 14 / 16
    assert sparsity_3d(model.layer1[2].conv1.weight) == 0

    thin = run_cli("prune", "resnet56_cifar", "-s", str(seed), "-o", str(tmp_path / "t.pth"), "--thin")
    assert thin.returncode == 0, thin.stderr
    shapes = {layer["name"]: layer["weight_shape"] for layer in _summary(tmp_path / "t.pth")["layers"]}
    assert shapes["layer1.0.conv1"] == shapes["layer1.1.conv1"] == [2, 16, 3, 3]
    assert shapes["layer1.0.conv2"] == shapes["layer1.1.conv2"] == [16, 2, 3, 3]


def test_thinned_checkpoint_reloads_with_identical_outputs(tmp_path) -> None:
    prune_model("resnet20_cifar", _resnet20_schedule(tmp_path), tmp_path / "r20.pth", thin=True)
    x = torch.randn(4, 3, 32, 32)
    first = model_from_checkpoint(load_checkpoint(tmp_path / "r20.pth")).eval()
    second = model_from_checkpoint(load_checkpoint(tmp_path / "r20.pth")).eval()
    assert first.layer1[0].conv1.out_channels == 8
    torch.testing.assert_close(first(x), second(x), rtol=0, atol=0)
    # the same seed gives the same pruned network
    again = prune_model("resnet20_cifar", _resnet20_schedule(tmp_path), tmp_path / "again.pth", thin=True)
    assert again.after.macs == model_summary(first).macs
    torch.testing.assert_close(model_from_checkpoint(load_checkpoint(again.out)).eval()(x), first(x), rtol=0, atol=0)


def _resnet20_schedule(tmp_path: Path) -> Path:
    path = tmp_path / "r20.yaml"
    path.write_text(
        "version: 1\n"
        "pruners:\n"
        "  p:\n"
        "    class: L1RankedStructureParameterPruner\n"
        "    group_type: Filters\n"
        "    desired_sparsity: 0.5\n"
        "    weights: [module.layer1.0.conv1.weight, module.layer2.1.conv1.weight]\n"
        "policies:\n"
        "  - pruner:\n"
        "      instance_name: p\n"
        "    epochs: [0]\n")
    return path


def test_schedule_check_prints_the_timeline_with_agp_targets(tmp_path) -> None:
    result = run_cli("schedule", "check", str(MNIST_SCHEDULE), "--model", "simplenet_mnist")
    assert result.returncode == 0, result.stderr
    assert "conv2_pruner" in result.stdout and "net_thinner" in result.stdout
    assert "0.05" in result.stdout and "0.2" in result.stdout  # AGP targets at epochs 0 and 1
    assert "valid; 4 policies" in result.stdout
    assert "0.0500 → 0.2000" in result.stdout  # the AGP ramp of one run; per epoch with --per-epoch
    as_json = json.loads(run_cli("schedule", "check", str(MNIST_SCHEDULE), "--model", "simplenet_mnist",
                                 "--json").stdout)
    assert as_json["policies"] == 4 and len(as_json["firings"]) == 7
    assert as_json["firings"][1] == {"epoch": 0, "policy": 1, "kind": "pruner", "instance": "conv2_pruner",
                                     "class": "L1RankedStructureParameterPruner_AGP",
                                     "agp_target": pytest.approx(0.05)}


@pytest.mark.slow
def test_schedule_check_of_the_founding_example_is_a_few_lines() -> None:
    seed = shared_file("reference/seed-schedule.yaml")
    short = run_cli("schedule", "check", str(seed), "--model", "resnet20_cifar")
    assert short.returncode == 0, short.stderr
    assert "10–299, every epoch" in short.stdout and len(short.stdout.splitlines()) < 12
    full = run_cli("schedule", "check", str(seed), "--model", "resnet20_cifar", "--per-epoch")
    assert sum(" exp_finetuning_lr " in line for line in full.stdout.splitlines()) == 290


def test_bad_schedule_is_a_located_error_and_writes_nothing(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(FILTER_RANK.read_text().replace("L1RankedStructureParameterPruner", "L1RankedStructurePruner", 1))
    result = run_cli("prune", "resnet56_cifar", "-s", str(bad), "-o", str(tmp_path / "out.pth"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "bad.yaml:" in result.stderr and "L1RankedStructureParameterPruner" in result.stderr
    assert not (tmp_path / "out.pth").exists()
    typo = tmp_path / "typo.yaml"
    typo.write_text(FILTER_RANK.read_text().replace("module.layer3.1.conv1.weight", "module.layer3.1.conv.weight"))
    result = run_cli("prune", "resnet56_cifar", "-s", str(typo), "-o", str(tmp_path / "out.pth"))
    assert result.returncode == 2 and "layer3.1.conv1.weight" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out.pth").exists()


# --------------------------------------------------------------------------- Distiller's full-flow MNIST test
def _write_idx(path: Path, array: np.ndarray) -> None:
    code = 0x08  # unsigned byte
    header = struct.pack(">HBB", 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def mnist_like(tmp_path: Path) -> Path:
    """MNIST-format idx files made from the bundled digits, upscaled to 28×28 (a real, learnable task)."""
    root = tmp_path / "mnist"
    root.mkdir()
    for split, prefix in (("train", "train"), ("test", "t10k")):
        ds = load_dataset("digits", split)
        images = np.stack([np.asarray(Image.fromarray(im[..., 0]).resize((28, 28), Image.BILINEAR))
                           for im in ds.images])
        _write_idx(root / f"{prefix}-images-idx3-ubyte.gz", images)
        _write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", ds.labels)
    return root


def test_simplenet_mnist_full_flow_schedule_trains_prunes_and_thins(tmp_path, mnist_like) -> None:
    cfg = TrainConfig(epochs=3, batch_size=64, lr=0.05, device="cpu", progress=False)
    result, loaded = train_model("simplenet_mnist", str(mnist_like), tmp_path / "run", cfg, schedule=MNIST_SCHEDULE)
    model = loaded.model
    # conv1: 10 % of 20 filters at epochs 0 and 1 -> 2 removed; conv2: AGP .05 -> .2 (2, then 10 of 50) removed
    assert tuple(model.conv1.weight.shape) == (18, 1, 5, 5)
    assert tuple(model.conv2.weight.shape) == (40, 18, 5, 5)
    assert model.fc1.in_features == 40 * 4 * 4
    fc2_zero = float((model.fc2.weight == 0).float().mean())
    assert fc2_zero == pytest.approx(0.15, abs=0.002)  # fine-grained AGP reached its final sparsity
    assert result.final["top1"] > 80.0
    reloaded = model_from_checkpoint(load_checkpoint(tmp_path / "run" / "checkpoint.pth"))
    assert tuple(reloaded.conv2.weight.shape) == (40, 18, 5, 5)


def test_fashion_mnist_from_debian_loads_when_installed() -> None:
    root = Path("/usr/share/datasets/fashion-mnist")
    if not root.exists():
        pytest.skip("Debian's dataset-fashion-mnist is not installed (apt-get install dataset-fashion-mnist)")
    ds = load_dataset(root, "test")
    assert ds.images.shape == (10_000, 28, 28, 1)
