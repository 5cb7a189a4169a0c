"""``edgeprune export`` and ``edgeprune bench``: parity-checked ONNX/IR, and the measurement protocol."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from edgeprune.cli.app import (
    ArchOpt,
    ModelArg,
    app,
    out,
)


@app.command("export")
def export_cmd(
    model: ModelArg,
    output: Annotated[Path, typer.Option("--output", "-o", help="The .onnx file to write (self-contained).")],
    opset: Annotated[int | None, typer.Option(help="ONNX opset (default: the exporter's).")] = None,
    dynamic_batch: Annotated[bool, typer.Option("--dynamic-batch", help="Any batch size (symbolic N).")] = False,
    openvino: Annotated[Path | None, typer.Option("--openvino", help="Also write an OpenVINO IR (.xml + .bin) "
                                                                    "into this directory.")] = None,
    fp16: Annotated[bool, typer.Option("--fp16", help="Compress the IR's weights to FP16 (default: FP32).")] = False,
    data: Annotated[str | None, typer.Option("--data", "-d", help="Check parity on test images of this data set "
                                                                  "(default: random inputs).")] = None,
    exporter: Annotated[str, typer.Option(help="dynamo (PyTorch's default) | torchscript (legacy, ~4x faster).")
                        ] = "dynamo",
    tolerance: Annotated[float | None, typer.Option(help="Largest accepted max rel diff (default 1e-4; 1e-2 for "
                                                         "an FP16 IR).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    arch: ArchOpt = None,
) -> None:
    """Export to one ONNX file (+ OpenVINO IR), refused unless ONNX Runtime/OpenVINO match PyTorch."""
    from edgeprune.jobs.export import export_model

    r = export_model(model, output, opset=opset, dynamic_batch=dynamic_batch, openvino_dir=openvino, fp16=fp16,
                     data=data, arch=arch, exporter=exporter, tolerance=tolerance)
    if as_json:
        print(json.dumps({"onnx": str(r.onnx), "openvino": str(r.ir) if r.ir else None, "opset": r.opset,
                          "input_shape": r.input_shape, "parity": [p.to_dict() for p in r.parity]}))
        return
    for p in r.parity:
        out.print(p.line(), highlight=False)
    out.print(f"onnx: {r.onnx} (opset {r.opset}, input {r.input_shape})" + (f"   openvino: {r.ir}" if r.ir else ""))


@app.command()
def bench(
    model: Annotated[str, typer.Argument(help="A .onnx, an OpenVINO .xml, a checkpoint or a zoo name.")],
    backend: Annotated[str, typer.Option(help="openvino | onnxruntime | torch.")] = "openvino",
    device: Annotated[str, typer.Option(help="CPU | GPU | NPU | AUTO.")] = "CPU",
    batch: Annotated[int, typer.Option(help="Images per inference.")] = 1,
    niter: Annotated[int, typer.Option(help="Timed iterations per round.")] = 100,
    time_s: Annotated[float | None, typer.Option("--time", help="Seconds per round instead of --niter.")] = None,
    hint: Annotated[str, typer.Option(help="latency | throughput (OpenVINO's performance hint).")] = "latency",
    precision: Annotated[str, typer.Option(help="f32 | bf16 | f16 (inference precision, pinned).")] = "f32",
    threads: Annotated[int | None, typer.Option(help="Inference threads (default: all usable CPUs).")] = None,
    images: Annotated[Path | None, typer.Option(help="Directory of image files to feed (resized to the "
                                                      "model's input).")] = None,
    cv: Annotated[float, typer.Option(help="Repeat rounds until their coefficient of variation is below.")] = 0.1,
    budget: Annotated[float, typer.Option(help="Stop repeating rounds after this many seconds.")] = 20.0,
    warmup: Annotated[int, typer.Option(help="Untimed iterations before measuring.")] = 10,
    exporter: Annotated[str, typer.Option(help="ONNX exporter for checkpoints: dynamo | torchscript.")] = "dynamo",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object (keys: docs/benchmark-json.md).")
                       ] = False,
    arch: ArchOpt = None,
) -> None:
    """Latency, end-to-end latency and throughput of MODEL on one backend and device."""
    from edgeprune.jobs.bench import bench_model
    from edgeprune.measurement.protocol import Protocol
    from edgeprune.measurement.result import text_summary

    protocol = Protocol(niter=niter, time_s=time_s, warmup=warmup, cv_threshold=cv, budget_s=budget)
    r = bench_model(model, backend=backend, device=device, batch=batch, protocol=protocol, hint=hint,
                    precision=precision, threads=threads, images=images, arch=arch, exporter=exporter)
    if as_json:
        print(json.dumps(r))
        return
    for line in text_summary(r):
        out.print(line, highlight=False)
