"""Prune + thin resnet56_cifar: edgeprune's schedule path vs torch-pruning, the same work side by side.

The work: L1-norm ranking of the filters of every residual block's conv1 (27 convs), half of each removed
physically (conv1's filters, bn1's features, conv2's input channels). edgeprune does it the way a user or a
search does: a Distiller schedule (``L1RankedStructureParameterPruner``, ``group_type: Filters``,
``desired_sparsity: 0.5``, a ``FilterRemover`` extension, both at epoch 0) parsed from YAML text and applied
with ``CompressionScheduler(...).apply_epoch_zero()``. torch-pruning 1.6.1 builds its ``DependencyGraph`` on a
zero input and prunes each conv1's group with the indices of the smallest L1 norms.

Both start from a fresh deep copy of one dense model (the copy is not timed). Before timing, the results are
checked to be the same network: the same parameter and buffer names, shapes and values (so the same filters
went), and the same outputs on a fixed input. edgeprune is timed twice: as a search meets it, on copies of a
network whose traced graph it has run before (it reuses that run, see ``edgeprune.pruning.dependency``), and
as the first copy of a network (the kept runs are forgotten first, untimed). The three sides take turns (each
goes first in turn) and each call is timed by wall clock and by this process's CPU time; the figures are
medians, and a ratio is the median of the per-round ratios edgeprune / torch-pruning, so a busy neighbour
slows a round, not a side.

torch-pruning is not an edgeprune dependency; install it for this benchmark only:

    pip install --no-deps torch-pruning==1.6.1
    python benchmarks/prune_speed.py [--repeats 21] [--warmup 3] [--threads N] [--json out.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgeprune.models import create_model
from edgeprune.pruning import dependency
from edgeprune.schedule import CompressionScheduler
from edgeprune.schedule.config import parse_schedule

ARCH = "resnet56_cifar"
SPARSITY = 0.5
INPUT = (1, 3, 32, 32)


def block_convs(model: nn.Module) -> list[str]:
    """The first conv of every residual block: ``layerS.B.conv1``."""
    return [name for name, m in model.named_modules()
            if isinstance(m, nn.Conv2d) and name.startswith("layer") and name.endswith(".conv1")]


def schedule_text(convs: list[str]) -> str:
    """A one-shot Distiller schedule: L1-rank half of each conv's filters and remove them, both at epoch 0."""
    weights = "".join(f"\n      - {conv}.weight" for conv in convs)
    return f"""version: 1
pruners:
  block_conv1:
    class: L1RankedStructureParameterPruner
    group_type: Filters
    desired_sparsity: {SPARSITY}
    weights:{weights}
extensions:
  net_thinner:
    class: FilterRemover
    thinning_func_str: remove_filters
    arch: {ARCH}
    dataset: cifar10
policies:
  - pruner:
      instance_name: block_conv1
    epochs: [0]
  - extension:
      instance_name: net_thinner
    epochs: [0]
"""


def edgeprune_side(text: str) -> Callable[[nn.Module], None]:
    def run(model: nn.Module) -> None:
        CompressionScheduler(model, parse_schedule(text, "<prune_speed schedule>")).apply_epoch_zero()
    return run


def torch_pruning_side(tp: Any, convs: list[str]) -> Callable[[nn.Module], None]:
    def run(model: nn.Module) -> None:
        graph = tp.DependencyGraph().build_dependency(model, example_inputs=torch.zeros(INPUT))
        for name in convs:
            conv = model.get_submodule(name)
            l1 = conv.weight.detach().abs().sum(dim=(1, 2, 3))
            smallest = torch.argsort(l1)[: int(SPARSITY * conv.out_channels)].tolist()
            graph.get_pruning_group(conv, tp.prune_conv_out_channels, idxs=smallest).prune()
    return run


