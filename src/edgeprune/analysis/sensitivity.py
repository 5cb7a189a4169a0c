"""Pruning-sensitivity analysis (Distiller's ``--sense``): how much accuracy each weight loses alone.

For every 2D/4D weight (filter/channel groups: 4D only) and every sparsity of a ``np.arange`` range,
prune that one weight with the schedule pruners' own code (L1 ranking with Distiller's rounding for
``filter``/``channel``, level pruning for ``element``) and evaluate top-1/top-5/loss without retraining.
The CSV is Distiller's exactly (reference §4.3): header ``parameter,sparsity,top1,top5,loss``, rows in
``named_parameters`` × sparsity order, floats as Python ``repr`` (``0.15000000000000002``), ``\\r\\n``
line ends (Distiller wrote it with a default ``csv.writer``).

Why it is fast: the only real cost is evaluation, so everything else is kept off the per-point path.

* The normalised evaluation batches are built once, as tensors on the device, and reused for every point.
* No model copies: Distiller deep-copied the model per weight; here the weight is pruned in place,
  cumulatively over the ascending sparsities exactly as Distiller pruned its copy, and its original
  values are put back after the weight (also on Ctrl-C), which is the same thing for one tensor.
* A point whose pruning changed nothing (``floor(0.05 * 16) == 0``, or 0.25 and 0.30 both pruning 4 of
  16 filters) is the model of the previous point, so its numbers are reused instead of re-measured; the
  dense model is evaluated once for the whole run, not once per weight.

Resume: every finished point is written at once (atomically) to ``sensitivity.json``, together with
the settings that produced it (a hash of the weights and of the evaluation images, the group, the
sparsities, the weights visited). A rerun with the same settings skips what is done; different
settings are an error unless ``restart`` is given. Skipped points are still pruned (cheap) so the
cumulative pruning continues from exactly the state an uninterrupted run would have had.
"""

from __future__ import annotations

import csv
import fnmatch
import hashlib
import io
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch import nn

from edgeprune.analysis.sensitivity_plots import plot_sensitivity, plot_sensitivity_heatmap
from edgeprune.errors import ConfigError, UnknownNameError
from edgeprune.fileio import atomic_write, write_json
from edgeprune.models.naming import normalize_module_name
from edgeprune.pruning.masks import ParameterMasker
from edgeprune.pruning.pruners import L1RankedStructureParameterPruner, SparsityLevelParameterPruner

GROUPS = ("filter", "channel", "element")
CSV_HEADER = ("parameter", "sparsity", "top1", "top5", "loss")
METRICS = ("top1", "top5", "loss")
FORMAT = "edgeprune.sensitivity"
DEFAULT_RANGE = "0:0.95:0.05"  # Distiller's --sense-range default

Metrics = dict[str, float]
Results = dict[str, dict[float, Metrics]]  # weight -> sparsity -> metrics, in Distiller's order
Evaluate = Callable[[nn.Module], Metrics]


# ----------------------------------------------------------------------------------------------- inputs
def check_group(group: str) -> str:
    """Distiller lower-cases ``--sense``; anything but filter/channel/element is refused with the choices."""
    lowered = str(group).lower()
    if lowered not in GROUPS:
        raise UnknownNameError("sensitivity group", group, GROUPS, hint="Use --group filter, channel or element.")
    return lowered


def parse_sparsities(text: str) -> list[float]:
    """``START:STOP:STEP`` → ``np.arange(START, STOP, STEP)`` as Python floats (STOP exclusive, as Distiller).

    The floats are kept exactly as ``np.arange`` makes them (``0.15000000000000002``): they are what the
    pruners see and what the CSV shows.
    """
    parts = str(text).split(":")
    try:
        start, stop, step = (float(p) for p in parts) if len(parts) == 3 else (None, None, None)
    except ValueError:
        start = stop = step = None
    if start is None or stop is None or step is None:
        raise ConfigError(f"--sparsities must be START:STOP:STEP (three numbers), got {text!r}.",
                          hint=f"For example --sparsities 0:0.5:0.05 (STOP is exclusive); Distiller's default is "
                               f"{DEFAULT_RANGE}.")
    if not step > 0:
        raise ConfigError(f"The sparsity STEP must be positive, got {step!r} in {text!r}.")
    values = [float(v) for v in np.arange(start, stop, step)]
    if not values:
        raise ConfigError(f"The sparsity range {text!r} is empty: STOP is exclusive, so it must be above START.",
                          hint="For example --sparsities 0:0.5:0.05 gives 0.0, 0.05, ..., 0.45.")
    outside = [v for v in values if not 0.0 <= v < 1.0]
    if outside:
        shown = ", ".join(repr(v) for v in outside[:4]) + (" ..." if len(outside) > 4 else "")
        raise ConfigError(f"The sparsity range {text!r} gives {shown}, outside [0, 1).",
                          hint="A sparsity of 1 would prune every structure, which leaves nothing to evaluate; "
                               "STOP is exclusive, so 0:1:0.05 ends at 0.95.")
    return values


