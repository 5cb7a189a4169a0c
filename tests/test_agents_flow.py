"""Producers and consumers against real services: PostgreSQL or the Redis journal for the study, Redis Streams or
SQLite for the queue, real trials (resnet20_cifar pruned, fine-tuned one epoch on digits, exported, benchmarked).

The trials' ONNX files are produced for real once per session; tests that are about delivery, not producing,
hand copies of them to the queue through the producer's own :meth:`Producer.hand_off`. The two ``kill -9``
tests run the agent as a separate process (``python -m edgeprune agent ...``) and kill it mid-work.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from optuna.trial import Trial, TrialState
from rich.console import Console
from typer.testing import CliRunner

from edgeprune.agents.artifacts import DirectoryStore
from edgeprune.agents.consumer import Consumer
from edgeprune.agents.janitor import reclaim
from edgeprune.agents.producer import Producer
from edgeprune.agents.queue import JobQueue, get_queue
from edgeprune.agents.sweeps import resolve_sweep
from edgeprune.cli import app
from edgeprune.sweep.config import load_sweep
from edgeprune.sweep.engine import SweepStudy
from edgeprune.sweep.job import TrialJob, TrialRequest

pytest_plugins = ["tests.services"]

TEMPLATE = """\
version: 1
pruners:
  stage1:
    class: L1RankedStructureParameterPruner
    group_type: Filters
    desired_sparsity: ${sparsity}
    weights: [module.layer1.0.conv1.weight, module.layer1.1.conv1.weight]
extensions:
  net_thinner: {class: FilterRemover, thinning_func_str: remove_filters, arch: resnet20_cifar, dataset: digits}
policies:
  - pruner: {instance_name: stage1}
    epochs: [0]
  - extension: {instance_name: net_thinner}
    epochs: [0]
"""
SWEEP = """\
name: {name}
method: grid
objectives: [{{name: top1, goal: maximize}}, {{name: latency_ms, goal: minimize}}]
parameters:
  sparsity: {{values: [0.25, 0.75]}}
model: resnet20_cifar
data: digits
schedule_template: template.yaml
retrain: {{epochs: 1, batch_size: 128}}
export: {{exporter: torchscript, parity_images: 8}}
benchmark: {{backend: onnxruntime, threads: 1, niter: 20, warmup: 2, budget_s: 0.2}}
"""
FAST = {"niter": 20, "warmup": 2, "budget_s": 0.2}


def write_sweep(directory: Path, name: str | None = None) -> Path:
    """A two-point grid sweep in its own directory (the template beside it, named relatively)."""
    name = name or f"t-{uuid.uuid4().hex[:8]}"
    directory = directory / name
    directory.mkdir(parents=True)
    (directory / "template.yaml").write_text(TEMPLATE)
    (directory / "sweep.yaml").write_text(SWEEP.format(name=name))
    return directory / "sweep.yaml"


@pytest.fixture(scope="session")
def produced(tmp_path_factory: pytest.TempPathFactory) -> dict[float, TrialJob]:
    """Two real PRODUCE results (sparsity 0.25 and 0.75: different sizes), made once for the session."""
    from edgeprune.sweep.produce import produce

    root = tmp_path_factory.mktemp("produced")
    cfg = load_sweep(write_sweep(root, "seed"))
    jobs = {}
    for number, sparsity in enumerate((0.25, 0.75)):
        jobs[sparsity] = produce(TrialRequest(
            study_name="seed", trial_number=number, values={"sparsity": sparsity}, template=cfg.template_text or "",
            model=cfg.model or "", data=cfg.data, retrain=cfg.retrain, export=cfg.export, benchmark=cfg.benchmark,
            out_dir=str(root / "trials" / str(number)), threads=1))
    return jobs


@dataclass
class Agents:
    """One test's queue, study storage and artifact directory, and agents built on them."""

    queue_url: str
    storage_url: str
    root: Path

    def __post_init__(self) -> None:
        self.store = DirectoryStore(self.root / "artifacts")

    def queue(self, **options: Any) -> JobQueue:
        return get_queue(self.queue_url, **options)

    def producer(self, sweep: Path | str, **options: Any) -> Producer:
        q = self.queue()
        cfg = resolve_sweep(str(sweep), q, self.root / "producer")
        return Producer(cfg, self.storage_url, q, self.store, work_dir=self.root / "producer", threads=1,
                        console=Console(file=io.StringIO()), **options)

    def consumer(self, *, visibility_timeout_s: float = 60.0, **options: Any) -> Consumer:
        return Consumer(self.queue(visibility_timeout_s=visibility_timeout_s), self.storage_url,
                        work_dir=self.root / "consumer", bench=FAST, retry_delay_s=0.1,
                        console=Console(file=io.StringIO(), width=200), **options)

    def study(self, sweep: Path) -> SweepStudy:
        return SweepStudy(load_sweep(sweep), self.storage_url)

    def cli(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "edgeprune", "agent", *args, "--queue", self.queue_url, "--storage",
                self.storage_url]


