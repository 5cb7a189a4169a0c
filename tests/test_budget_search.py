"""``edgeprune search``: the search space, the latency table and model, and whole searches on digits.

Latencies here are real (OpenVINO CPU, a short protocol); assertions are about what must hold whatever the
machine's speed: reuse of the table, sums, widths, schedules, errors.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from rich.console import Console

from edgeprune.agents.artifacts import get_artifact_store
from edgeprune.agents.consumer import Consumer
from edgeprune.agents.latency_jobs import LATENCY_JOBS, LatencyJobError, QueuedMeasurer
from edgeprune.agents.queue import JobQueue, get_queue
from edgeprune.agents.status import latency_notes
from edgeprune.budget_search.budget import Budget
from edgeprune.budget_search.greedy import greedy_path
from edgeprune.budget_search.importance import LossOracle, widths_tag
from edgeprune.budget_search.latency import PROBE, LatencyTable, LocalMeasurer, export_kernel
from edgeprune.budget_search.predict import LatencyModel, kernel_macs, kernel_sum, networks_needed, terms
from edgeprune.budget_search.run import SearchSettings, search
from edgeprune.budget_search.space import Kernel, build_space, render_widths_schedule, thinned, width_grid
from edgeprune.distillation import DistillConfig
from edgeprune.errors import ConfigError
from edgeprune.measurement.protocol import Protocol
from edgeprune.measurement.target import Target
from edgeprune.models import create_model
from edgeprune.models.checkpoint import load_checkpoint, model_from_checkpoint
from edgeprune.models.summary import model_summary
from edgeprune.models.widths import layer_widths
from edgeprune.training.loop import TrainConfig

from .conftest import run_cli

pytest_plugins = ["tests.services"]

QUICK = Target(protocol=Protocol(niter=20, warmup=2), rounds=2)


@pytest.fixture(scope="module")
def resnet20():
    return create_model("resnet20_cifar").eval()


def test_width_grid_is_aligned_and_keeps_the_dense_width() -> None:
    assert width_grid(64, 8, 0.25, 8) == (16, 24, 32, 40, 48, 56, 64)
    assert width_grid(16, 8, 0.25, 8) == (8, 16)
    assert width_grid(10, 4, 0.25, 8) == (8, 10)  # an unaligned dense width stays an option
    assert width_grid(16, 8, 0.25, 1) == (4, 6, 8, 10, 12, 14, 16)


def test_coupled_convs_form_one_unit_with_one_width(resnet20) -> None:
    space = build_space(resnet20)
    stream = space.unit("layer2.0.conv2")
    assert set(stream.members) == {"layer2.0.conv2", "layer2.0.downsample.0", "layer2.1.conv2", "layer2.2.conv2"}
    assert len(space.units) == 12 and not space.excluded  # 9 block-internal convs and 3 residual streams
    widths = {**space.dense, "layer2.0.conv2": 16}
    thin = thinned(resnet20, render_widths_schedule(space, widths, "resnet20_cifar"))
    got = layer_widths(thin)
    assert {got[m]["out"] for m in stream.members} == {16}
    assert got["layer2.1.conv1"]["in"] == 16 and got["layer3.0.conv1"]["in"] == 16


def test_kernels_describe_the_thinned_network_exactly(resnet20) -> None:
    space = build_space(resnet20)
    widths = {u.name: u.options[len(u.options) // 2] for u in space.units}
    got = layer_widths(thinned(resnet20, render_widths_schedule(space, widths, "resnet20_cifar")))
    kernels = dict(space.kernels(widths))
    assert set(kernels) == {n for n, w in got.items() if "in" in w}  # every conv and the fc
    for name, kernel in kernels.items():
        assert (kernel.cin, kernel.cout) == (got[name]["in"], got[name]["out"]), name
    assert kernels["layer2.0.conv1"].stride == (2, 2) and kernels["layer2.0.conv1"].hw == (32, 32)
    assert kernels["fc"].op == "linear"


def test_off_grid_widths_and_unknown_units_are_refused(resnet20) -> None:
    space = build_space(resnet20)
    with pytest.raises(ConfigError, match="not on its grid"):
        render_widths_schedule(space, {"layer1.0.conv1": 5}, "resnet20_cifar")
    with pytest.raises(ConfigError, match="not a searchable unit"):
        space.check({"layer9.conv": 8})


def test_the_table_is_measured_once_per_device_and_reused(resnet20, tmp_path: Path) -> None:
    space = build_space(resnet20, steps=2, min_fraction=0.5)
    kernels = space.all_kernels()
    first = LatencyTable(QUICK, tmp_path)
    assert first.measure(kernels) == len(kernels) > 0
    assert all(first[k] > 0 for k in kernels)
    before = first.path.read_text()
    again = LatencyTable(QUICK, tmp_path)
    assert again.measure(kernels) == 0 and again.measured_now == 0 and again.path.read_text() == before
    other = LatencyTable(Target(threads=2, protocol=QUICK.protocol), tmp_path)  # another fingerprint: its own file
    assert other.path != first.path and other.missing(kernels)

    # the prediction of a configuration is its kernels' sum, scaled and offset
    widths = space.narrowest
    by_hand = sum(first[k] for _, k in space.kernels(widths))
    assert kernel_sum(space, first, widths) == pytest.approx(by_hand)
    assert LatencyModel.scaled(space, first, 2.0, 0.5).predict(widths) == pytest.approx(2.0 * by_hand + 0.5)
    fitted = LatencyModel.fit(space, first, [(space.dense, 3.0), (space.narrowest, 1.0)])
    assert fitted.predict(space.dense) == pytest.approx(3.0) and fitted.predict(space.narrowest) == pytest.approx(1.0)


def test_the_latency_model_has_a_term_per_resolution_and_recovers_what_it_can_express(resnet20,
                                                                                       tmp_path: Path) -> None:
    space = build_space(resnet20)
    assert terms(space) == ("kernels at 32x32", "kernels at 16x16", "kernels at 8x8", "MMACs", "offset")
    assert networks_needed(space) == 10
    rng = random.Random(0)
    widths = [{u.name: rng.choice(u.options) for u in space.units} for _ in range(12)]

    # the MACs term is the network's own: its kernels' MACs add up to the thinned network's conv and Linear MACs
    thin = thinned(resnet20, render_widths_schedule(space, widths[0], "resnet20_cifar"))
    counted = sum(layer.macs for layer in model_summary(thin, (3, 32, 32)).layers if layer.type in ("Conv2d", "Linear"))
    assert sum(kernel_macs(k) for _, k in space.kernels(widths[0])) == counted

    # networks whose latency follows the model exactly give back its coefficients (the table's entries made up:
    # this is about the fit, not the device)
    table = LatencyTable(QUICK, tmp_path, fingerprint={"made": "up"})
    table.entries = {k.key: 0.001 * (1 + i % 7) for i, k in enumerate(space.all_kernels())}
    truth = LatencyModel(space, table, (0.2, 0.5, 0.9, 0.004, 0.05))
    measured = [(w, truth.predict(w)) for w in widths[:10]]
    fitted = LatencyModel.fit(space, table, measured)
    assert fitted.coefficients == pytest.approx(truth.coefficients, rel=1e-6)
    assert "0.5 x kernels at 16x16" in fitted.describe() and fitted.describe().endswith("+ 0.05 ms")
    # with fewer networks than it needs: the scaled kernel sum, one weight for every resolution
    scaled = LatencyModel.fit(space, table, measured[:4])
    assert len(set(scaled.coefficients[:3])) == 1 and scaled.coefficients[3] == 0.0
    # a fit never makes a narrower network slower: a negative weight is dropped, not used
    slower = [(w, 1.0 - truth.predict(w)) for w in widths[:10]]
    assert all(c >= 0 for c in LatencyModel.fit(space, table, slower).coefficients[:-1])


def test_a_ratio_is_timed_paired_and_follows_the_two_latencies(tmp_path: Path) -> None:
    """A file against itself is 1; a small kernel against one 200x its MACs is far below 1, and the other way round
    far above: the ratio is the two latencies', not an artefact of the order they are timed in."""
    small = export_kernel(PROBE, tmp_path, 1)
    big = export_kernel(Kernel("conv", 64, 64, (3, 3), (1, 1), (1, 1), (16, 16)), tmp_path, 1)
    assert 0.8 < QUICK.latency_ratio(big, big) < 1.25
    down, up = QUICK.latency_ratio(small, big), QUICK.latency_ratio(big, small)
    assert down < 0.5 < 2 < up
    assert 0.5 < down * up < 2  # the same two latencies, either way round


