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

from rich.console import Console

from edgeprune.demo.analysis import analyse, suggest
from edgeprune.demo.baseline import check_inputs, is_checkpoint, prepare_baseline
from edgeprune.demo.rundir import open_run_dir
from edgeprune.demo.settings import DemoSettings
from edgeprune.demo.summary import DemoResult, summarise
from edgeprune.demo.sweep import run_sweep, write_sweep_files
from edgeprune.fileio import write_json

PHASES = ("baseline", "sensitivity", "suggestion", "sweep", "report")


@contextmanager
def _phase(name: str, console: Console, phases: dict[str, float]) -> Iterator[None]:
    console.rule(f"[bold]{PHASES.index(name) + 1}/{len(PHASES)} {name}", align="left")
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
    with _phase("baseline", console, phases), torch_threads(settings.threads):
        baseline = prepare_baseline(rd, model, data, settings, console)
        console.print(f"{baseline.arch} {baseline.input_shape}: top-1 {baseline.top1:.2f} %, top-5 "
                      f"{baseline.top5:.2f} %, {baseline.macs:,} MACs, {baseline.weight_params:,} weights")
    with _phase("sensitivity", console, phases), torch_threads(settings.threads):
        sensitivity = analyse(rd, baseline, data, settings, console)
        console.print(f"{len(sensitivity.results)} convs x {len(sensitivity.settings.sparsities)} sparsities on "
                      f"{sensitivity.settings.images} images ({sensitivity.resumed} points resumed) -> "
                      f"{sensitivity.csv}")
    with _phase("suggestion", console, phases):
        suggestion = suggest(rd, baseline, sensitivity, settings)
        console.print(f"{len(suggestion.chosen)} convs within {settings.max_drop:g} top-1 points each: MACs "
                      f"{suggestion.before.macs:,} -> {suggestion.after.macs:,} "
                      f"({suggestion.after.macs / suggestion.before.macs:.0%}) -> {rd.suggested}")
        write_sweep_files(rd, suggestion, baseline, data, settings, console)
    with _phase("sweep", console, phases):
        run_sweep(rd, settings, console)
    with _phase("report", console, phases):
        result = summarise(rd, model, data, baseline, console)
    result.phases, result.total_s = phases, time.perf_counter() - start
    write_json(rd.summary, result.to_dict())
    return result