def hand_off(producer: Producer, job: TrialJob, count: int) -> list[Trial]:
    """Ask ``count`` trials and queue a copy of ``job`` for each, as a producer does after producing."""
    trials = []
    for _ in range(count):
        asked = producer.study.ask()
        producer.hand_off(asked.trial, copy_for(job, producer.sweep, asked.number))
        trials.append(asked.trial)
    producer.queue.forget_producer(producer.sweep, producer.name)
    return trials


def copy_for(job: TrialJob, sweep: str, number: int) -> TrialJob:
    return job.model_copy(update={"study_name": sweep, "trial_number": number})


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)


def queue_param(*kinds: str) -> Any:
    return pytest.fixture(params=[pytest.param(k, marks=[pytest.mark.redis] if k == "redis" else []) for k in kinds])


def _agents(request: pytest.FixtureRequest, tmp_path: Path, storage_url: str) -> Agents:
    queue_url = f"sqlite:///{tmp_path / 'queue.db'}" if request.param == "embedded" else \
        f"{request.getfixturevalue('redis_url')}?prefix={request.getfixturevalue('redis_prefix')}"
    return Agents(queue_url, storage_url, tmp_path)


@queue_param("redis")
def agents(request: pytest.FixtureRequest, tmp_path: Path, postgres_url: str) -> Agents:
    """Redis Streams queue, PostgreSQL study."""
    return _agents(request, tmp_path, postgres_url)


@queue_param("embedded", "redis")
def any_agents(request: pytest.FixtureRequest, tmp_path: Path, postgres_url: str) -> Agents:
    """Either queue, PostgreSQL study."""
    return _agents(request, tmp_path, postgres_url)


pytestmark = pytest.mark.postgres


def test_the_same_job_queued_twice_gives_one_result(agents: Agents, produced: dict[float, TrialJob],
                                                    tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path)
    producer = agents.producer(sweep)
    [trial] = hand_off(producer, produced[0.25], 1)
    producer.hand_off(trial, copy_for(produced[0.25], producer.sweep, trial.number))  # e.g. a put retried
    stats = agents.consumer().run(max_jobs=2)
    assert stats.outcomes == {"measured": 1, "duplicate": 1}
    [done] = agents.study(sweep).trials()
    assert done.state == TrialState.COMPLETE and done.user_attrs["metrics"]["macs"] == produced[0.25].metrics["macs"]
    counts = agents.queue().counts(producer.sweep)
    assert (counts.queued, counts.in_flight, counts.dead) == (0, [], 0)