def test_a_ratio_measured_again_keeps_the_lower_one(tmp_path: Path) -> None:
    """Measuring again (what confirms a refusal) keeps the lower ratio, so a budget is refused only when every
    measurement says so; the table remembers it for the next search on the device."""
    class Busy(LocalMeasurer):  # this machine's real measurement, the first one taken at a disturbed moment
        first = True

        def latency_ratio(self, onnx_path: str | Path, reference: str | Path) -> float:
            ratio = super().latency_ratio(onnx_path, reference)
            if self.first:
                self.first = False
                return 10 * ratio
            return ratio

    small = export_kernel(PROBE, tmp_path, 1)
    big = export_kernel(Kernel("conv", 64, 64, (3, 3), (1, 1), (1, 1), (16, 16)), tmp_path, 1)
    table = LatencyTable(QUICK, tmp_path / "cache", measurer=Busy(QUICK))
    busy = table.network_ratio(small, big)
    assert table.network_ratio(small, big) == busy and table.networks_measured_now == 1  # remembered
    calm = table.network_ratio(small, big, again=True)
    assert calm < busy / 3 and calm < 0.5 and table.networks_measured_now == 2
    assert LatencyTable(QUICK, tmp_path / "cache").network_ratio(small, big) == calm  # kept for the next search


