"""Checkpoint I/O: our format, plain state_dicts, Distiller files, and every way a file can be bad."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from edgeprune.errors import CheckpointError
from edgeprune.models import create_model
from edgeprune.models.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from edgeprune.models.resolve import resolve_model
from edgeprune.models.summary import model_summary

from .conftest import run_cli, shared_file


def _thin_by_hand(model: torch.nn.Module) -> None:
    """Shrink layer1.0.conv1 from 16 to 11 filters (and its BN and the next conv) like thinning does."""
    from edgeprune.models.widths import apply_widths

    widths = {"layer1.0.conv1": {"in": 16, "out": 11, "groups": 1}, "layer1.0.bn1": {"out": 11},
              "layer1.0.conv2": {"in": 11, "out": 16, "groups": 1}}
    apply_widths(model, widths)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.1)


def test_round_trip_of_a_thinned_model_gives_identical_outputs(tmp_path) -> None:
    model = create_model("resnet20_cifar", num_classes=10).eval()
    _thin_by_hand(model)
    x = torch.randn(3, 3, 32, 32)
    expected = model(x)
    path = save_checkpoint(tmp_path / "thin.pth", model, arch="resnet20_cifar", arch_kwargs={"num_classes": 10},
                           metrics={"top1": 50.0}, normalize={"mean": [0.5] * 3, "std": [0.25] * 3}, seed=7)
    ckpt = load_checkpoint(path)
    assert ckpt.kind == "edgeprune" and ckpt.seed == 7 and ckpt.metrics["top1"] == 50.0
    assert ckpt.widths["layer1.0.conv1"] == {"in": 16, "out": 11, "groups": 1}
    assert ckpt.provenance["torch"] == torch.__version__
    rebuilt = model_from_checkpoint(ckpt).eval()
    assert rebuilt.layer1[0].conv1.weight.shape == (11, 16, 3, 3)
    torch.testing.assert_close(rebuilt(x), expected, rtol=0, atol=0)
    # our format loads with PyTorch's own restricted unpickler
    torch.load(path, weights_only=True)


def test_plain_state_dict_with_module_prefix(tmp_path) -> None:
    model = create_model("resnet20_cifar")
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, tmp_path / "plain.pth")
    loaded = resolve_model(str(tmp_path / "plain.pth"), arch="resnet20_cifar")
    torch.testing.assert_close(loaded.model.state_dict()["conv1.weight"], model.state_dict()["conv1.weight"])
    with pytest.raises(Exception, match="does not say which architecture"):
        resolve_model(str(tmp_path / "plain.pth"))


def test_shape_mismatch_names_layer_and_both_shapes(tmp_path) -> None:
    torch.save(create_model("resnet20_cifar").state_dict(), tmp_path / "r20.pth")
    with pytest.raises(CheckpointError, match=r"(?s)does not fit architecture 'vgg16_bn_cifar'") as exc:
        resolve_model(str(tmp_path / "r20.pth"), arch="vgg16_bn_cifar")
    assert "missing" in str(exc.value)
    sd = create_model("resnet20_cifar").state_dict()
    sd["fc.weight"] = torch.zeros(10, 65)
    torch.save(sd, tmp_path / "bad.pth")
    fc_misfit = r"layer 'fc' receives input of shape \(1, 64\) but its weight is \(10, 65\)"
    with pytest.raises(CheckpointError, match=fc_misfit):
        resolve_model(str(tmp_path / "bad.pth"), arch="resnet20_cifar")


def test_truncated_and_corrupt_files_are_clear_errors(tmp_path) -> None:
    good = tmp_path / "good.pth"
    save_checkpoint(good, create_model("simplenet_cifar"), arch="simplenet_cifar")
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[: os.path.getsize(good) // 2])
    with pytest.raises(CheckpointError, match="could not be read: it looks (truncated|corrupt)"):
        load_checkpoint(truncated)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"this is not a checkpoint at all")
    with pytest.raises(CheckpointError, match="could not be read"):
        load_checkpoint(garbage)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match="is a folder, not a checkpoint file"):
        load_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="is a folder, not a checkpoint file"):
        resolve_model(str(tmp_path))


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_checkpoint_with_code_object_is_refused(tmp_path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": create_model("simplenet_cifar").state_dict(), "payload": _Evil()}, path,
               pickle_protocol=2)
    with pytest.raises(CheckpointError, match=r"contains code edgeprune will not run: its pickle calls "
                                              r"(posix|os)\.system"):
        load_checkpoint(path)
    legacy = tmp_path / "evil_legacy.pth"
    torch.save({"payload": _Evil()}, legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match="contains code edgeprune will not run"):
        load_checkpoint(legacy)
    assert pickle  # the stdlib pickle is what would have executed it


def test_a_code_object_in_any_pickle_protocol_is_named_not_called_corrupt(tmp_path) -> None:
    """Protocols 4 and 5 (Python's defaults) stop PyTorch's loader at their framing opcode, before any global:
    that once read "could not be read: it looks corrupt ... Re-copy or re-save the file"."""
    where = f"{os.system.__module__}.system"
    files = {f"raw{protocol}.pth": pickle.dumps({"payload": _Evil()}, protocol=protocol) for protocol in (0, 2, 4, 5)}
    files["by_name.pth"] = b"cos\nsystem\n(S'echo pwned > /dev/null'\ntR."  # names os.system itself
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    torch.save({"payload": _Evil()}, tmp_path / "zip4.pth", pickle_protocol=4)
    for path in sorted(tmp_path.glob("*.pth")):
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(path)
        named = "os.system" if path.name == "by_name.pth" else where
        assert f"contains code edgeprune will not run: its pickle calls {named}," in info.value.message, path.name
        assert "Re-copy" not in str(info.value) and "trust" in info.value.hint


def test_distiller_dense_checkpoint() -> None:
    ckpt = load_checkpoint(shared_file("models/distiller/checkpoint_trained_dense.pth.tar"))
    assert (ckpt.kind, ckpt.arch, ckpt.epoch, ckpt.metrics["top1"]) == ("distiller", "resnet20_cifar", 179, 92.54)
    assert all(not k.startswith("module.") for k in ckpt.state_dict)
    s = model_summary(model_from_checkpoint(ckpt))
    assert (s.weight_params, s.macs) == (270_896, 40_813_184)


def test_distiller_format_test_checkpoint() -> None:
    ckpt = load_checkpoint(shared_file("models/distiller/resnet20_cifar10_checkpoint.pth.tar"))
    assert ckpt.kind == "distiller" and ckpt.epoch == 0 and ckpt.metrics["top1"] == pytest.approx(9.92)
    assert ckpt.extra["optimizer_type"] == "torch.optim.sgd.SGD"
    assert ckpt.optimizer is not None and "param_groups" in ckpt.optimizer
    model_from_checkpoint(ckpt)


def test_thinned_distiller_checkpoint_comes_back_thin() -> None:
    ckpt = load_checkpoint(shared_file(
        "models/distiller/checkpoint_trained_channel_regularized_resnet20_finetuned.pth.tar"))
    assert ckpt.extra["thinning_recipes"] >= 1
    model = model_from_checkpoint(ckpt).eval()
    assert tuple(model.layer1[0].conv1.weight.shape) == (11, 16, 3, 3)
    assert model.layer1[0].bn1.num_features == 11
    assert model.layer1[0].conv2.in_channels == 11
    for k, v in model.state_dict().items():
        if not k.endswith("num_batches_tracked"):
            assert v.shape == ckpt.state_dict[k].shape, k
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_cli_summary_of_a_thinned_distiller_checkpoint() -> None:
    path = shared_file("models/distiller/checkpoint_trained_channel_regularized_resnet20_finetuned.pth.tar")
    result = run_cli("summary", str(path), "--json")
    assert result.returncode == 0, result.stderr
    import json

    d = json.loads(result.stdout)
    assert d["weight_params"] < 270_896
    layer = next(x for x in d["layers"] if x["name"] == "layer1.0.conv1")
    assert layer["weight_shape"] == [11, 16, 3, 3]
