"""Capacity of one consumer: the coordination cost per trial, and how many producers one consumer can serve.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/capacity.py --trials 40

Coordination is everything the agents do per trial besides training and benchmarking: the study's ask,
the artifact's put, the queue's put and the hand-off mark (producer side); the queue's get, the "finished
already?" check, the artifact's fetch with its SHA-256 check, the study's tell, the queue's ack and the
artifact's discard (consumer side). Each is timed around the very call the agents make
(:meth:`Producer.hand_off`, the store's ``fetch``, :meth:`SweepStudy.complete` ...), ``--trials`` times, for
both deployments side by side in one run:

* one machine: SQLite queue, SQLite study, artifact directory;
* across machines: Redis Streams queue and Redis artifact store (a private ``redis-server`` on a free
  loopback port), PostgreSQL study (a throwaway database on 127.0.0.1:5432, trust auth).

The artifact is a real trial's ONNX file (resnet20_cifar on the built-in digits, filter-pruned, one
retraining epoch: what ``examples/sweeps/resnet20_digits.yaml`` produces), and the training time and the
benchmark time of that trial are measured too, with the example sweep's benchmark settings (ONNX Runtime,
200 iterations, up to 3 s). From these: the trials per hour one consumer absorbs
(3600 / (benchmark + consumer coordination)) and how many producers it keeps busy at a training time per
trial T ((T + producer coordination) / (benchmark + consumer coordination)).
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import redis
from rich.console import Console

from edgeprune.agents.artifacts import ArtifactStore, get_artifact_store
from edgeprune.agents.messages import AgentJob
from edgeprune.agents.producer import Producer
from edgeprune.agents.queue import get_queue
from edgeprune.agents.trials import is_finished
from edgeprune.sweep.config import BenchmarkSettings, load_sweep
from edgeprune.sweep.engine import SweepStudy
from edgeprune.sweep.job import TrialJob, TrialRequest

TEMPLATE = Path(__file__).resolve().parents[1] / "examples" / "sweeps" / "resnet20_digits_template.yaml"
SWEEP = """\
name: capacity-{tag}
method: random
metric: {{name: top1, goal: maximize}}
objectives: [{{name: top1, goal: maximize}}, {{name: latency_ms, goal: minimize}}]
parameters:
  sparsity:
    parameters:
      layer1: {{min: 0.1, max: 0.8}}
      layer2: {{min: 0.1, max: 0.8}}
      layer3: {{min: 0.1, max: 0.8}}
