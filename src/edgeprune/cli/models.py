"""``edgeprune models`` and ``edgeprune summary``: the zoo and Distiller-exact per-layer counts."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from edgeprune.cli.app import (
    ArchOpt,
    ModelArg,
    app,
    input_shape_of_text,
    out,
)


@app.command("models")
def models_cmd(
    pattern: Annotated[str, typer.Argument(help="Shell-style filter.")] = "*",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object: name -> description.")] = False,
) -> None:
    """List the architectures of the model zoo."""
    from edgeprune.models import MODELS

    docs = {name: ((MODELS.get(name).__doc__ or "").strip().splitlines() or [""])[0] for name in MODELS.names(pattern)}
    if as_json:
        print(json.dumps(docs))
        return
    for name, doc in docs.items():
        out.print(f"[bold]{name}[/]  {doc}")


@app.command()
def summary(
    model: ModelArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    sparsity: Annotated[bool, typer.Option("--sparsity", help="Print Distiller's sparsity table too.")] = False,
    input_shape: Annotated[str | None, typer.Option(help="C,H,W of the input (default: the model's).")] = None,
    arch: ArchOpt = None,
) -> None:
    """Per-layer MACs and weights with Distiller-exact counts."""
    from edgeprune.models.resolve import resolve_model
    from edgeprune.models.summary import model_summary

    loaded = resolve_model(model, arch=arch)
    s = model_summary(loaded.model, input_shape_of_text(input_shape), arch=loaded.arch)
    if as_json:
        d = s.to_dict()
        d["layers"] = [{k: layer[k] for k in ("name", "type", "attrs", "weight_shape", "ifm", "ofm", "macs",
                                              "weight_params")} for layer in d["layers"]]
        if sparsity:
            from edgeprune.models.sparsity import sparsity_dict

            d["sparsity"] = sparsity_dict(loaded.model)
        print(json.dumps(d))
        return
    table = Table(title=f"{s.arch}  input {tuple(s.input_shape)}")
    for col in ("Name", "Type", "Attrs", "Weight shape", "IFM", "OFM", "Weights", "MACs"):
        table.add_column(col, justify="right" if col in ("Weights", "MACs") else "left")
    for layer in s.layers:
        table.add_row(layer.name, layer.type, layer.attrs, str(tuple(layer.weight_shape)), str(tuple(layer.ifm)),
                      str(tuple(layer.ofm)), f"{layer.weight_params:,}", f"{layer.macs:,}")
    out.print(table)
    out.print(f"Total MACs: {s.macs:,}   Weight parameters: {s.weight_params:,}   Parameters: {s.params:,}")
    if sparsity:
        _print_sparsity(loaded.model)


def _print_sparsity(model) -> None:
    from edgeprune.models.sparsity import sparsity_table

    rows, total = sparsity_table(model)
    table = Table(title="Parameters")
    cols = ("Name", "Shape", "NNZ (dense)", "NNZ (sparse)", "Cols (%)", "Rows (%)", "Ch (%)", "2D (%)", "3D (%)",
            "Fine (%)", "Std", "Mean", "Abs-Mean")
    for col in cols:
        table.add_column(col, justify="left" if col in ("Name", "Shape") else "right")
    for r in rows:
        table.add_row(r.name, str(r.shape), str(r.nnz_dense), str(r.nnz_sparse),
                      *(f"{v:.5f}" for v in (r.cols_pct, r.rows_pct, r.ch_pct, r.k2d_pct, r.k3d_pct, r.fine_pct,
                                              r.std, r.mean, r.abs_mean)))
    out.print(table)
    out.print(f"Total sparsity: {total:0.2f}")