def sensitivity_weights(model: nn.Module, group: str, layers: str | Sequence[str] | None = None) -> list[str]:
    """Canonical names of the weights the analysis visits, in ``named_parameters`` order (Distiller's).

    Every parameter that is 2D or 4D (filter/channel: 4D only, so Linear weights are absent as in
    Distiller). ``layers`` are shell-style globs (a comma-separated string or a list), matched against
    the weight name and its module name, so ``layer1.*`` and ``*conv1`` both work.
    """
    dims = (4,) if check_group(group) in ("filter", "channel") else (2, 4)
    names = [normalize_module_name(n) for n, p in model.named_parameters() if p.dim() in dims]
    if not layers:
        return names
    patterns = [p.strip() for p in (layers.split(",") if isinstance(layers, str) else layers) if p.strip()]
    chosen = [n for n in names
              if any(fnmatch.fnmatchcase(n, p) or fnmatch.fnmatchcase(n.removesuffix(".weight"), p)
                     for p in patterns)]
    if not chosen:
        shown = ", ".join(names[:8]) + (f" ... ({len(names)} in all)" if len(names) > 8 else "")
        raise ConfigError(f"--layers {','.join(patterns)!r} matches none of the weights a {group} analysis visits.",
                          hint=f"Weights: {shown}. Globs match the weight or module name, e.g. 'layer1.*' or '*conv1'.")
    return chosen


# ---------------------------------------------------------------------------------------------- pruning
def prune_weight(param: torch.Tensor, name: str, group: str, sparsity: float) -> None:
    """Prune one weight in place to ``sparsity`` with the pruner a schedule would use (reference §4.2)."""
    if group == "element":
        pruner: Any = SparsityLevelParameterPruner("sensitivity", levels={name: sparsity})
    else:
        pruner = L1RankedStructureParameterPruner("sensitivity", "Filters" if group == "filter" else "Channels",
                                                  sparsity, [name])
    masker = ParameterMasker(name)
    with torch.no_grad():
        pruner.set_param_mask(param, name, {name: masker}, None)
        masker.apply_mask(param)


class SensitivityRun:
    """The analysis of ``weights`` × ``sparsities`` on ``model``; ``results``/``baseline`` may be pre-filled.

    ``model`` is pruned in place one weight at a time and restored after each weight, so it is unchanged
    when :meth:`run` returns or raises. ``evaluate`` returns ``{"top1", "top5", "loss"}`` for the model as
    it is. ``evaluations`` counts the calls this object made.
    """

    def __init__(self, model: nn.Module, weights: Sequence[str], sparsities: Sequence[float], group: str,
                 evaluate: Evaluate) -> None:
        self.model = model
        self.weights = list(weights)
        self.sparsities = [float(s) for s in sparsities]
        self.group = check_group(group)
        self._evaluate = evaluate
        self.baseline: Metrics | None = None
        self.results: Results = {}
        self.evaluations = 0

    @property
    def total(self) -> int:
        return len(self.weights) * len(self.sparsities)

    @property
    def done(self) -> int:
        return sum(len(points) for points in self.results.values())

    def evaluate(self) -> Metrics:
        self.evaluations += 1
        metrics = self._evaluate(self.model)
        return {k: float(metrics[k]) for k in METRICS}

    def dense(self) -> Metrics:
        """The unpruned model's metrics, measured once (only ever called while every weight is intact)."""
        if self.baseline is None:
            self.baseline = self.evaluate()
        return self.baseline

    def run(self, on_point: Callable[[str, float], None] | None = None) -> Results:
        """Measure every missing point, calling ``on_point(weight, sparsity)`` after each new one."""
        params = {normalize_module_name(n): p for n, p in self.model.named_parameters()}
        missing = [w for w in self.weights if w not in params]
        if missing:
            raise UnknownNameError("weight", missing[0], params)
        for name in self.weights:
            param = params[name]
            done = self.results.setdefault(name, {})
            if len(done) == len(self.sparsities):
                continue
            original = param.detach().clone()
            try:
                previous: Metrics | None = None  # metrics of the weight's current state; None: still dense
                nonzero = int(torch.count_nonzero(param))
                for sparsity in self.sparsities:
                    prune_weight(param, name, self.group, sparsity)
                    now = int(torch.count_nonzero(param))  # masks only zero: equal counts mean nothing changed
                    if sparsity not in done:
                        if now != nonzero:
                            done[sparsity] = self.evaluate()
                        else:
                            done[sparsity] = previous if previous is not None else self.dense()
                        if on_point is not None:
                            on_point(name, sparsity)
                    previous, nonzero = done[sparsity], now
            finally:
                with torch.no_grad():
                    param.copy_(original)
            self.results[name] = {s: done[s] for s in self.sparsities}  # Distiller's row order
        self.dense()  # plots and schedule suggestions measure drops from it, even for ranges without 0
        return self.results