def test_a_consumer_dying_between_tell_and_ack_leaves_one_result(agents: Agents, produced: dict[float, TrialJob],
                                                                tmp_path: Path) -> None:
    """What a crash after the tell leaves behind — the trial told, its job pending with a dead consumer — is
    made with the real pieces; the next consumer takes the job over and acknowledges it without measuring."""
    from edgeprune.agents.messages import AgentJob
    from edgeprune.sweep.measure import measure_and_tell

    sweep = write_sweep(tmp_path)
    producer = agents.producer(sweep)
    hand_off(producer, produced[0.75], 1)
    crashed = agents.queue().get("crashed", [producer.sweep], 1.0)
    assert crashed is not None
    message = AgentJob.model_validate_json(crashed.body)
    local = agents.store.fetch(message.artifact, tmp_path / "crashed" / "model.onnx")
    measure_and_tell(agents.study(sweep), message.job.model_copy(update={"artifact": str(local)}))
    console = io.StringIO()
    consumer = agents.consumer(visibility_timeout_s=1.0)
    consumer.console = Console(file=console, width=200)
    assert consumer.run(max_jobs=1).outcomes == {"duplicate": 1}
    assert "finished already" in console.getvalue()
    assert [t.state for t in agents.study(sweep).trials()] == [TrialState.COMPLETE]
    assert agents.queue().counts(producer.sweep).in_flight == []


def test_a_corrupt_artifact_is_dead_lettered_with_the_reason_after_n_tries(any_agents: Agents,
                                                                          produced: dict[float, TrialJob],
                                                                          tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path)
    producer = any_agents.producer(sweep)
    [trial] = hand_off(producer, produced[0.25], 1)
    [stored] = (any_agents.root / "artifacts").rglob("*.onnx")
    with open(stored, "ab") as fh:
        fh.write(b"flipped on the share")
    stats = any_agents.consumer(visibility_timeout_s=1.0, max_deliveries=3).run(max_jobs=3)
    assert stats.outcomes == {"released": 2, "dead": 1}
    q = any_agents.queue()
    [dead] = q.dead_letters(producer.sweep)
    assert dead.deliveries == 3 and "SHA-256" in dead.reason and "not the one that was produced" in dead.reason
    [failed] = any_agents.study(sweep).trials()
    assert failed.state == TrialState.FAIL and failed.number == trial.number
    assert failed.user_attrs["error"].startswith("dead-lettered after 3 deliveries: The artifact")
    counts = q.counts(producer.sweep)
    assert (counts.queued, counts.in_flight, counts.dead) == (0, [], 1)


