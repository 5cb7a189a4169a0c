"""Model summary (Distiller counts), the sparsity table, and ``edgeprune summary``."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from edgeprune.errors import ConfigError
from edgeprune.models import create_model
from edgeprune.models import sparsity as sp
from edgeprune.models.checkpoint import save_checkpoint
from edgeprune.models.summary import model_summary

from .conftest import run_cli


def test_grouped_conv_macs_divide_by_groups() -> None:
    model = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.Conv2d(8, 4, 1))
    s = model_summary(model, (8, 5, 5))
    assert [layer.macs for layer in s.layers] == [8 * 25 * 1 * 9, 4 * 25 * 8]
    assert s.weight_params == 8 * 9 + 32
    assert s.params == s.weight_params + 8 + 4  # biases count in params, not in weight_params


def test_summary_needs_an_input_shape() -> None:
    with pytest.raises(ConfigError, match="Cannot tell the input shape"):
        model_summary(nn.Sequential(nn.Linear(3, 2)))


def test_summary_reports_a_shape_the_model_rejects() -> None:
    with pytest.raises(ConfigError, match=r"forward pass .* on input \(1, 3, 8, 8\) failed"):
        model_summary(create_model("simplenet_cifar"), (3, 8, 8))


def test_distiller_sparsity_functions() -> None:
    x = torch.tensor([[1.0, 2, 0, 4, 0], [1, 2, 0, 4, 0]])
    assert sp.density(x) == pytest.approx(0.6)
    assert sp.density_cols(x, transposed=False) == pytest.approx(0.6)
    assert sp.sparsity_rows(x, transposed=False) == 0
    y = torch.tensor([[0.0, 0, 0], [1, 4, 0], [1, 2, 0], [0, 0, 0]])
    assert sp.density(y) == pytest.approx(4 / 12)
    assert sp.sparsity_rows(y, transposed=False) == pytest.approx(0.5)
    assert sp.sparsity_cols(y, transposed=False) == pytest.approx(1 / 3)
    assert sp.sparsity_rows(y) == pytest.approx(1 / 3)
    z = torch.zeros(4, 3, 3, 3)
    assert sp.sparsity(z) == 1 and sp.sparsity_3d(z) == 1


def test_sparsity_table_counts_zeroed_filters_and_channels() -> None:
    model = create_model("resnet20_cifar")
    with torch.no_grad():
        model.layer1[0].conv1.weight[:4] = 0  # 4 of 16 filters
        model.layer1[0].conv2.weight[:, :2] = 0  # 2 of 16 input channels
    rows, total = sp.sparsity_table(model)
    by_name = {r.name: r for r in rows}
    assert len(rows) == 22  # 21 convs + fc.weight (BN and biases are 1D)
    assert by_name["layer1.0.conv1.weight"].k3d_pct == pytest.approx(25.0)
    assert by_name["layer1.0.conv1.weight"].nnz_sparse == 12 * 16 * 9
    assert by_name["layer1.0.conv2.weight"].ch_pct == pytest.approx(12.5)
    assert total == pytest.approx(100 * (4 * 144 + 2 * 144) / 270_896)


def test_cli_summary_json() -> None:
    result = run_cli("summary", "resnet56_cifar", "--json")
    assert result.returncode == 0, result.stderr
    d = json.loads(result.stdout)
    assert (d["arch"], d["weight_params"], d["macs"]) == ("resnet56_cifar", 851_504, 125_747_840)
    assert d["params"] == sum(p.numel() for p in create_model("resnet56_cifar").parameters())
    first = d["layers"][0]
    assert first == {"name": "conv1", "type": "Conv2d", "attrs": "k=(3, 3)", "weight_shape": [16, 3, 3, 3],
                     "ifm": [1, 3, 32, 32], "ofm": [1, 16, 32, 32], "macs": 442_368, "weight_params": 432}
    assert sum(layer["macs"] for layer in d["layers"]) == d["macs"]
    assert "sparsity" not in d


def test_cli_summary_sparsity_json_has_the_sparsity_table(tmp_path) -> None:
    """``--sparsity --json`` once printed the summary without any sparsity."""
    model = create_model("resnet20_cifar")
    with torch.no_grad():
        model.layer1[0].conv1.weight[:4] = 0  # 4 of 16 filters: 576 of 2,304 weights
    save_checkpoint(tmp_path / "p.pth", model, arch="resnet20_cifar")
    result = run_cli("summary", str(tmp_path / "p.pth"), "--sparsity", "--json")
    assert result.returncode == 0, result.stderr
    sparsity = json.loads(result.stdout)["sparsity"]
    rows = {row["name"]: row for row in sparsity["weights"]}
    assert len(rows) == 22 and rows["layer1.0.conv1.weight"]["shape"] == [16, 16, 3, 3]
    assert rows["layer1.0.conv1.weight"]["nnz_sparse"] == 12 * 16 * 9
    assert rows["layer1.0.conv1.weight"]["k3d_pct"] == pytest.approx(25.0)
    assert rows["layer1.0.conv2.weight"]["fine_pct"] == 0.0
    assert sparsity["total"] == pytest.approx(100 * 4 * 144 / 270_896)


def test_cli_unknown_model_is_one_clear_error() -> None:
    result = run_cli("summary", "resnet21_cifar")
    assert result.returncode == 2
    assert "Unknown architecture 'resnet21_cifar'" in result.stderr and "Did you mean" in result.stderr
    assert "Traceback" not in result.stderr
