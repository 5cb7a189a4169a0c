"""Structure sparsity measures and Distiller's "Parameters" sparsity table.

The row/column conventions follow Distiller exactly (its ``transposed=True`` default treats a
Linear (out, in) weight as Wᵀ), because Distiller's tables and tests are stated in those terms.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from edgeprune.models.naming import normalize_module_name


def density(t: torch.Tensor) -> float:
    return float(torch.count_nonzero(t)) / t.numel()


def sparsity(t: torch.Tensor) -> float:
    return 1.0 - density(t)


def _zero_fraction(groups: torch.Tensor) -> float:
    """Fraction of rows of a 2D view that are entirely zero."""
    return float((groups.abs().sum(dim=1) == 0).sum()) / groups.size(0)


def sparsity_3d(t: torch.Tensor) -> float:
    """Fraction of all-zero filters (dim 0) of a 3D/4D weight."""
    return _zero_fraction(t.reshape(t.size(0), -1))


def sparsity_ch(t: torch.Tensor) -> float:
    """Fraction of all-zero input channels: dim 1 of a 4D weight, columns of a 2D weight."""
    if t.dim() == 2:
        return _zero_fraction(t.t())
    return _zero_fraction(t.transpose(0, 1).reshape(t.size(1), -1))


def sparsity_2d(t: torch.Tensor) -> float:
    """Fraction of all-zero k×k kernels of a 4D weight; of all-zero rows of a 2D weight."""
    if t.dim() == 4:
        return _zero_fraction(t.reshape(-1, t.size(2) * t.size(3)))
    return _zero_fraction(t)


def sparsity_rows(t: torch.Tensor, transposed: bool = True) -> float:
    """Distiller's row sparsity of a 2D tensor; ``transposed`` (default) means rows of Wᵀ."""
    return _zero_fraction(t.t() if transposed else t)


def sparsity_cols(t: torch.Tensor, transposed: bool = True) -> float:
    """Distiller's column sparsity of a 2D tensor; ``transposed`` (default) means columns of Wᵀ."""
    return _zero_fraction(t if transposed else t.t())


def density_cols(t: torch.Tensor, transposed: bool = True) -> float:
    return 1.0 - sparsity_cols(t, transposed)


@dataclass
class SparsityRow:
    name: str
    shape: tuple[int, ...]
    nnz_dense: int
    nnz_sparse: int
    cols_pct: float
    rows_pct: float
    ch_pct: float
    k2d_pct: float
    k3d_pct: float
    fine_pct: float
    std: float
    mean: float
    abs_mean: float


def sparsity_table(model: nn.Module) -> tuple[list[SparsityRow], float]:
    """Distiller's ``weights_sparsity_summary``: one row per 2D/4D weight, plus total sparsity (%).

    Rows cover every ``state_dict`` entry of dim 2 or 4 whose name contains 'weight' or 'bias',
    i.e. conv and linear weights (BN tensors and biases are 1D).
    """
    rows: list[SparsityRow] = []
    total, total_nnz = 0, 0
    for name, t in model.state_dict().items():
        if t.dim() not in (2, 4) or ("weight" not in name and "bias" not in name):
            continue
        t = t.detach().float().cpu()
        nnz = int(torch.count_nonzero(t))
        is4d = t.dim() == 4
        rows.append(SparsityRow(
            name=normalize_module_name(name), shape=tuple(t.shape), nnz_dense=t.numel(), nnz_sparse=nnz,
            cols_pct=0.0 if is4d else 100 * sparsity_cols(t),
            rows_pct=0.0 if is4d else 100 * sparsity_rows(t),
            ch_pct=100 * sparsity_ch(t) if is4d else 0.0,
            k2d_pct=100 * sparsity_2d(t),
            k3d_pct=100 * sparsity_3d(t) if is4d else 0.0,
            fine_pct=100 * (1 - nnz / t.numel()),
            std=float(t.std()) if t.numel() > 1 else 0.0, mean=float(t.mean()), abs_mean=float(t.abs().mean()),
        ))
        total += t.numel()
        total_nnz += nnz
    return rows, (100.0 * (1 - total_nnz / total) if total else 0.0)


def sparsity_dict(model: nn.Module) -> dict[str, object]:
    """:func:`sparsity_table` as plain data (``summary --sparsity --json``): ``weights`` rows and ``total`` (%)."""
    rows, total = sparsity_table(model)
    return {"weights": [{**asdict(row), "shape": list(row.shape)} for row in rows], "total": total}