@pytest.mark.redis
def test_two_sweeps_at_once_with_one_consumer_both_complete_unmixed(start_redis: Callable[..., Any],
                                                                   produced: dict[float, TrialJob],
                                                                   tmp_path: Path) -> None:
    """Queue and study both on Redis (Optuna's journal storage); the consumer serves every registered sweep."""
    server = start_redis("--save", "", "--appendonly", "no")
    agents = Agents(server.url, server.url, tmp_path)
    sweeps = {sparsity: write_sweep(tmp_path) for sparsity in (0.25, 0.75)}
    names = {}
    for sparsity, sweep in sweeps.items():
        producer = agents.producer(sweep)
        hand_off(producer, produced[sparsity], 2)
        names[sparsity] = producer.sweep
    stats = agents.consumer().run(exit_when_done=True)
    assert stats.outcomes == {"measured": 4}
    for sparsity, sweep in sweeps.items():
        trials = agents.study(sweep).trials()
        assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
        assert {t.user_attrs["metrics"]["macs"] for t in trials} == {produced[sparsity].metrics["macs"]}
        assert all(f"/{names[sparsity]}/" in t.user_attrs["artifacts"]["onnx"] for t in trials)
    result = CliRunner().invoke(app, ["status", "--queue", server.url, "--storage", server.url, "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["sweep"]: row for row in json.loads(result.stdout)}
    assert set(rows) == set(names.values())
    assert all((r["done"], r["queued"], r["in_flight"], r["dead_lettered"]) == (2, 0, [], 0) for r in rows.values())


def test_a_producer_killed_mid_trial_has_its_trial_failed_and_retried(agents: Agents, tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path)
    study = agents.study(sweep)
    with open(tmp_path / "producer.log", "wb") as log:
        proc = subprocess.Popen(agents.cli("producer", "--sweep", str(sweep), "--artifacts", str(agents.store.root),
                                           "--work-dir", str(tmp_path / "killed"), "--threads", "1"),
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: study.trials(TrialState.RUNNING) and list((tmp_path / "killed").rglob("request.json")),
                 timeout=120, what="the producer to start a trial")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    [killed] = study.trials()
    assert killed.state == TrialState.RUNNING
    producer = agents.producer(sweep, max_trials=1)  # its janitor pass comes first
    assert producer.run() == 1
    assert agents.consumer().run(max_jobs=1).outcomes == {"measured": 1}
    failed, retried = study.trials()
    baseline = study.study.user_attrs["baseline"]  # the dense model: accuracy from the producer, latency measured
    assert baseline["top1"] > 0 and baseline["latency_ms"] > 0  # by the consumer before the trial, as the trial
    assert (tmp_path / "consumer" / "measured" / producer.sweep / "dense" / "bench.json").is_file()
    assert failed.state == TrialState.FAIL and failed.user_attrs["abandoned"]
    assert f":{proc.pid} is no longer running" in failed.user_attrs["error"]
    assert retried.state == TrialState.COMPLETE and retried.params == failed.params
    assert retried.user_attrs["retry_of"] == failed.number and not study.trials(TrialState.RUNNING)


def test_a_consumer_killed_mid_benchmark_has_its_job_redelivered_to_another(agents: Agents,
                                                                            produced: dict[float, TrialJob],
                                                                            tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path)
    producer = agents.producer(sweep)
    [trial] = hand_off(producer, produced[0.25], 1)
    log_path = tmp_path / "consumer-a.log"
    with open(log_path, "wb") as log:  # a benchmark of a million iterations: minutes, killed long before
        proc = subprocess.Popen(agents.cli("consumer", "--name", "consumer-a", "--work-dir", str(tmp_path / "a"),
                                           "--niter", "1000000", "--warmup", "0", "--budget", "600",
                                           "--visibility-timeout", "2"), stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "measuring" in log_path.read_text(), timeout=120, what="consumer-a to start measuring")
        time.sleep(0.5)
        [in_flight] = agents.queue().counts(producer.sweep).in_flight
        assert in_flight.consumer == "consumer-a"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    output = io.StringIO()
    consumer = agents.consumer(visibility_timeout_s=2.0, name="consumer-b")
    consumer.console = Console(file=output, width=200)
    assert consumer.run(max_jobs=1).outcomes == {"measured": 1}
    assert "delivery 2 of job" in output.getvalue()
    [done] = agents.study(sweep).trials()
    assert done.number == trial.number and done.state == TrialState.COMPLETE
    counts = agents.queue().counts(producer.sweep)
    assert (counts.queued, counts.in_flight, counts.dead) == (0, [], 0)


@pytest.mark.redis
def test_jobs_lost_with_a_redis_without_persistence_have_their_trials_retried(start_redis: Callable[..., Any],
                                                                             postgres_url: str,
                                                                             produced: dict[float, TrialJob],
                                                                             tmp_path: Path) -> None:
    server = start_redis("--save", "", "--appendonly", "no")
    agents = Agents(server.url, postgres_url, tmp_path)
    sweep = write_sweep(tmp_path)
    producer = agents.producer(sweep)
    [trial] = hand_off(producer, produced[0.25], 1)
    assert reclaim(producer.study, agents.queue()) == []  # queued: the queue owns it, however long it waits
    server.kill()
    server.start()
    [(number, reason)] = reclaim(producer.study, agents.queue())
    assert number == trial.number and "is no longer in the queue" in reason
    failed, retry = producer.study.trials()
    assert failed.state == TrialState.FAIL and retry.state == TrialState.WAITING
    assert retry.user_attrs["retry_of"] == failed.number


def test_an_interrupted_consumer_gives_back_its_job_and_when_idle_says_it_had_none(postgres_url: str,
                                                                                   produced: dict[float, TrialJob],
                                                                                   tmp_path: Path) -> None:
    agents = Agents(f"sqlite:///{tmp_path / 'queue.db'}", postgres_url, tmp_path)
    sweep = write_sweep(tmp_path)
    producer = agents.producer(sweep)

    def interrupted(name: str, started: str) -> str:
        """A consumer process (benchmarks of a million iterations: it is mid-job for minutes), SIGTERM once it
        logged ``started``; returns its log."""
        log = tmp_path / f"{name}.log"
        with open(log, "wb") as fh:
            proc = subprocess.Popen(agents.cli("consumer", "--name", name, "--work-dir", str(tmp_path / name),
                                               "--niter", "1000000", "--warmup", "0", "--budget", "600"),
                                    stdout=fh, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: started in log.read_text(), timeout=120, what=f"{name} to log {started!r}")
            os.kill(proc.pid, signal.SIGTERM)
            assert proc.wait(timeout=60) == 130
        finally:
            proc.kill()
        return " ".join(log.read_text().split())

    idle = interrupted("idle", "serving")
    assert "interrupted: no job was being measured" in idle and "back to the queue" not in idle
    [trial] = hand_off(producer, produced[0.25], 1)
    busy = interrupted("busy", "measuring")
    [job] = [line for line in busy.split("interrupted: ")[1:]]
    assert job.startswith(f"{producer.sweep} job ") and "went back to the queue" in job
    counts = agents.queue().counts(producer.sweep)
    assert (counts.queued, counts.in_flight) == (1, [])  # at once, not after the visibility timeout
    assert agents.study(sweep).trials()[0].state == TrialState.RUNNING and trial.number == 0


def test_a_consumer_killed_between_the_tell_and_the_ack_leaves_one_result(postgres_url: str,
                                                                          produced: dict[float, TrialJob],
                                                                          tmp_path: Path) -> None:
    """A real crash at that very point: the queue file is write-locked from here once the consumer took the job,
    so its tell (in PostgreSQL) goes through and its acknowledgement waits; it is killed with ``kill -9`` there.
    The next consumer gets the job, finds the trial finished and acknowledges it unmeasured."""
    import sqlite3

    agents = Agents(f"sqlite:///{tmp_path / 'queue.db'}", postgres_url, tmp_path)
    sweep = write_sweep(tmp_path)
    producer = agents.producer(sweep)
    [trial] = hand_off(producer, produced[0.75], 1)
    with open(tmp_path / "a.log", "wb") as log:  # a benchmark of a few seconds: the lock is taken before the tell
        proc = subprocess.Popen(agents.cli("consumer", "--name", "a", "--work-dir", str(tmp_path / "a"), "--niter",
                                           "300", "--warmup", "0", "--budget", "2", "--visibility-timeout", "2"),
                                stdout=log, stderr=subprocess.STDOUT)
    lock = sqlite3.connect(tmp_path / "queue.db", isolation_level=None)
    try:
        wait_for(lambda: agents.queue().counts(producer.sweep).in_flight, timeout=120, what="consumer a's claim")
        lock.execute("BEGIN IMMEDIATE")
        study = agents.study(sweep)
        wait_for(lambda: study.trials()[0].state == TrialState.COMPLETE, timeout=120, what="consumer a's tell")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        lock.close()
        proc.kill()
    [told] = study.trials()
    assert agents.queue().counts(producer.sweep).in_flight[0].consumer == "a"  # told, never acknowledged
    output = io.StringIO()
    consumer = agents.consumer(visibility_timeout_s=2.0, name="b")
    consumer.console = Console(file=output, width=200)
    assert consumer.run(max_jobs=1).outcomes == {"duplicate": 1}
    assert f"trial {trial.number} is finished already" in output.getvalue()
    [done] = agents.study(sweep).trials()
    assert done.state == TrialState.COMPLETE and done.values == told.values  # consumer a's result, measured once
    counts = agents.queue().counts(producer.sweep)
    assert (counts.queued, counts.in_flight, counts.dead) == (0, [], 0)


def test_a_stalled_consumers_job_is_taken_over_after_the_visibility_timeout_and_told_once(
        agents: Agents, produced: dict[float, TrialJob], tmp_path: Path) -> None:
    """Consumer a stalls mid-benchmark (SIGSTOP: a swapped-out or partitioned machine) past the visibility
    timeout; b takes the job over and tells it. When a resumes, its tell loses and it acknowledges nothing new."""
    sweep = write_sweep(tmp_path)
    producer = agents.producer(sweep)
    [trial] = hand_off(producer, produced[0.25], 1)
    log_path = tmp_path / "a.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(agents.cli("consumer", "--name", "a", "--work-dir", str(tmp_path / "a"), "--niter",
                                           "300", "--warmup", "0", "--budget", "2", "--visibility-timeout", "2",
                                           "--max-jobs", "1"), stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "measuring" in log_path.read_text(), timeout=120, what="consumer a to start measuring")
        os.kill(proc.pid, signal.SIGSTOP)
        output = io.StringIO()
        consumer = agents.consumer(visibility_timeout_s=2.0, name="b")
        consumer.console = Console(file=output, width=200)
        assert consumer.run(max_jobs=1).outcomes == {"measured": 1}
        assert "delivery 2 of job" in output.getvalue()
        [done] = agents.study(sweep).trials()
        assert done.number == trial.number and done.state == TrialState.COMPLETE
        assert f"{tmp_path}/consumer/measured/" in done.user_attrs["artifacts"]["bench"]  # measured by b
        os.kill(proc.pid, signal.SIGCONT)
        assert proc.wait(timeout=120) == 0
    finally:
        proc.kill()
    assert "1 duplicate" in " ".join(log_path.read_text().split())
    [again] = agents.study(sweep).trials()
    assert again.values == done.values and again.user_attrs["artifacts"] == done.user_attrs["artifacts"]
    counts = agents.queue().counts(producer.sweep)
    assert (counts.queued, counts.in_flight, counts.dead) == (0, [], 0)