# ------------------------------------------------------------------------------------------ fingerprints
def tensors_sha256(tensors: Iterable[tuple[str, torch.Tensor]]) -> str:
    """A hash of named tensors' names, shapes, dtypes and bytes: identifies weights or evaluation data."""
    digest = hashlib.sha256()
    for name, tensor in tensors:
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
        digest.update(t.view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


@dataclass
class SensitivitySettings:
    """Everything that decides the numbers: a resumed run must match all of it."""

    group: str
    sparsities: list[float]
    weights: list[str]
    model_sha256: str
    data_sha256: str
    images: int
    batch_size: int
    normalize: dict[str, list[float]] | None = None

    @classmethod
    def of(cls, model: nn.Module, weights: Sequence[str], sparsities: Sequence[float], group: str,
           batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
           normalize: dict[str, list[float]] | None = None) -> SensitivitySettings:
        data = [(f"{i}.{j}", t) for i, batch in enumerate(batches) for j, t in enumerate(batch)]
        return cls(check_group(group), [float(s) for s in sparsities], list(weights),
                   tensors_sha256(model.state_dict().items()), tensors_sha256(data),
                   sum(int(y.numel()) for _, y in batches), int(batches[0][1].numel()) if batches else 0,
                   normalize)

    def differences(self, other: dict[str, Any]) -> list[str]:
        """Human-readable settings that differ from a saved run's (empty: same settings)."""
        diffs = []
        for key, value in asdict(self).items():
            saved = other.get(key)
            if saved != value:
                what = {"model_sha256": "model weights", "data_sha256": "evaluation images"}.get(key, key)
                diffs.append(what if key.endswith("sha256") or isinstance(value, list) else
                             f"{key} {saved!r} (now {value!r})")
        return diffs


# ------------------------------------------------------------------------------------------------ files
@dataclass
class SensitivityOutput:
    out_dir: Path
    csv: Path
    json: Path
    plots: list[Path]
    settings: SensitivitySettings
    results: Results
    baseline: Metrics
    points: int
    evaluations: int  # evaluations this call made (resumed and reused points cost none)
    resumed: int  # points found done on disk


def results_rows(results: Results, module_prefix: bool = False) -> list[list[Any]]:
    """CSV rows in Distiller's order; ``module_prefix`` writes Distiller's DataParallel ``module.`` names."""
    prefix = "module." if module_prefix else ""
    return [[prefix + name, sparsity, *(m[k] for k in METRICS)]
            for name, points in results.items() for sparsity, m in points.items()]


def sensitivity_csv(results: Results, module_prefix: bool = False) -> str:
    """Distiller's ``sensitivities_to_csv`` text, byte for byte (default ``csv.writer``: ``\\r\\n``, float repr)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_HEADER)
    writer.writerows(results_rows(results, module_prefix))
    return buffer.getvalue()


def write_sensitivity_csv(path: str | Path, results: Results, module_prefix: bool = False) -> Path:
    text = sensitivity_csv(results, module_prefix)
    atomic_write(path, lambda fh: fh.write(text.encode("utf-8")), mode="wb")  # bytes: no newline translation
    return Path(path)


def _state(settings: SensitivitySettings, run: SensitivityRun, complete: bool,
           provenance: dict[str, Any]) -> dict[str, Any]:
    rows = [dict(zip(CSV_HEADER, row, strict=True)) for row in results_rows(run.results)]
    return {"format": FORMAT, "version": 1, "complete": complete, "settings": asdict(settings),
            "provenance": provenance, "baseline": run.baseline, "results": rows}


def _restore(run: SensitivityRun, state: dict[str, Any]) -> None:
    run.baseline = state.get("baseline")
    for row in state.get("results", []):
        run.results.setdefault(normalize_module_name(row["parameter"]), {})[float(row["sparsity"])] = {
            k: float(row[k]) for k in METRICS}


def read_state(path: Path) -> dict[str, Any]:
    """A ``sensitivity.json`` this module wrote (a clear error for anything else)."""
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"Cannot read {str(path)!r} as an edgeprune sensitivity file: {exc}.",
                          hint="Delete it, or pass --restart to start the analysis afresh.") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ConfigError(f"{str(path)!r} is not an edgeprune sensitivity file.",
                          hint="Choose another --output directory, or pass --restart to overwrite it.")
    return state


def analyse_to_dir(model: nn.Module, out_dir: str | Path, settings: SensitivitySettings, evaluate: Evaluate, *,
                   module_prefix: bool = False, restart: bool = False, console: Console | None = None,
                   progress: bool = True, provenance: dict[str, Any] | None = None) -> SensitivityOutput:
    """Run (or resume) the analysis into ``out_dir``: CSV, JSON and plots; every point persisted as it is done."""
    out_dir = Path(out_dir)
    console = console or Console(stderr=True)
    state_path = out_dir / "sensitivity.json"
    run = SensitivityRun(model, settings.weights, settings.sparsities, settings.group, evaluate)
    provenance = dict(provenance or {})
    if state_path.exists():
        state = read_state(state_path)
        diffs = settings.differences(state.get("settings", {}))
        if diffs and not restart:
            raise ConfigError(f"{str(out_dir)!r} holds a sensitivity analysis made with other settings "
                              f"({'; '.join(diffs)}), so it cannot be resumed.",
                              hint="Use another --output directory, or pass --restart to discard it.")
        if restart:
            console.print(f"--restart: discarding the {len(state.get('results', []))} points in {state_path}")
        else:
            _restore(run, state)
            console.print(f"resuming {state_path}: {run.done} of {run.total} points already done")
    resumed = run.done

    def persist(complete: bool = False) -> None:
        write_json(state_path, _state(settings, run, complete, provenance))

    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("points"),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, disable=not progress) as bar:
        task = bar.add_task("sensitivity", total=run.total, completed=resumed)

        def on_point(name: str, sparsity: float) -> None:
            persist()
            bar.update(task, advance=1, description=f"{name} @ {sparsity:.2f}")

        run.run(on_point)
    persist(complete=True)
    csv_path = write_sensitivity_csv(out_dir / "sensitivity.csv", run.results, module_prefix)
    baseline = run.dense()
    plots = [plot_sensitivity(run.results, out_dir / "sensitivity.png", "top5"),
             plot_sensitivity(run.results, out_dir / "sensitivity_top1.png", "top1"),
             plot_sensitivity_heatmap(run.results, baseline, out_dir / "sensitivity_heatmap.png")]
    return SensitivityOutput(out_dir, csv_path, state_path, plots, settings, run.results, baseline, run.total,
                             run.evaluations, resumed)


# --------------------------------------------------------------------------------------------- reading
def read_sensitivity_csv(path: str | Path) -> Results:
    """A sensitivity CSV (ours or Distiller's) as results with canonical weight names, in file order.

    Errors name the file, the line and — for a file that is not a sensitivity CSV — the missing columns.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Cannot read sensitivity CSV {str(path)!r}: {exc}.") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header = [h.strip() for h in next(reader, [])]
    missing = [c for c in CSV_HEADER if c not in header]
    if missing:
        raise ConfigError(f"{str(path)!r} is not a sensitivity CSV: column(s) {', '.join(missing)} missing "
                          f"(its header is {','.join(header) or '(empty)'!r}).",
                          hint="Expected Distiller's header parameter,sparsity,top1,top5,loss "
                               "(`edgeprune sensitivity` writes it).")
    index = {c: header.index(c) for c in CSV_HEADER}
    results: Results = {}
    for line, row in enumerate(reader, start=2):
        if not row:
            continue
        try:
            name = normalize_module_name(row[index["parameter"]].strip())
            sparsity = float(row[index["sparsity"]])
            metrics = {k: float(row[index[k]]) for k in METRICS}
        except (IndexError, ValueError):
            raise ConfigError(f"{path}:{line}: expected a weight name and four numbers, got {','.join(row)!r}.") \
                from None
        results.setdefault(name, {})[sparsity] = metrics
    if not results:
        raise ConfigError(f"{str(path)!r} has a sensitivity header but no rows.")
    return results
