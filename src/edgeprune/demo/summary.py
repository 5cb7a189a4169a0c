"""Phases 5 and 6: the best trade-offs, their OpenVINO IR, the HTML report, and the printed summary.

The front is computed from the study — top-1 up, measured median latency down — exactly as the report draws
it, and every speed-up is the dense model's latency over the trial's, both measured by the consumer with the
same settings (the agents record the dense one as the study's ``baseline``). The summary is also written as
``summary.json`` so a script (or a test) reads the same numbers the terminal shows.

The IR is converted from the very ONNX file the consumer measured, beside it, with its provenance metadata
(``edgeprune eval model.xml`` finds the normalisation); it is written to a temporary name and renamed, so an
interrupted run never leaves half an IR that a rerun would take as done.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from edgeprune.conversion.openvino_ir import convert_to_ir
from edgeprune.demo.baseline import Baseline
from edgeprune.demo.rundir import RunDir
from edgeprune.report.study_html import write_study_report
from edgeprune.sweep.analysis import pareto_mask
from edgeprune.sweep.config import load_sweep
from edgeprune.sweep.results import load_study_data

ABANDONED = "abandoned"  # left by an interrupted run; the same point ran again (not a failure)


@dataclass(frozen=True)
class Point:
    """One completed trial on the accuracy/latency plane."""

    number: int
    params: dict[str, Any]
    top1: float
    macs: float
    latency_ms: float
    speedup: float | None
    onnx: str | None
    ir: str | None = None


@dataclass
class DemoResult:
    run_dir: Path
    model: str
    data: str
    baseline: Baseline
    baseline_latency_ms: float | None
    bench: dict[str, Any]
    front: list[Point]
    counts: dict[str, int]
    errors: dict[int, str]
    artifacts: dict[str, str]
    phases: dict[str, float] = field(default_factory=dict)
    total_s: float = 0.0
    search: dict[str, Any] | None = None  # the --search phase's result

    def to_dict(self) -> dict[str, Any]:
        b = self.baseline
        return {
            "run_dir": str(self.run_dir), "model": self.model, "data": self.data,
            "baseline": {"checkpoint": str(b.checkpoint), "arch": b.arch, "top1": b.top1, "top5": b.top5,
                         "macs": b.macs, "weight_params": b.weight_params, "input_shape": list(b.input_shape),
                         "epochs": b.epochs, "latency_ms": self.baseline_latency_ms},
            "benchmark": self.bench, "front": [asdict(p) for p in self.front], "trials": self.counts,
            "failed": {str(k): v for k, v in self.errors.items()}, "artifacts": self.artifacts,
            "phases_s": self.phases, "total_s": round(self.total_s, 2),
            **({"search": self.search} if self.search is not None else {}),
        }


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def trade_offs(trials: Sequence[Any], dense_top1: float | None, dense_latency_ms: float | None) -> list[Point]:
    """The completed trials no other trial — nor the dense model, the option not to prune — beats on both top-1
    and latency, fastest first, with their speed-ups over the dense model."""
    points = []
    for t in trials:
        m = t.user_attrs.get("metrics", {})
        top1, latency, macs = _finite(m.get("top1")), _finite(m.get("latency_ms")), _finite(m.get("macs"))
        if t.state.name != "COMPLETE" or top1 is None or latency is None or latency <= 0:
            continue
        speedup = dense_latency_ms / latency if dense_latency_ms else None
        points.append(Point(t.number, dict(t.user_attrs.get("config") or t.params), top1, macs or 0.0, latency,
                            speedup, t.user_attrs.get("artifacts", {}).get("onnx")))
    if not points:
        return []
    xy = [[p.top1, p.latency_ms] for p in points]
    with_dense = dense_top1 is not None and dense_latency_ms is not None
    mask = pareto_mask(np.array(xy + ([[dense_top1, dense_latency_ms]] if with_dense else [])), [True, False])
    return sorted((p for p, keep in zip(points, mask, strict=False) if keep), key=lambda p: (p.latency_ms, -p.top1))


def ir_beside(onnx: Path) -> Path:
    """``model.xml`` + ``.bin`` (FP32 weights) beside ``model.onnx``, made once; the ONNX metadata goes along."""
    import onnx as onnx_lib


    xml = onnx.with_suffix(".xml")
    if xml.is_file() and xml.with_suffix(".bin").is_file():
        return xml
    props = {p.key: p.value for p in onnx_lib.load(str(onnx), load_external_data=False).metadata_props}
    with tempfile.TemporaryDirectory(prefix=".ir-", dir=onnx.parent) as tmp:
        staged = convert_to_ir(onnx, Path(tmp) / xml.name, fp16=False, metadata=props)
        os.replace(staged.with_suffix(".bin"), xml.with_suffix(".bin"))
        os.replace(staged, xml)  # last: an .xml means the pair is complete
    return xml


def with_ir(points: Sequence[Point]) -> list[Point]:
    return [Point(**{**asdict(p), "ir": str(ir_beside(Path(p.onnx)))}) if p.onnx and Path(p.onnx).is_file() else p
            for p in points]


def summarise(rd: RunDir, model: str, data: str, baseline: Baseline, console: Console) -> DemoResult:
    """Read the study back, export the front's IRs, write the report and ``summary.json``'s numbers."""
    name = load_sweep(rd.sweep_file).study_name  # a renamed, edited sweep adds a study beside the first one
    study = load_study_data(str(rd.root), name)
    dense = study.attrs.get("baseline") or {}
    latency = _finite(dense.get("latency_ms"))
    if latency is None:
        console.print("[yellow]warning:[/] the study holds no measured latency of the dense model, so no speed-ups "
                      "can be given")
    front = with_ir(trade_offs(study.trials, _finite(dense.get("top1")), latency))
    report = write_study_report(str(rd.root), rd.report, study_name=name)
    states = [ABANDONED if t.user_attrs.get("abandoned") else t.state.name.lower() for t in study.trials]
    counts = {s: states.count(s) for s in dict.fromkeys(states)}
    errors = {t.number: str(t.user_attrs.get("error", "")) for t, s in zip(study.trials, states, strict=True)
              if s == "fail"}
    artifacts = {"baseline checkpoint": str(baseline.checkpoint), "sensitivity CSV": str(rd.sensitivity_dir /
                 "sensitivity.csv"), "sensitivity plots": str(rd.sensitivity_dir / "sensitivity_heatmap.png"),
                 "suggested schedule": str(rd.suggested), "sweep file": str(rd.sweep_file),
                 "schedule template": str(rd.template), "study": str(rd.study_db), "agents' logs": str(rd.logs),
                 "report": str(report), "summary": str(rd.summary)}
    bench = (study.attrs.get("sweep") or {}).get("benchmark") or {}
    return DemoResult(rd.root, model, data, baseline, latency, dict(bench), front, counts, errors, artifacts)


# ------------------------------------------------------------------------------------------------ printing
def _relative(path: str | Path | None, base: Path) -> str:
    """A path inside ``base`` relative to it (the reader knows where that is), any other as it is."""
    if not path:
        return "—"
    p = Path(path)
    return str(p.relative_to(base)) if p.is_relative_to(base) else str(p)


def front_table(result: DemoResult) -> Table:
    b = result.baseline
    dense = result.baseline_latency_ms
    table = Table(title="Best trade-offs (Pareto front: top-1 up, measured latency in ms down)",
                  title_justify="left")
    params = list(result.front[0].params) if result.front else []
    table.add_column("", no_wrap=True)
    for col in (*(p.split(".")[-1] for p in params), "top-1 %", "MACs", "ms", "speed-up"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_row("dense", *("0" for _ in params), f"{b.top1:.2f}", f"{b.macs / 1e6:.2f}M",
                  f"{dense:.4f}" if dense else "—", "1.00x" if dense else "—", style="dim")
    for p in result.front:
        table.add_row(f"trial {p.number}", *(f"{p.params.get(k, '')}" for k in params), f"{p.top1:.2f}",
                      f"{p.macs / 1e6:.2f}M", f"{p.latency_ms:.4f}", f"{p.speedup:.2f}x" if p.speedup else "—")
    return table


def artifact_table(result: DemoResult) -> Table:
    root = result.run_dir
    table = Table(title=f"Where everything is (in {_relative(root, Path.cwd())}{os.sep})", title_justify="left",
                  show_header=False)
    table.add_column("what", no_wrap=True)
    table.add_column("path", overflow="fold")
    for what, path in result.artifacts.items():
        table.add_row(what, _relative(path, root))
    for p in result.front:
        files = [_relative(f, root) for f in (p.onnx, p.ir) if f]
        table.add_row(f"trial {p.number} ONNX, IR", "\n".join(files) or "—")
    return table


def print_summary(result: DemoResult, console: Console) -> None:
    b = result.baseline
    bench = result.bench
    setting = (f"{bench.get('backend', '?')} on {bench.get('device', '?')}, batch {bench.get('batch', 1)}, "
               f"{bench.get('threads', 1)} thread(s)")
    trained = f"trained {b.epochs} epochs" if b.epochs else "given checkpoint"
    latency = f"{result.baseline_latency_ms:.4f} ms" if result.baseline_latency_ms else "not measured"
    console.print(f"[bold]Baseline[/] {b.arch} on {result.data} ({trained}): top-1 {b.top1:.2f} %, "
                  f"{b.macs:,} MACs, {b.weight_params:,} weights, latency {latency} ({setting})")
    counts = ", ".join(f"{n} {s}" + (" by an interrupted run, run again" if s == ABANDONED else "")
                       for s, n in result.counts.items())
    console.print(f"[bold]Sweep[/] {counts or 'no trials'}")
    for number, error in sorted(result.errors.items()):
        console.print(f"  trial {number} failed: {error.strip().splitlines()[-1] if error.strip() else '?'}",
                      highlight=False, markup=False)
    console.print(front_table(result))
    console.print(artifact_table(result))
    if result.search is not None:
        s = result.search
        console.print(f"[bold]Search[/] budget {s['budget']} = {s['budget_ms']:.4g} ms (dense {s['dense_ms']:.4g} ms): "
                      f"{s['measured_ms']:.4g} ms measured, top-1 {s['top1']:.2f} %, {s['macs']:,} MACs; schedule "
                      f"{_relative(Path(s['schedule']).resolve(), Path.cwd())}", highlight=False)
    phases = " · ".join(f"{name} {s:.1f} s" for name, s in result.phases.items())
    console.print(f"[bold]Wall time[/] {result.total_s:.1f} s ({phases})")
    console.print(f"Open the report: {_relative(Path(result.artifacts['report']).resolve(), Path.cwd())}")