def test_an_unreadable_table_says_which_file(tmp_path: Path) -> None:
    fingerprint = {"backend": "openvino", "device": "CPU"}
    table = LatencyTable(QUICK, tmp_path, fingerprint=fingerprint)
    table.path.parent.mkdir(parents=True, exist_ok=True)
    table.path.write_text("{not json")
    with pytest.raises(ConfigError, match=str(table.path)):
        LatencyTable(QUICK, tmp_path, fingerprint=fingerprint)


def test_a_kernel_exports_as_the_layer_it_stands_for(tmp_path: Path) -> None:
    import onnx

    from edgeprune.budget_search.space import Kernel

    path = export_kernel(Kernel("conv", 8, 16, (3, 3), (2, 2), (1, 1), (16, 16)), tmp_path, 1)
    graph = onnx.load(path).graph
    assert [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim] == [1, 8, 16, 16]
    assert [d.dim_value for d in graph.output[0].type.tensor_type.shape.dim] == [1, 16, 8, 8]


@pytest.mark.parametrize("text, ms", [("0.6x", 0.6), ("0.35ms", 0.35), ("350us", 0.35), ("1x", 1.0)])
def test_budgets_parse(text: str, ms: float) -> None:
    assert Budget.parse(text).ms(1.0) == pytest.approx(ms)


@pytest.mark.parametrize("text", ["fast", "0.6", "0x", "1.5x", "-2ms"])
def test_bad_budgets_say_how_to_write_one(text: str) -> None:
    with pytest.raises(ConfigError, match="latency"):
        Budget.parse(text)


