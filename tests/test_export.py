"""``edgeprune export`` / ``eval`` of exported models: self-contained files, parity, metadata, atomic refusal,
OpenVINO IR, and every bad input as one clear error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from edgeprune.errors import EdgepruneError
from edgeprune.jobs.export import export_model
from edgeprune.jobs.prune import prune_model
from edgeprune.jobs.train import evaluate_model, train_model
from edgeprune.models.checkpoint import load_checkpoint, model_from_checkpoint
from edgeprune.runtime.errors import ModelFileError, ParityError, ShapeError
from edgeprune.runtime.modelfile import inspect_onnx
from edgeprune.training import TrainConfig

from .conftest import REPO, run_cli, shared_file

TINY = "tests.tiny_nets:tiny_resnet"


def _only_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.mark.parametrize("arch", ["resnet20_cifar", "simplenet_cifar", "mobilenet_cifar"])
def test_zoo_models_export_to_one_checked_file_matching_pytorch(tmp_path, arch) -> None:
    r = export_model(arch, tmp_path / f"{arch}.onnx", exporter="torchscript")
    assert _only_files(tmp_path) == [f"{arch}.onnx"]  # no external data file, no temporary left
    proto = onnx.load(str(r.onnx))
    onnx.checker.check_model(proto, full_check=True)
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)
    (report,) = r.parity
    assert report.ok and report.samples == 16 and report.top1_agreement == 1.0
    assert report.max_rel_diff < 1e-5
    meta = inspect_onnx(r.onnx).metadata
    assert meta["arch"] == arch and meta["input_shape"] == [3, 32, 32] and meta["exporter"] == "torchscript"


def test_thinned_checkpoint_exports_with_widths_schedule_provenance_and_an_ir(tmp_path) -> None:
    schedule = tmp_path / "thin.yaml"
    schedule.write_text(
        "version: 1\npruners:\n  p:\n    class: L1RankedStructureParameterPruner\n    group_type: Filters\n"
        "    desired_sparsity: 0.5\n    weights: [module.layer1.0.conv1.weight, module.layer2.1.conv1.weight]\n"
        "policies:\n  - pruner:\n      instance_name: p\n    epochs: [0]\n")
    prune_model("resnet20_cifar", schedule, tmp_path / "thin.pth", thin=True)
    r = export_model(str(tmp_path / "thin.pth"), tmp_path / "out" / "thin.onnx", openvino_dir=tmp_path / "ir",
                     exporter="torchscript")
    assert [p.runtime for p in r.parity] == ["ONNX Runtime", "OpenVINO f32 (FP32 weights)"]
    assert all(p.ok and p.max_rel_diff < 1e-5 for p in r.parity)
    meta = inspect_onnx(r.onnx).metadata
    assert meta["widths"]["layer1.0.conv1"]["out"] == 8 and meta["widths"]["layer2.1.conv1"]["out"] == 16
    assert meta["provenance"]["thin"] is True and len(meta["provenance"]["schedule_sha256"]) == 64
    assert meta["checkpoint"] == str((tmp_path / "thin.pth").resolve()) and len(meta["checkpoint_sha256"]) == 64
    assert _only_files(tmp_path / "ir") == ["thin.bin", "thin.xml"]
    thin = model_from_checkpoint(load_checkpoint(tmp_path / "thin.pth")).eval()
    x = torch.randn(1, 3, 32, 32)
    import onnxruntime as ort

    got = ort.InferenceSession(str(r.onnx)).run(None, {"input": x.numpy()})[0]
    np.testing.assert_allclose(got, thin(x).detach().numpy(), rtol=1e-4, atol=1e-4)


def test_dynamo_exporter_dynamic_batch_and_fp16_ir(tmp_path) -> None:
    r = export_model(TINY, tmp_path / "tiny.onnx", dynamic_batch=True, openvino_dir=tmp_path / "ir", fp16=True)
    assert r.input_shape == ["batch", 1, 8, 8] and r.opset >= 18
    onnx_report, ir_report = r.parity
    assert onnx_report.ok and onnx_report.max_rel_diff < 1e-5
    # FP16 weights: visibly rounded, still within the FP16 tolerance, and decisions unchanged
    assert 1e-6 < ir_report.max_rel_diff < 1e-2 and ir_report.tolerance == 1e-2
    assert ir_report.runtime == "OpenVINO f32 (FP16 weights)"
    assert (tmp_path / "ir" / "tiny.bin").stat().st_size < 0.6 * (tmp_path / "tiny.onnx").stat().st_size


def test_refused_export_leaves_nothing_behind(tmp_path) -> None:
    target = tmp_path / "new" / "deeper" / "m.onnx"
    with pytest.raises(ParityError) as info:
        export_model(TINY, target, openvino_dir=tmp_path / "ir", exporter="torchscript", tolerance=0.0)
    message = str(info.value)
    assert "refused" in message and "max rel diff" in message and "Nothing was written" in message
    assert _only_files(tmp_path) == []  # not the file, not the IR, not the directories created for them


@pytest.fixture(scope="module")
def trained_tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny_resnet (a user model, ``module:factory``) trained 3 epochs on digits: ~60 % top-1."""
    out = tmp_path_factory.mktemp("tiny")
    cfg = TrainConfig(epochs=3, batch_size=64, lr=0.05, device="cpu", progress=False)
    train_model(TINY, "digits", out, cfg, resume=False)
    return out / "checkpoint.pth"