def check_same_network(a: nn.Module, b: nn.Module) -> dict[str, object]:
    """Raise unless ``a`` and ``b`` have the same tensors (names, shapes, values) and the same outputs."""
    sa, sb = a.state_dict(), b.state_dict()
    if list(sa) != list(sb):
        raise SystemExit(f"the two networks name their tensors differently: {sorted(set(sa) ^ set(sb))[:5]}")
    for key in sa:
        if sa[key].shape != sb[key].shape or not torch.equal(sa[key], sb[key]):
            raise SystemExit(f"the two networks differ at {key!r}: {tuple(sa[key].shape)} vs {tuple(sb[key].shape)}"
                             " (or the same shape with other filters kept)")
    x = torch.randn((8, *INPUT[1:]), generator=torch.Generator().manual_seed(1))
    a.eval()
    b.eval()
    with torch.no_grad():
        ya, yb = a(x), b(x)
    diff = float((ya - yb).abs().max())
    if diff > 1e-5:
        raise SystemExit(f"the two networks give different outputs (max |diff| {diff:.3g})")
    return {"tensors": len(sa), "max_abs_output_diff": diff}


def timed(run: Callable[[nn.Module], None], dense: nn.Module, prepare: Callable[[], None]) -> tuple[float, float]:
    """(wall s, process CPU s) of ``run`` on a fresh copy of ``dense``; the copy and ``prepare`` are not timed."""
    model = copy.deepcopy(dense)
    prepare()
    wall, cpu = time.perf_counter(), time.process_time()
    run(model)
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--warmup", type=int, default=3, help="untimed rounds first (imports, first-call dispatch)")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's own)")
    ap.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = ap.parse_args()
    try:
        import torch_pruning as tp
    except ImportError:
        sys.exit("This benchmark compares against torch-pruning, which edgeprune does not depend on. Install it "
                 "for the benchmark: pip install --no-deps torch-pruning==1.6.1")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dense = create_model(ARCH).eval()
    convs = block_convs(dense)
    edgeprune = edgeprune_side(schedule_text(convs))
    forget = getattr(dependency, "clear_twins", lambda: None)  # trees before the reuse of runs have nothing to forget
    sides: dict[str, tuple[Callable[[], None], Callable[[nn.Module], None]]] = {
        "edgeprune": (lambda: None, edgeprune),  # every copy after the first: the graph's run is reused
        "edgeprune_first_copy": (forget, edgeprune),  # as the first copy of a network: its graph is run
        "torch_pruning": (lambda: None, torch_pruning_side(tp, convs)),
    }

    results = {}
    for name, (prepare, run) in sides.items():
        results[name] = copy.deepcopy(dense)
        prepare()
        run(results[name])
    same = check_same_network(results["edgeprune"], results["torch_pruning"])
    check_same_network(results["edgeprune_first_copy"], results["torch_pruning"])
    kept = " ".join(str(results["edgeprune"].get_submodule(c).out_channels) for c in convs)

    times: dict[str, dict[str, list[float]]] = {name: {"wall": [], "cpu": []} for name in sides}
    names = list(sides)
    for i in range(args.warmup + args.repeats):
        for name in names[i % len(names):] + names[:i % len(names)]:  # each side goes first in turn
            wall, cpu = timed(sides[name][1], dense, sides[name][0])
            if i >= args.warmup:
                times[name]["wall"].append(wall)
                times[name]["cpu"].append(cpu)

    def ratio(side: str, clock: str) -> float:
        return statistics.median(e / t for e, t in zip(times[side][clock], times["torch_pruning"][clock],
                                                       strict=True))

    try:
        tp_version = version("torch-pruning")
    except PackageNotFoundError:
        tp_version = tp.__version__
    summary = {
        "model": ARCH, "pruned": f"{len(convs)} block conv1s, L1, {SPARSITY:.0%} of filters", "kept_filters": kept,
        "same_network": same, "repeats": args.repeats, "threads": torch.get_num_threads(),
        "torch": torch.__version__, "torch_pruning": tp_version,
        **{f"{name}_{clock}_ms_median": round(1e3 * statistics.median(values), 2)
           for name, clocks in times.items() for clock, values in clocks.items()},
        **{f"ratio_{side}_{clock}_median": round(ratio(side, clock), 3)
           for side in ("edgeprune", "edgeprune_first_copy") for clock in ("wall", "cpu")},
    }
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps({**summary, "times_s": times}, indent=2))


if __name__ == "__main__":
    main()