def _settings(latency: str, cache: Path) -> SearchSettings:
    return SearchSettings(latency=latency, target=QUICK, steps=4, min_fraction=0.25, calibration=3, candidates=2,
                          finetune=1, train=TrainConfig(epochs=1, lr=0.01, batch_size=64, progress=False),
                          eval_limit=200, loss_images=128, cache_dir=str(cache))


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """ResNet-20 trained two epochs on digits: the sensitivity of a network that has learnt."""
    from edgeprune.jobs.train import train_model

    out = tmp_path_factory.mktemp("dense")
    train_model("resnet20_cifar", "digits", out, TrainConfig(epochs=2, lr=0.05, batch_size=64, progress=False))
    return str(out / "checkpoint.pth")


def test_a_search_meets_its_budget_and_its_schedule_reproduces_the_widths(digits_model: str, tmp_path: Path) -> None:
    out = tmp_path / "search"
    result = search(digits_model, "digits", out, replace(_settings("0.85x", tmp_path / "cache"), finetune=2))
    assert result.best.measured_ms <= result.budget_ms == pytest.approx(0.85 * result.dense.measured_ms)
    assert result.best.top1_finetuned is not None and result.best.top1_pruned is not None
    # picked by top-1 on held-out training images, never by the test split; the uniform network competes
    tuned = [m for m in result.measured if m.top1_validation is not None]
    assert 1 <= len(tuned) <= 2 and all(m.measured_ms <= result.budget_ms for m in tuned)
    assert result.best.top1_validation == max(m.top1_validation for m in tuned)
    for uniform in (m for m in result.measured if m.kind == "uniform"):  # none if none is predicted to fit
        assert (uniform in tuned) == (uniform.measured_ms <= result.budget_ms)
    assert result.table_measured_now > 0
    state = json.loads((out / "search.json").read_text())
    assert state["extra"]["best"]["widths"] == result.best.widths
    assert "Latency-budget search" in (out / "report.html").read_text()
    assert json.loads(json.dumps(result.to_dict()))["best"]["widths"] == result.best.widths

    # edgeprune prune with the output schedule gives the same widths as the delivered model
    proc = run_cli("prune", digits_model, "-s", str(out / "best" / "schedule.yaml"), "--data", "digits", "-o",
                   str(tmp_path / "again.pth"))
    assert proc.returncode == 0, proc.stderr
    again = layer_widths(model_from_checkpoint(load_checkpoint(tmp_path / "again.pth")))
    delivered = layer_widths(model_from_checkpoint(load_checkpoint(out / "best" / "model.pth")))
    assert again == delivered
    assert (out / "best" / "model.onnx").is_file() and (out / "best" / "model.xml").is_file()

    # a second search on the same device measures no kernel again, and the resumed one re-measures no network
    resumed = search(digits_model, "digits", out, replace(_settings("0.85x", tmp_path / "cache"), finetune=2))
    assert resumed.table_measured_now == 0
    assert resumed.best.widths == result.best.widths and resumed.best.measured_ms == result.best.measured_ms

    # the same directory with another recipe (distilled from the dense model) fine-tunes in runs of its own, and
    # measures no network again: the table kept every ratio to the dense network
    distilled = search(digits_model, "digits", out, replace(_settings("0.85x", tmp_path / "cache"), finetune=1,
                                                            distill=DistillConfig(teacher="dense")))
    assert distilled.networks_measured_now == 0 and distilled.best.top1_finetuned is not None
    runs = {p.name for p in (out / "networks").glob("*/finetuned-*")}
    assert len(runs) == 2, runs


@pytest.mark.parametrize("change, said", [
    ({"loss_images": 0}, "--loss-images must be at least 1, got 0"),
    ({"validation_share": 1.0}, "--validation-share must be between 0 and 1"),
    ({"validation_share": 0.0}, "--validation-share must be between 0 and 1"),
    ({"distill": DistillConfig(teacher="nosuch.pth")}, "Teacher checkpoint 'nosuch.pth' does not exist"),
    ({"distill": DistillConfig(teacher="dense")}, "'resnet20_cifar' is a zoo name with untrained weights")])
