"""``edgeprune search``: a latency budget in, the most accurate pruned model that measurably meets it out.

The steps, each recorded in ``OUT/search.json`` so that an interrupted search resumes where it stopped:

1. **Table** — every kernel any width configuration can have is timed on the target once
   (:mod:`edgeprune.budget_search.latency`, cached per device fingerprint, whole networks too: a second search
   measures nothing it measured before). With ``queue`` set, every file is timed by a consumer at the device
   (:mod:`edgeprune.agents.latency_jobs`) instead of on this machine.
2. **Dense and calibration** — the dense network, the narrowest one and a few random configurations are
   measured whole; the latency model is fitted on them (:mod:`edgeprune.budget_search.predict`). A budget below the
   narrowest network's measured latency is refused with that latency. Every network but the dense one is timed
   paired with the dense one, in alternating rounds, and its latency is that ratio times the dense latency: a
   shared machine's slow phases (seconds long, up to 1.5x) then slow both alike, so a relative budget is judged
   on what the network really costs against the dense one rather than on when it happened to be measured.
3. **Candidates** — the greedy search (:func:`~edgeprune.budget_search.greedy.greedy_path`), which measures the
   loss of each configuration it considers on a fixed set of training images
   (:mod:`edgeprune.budget_search.importance`, saved as it goes), at the budget and at slightly tighter
   predicted budgets (a hedge against prediction error); each candidate is pruned and thinned
   by its own Distiller schedule through ``edgeprune prune``'s code, exported, and measured whole. Those over
   the budget are dropped; if none is left, the model is refitted with them and tighter candidates are tried,
   and if still none measures under the budget the narrowest network (measured under it in step 2) is taken,
   with a warning.
4. **Fine-tuning** — the candidates under budget with the least estimated loss, and the uniform-width network
   if it measured under the budget, are fine-tuned (optionally distilled from the dense model) on the training
   split less a held-out share of it (``validation_share``), and the one with the best top-1 on those held-out
   images is the result: the test split never picks, it only reports. The uniform network takes the last
   fine-tuning slot because it is the obvious alternative a user would try: the search returns it when it
   validates better, rather than a worse greedy one.

Output: ``OUT/best/`` holds the schedule (``edgeprune prune MODEL schedule.yaml --thin`` gives the same widths),
the fine-tuned checkpoint, its ONNX file (and OpenVINO IR for the openvino backend); ``OUT/report.html`` shows
budget against measured latency, widths against the dense ones, predicted against measured latency of every
network measured, and accuracy before pruning, after pruning and after fine-tuning.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from rich.console import Console

from edgeprune.agents.artifacts import get_artifact_store
from edgeprune.agents.latency_jobs import QueuedMeasurer
from edgeprune.agents.queue import get_queue
from edgeprune.budget_search.budget import Budget
from edgeprune.budget_search.greedy import greedy_path, uniform_widths
from edgeprune.budget_search.importance import LossOracle
from edgeprune.budget_search.latency import LatencyTable, LocalMeasurer, Measurer
from edgeprune.budget_search.predict import LatencyModel, networks_needed
from edgeprune.budget_search.report import write_report
from edgeprune.budget_search.space import SearchSpace, Widths, build_space, render_widths_schedule
from edgeprune.data import BatchLoader, evenly_spaced, hold_out, load_dataset
from edgeprune.distillation import DENSE, DistillConfig
from edgeprune.errors import ConfigError
from edgeprune.fileio import write_json, write_text
from edgeprune.jobs.export import export_model
from edgeprune.jobs.inputs import load_model_for_data, normalization_for
from edgeprune.jobs.prune import prune_model
from edgeprune.jobs.train import evaluate_model, train_model
from edgeprune.measurement.target import Target
from edgeprune.training.distill import load_teacher
from edgeprune.training.loop import TrainConfig
from edgeprune.training.seeding import seed_everything

STATE_FILE = "search.json"
HEDGES = (1.0, 0.97, 0.94, 0.91, 0.88)  # predicted budgets tried, as fractions of the real one
REFUSAL_CHECKS = 4  # extra measurements of the narrowest network before a budget is refused as impossible,
REFUSAL_SPACING_S = 1.0  # this far apart: a shared machine's slow phases last seconds (BENCHMARKS.md)


@dataclass
class SearchSettings:
    """What ``edgeprune search`` takes besides MODEL, DATA and OUT."""

    latency: str = "0.6x"
    target: Target = field(default_factory=Target)
    steps: int = 8
    align: int = 8
    min_fraction: float = 0.25
    calibration: int = 6  # whole networks measured to fit the latency model (dense and narrowest included; at
    # least predict.networks_needed, twice the model's terms)
    candidates: int = 3  # candidates measured whole per round
    finetune: int = 2  # of those under budget, how many are fine-tuned
    loss_images: int = 512  # training images the loss of each configuration the search considers is measured on
    validation_share: float = 0.1  # of the training images, held out of fine-tuning to pick the result by
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=1, lr=0.01, progress=False))
    distill: DistillConfig | None = None
    eval_limit: int | None = None  # test images for the accuracies (None: the whole split)
    cache_dir: str | None = None
    seed: int = 0
    queue: str | None = None  # measure through this agents' queue (a consumer at the device) instead of here
    artifacts: str | None = None  # the artifact store the queue's consumers fetch from (default: a directory)


@dataclass
class Measured:
    """One network measured whole on the target."""

    widths: Widths
    kind: str  # dense, narrowest, calibration, candidate, uniform
    measured_ms: float  # ratio x the dense network's measured latency
    ratio: float = 1.0  # measured latency as a fraction of the dense network's, the two timed paired
    predicted_ms: float | None = None
    estimated_loss: float | None = None
    hedge: float | None = None
    macs: int | None = None
    checkpoint: str | None = None
    top1_pruned: float | None = None
    top1_finetuned: float | None = None  # on the test split
    top1_validation: float | None = None  # after fine-tuning, on the held-out training images: what picks


@dataclass
class SearchResult:
    out_dir: Path
    budget_ms: float
    dense: Measured
    best: Measured
    measured: list[Measured]
    table_kernels: int
    table_measured_now: int
    networks_measured_now: int
    dense_top1: float
    measured_by: list[str]

    def to_dict(self) -> dict[str, Any]:
        """What ``edgeprune search --json`` prints."""
        best = self.out_dir / "best"
        return {"budget_ms": self.budget_ms, "dense": asdict(self.dense), "dense_top1": self.dense_top1,
                "best": asdict(self.best), "measured": [asdict(m) for m in self.measured],
                "table": {"kernels": self.table_kernels, "measured_now": self.table_measured_now,
                          "networks_measured_now": self.networks_measured_now},
                "measured_by": self.measured_by,
                "files": {"schedule": str(best / "schedule.yaml"), "model": str(best / "model.pth"),
                          "onnx": str(best / "model.onnx"), "report": str(self.out_dir / "report.html")}}


class _State:
    """``search.json``: what has been measured and trained, reused on resume if the settings are the same."""

    def __init__(self, path: Path, key: dict[str, Any]) -> None:
        self.path, self.key = path, key
        self.measured: list[Measured] = []
        self.extra: dict[str, Any] = {}
        if path.exists():
            try:
                data = json.loads(path.read_text())
                if data.get("key") == key:
                    self.measured = [Measured(**m) for m in data.get("measured", [])]
                    self.extra = dict(data.get("extra", {}))
            except (ValueError, TypeError, AttributeError) as exc:
                raise ConfigError(f"{path} holds no search this version can resume ({type(exc).__name__}: "
                                  f"{str(exc).splitlines()[0] if str(exc) else 'malformed'}).",
                                  hint=f"Give the search another output directory, or delete {path.name} there to "
                                       "start it over (the latency table in the cache is kept either way).") from None

    def find(self, widths: Widths, kind: str | None = None) -> Measured | None:
        for m in self.measured:
            if m.widths == widths and (kind is None or m.kind == kind):
                return m
        return None

    def save(self) -> None:
        write_json(self.path, {"key": self.key, "measured": [asdict(m) for m in self.measured], "extra": self.extra})


def search(model_spec: str, data: str, out_dir: str | Path, settings: SearchSettings | None = None, *,
           console: Console | None = None) -> SearchResult:
    """Run the whole search (see the module docstring); returns the best model and everything measured."""
    settings = settings or SearchSettings()
    console = console or Console(stderr=True)
    budget = Budget.parse(settings.latency)
    if settings.loss_images < 1:
        raise ConfigError(f"--loss-images must be at least 1, got {settings.loss_images}.",
                          hint="512 (the default) ranks the widths of a CIFAR ResNet well.")
    if not 0 < settings.validation_share < 1:
        raise ConfigError(f"--validation-share must be between 0 and 1, got {settings.validation_share}.",
                          hint="0.1 (the default) holds out a tenth of the training images to pick the result by.")
    seed_everything(settings.seed)
    train_data = load_dataset(data, "train")
    loaded = load_model_for_data(model_spec, train_data)
    norm = normalization_for(loaded, train_data)
    distill = settings.distill
    if distill is not None:  # a teacher that cannot teach is refused now, not after the search's measuring
        if distill.teacher == DENSE and loaded.checkpoint is None:
            raise ConfigError(f"--teacher dense distils from MODEL itself, but {model_spec!r} is a zoo name with "
                              "untrained weights, not a trained checkpoint.",
                              hint="Give MODEL as a trained checkpoint, or --teacher a trained checkpoint file.")
        distill = replace(distill, teacher=model_spec if distill.teacher == DENSE else distill.teacher)
        load_teacher(distill.teacher, model_spec, train_data, norm)
    holdout = max(1, round(settings.validation_share * len(train_data)))
    settings = replace(settings, distill=distill,
                       train=replace(settings.train, holdout=holdout))  # fine-tuning holds them out
    model = loaded.model.eval()
    space = build_space(model, steps=settings.steps, min_fraction=settings.min_fraction, align=settings.align)
    if not space.units:
        raise ConfigError(f"{model_spec}: no conv of this model can be narrowed, so there is nothing to search.",
                          hint="; ".join(f"{k}: {v}" for k, v in list(space.excluded.items())[:3]))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = _State(out / STATE_FILE, {"model": str(model_spec), "data": str(data), "latency": str(budget),
                                      "target": asdict(settings.target), "steps": settings.steps,
                                      "align": settings.align, "min_fraction": settings.min_fraction,
                                      "loss_images": settings.loss_images, "seed": settings.seed,
                                      "measured": "paired with the dense network",
                                      "train": {**asdict(settings.train), "progress": None},
                                      "distill": asdict(settings.distill) if settings.distill else None})

    # 1. the table
    measurer = _measurer(settings, console)
    table = LatencyTable(settings.target, settings.cache_dir, measurer=measurer)
    kernels = space.all_kernels()
    todo = len(table.missing(kernels))
    console.print(f"latency table {table.path}: {len(kernels) - todo} of {len(kernels)} kernels known, "
                  f"measuring {todo}", highlight=False)
    _with_progress(console, "measuring kernels", todo, lambda tick: table.measure(kernels, tick))

    # 2. dense, narrowest, calibration
    networks = _Networks(model_spec, data, loaded.arch, space, settings, table, out, state, console)
    dense = networks.measure(space.dense, "dense")
    budget_ms = budget.ms(dense.measured_ms)
    narrowest = networks.measure(space.narrowest, "narrowest")
    for _ in range(REFUSAL_CHECKS):  # a slow phase of the machine must not refuse a budget: measured again
        if narrowest.measured_ms <= budget_ms:
            break
        time.sleep(REFUSAL_SPACING_S)
        networks.measure_again(narrowest)
    if narrowest.measured_ms > budget_ms:
        raise ConfigError(f"No network in the search space meets {budget_ms:.4g} ms ({budget}): the fastest, every "
                          f"unit at its narrowest, measures {narrowest.measured_ms:.4g} ms on "
                          f"{table.fingerprint['device_name']}, {narrowest.ratio:.3g}x the dense network's "
                          f"{dense.measured_ms:.4g} ms (timed paired with it, {REFUSAL_CHECKS + 1} times).",
                          hint=f"Ask for at least {narrowest.ratio:.3g}x ({narrowest.measured_ms:.4g} ms), or lower "
                               "--min-fraction.")
    rng = random.Random(settings.seed)
    for _ in range(max(0, max(settings.calibration, networks_needed(space)) - 2)):
        networks.measure({u.name: rng.choice(u.options) for u in space.units}, "calibration")
    latency = networks.refit(table)
    console.print(f"dense {dense.measured_ms:.4g} ms, budget {budget_ms:.4g} ms ({budget}); latency model: "
                  f"{latency.describe()}", highlight=False)

    # 3. candidates: the greedy path, then each candidate measured whole
    fine_tuned_on, _ = hold_out(train_data, holdout)  # the held-out images judge nothing before the end
    loader = BatchLoader(evenly_spaced(fine_tuned_on, settings.loss_images), 128, shuffle=False, augment=False,
                         mean=norm["mean"], std=norm["std"])
    losses = state.extra.setdefault("losses", {})  # widths tag -> loss on the images; kept on resume
    with console.status("measuring the loss of the configurations the greedy search considers") as status:
        def save(tag: str, value: float) -> None:
            losses[tag] = value
            state.save()
            status.update(f"greedy search: {oracle.measured_now} configurations measured now, "
                          f"{len(losses)} in all")

        oracle = LossOracle(model, loaded.arch, loader, space, known=losses, on_measured=save)
        uniform_choice = uniform_widths(space, latency, budget_ms)
        uniform = None if uniform_choice is None else networks.measure(
            uniform_choice, "uniform", predicted=latency.predict(uniform_choice), loss=oracle(uniform_choice))
        feasible: list[Measured] = []
        for _round in range(3):
            path = greedy_path(space, latency, oracle, [budget_ms * hedge for hedge in HEDGES])
            for hedge, widths in zip(HEDGES, path, strict=True):
                if widths is None or any(m.widths == widths for m in feasible):
                    continue
                m = networks.measure(widths, "candidate", predicted=latency.predict(widths), loss=oracle(widths),
                                     hedge=hedge)
                if m.measured_ms <= budget_ms and m not in feasible:
                    feasible.append(m)
                if len([c for c in networks.seen if c.kind == "candidate"]) >= settings.candidates * (_round + 1):
                    break
            if feasible:
                break
            latency = networks.refit(table)  # the misses teach the model; try tighter candidates
    if not feasible:  # the narrowest network measured under the budget above: it is the fallback
        console.print(f"[yellow]warning:[/] no candidate measured under {budget_ms:.4g} ms although predicted to; "
                      "the latency of this device varies more than the search hedges (a busy machine?), so the "
                      "narrowest network, measured under the budget, is taken", highlight=False)
        feasible = [narrowest]

    # 4. fine-tune the most promising and the uniform network, pick by accuracy on the held-out images
    dense_top1 = networks.top1(model_spec)
    slots = max(1, settings.finetune)
    ranked = sorted(feasible, key=lambda m: m.estimated_loss or 0.0)[:slots]
    if uniform is not None and uniform.measured_ms <= budget_ms and uniform not in ranked and slots > 1:
        ranked = [*ranked[:slots - 1], uniform]
    for m in ranked:
        networks.finetune(m)
    best = max(ranked, key=lambda m: m.top1_validation or 0.0)
    networks.publish(best, out / "best")
    measured_by = sorted(measurer.measured_by) if isinstance(measurer, QueuedMeasurer) else ["this machine"]
    result = SearchResult(out, budget_ms, dense, best, state.measured, len(kernels), table.measured_now,
                          table.networks_measured_now, dense_top1, measured_by)
    state.extra.update({"budget_ms": budget_ms, "dense_top1": dense_top1, "best": asdict(best),
                        "latency_model": latency.to_dict(),
                        "table": str(table.path), "fingerprint": table.fingerprint, "measured_by": measured_by})
    state.save()
    write_report(result, space, table.fingerprint, out / "report.html")
    return result


class _Networks:
    """Prune, thin, export and measure whole networks; fine-tune and evaluate them. Everything goes to disk."""

    def __init__(self, model_spec: str, data: str, arch: str, space: SearchSpace, settings: SearchSettings,
                 table: LatencyTable, out: Path, state: _State, console: Console) -> None:
        self.model_spec, self.data, self.arch, self.space, self.settings = model_spec, data, arch, space, settings
        self.table = table
        self.out, self.state, self.console = out, state, console
        self.seen: list[Measured] = []  # measured (or replayed) by this run, in order: a resume decides the same
        self.dense: Measured | None = None  # what every other network is timed against
        # fine-tuning runs are named by this search's settings, so a search in the same directory with another
        # model, recipe or teacher starts its own runs instead of resuming (or refusing) another's
        self.runs = "finetuned-" + hashlib.sha256(json.dumps(state.key, sort_keys=True, default=str).encode()
                                                  ).hexdigest()[:12]

    def _dir(self, widths: Widths) -> Path:
        tag = "-".join(str(widths[u.name]) for u in self.space.units)
        return self.out / "networks" / tag

    def schedule(self, widths: Widths) -> str:
        return render_widths_schedule(self.space, widths, self.arch, header=[
            f"Widths chosen by edgeprune search for {self.model_spec}:",
            *(f"  {u.name}: {widths[u.name]} of {u.width} filters" for u in self.space.units)])

    def measure(self, widths: Widths, kind: str, *, predicted: float | None = None, loss: float | None = None,
                hedge: float | None = None) -> Measured:
        done = self.state.find(widths)
        if done is not None:  # measured already (by this run, or before it was interrupted): not measured again
            if done not in self.seen:
                self.seen.append(done)
            if kind == "dense":
                self.dense = done
            return done
        directory = self._dir(widths)
        directory.mkdir(parents=True, exist_ok=True)
        schedule = directory / "schedule.yaml"
        write_text(schedule, self.schedule(widths))
        pruned = prune_model(self.model_spec, schedule, directory / "pruned.pth", data=self.data,
                             seed=self.settings.seed)
        onnx = directory / "model.onnx"
        export_model(str(pruned.out), onnx, exporter="torchscript", batch=self.settings.target.batch)
        if kind == "dense":
            ratio, ms = 1.0, self.table.network_ms(onnx)
        else:
            assert self.dense is not None, "the dense network is measured first: the others are timed against it"
            ratio = self.table.network_ratio(onnx, self._onnx(self.dense))
            ms = ratio * self.dense.measured_ms
        m = Measured(dict(widths), kind, ms, ratio, predicted, loss, hedge, pruned.after.macs, str(pruned.out))
        if kind == "dense":
            self.dense = m
        self.state.measured.append(m)
        self.seen.append(m)
        self.state.save()
        shown = f", predicted {predicted:.4g} ms" if predicted is not None else ""
        self.console.print(f"{kind}: measured {ms:.4g} ms{shown}, {m.macs:,} MACs", highlight=False)
        return m

    def measure_again(self, m: Measured) -> None:
        """Measure ``m``'s network (not the dense one) once more against the dense one; it keeps the lower ratio."""
        assert self.dense is not None and m is not self.dense
        m.ratio = self.table.network_ratio(self._onnx(m), self._onnx(self.dense), again=True)
        m.measured_ms = m.ratio * self.dense.measured_ms
        self.state.save()

    def _onnx(self, m: Measured) -> Path:
        return self._dir(m.widths) / "model.onnx"

    def _finetuned(self, m: Measured) -> Path:
        return self._dir(m.widths) / self.runs

    def refit(self, table: LatencyTable) -> LatencyModel:
        return LatencyModel.fit(self.space, table, [(m.widths, m.measured_ms) for m in self.seen])

    def top1(self, spec: str) -> float:
        return float(evaluate_model(spec, self.data, limit=self.settings.eval_limit, spread=True).metrics["top1"])

    def finetune(self, m: Measured) -> None:
        if m.top1_finetuned is not None:
            return
        assert m.checkpoint is not None
        m.top1_pruned = self.top1(m.checkpoint)
        run_dir = self._finetuned(m)
        result, _ = train_model(m.checkpoint, self.data, run_dir, self.settings.train, distill=self.settings.distill,
                                console=self.console)
        m.top1_validation = float(result.final["top1"])
        m.top1_finetuned = self.top1(str(run_dir / "checkpoint.pth"))
        self.state.save()

    def publish(self, m: Measured, best: Path) -> None:
        best.mkdir(parents=True, exist_ok=True)
        source = self._dir(m.widths)
        shutil.copyfile(source / "schedule.yaml", best / "schedule.yaml")
        final = self._finetuned(m) / "checkpoint.pth"
        checkpoint = final if final.exists() else Path(m.checkpoint or "")
        shutil.copyfile(checkpoint, best / "model.pth")
        ir = best if self.settings.target.backend == "openvino" else None
        export_model(str(best / "model.pth"), best / "model.onnx", exporter="torchscript",
                     batch=self.settings.target.batch, openvino_dir=ir)


def _measurer(settings: SearchSettings, console: Console) -> Measurer:
    if settings.queue is None:
        return LocalMeasurer(settings.target)
    return QueuedMeasurer(settings.target, get_queue(settings.queue), get_artifact_store(settings.artifacts),
                          console=console)


def _with_progress(console: Console, what: str, total: int, run: Callable[[Callable[[int, int], None]], Any]) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    if total == 0:
        return
    with Progress(TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console,
                  transient=True) as progress:
        task = progress.add_task(what, total=total)
        run(lambda done, _total: progress.update(task, completed=done))
