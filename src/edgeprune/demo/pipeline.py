"""The demo's phases in order, each timed, each leaving files the next one (and a rerun) starts from.

Why a fixed order with no skipping logic of its own: every phase is resumable by itself (training from its
last epoch, the analysis from its last point, the sweep from its study), so a rerun simply runs them all
again and each one does only what is missing. Ctrl-C anywhere leaves that state behind.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console

from edgeprune.budget_search.run import SearchSettings, search
from edgeprune.demo.analysis import analyse, suggest
from edgeprune.demo.baseline import Baseline, check_inputs, is_checkpoint, prepare_baseline
from edgeprune.demo.rundir import RunDir, open_run_dir
from edgeprune.demo.settings import DemoSettings
from edgeprune.demo.summary import DemoResult, summarise
from edgeprune.demo.sweep import run_sweep, write_sweep_files
from edgeprune.fileio import write_json
from edgeprune.measurement.target import Target
from edgeprune.training.loop import TrainConfig

PHASES = ("baseline", "sensitivity", "suggestion", "sweep", "report", "search")  # search only with --search


@contextmanager
def _phase(name: str, console: Console, phases: dict[str, float], total: int) -> Iterator[None]:
    console.rule(f"[bold]{PHASES.index(name) + 1}/{total} {name}", align="left")
    start = time.perf_counter()
    yield
    phases[name] = round(time.perf_counter() - start, 2)
    console.print(f"[dim]{name}: {phases[name]:.1f} s[/]")


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """``n`` torch threads inside, the previous number again after (the process may go on to other work)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def normalise_data(data: str) -> str:
    """``digits`` as it is; a path made absolute, since the sweep file that names it lives in the run directory."""
    return data if data == "digits" or not Path(data).exists() else str(Path(data).resolve())


def run_search(rd: RunDir, baseline: Baseline, data: str, settings: DemoSettings, console: Console) -> dict[str, Any]:
    """``edgeprune search`` on the baseline: the most accurate network meeting ``settings.search``, measured with
    the sweep's benchmark settings and fine-tuned with the trials' recipe."""
    bench = settings.bench
    target = Target(backend=bench["backend"], device=bench["device"], batch=bench["batch"], threads=bench["threads"],
                    rounds=3)  # a demo: fewer rounds than a real search's 5
    found = search(str(baseline.checkpoint), data, rd.root / "search", SearchSettings(
        latency=settings.search, target=target, steps=4, calibration=4, candidates=2, finetune=1,
        loss_images=256,  # a demo: a quarter of the digits' training images rank the widths well enough
        train=TrainConfig(epochs=max(1, settings.retrain_epochs), lr=settings.retrain_lr,
                          batch_size=settings.batch_size, seed=settings.seed, progress=False),
        distill=settings.distill, seed=settings.seed), console=console)
    best = found.best
    console.print(f"search: {best.measured_ms:.4g} ms measured against a budget of {found.budget_ms:.4g} ms "
                  f"({settings.search}), top-1 {best.top1_finetuned:.2f} % -> {rd.root / 'search' / 'report.html'}",
                  highlight=False)
    return {"budget": settings.search, "budget_ms": found.budget_ms, "dense_ms": found.dense.measured_ms,
            "measured_ms": best.measured_ms, "top1": best.top1_finetuned, "top1_pruned": best.top1_pruned,
            "macs": best.macs, "widths": best.widths, "schedule": str(rd.root / "search" / "best" / "schedule.yaml"),
            "report": str(rd.root / "search" / "report.html")}


def run_demo(output: str | Path, *, model: str = "resnet20_cifar", data: str = "digits",
             settings: DemoSettings | None = None, fresh: bool = False, console: Console | None = None) -> DemoResult:
    """Baseline -> sensitivity -> suggested schedule -> sweep (2 producers, 1 consumer) -> report, into ``output``."""
    start = time.perf_counter()
    settings = settings or DemoSettings()
    console = console or Console(stderr=True)
    data = normalise_data(data)
    model = str(Path(model).resolve()) if is_checkpoint(model) else model
    check_inputs(model, data)
    rd, continued = open_run_dir(output, {"model": model, "data": data, **settings.to_dict()}, fresh=fresh)
    if continued:
        console.print(f"continuing the demo in {rd.root} (finished phases are reused; --fresh starts over)")
    phases: dict[str, float] = {}
    total = len(PHASES) - (settings.search is None)
    with _phase("baseline", console, phases, total), torch_threads(settings.threads):
        baseline = prepare_baseline(rd, model, data, settings, console)
        console.print(f"{baseline.arch} {baseline.input_shape}: top-1 {baseline.top1:.2f} %, top-5 "
                      f"{baseline.top5:.2f} %, {baseline.macs:,} MACs, {baseline.weight_params:,} weights")
    with _phase("sensitivity", console, phases, total), torch_threads(settings.threads):
        sensitivity = analyse(rd, baseline, data, settings, console)
        console.print(f"{len(sensitivity.results)} convs x {len(sensitivity.settings.sparsities)} sparsities on "
                      f"{sensitivity.settings.images} images ({sensitivity.resumed} points resumed) -> "
                      f"{sensitivity.csv}")
    with _phase("suggestion", console, phases, total):
        suggestion = suggest(rd, baseline, sensitivity, settings)
        console.print(f"{len(suggestion.chosen)} convs within {settings.max_drop:g} top-1 points each: MACs "
                      f"{suggestion.before.macs:,} -> {suggestion.after.macs:,} "
                      f"({suggestion.after.macs / suggestion.before.macs:.0%}) -> {rd.suggested}")
        write_sweep_files(rd, suggestion, baseline, data, settings, console)
    with _phase("sweep", console, phases, total):
        run_sweep(rd, settings, console)
    with _phase("report", console, phases, total):
        result = summarise(rd, model, data, baseline, console)
    if settings.search is not None:
        with _phase("search", console, phases, total), torch_threads(settings.threads):
            result.search = run_search(rd, baseline, data, settings, console)
    result.phases, result.total_s = phases, time.perf_counter() - start
    write_json(rd.summary, result.to_dict())
    return result