def test_bad_search_settings_are_refused_before_anything_is_written(change: dict, said: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=said):
        search("resnet20_cifar", "digits", tmp_path / "s", replace(_settings("0.8x", tmp_path / "cache"), **change))
    assert not (tmp_path / "s").exists()


def test_a_state_file_that_cannot_be_resumed_is_named_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "s").mkdir()
    for text in ('{"key": {', "[]"):  # truncated; not a search state at all
        (tmp_path / "s" / "search.json").write_text(text)
        with pytest.raises(ConfigError, match="search.json holds no search this version can resume") as err:
            search("resnet20_cifar", "digits", tmp_path / "s", _settings("0.8x", tmp_path / "cache"))
        assert "delete search.json there to start it over" in (err.value.hint or "")


def test_an_impossible_budget_names_the_fastest_measured_latency(digits_model: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"the fastest, every unit at its narrowest, measures [0-9.]+ ms") as err:
        search(digits_model, "digits", tmp_path / "s", _settings("0.01x", tmp_path / "cache"))
    assert "Ask for at least" in (err.value.hint or "")


def test_the_loss_oracle_measures_each_configuration_once_and_dead_filters_cost_nothing() -> None:
    torch.manual_seed(0)
    model = create_model("resnet20_cifar").eval()
    with torch.no_grad():  # eight filters that contribute nothing (BN at its initial statistics passes zeros on)
        model.layer1[0].conv1.weight[8:].zero_()
    space = build_space(model)
    batches = [(torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,)))]
    seen: list[str] = []
    oracle = LossOracle(model, "resnet20_cifar", batches, space, on_measured=lambda tag, _loss: seen.append(tag))
    assert abs(oracle({"layer1.0.conv1": 8})) < 1e-6  # the L1 ranking removes exactly the dead ones
    assert oracle({"layer1.1.conv1": 8}) != 0 and oracle({"conv1": 8}) != 0  # live filters do matter
    assert oracle(space.dense) == 0.0
    assert oracle.measured_now == len(seen) == 4  # dense and three narrowed, each once
    assert seen[:2] == ["16-8-16-16-32-32-32-32-64-64-64-64", widths_tag(space, space.dense)]

    resumed: list[str] = []
    again = LossOracle(model, "resnet20_cifar", batches, space, known=oracle.losses,
                       on_measured=lambda tag, _loss: resumed.append(tag))
    assert again({"conv1": 8}) == oracle({"conv1": 8}) and again.measured_now == 0 and not resumed


def test_the_greedy_path_measures_lazily_and_takes_the_steps_measuring_every_step_would(resnet20,
                                                                                       tmp_path: Path) -> None:
    space = build_space(resnet20)
    table = LatencyTable(QUICK, tmp_path, fingerprint={"made": "up"})  # made up, narrower is faster: about the search
    table.entries = {k.key: 0.001 + 1e-8 * kernel_macs(k) for k in space.all_kernels()}
    latency = LatencyModel(space, table, (0.2, 0.5, 0.9, 0.004, 0.05))
    weight = {u.name: 1.0 + i % 5 for i, u in enumerate(space.units)}
    calls: list[str] = []

    def compounding(widths: dict[str, int]) -> float:  # each cut hurts more the more is cut already
        calls.append(widths_tag(space, widths))
        return sum(weight[u.name] * (1 - widths[u.name] / u.width) for u in space.units) ** 2

    def every_step(budget: float) -> dict[str, int]:  # NetAdapt measuring every unit's step at every step
        widths = dict(space.dense)
        while latency.predict(widths) > budget:
            steps = [{**widths, u.name: u.options[u.options.index(widths[u.name]) - 1]}
                     for u in space.units if widths[u.name] != u.options[0]]
            widths = min(steps, key=lambda w: (compounding(w) - compounding(widths))
                         / (latency.predict(widths) - latency.predict(w)))
        return widths

    dense_ms = latency.predict(space.dense)
    budgets = [0.8 * dense_ms, 0.6 * dense_ms]
    path = greedy_path(space, latency, compounding, budgets)
    lazy_calls = len(calls)
    assert all(w is not None and latency.predict(w) <= b for w, b in zip(path, budgets, strict=True))
    assert all(path[0][u.name] >= path[1][u.name] for u in space.units)  # the tighter budget is further along
    calls.clear()
    assert path == [every_step(b) for b in budgets]
    assert lazy_calls < len(calls) / 2
    assert greedy_path(space, latency, compounding, [0.01 * dense_ms]) == [None]  # beyond the narrowest