model: resnet20_cifar
data: digits
schedule_template: template.yaml
retrain: {{epochs: 1, lr: 0.01, batch_size: 64}}
export: {{exporter: torchscript}}
benchmark: {{backend: onnxruntime, threads: 1, niter: 200, warmup: 20, budget_s: 3}}
"""
PRODUCER_STEPS = ("ask", "hand_off (artifact put + queue put + mark)")
CONSUMER_STEPS = ("get", "finished check", "fetch + verify", "tell", "ack", "discard")
TRAINING_MINUTES = (1, 5, 15, 60)
ANALYSIS = "of the tell: importance + correlation refresh"


@contextmanager
def timed(record: dict[str, list[float]], step: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    record.setdefault(step, []).append((time.perf_counter() - start) * 1000.0)


def write_sweep(directory: Path, tag: str) -> Path:
    directory.mkdir(parents=True)
    shutil.copy(TEMPLATE, directory / "template.yaml")
    (directory / "sweep.yaml").write_text(SWEEP.format(tag=tag))
    return directory / "sweep.yaml"


def one_trial(root: Path) -> tuple[TrialJob, float]:
    """A real trial, produced once: its job and its PRODUCE wall time (prune, retrain, export, parity)."""
    from edgeprune.sweep.prepare import prepare_base
    from edgeprune.sweep.produce import produce

    cfg = load_sweep(write_sweep(root / "seed", "seed"))
    base = prepare_base(cfg, root / "seed", Console(file=io.StringIO()))
    start = time.perf_counter()
    values = {"sparsity.layer1": 0.5, "sparsity.layer2": 0.5, "sparsity.layer3": 0.5}
    job = produce(TrialRequest(study_name=cfg.study_name, trial_number=0, values=values,
                               template=cfg.template_text or "", model=base, data=cfg.data, retrain=cfg.retrain,
                               export=cfg.export, benchmark=cfg.benchmark, out_dir=str(root / "seed" / "trial"),
                               threads=1))
    return job, time.perf_counter() - start


def coordination(queue_url: str, storage_url: str, store: ArtifactStore, job: TrialJob, root: Path,
                 trials: int) -> dict[str, list[float]]:
    """Per-step milliseconds of ``trials`` trials handed from a producer to a consumer, benchmark left out."""
    cfg = load_sweep(write_sweep(root, uuid.uuid4().hex[:8]))
    queue = get_queue(queue_url)
    queue.register_sweep(cfg.study_name, "{}")
    producer = Producer(cfg, storage_url, queue, store, work_dir=root / "producer", threads=1, name="producer",
                        console=Console(file=io.StringIO()))
    study = SweepStudy(cfg, storage_url)
    record: dict[str, list[float]] = {}
    for _ in range(trials):
        with timed(record, "ask"):
            asked = producer.study.ask()
        handed = job.model_copy(update={"study_name": cfg.study_name, "trial_number": asked.number})
        with timed(record, PRODUCER_STEPS[1]):
            producer.hand_off(asked.trial, handed)
        with timed(record, "get"):
            delivery = queue.get("consumer", [cfg.study_name], 1.0)
        message = AgentJob.model_validate_json(delivery.body)
        with timed(record, "finished check"):
            is_finished(study, message.trial_number)
        local = root / "consumer" / f"{asked.number:04d}" / "model.onnx"
        with timed(record, "fetch + verify"):
            store.fetch(message.artifact, local)
        metrics = {**job.metrics, "latency_ms": 1.0, "e2e_latency_ms": 1.0, "throughput_fps": 1000.0}
        with timed(record, "tell"):
            study.complete(message.trial_number, metrics, history=job.history, artifacts={"onnx": str(local)})
        with timed(record, ANALYSIS):  # once more, alone: the share of the tell that recomputes the analysis
            study.refresh_analysis()
        with timed(record, "ack"):
            queue.ack(delivery)
        with timed(record, "discard"):
            store.discard(message.artifact)
    queue.forget_producer(cfg.study_name, "producer")
    return record


def private_redis(directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    directory.mkdir(parents=True)
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
                             "--appendonly", "yes", "--save", ""], stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(200):
        try:
            redis.Redis.from_url(url).ping()
            return proc, url
        except redis.exceptions.ConnectionError:
            time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


def summary(record: dict[str, list[float]], steps: tuple[str, ...]) -> dict[str, Any]:
    per_step = {s: round(statistics.median(record[s]), 2) for s in steps}
    totals = [sum(record[s][i] for s in steps) for i in range(len(record[steps[0]]))]
    return {"median_ms": per_step, "total_median_ms": round(statistics.median(totals), 2),
            "total_p90_ms": round(statistics.quantiles(totals, n=10)[-1], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("-o", "--output", type=Path, help="write the figures as JSON")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="edgeprune-capacity-"))
    job, train_s = one_trial(root)
    from edgeprune.sweep.measure import benchmark

    settings = BenchmarkSettings(backend="onnxruntime", threads=1, niter=200, warmup=20, budget_s=3)
    start = time.perf_counter()
    benchmark(job.artifact, settings)
    bench_s = time.perf_counter() - start
    size_kb = Path(job.artifact).stat().st_size / 1024
    server, redis_url = private_redis(root / "redis")
    admin = psycopg.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres", autocommit=True)
    database = f"edgeprune_capacity_{uuid.uuid4().hex[:8]}"
    admin.execute(f'CREATE DATABASE "{database}"')
    try:
        deployments = {
            "one machine (SQLite queue + study, artifact directory)": coordination(
                f"sqlite:///{root / 'local' / 'queue.db'}", f"sqlite:///{root / 'local' / 'study.db'}",
                get_artifact_store(root / "local" / "artifacts"), job, root / "local", args.trials),
            "across machines (Redis queue + artifacts, PostgreSQL study)": coordination(
                redis_url, f"postgresql://postgres@127.0.0.1:5432/{database}", get_artifact_store(redis_url), job,
                root / "distributed", args.trials),
        }
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        server.send_signal(signal.SIGTERM)
        server.wait()
        shutil.rmtree(root, ignore_errors=True)
    print(f"one trial of examples/sweeps/resnet20_digits.yaml: training (PRODUCE) {train_s:.1f} s, benchmark "
          f"{bench_s:.2f} s (onnxruntime, 200 iterations, budget 3 s), ONNX {size_kb:.0f} KiB; {args.trials} trials "
          f"per deployment")
    results: dict[str, Any] = {"train_s": round(train_s, 2), "bench_s": round(bench_s, 2), "deployments": {}}
    for name, record in deployments.items():
        producer, consumer = summary(record, PRODUCER_STEPS), summary(record, CONSUMER_STEPS)
        per_trial_s = bench_s + consumer["total_median_ms"] / 1000
        serves = {f"{m} min": round((m * 60 + producer["total_median_ms"] / 1000) / per_trial_s, 1)
                  for m in TRAINING_MINUTES}
        results["deployments"][name] = {"producer": producer, "consumer": consumer,
                                        "analysis_refresh_ms": [round(v, 1) for v in record[ANALYSIS]],
                                        "consumer_trials_per_hour": round(3600 / per_trial_s),
                                        "producers_served_at_training_time": serves}
        print(f"\n{name}")
        print(f"  producer side, median ms: {producer['median_ms']}  total {producer['total_median_ms']} "
              f"(p90 {producer['total_p90_ms']})")
        print(f"  consumer side, median ms: {consumer['median_ms']}  total {consumer['total_median_ms']} "
              f"(p90 {consumer['total_p90_ms']}); {ANALYSIS}: {statistics.median(record[ANALYSIS]):.1f} "
              f"(first {record[ANALYSIS][0]:.1f}, last {record[ANALYSIS][-1]:.1f})")
        print(f"  one consumer absorbs {3600 / per_trial_s:.0f} trials/hour of this model; producers it keeps busy "
              f"at a training time per trial of {', '.join(f'{k}: {v}' for k, v in serves.items())}")
    if args.output:
        args.output.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
    sys.exit(0)