def test_parity_on_real_images_uses_the_checkpoints_normalisation(tmp_path, trained_tiny) -> None:
    ckpt = trained_tiny
    r = export_model(str(ckpt), tmp_path / "t.onnx", data="digits", exporter="torchscript")
    (report,) = r.parity
    assert report.inputs == "16 test images of digits" and report.ok
    assert inspect_onnx(r.onnx).metadata["normalize"] == load_checkpoint(ckpt).normalize


def test_onnx_and_ir_top1_equal_pytorch_top1_on_real_data(tmp_path, trained_tiny) -> None:
    ckpt = trained_tiny
    export_model(str(ckpt), tmp_path / "t.onnx", openvino_dir=tmp_path, exporter="torchscript")
    reference = evaluate_model(str(ckpt), "digits", device="cpu")
    assert reference.metrics["top1"] > 50  # a trained model, so top-1 is a real test of the export
    for exported in (tmp_path / "t.onnx", tmp_path / "t.xml"):
        got = evaluate_model(str(exported), "digits")
        assert got.images == reference.images == 359  # the digits test split
        assert abs(got.metrics["top1"] - reference.metrics["top1"]) <= 0.1
        assert got.normalize == reference.normalize


# ------------------------------------------------------------------------------------------- bad input
def test_missing_and_corrupt_model_files(tmp_path) -> None:
    with pytest.raises(ModelFileError, match="does not exist"):
        evaluate_model(str(tmp_path / "nope.onnx"), "digits")
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07this is not a protobuf" * 50)
    with pytest.raises(ModelFileError, match="corrupt"):
        inspect_onnx(corrupt)
    xml = tmp_path / "m.xml"
    xml.write_text("<net/>")
    with pytest.raises(ModelFileError, match=r"has no weights file .*m\.bin"):
        evaluate_model(str(xml), "digits")


def test_onnx_whose_external_data_is_missing(tmp_path) -> None:
    r = export_model(TINY, tmp_path / "t.onnx", exporter="torchscript")
    proto = onnx.load(str(r.onnx))
    onnx.save_model(proto, str(tmp_path / "ext.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="ext.data", size_threshold=0)
    assert inspect_onnx(tmp_path / "ext.onnx").input_shape == (1, 1, 8, 8)  # complete: it loads
    (tmp_path / "ext.data").unlink()
    with pytest.raises(ModelFileError, match=r"external data file .*ext\.data.*missing"):
        evaluate_model(str(tmp_path / "ext.onnx"), "digits")


def test_data_of_the_wrong_shape_names_the_expected_input_shape(tmp_path) -> None:
    r = export_model("simplenet_cifar", tmp_path / "r.onnx", exporter="torchscript")
    with pytest.raises(ShapeError, match=r"expects input of shape \[1, 3, 32, 32\].*\[1, 8, 8\]"):
        evaluate_model(str(r.onnx), "digits")
    with pytest.raises(ShapeError, match=r"\[3, 32, 32\].*\[1, 8, 8\]"):
        export_model("simplenet_cifar", tmp_path / "r2.onnx", data="digits", exporter="torchscript")


def test_cli_export_and_a_missing_runtime_package(tmp_path) -> None:
    done = run_cli("export", TINY, "-o", str(tmp_path / "t.onnx"), "--exporter", "torchscript", "--json", cwd=REPO)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["parity"][0]["ok"] and summary["input_shape"] == [1, 1, 8, 8]
    # a runtime that is not installed: the import system's own "not installed" state for the package
    code = ("import sys; sys.modules['onnxruntime'] = None; sys.argv = ['edgeprune', 'eval', sys.argv[1], "
            "'--data', 'digits']; from edgeprune.cli import main; main()")
    missing = subprocess.run([sys.executable, "-c", code, str(tmp_path / "t.onnx")], capture_output=True, text=True,
                             cwd=REPO, timeout=120, env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"})
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert "'onnxruntime'" in missing.stderr and "pip install 'edgeprune[export]'" in missing.stderr


def test_unknown_exporter_suggests_the_known_ones(tmp_path) -> None:
    with pytest.raises(EdgepruneError, match="dynamo"):
        export_model(TINY, tmp_path / "t.onnx", exporter="dynamic")


@pytest.mark.slow
def test_trained_cifar10_checkpoint_exports_with_equal_top1_on_real_images(tmp_path) -> None:
    ckpt = shared_file("models/resnet20_cifar10_jpeg.pth")
    data = str(shared_file("data/cifar10-jpeg.tar.gz"))
    r = export_model(str(ckpt), tmp_path / "r20.onnx", openvino_dir=tmp_path, data=data, dynamic_batch=True)
    assert all(p.ok and p.top1_agreement == 1.0 for p in r.parity)
    reference = evaluate_model(str(ckpt), data, limit=2000, device="cpu")
    for exported in (r.onnx, r.ir):
        got = evaluate_model(str(exported), data, limit=2000)
        assert abs(got.metrics["top1"] - reference.metrics["top1"]) <= 0.1