@pytest.mark.parametrize("option, value", [("--batch", "0"), ("--threads", "0"), ("--threads", "-2")])
def test_a_target_that_cannot_be_timed_is_one_clear_error(option: str, value: str, tmp_path: Path) -> None:
    proc = run_cli("search", "resnet20_cifar", "--data", "digits", "--latency", "0.6x", option, value, "-o",
                   str(tmp_path / "s"))
    said = " ".join(proc.stderr.split())
    assert proc.returncode != 0 and "Traceback" not in said
    assert f"{option} must be a whole number of at least 1, got {value}" in said
    assert not (tmp_path / "s").exists()


def test_the_issues_command_line_with_storage_reaches_the_queue(tmp_path: Path) -> None:
    """``--storage`` names the artifact store as ``--artifacts`` does: the search gets as far as the queue."""
    proc = run_cli("search", "resnet20_cifar", "--data", "digits", "--latency", "0.6x", "--queue",
                   "redis://127.0.0.1:1/0", "--storage", str(tmp_path / "files"), "-o", str(tmp_path / "s"))
    said = " ".join(proc.stderr.split())
    assert proc.returncode == 2 and "Traceback" not in said
    assert "Redis at redis://127.0.0.1:1/0 cannot be reached" in said


def test_cli_bad_budget_is_one_clear_error(tmp_path: Path) -> None:
    proc = run_cli("search", "resnet20_cifar", "--latency", "fast", "-o", str(tmp_path / "s"))
    said = " ".join(proc.stderr.split())
    assert proc.returncode != 0 and "Traceback" not in said
    assert "--latency 'fast' is not a latency budget" in said and "0.6x" in said
    assert not (tmp_path / "s").exists()  # refused before anything was written


@pytest.mark.redis
def test_a_search_through_redis_with_a_separate_consumer_gives_the_embedded_result(
        digits_model: str, tmp_path: Path, redis_url: str, redis_prefix: str) -> None:
    """The consumer process measures every kernel and network; the fingerprint it reports is this machine's, so an
    embedded search afterwards finds every latency in the same table, measures nothing, and decides the same."""
    queue = f"{redis_url}?prefix={redis_prefix}"
    log = (tmp_path / "consumer.log").open("wb")
    consumer = subprocess.Popen(
        [sys.executable, "-m", "edgeprune", "agent", "consumer", "--queue", queue, "--artifacts", queue,
         "--storage", f"sqlite:///{tmp_path / 'study.db'}", "--work-dir", str(tmp_path / "consumer"),
         "--name", "device-consumer"], stdout=log, stderr=subprocess.STDOUT)
    try:
        settings = _settings("0.85x", tmp_path / "cache")
        queued = search(digits_model, "digits", tmp_path / "queued",
                        replace(settings, queue=queue, artifacts=queue))
    finally:
        consumer.terminate()
        consumer.wait(timeout=30)
    assert queued.measured_by == ["device-consumer"]
    assert queued.table_measured_now > 0 and queued.networks_measured_now >= len(queued.measured)
    served = (tmp_path / "consumer.log").read_text()
    assert served.count("latency job ") >= queued.table_measured_now + queued.networks_measured_now
    # the files went through Redis and are gone from it; nothing was left in the queue
    import redis

    assert not list(redis.Redis.from_url(redis_url).scan_iter(match=f"{redis_prefix}:artifact:*"))

    embedded = search(digits_model, "digits", tmp_path / "embedded", settings)
    assert embedded.table_measured_now == 0 and embedded.networks_measured_now == 0
    assert embedded.measured_by == ["this machine"]
    assert embedded.budget_ms == queued.budget_ms
    assert embedded.best.widths == queued.best.widths
    assert embedded.best.top1_finetuned == queued.best.top1_finetuned
    assert ((tmp_path / "embedded" / "best" / "schedule.yaml").read_text()
            == (tmp_path / "queued" / "best" / "schedule.yaml").read_text())
    # and the consumer's numbers are this machine's, in milliseconds: the dense network measured here again is of
    # the same order (loosely: a loaded machine's latencies vary a few times over)
    here = QUICK.latency_ms(Path(queued.dense.checkpoint or "").parent / "model.onnx")
    assert 0.2 < here / queued.dense.measured_ms < 5.0