def test_a_benchmark_that_raises_is_retried_then_dead_lettered_and_its_trial_failed(
        any_agents: Agents, produced: dict[float, TrialJob], tmp_path: Path) -> None:
    """An artifact that is exactly what was produced (hashes match) but that the runtime cannot load: every
    attempt's benchmark raises, so the job is released, tried again, then dead-lettered with the runtime's reason."""
    from edgeprune.sweep.job import sha256_file

    sweep = write_sweep(tmp_path)
    producer = any_agents.producer(sweep)
    broken = tmp_path / "broken" / "model.onnx"
    broken.parent.mkdir()
    broken.write_bytes(Path(produced[0.25].artifact).read_bytes()[:2000])  # a truncated export
    job = produced[0.25].model_copy(update={"artifact": str(broken), "artifact_sha256": sha256_file(broken)})
    [trial] = hand_off(producer, job, 1)
    stats = any_agents.consumer(max_deliveries=2).run(max_jobs=2)
    assert stats.outcomes == {"released": 1, "dead": 1}
    [dead] = any_agents.queue().dead_letters(producer.sweep)
    assert dead.deliveries == 2 and "SHA-256" not in dead.reason and dead.reason
    [failed] = any_agents.study(sweep).trials()
    assert failed.state == TrialState.FAIL and failed.number == trial.number
    assert failed.user_attrs["error"] == f"dead-lettered after 2 deliveries: {dead.reason}"