def _serve(queue: JobQueue, name: str, jobs: int, tmp_path: Path, **bench: object) -> threading.Thread:
    """A consumer in a thread of this process, serving ``jobs`` jobs with ``bench`` as its machine's settings."""
    consumer = Consumer(queue, f"sqlite:///{tmp_path / 'study.db'}", name=name, bench=dict(bench), max_deliveries=1,
                        work_dir=tmp_path / name, console=Console(stderr=True, quiet=True))
    thread = threading.Thread(target=consumer.run, kwargs={"max_jobs": jobs}, daemon=True)
    thread.start()
    return thread


def test_a_consumer_that_cannot_measure_stops_the_search_with_its_reason(tmp_path: Path) -> None:
    queue = get_queue(f"sqlite:///{tmp_path / 'queue.db'}")
    serving = _serve(queue, "consumer-a", 1, tmp_path, backend="tensorflow")  # not a backend this consumer has
    measurer = QueuedMeasurer(QUICK, queue, get_artifact_store(tmp_path / "artifacts"))
    with pytest.raises(LatencyJobError, match=r"Consumer consumer-a could not measure .*tensorflow"):
        LatencyTable(QUICK, tmp_path / "cache", measurer=measurer)
    serving.join(timeout=30)
    reasons = [d.reason for d in queue.dead_letters(LATENCY_JOBS)]
    assert len(reasons) == 1 and reasons[0].startswith("Unknown benchmark backend 'tensorflow'")
    notes = latency_notes(queue)  # what `edgeprune status --queue` shows below the sweeps
    assert "0 file(s) waiting, 0 being measured, 1 dead-lettered" in notes[0]
    assert "dead-lettered: Unknown benchmark backend" in notes[-1] and ".onnx from " in notes[-1]
    assert not list((tmp_path / "artifacts").rglob("*.onnx"))  # the probe was removed with the answer


def test_latencies_from_another_device_are_refused_not_mixed_into_the_table(tmp_path: Path) -> None:
    queue = get_queue(f"sqlite:///{tmp_path / 'queue.db'}")
    measurer = QueuedMeasurer(QUICK, queue, get_artifact_store(tmp_path / "artifacts"))
    _serve(queue, "one-thread", 1, tmp_path, threads=1)  # answers the fingerprint
    table = LatencyTable(QUICK, tmp_path / "cache", measurer=measurer)
    assert table.fingerprint["threads"] == 1
    _serve(queue, "two-threads", 1, tmp_path, threads=2)  # a consumer measuring differently answers the kernel
    with pytest.raises(ConfigError, match=r"measured by consumer two-threads on another device.*threads: 2 instead "
                                          r"of 1") as err:
        table.measure([PROBE])
    assert "a queue of its own" in (err.value.hint or "")
    assert PROBE not in table
