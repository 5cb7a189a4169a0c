"""Chaos benchmark: a real pipeline sweep on the Redis agents while a seeded schedule of faults runs.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/chaos.py --seed 1
    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/chaos.py --seed 2

Loopback only, everything throwaway: its own ``redis-server --appendonly yes`` on a free port (queue), a
fresh database on the PostgreSQL server at 127.0.0.1:5432 with trust auth (study; dropped at the end), an
artifact directory under a temporary directory. The sweep is a 20-point grid (resnet20_cifar on the built-in
digits, filter pruning of two stages, one retraining epoch, ONNX Runtime benchmark) run by 2 producers and 1
consumer, each ``python -m edgeprune agent ...`` as a user starts it. Faults, in a seeded order, each once a
seeded number of trials was handed off (so all strike while the sweep runs), after a seeded 0-2 s:

* ``kill -9`` of a random agent, restarted after a seeded pause (same name, so a consumer takes its own
  pending jobs back);
* SIGTERM of a random agent (it hands its work back), restarted likewise;
* one Redis restart (``kill -9`` of the server, same port and directory: the AOF brings the jobs back);
* one corrupted artifact: bytes appended to the stored ONNX file of a job not yet delivered (the consumer
  is paused with SIGSTOP meanwhile, so no fetch races the change).

Each fault's recovery time is measured to the event that undoes it: an agent's next unit of work after its
restart (a producer's next hand-off, a consumer's next tell), the next trial completed after the Redis
restart, the dead letter of the corrupted job. Then the invariants, checked on the study, the queue and the
logs: every grid point has exactly one COMPLETE trial with both objectives (the corrupted job's point at most
one: its trial fails with the dead letter), nothing is RUNNING, the only dead letter is the corrupted job, no
trial was told twice (a consumer's log says "done" once per trial at most; a killed one may not have said
it), no traceback in any log. Exit status 0 only when every invariant holds. Bounded: ``--time-limit``
seconds (default 900), five faults.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import psycopg
import redis
from optuna.trial import TrialState

from edgeprune.agents.messages import QUEUED_ATTR, AgentJob
from edgeprune.agents.queue import get_queue
from edgeprune.agents.redis_queue import GROUP
from edgeprune.sweep.config import load_sweep
from edgeprune.sweep.engine import SweepStudy

TEMPLATE = """\
version: 1
pruners:
  first:
    class: L1RankedStructureParameterPruner
    group_type: Filters
    desired_sparsity: ${first}
    weights: [module.layer1.0.conv1.weight, module.layer1.1.conv1.weight]
  second:
    class: L1RankedStructureParameterPruner
    group_type: Filters
    desired_sparsity: ${second}
    weights: [module.layer2.0.conv1.weight, module.layer2.1.conv1.weight]
extensions:
  net_thinner: {class: FilterRemover, thinning_func_str: remove_filters, arch: resnet20_cifar, dataset: digits}
policies:
  - pruner: {instance_name: first}
    epochs: [0]
  - pruner: {instance_name: second}
    epochs: [0]
  - extension: {instance_name: net_thinner}
    epochs: [0]
"""
FIRST, SECOND = (0.2, 0.4, 0.6, 0.8), (0.2, 0.35, 0.5, 0.65, 0.8)
SWEEP = f"""\
name: chaos
method: grid
objectives: [{{name: top1, goal: maximize}}, {{name: latency_ms, goal: minimize}}]
parameters:
  first: {{values: {list(FIRST)}}}
  second: {{values: {list(SECOND)}}}
model: resnet20_cifar
data: digits
schedule_template: template.yaml
retrain: {{epochs: 1, batch_size: 128}}
export: {{exporter: torchscript, parity_images: 8}}
benchmark: {{backend: onnxruntime, threads: 1, niter: 20, warmup: 2, budget_s: 0.2}}
"""
PG = ("127.0.0.1", 5432, ("postgres", "root"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A private ``redis-server --appendonly yes``; kill() and start() again is a crash and a restart."""

    def __init__(self, directory: Path) -> None:
        self.port, self.dir, self.proc = free_port(), directory, None
        directory.mkdir(parents=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
                                      str(self.dir), "--appendonly", "yes", "--save", ""],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                if redis.Redis(port=self.port, socket_connect_timeout=1).ping():
                    return
            except redis.exceptions.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait()


class Database:
    """A throwaway PostgreSQL database, dropped on close."""

    def __init__(self) -> None:
        host, port, users = PG
        errors = []
        for user in users:
            try:
                self.admin = psycopg.connect(host=host, port=port, user=user, dbname="postgres", autocommit=True,
                                             connect_timeout=3)
                break
            except psycopg.OperationalError as exc:
                errors.append(str(exc).strip())
        else:
            sys.exit(f"PostgreSQL at {host}:{port} is unreachable: {'; '.join(errors)}")
        self.name = f"edgeprune_chaos_{uuid.uuid4().hex[:10]}"
        self.admin.execute(f'CREATE DATABASE "{self.name}"')
        self.url = f"postgresql://{user}@{host}:{port}/{self.name}"

    def close(self) -> None:
        self.admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        self.admin.close()


@dataclass
class Agent:
    role: str  # producer | consumer
    name: str
    argv: list[str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen(self.argv, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            assert self.proc is not None
            os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@dataclass
class Fault:
    kind: str
    target: str
    at: float
    recovered_at: float | None = None
    note: str = ""
    recovery: Any = field(default=None, repr=False)  # () -> bool: the fault is undone

    @property
    def recovery_s(self) -> float | None:
        return None if self.recovered_at is None else self.recovered_at - self.at


class Chaos:
    def __init__(self, seed: int, root: Path, time_limit: float) -> None:
        self.rng, self.root, self.deadline = random.Random(seed), root, time.monotonic() + time_limit
        self.redis, self.db = RedisServer(root / "redis"), Database()
        self.redis.start()
        files = root / "sweep"
        files.mkdir()
        (files / "template.yaml").write_text(TEMPLATE)
        (files / "sweep.yaml").write_text(SWEEP)
        self.sweep_file = files / "sweep.yaml"
        self.cfg = load_sweep(self.sweep_file)
        self.logs = root / "logs"
        self.logs.mkdir()
        base = [sys.executable, "-m", "edgeprune", "agent"]
        common = ["--queue", self.redis.url, "--storage", self.db.url]
        self.agents = {f"producer-{i}": Agent("producer", f"producer-{i}", [
            *base, "producer", "--sweep", str(self.sweep_file), *common, "--artifacts", str(root / "artifacts"),
            "--work-dir", str(root / "work"), "--threads", "1", "--name", f"producer-{i}"],
            self.logs / f"producer-{i}.log") for i in range(2)}
        self.agents["consumer"] = Agent("consumer", "consumer", [
            *base, "consumer", *common, "--name", "consumer", "--work-dir", str(root / "consumer"),
            "--visibility-timeout", "10", "--max-deliveries", "3", "--retry-delay", "0.5"], self.logs / "consumer.log")
        self.faults: list[Fault] = []
        self.corrupted: set[int] = set()
        self._study: SweepStudy | None = None

    # --------------------------------------------------------------------------------------- observing
    def study(self) -> SweepStudy:
        """The sweep's study, opened once the first producer created it."""
        if self._study is None:
            self._study = SweepStudy(self.cfg, self.db.url)
        return self._study

    def trials(self) -> list[Any]:
        try:
            return self.study().trials()
        except Exception:  # the study is created by the first producer
            return []

    def done(self) -> bool:
        """Every grid point finished (complete, or failed by a dead letter), nothing RUNNING, the queue empty."""
        trials = self.trials()
        points = {(t.params.get("first"), t.params.get("second")) for t in trials
                  if t.state == TrialState.COMPLETE or (t.state == TrialState.FAIL and t.number in self.corrupted)}
        if len(points) < len(FIRST) * len(SECOND) or any(t.state == TrialState.RUNNING for t in trials):
            return False
        try:
            counts = get_queue(self.redis.url).counts(self.cfg.study_name)
        except Exception:
            return False
        return not counts.queued and not counts.in_flight

    def completed_after(self, moment: float) -> bool:
        return any(t.state == TrialState.COMPLETE and t.datetime_complete.timestamp() > moment for t in self.trials())

    def handed_off(self) -> int:
        return sum(QUEUED_ATTR in t.user_attrs for t in self.trials())

    def handed_off_after(self, producer: str, moment: float) -> bool:
        return any((t.user_attrs.get(QUEUED_ATTR) or {}).get("producer") == producer and
                   t.user_attrs[QUEUED_ATTR]["at"] > moment for t in self.trials())

    def wait(self, seconds: float) -> None:
        """Sleep while checking pending recoveries; gives up past the time limit."""
        end = time.monotonic() + seconds
        while True:
            if time.monotonic() > self.deadline:
                raise TimeoutError("the time limit ran out")
            now = time.time()
            for fault in self.faults:
                if fault.recovered_at is None and self.holds(fault.recovery):
                    fault.recovered_at = now
            if time.monotonic() >= end:
                return
            time.sleep(0.25)

    @staticmethod
    def holds(condition: Any) -> bool:
        """``condition()``, false while what it reads is unreachable (the Redis restart)."""
        try:
            return bool(condition())
        except Exception:
            return False

    # ------------------------------------------------------------------------------------------ faults
    def agent_fault(self, kind: str, sig: int) -> None:
        agent = self.agents[self.rng.choice(sorted(self.agents))]
        pause = self.rng.uniform(1.0, 3.0)
        at = time.time()
        agent.signal(sig)
        fault = Fault(kind, agent.name, at, note=f"restarted after {pause:.1f} s")
        self.wait(pause)
        agent.start()
        restarted = time.time()
        if agent.role == "producer":
            fault.recovery = lambda: self.handed_off_after(agent.name, restarted) or self.grid_taken()
        else:
            fault.recovery = lambda: self.completed_after(restarted) or self.done()
        self.faults.append(fault)

    def grid_taken(self) -> bool:
        """Nothing left for a producer to ask (so a restarted one has no hand-off to show)."""
        return self.study().stop_reason() is not None

    def redis_restart(self) -> None:
        at = time.time()
        self.redis.kill()
        self.redis.start()
        self.faults.append(Fault("redis restart", f"redis-server :{self.redis.port}", at,
                                 note="kill -9, restarted at once with its AOF",
                                 recovery=lambda: self.completed_after(at) or self.done()))

    def corrupt(self) -> None:
        """Append bytes to the stored artifact of a job no consumer has received yet. The consumer is paused
        (SIGSTOP) from choosing the job until the file is changed, so no fetch races the corruption."""
        client = redis.Redis.from_url(self.redis.url, decode_responses=True)
        key = f"edgeprune:sweep:{self.cfg.study_name}:jobs"
        consumer = self.agents["consumer"]
        paused = consumer.alive()
        if paused:
            assert consumer.proc is not None
            os.kill(consumer.proc.pid, signal.SIGSTOP)
        try:
            while True:
                try:
                    body = self.undelivered(client, key)
                except redis.exceptions.RedisError:  # restarting
                    body = None
                if body is not None:
                    job = AgentJob.model_validate_json(body)
                    at = time.time()
                    with open(job.artifact.uri.removeprefix("file://"), "ab") as fh:
                        fh.write(b"corrupted by the chaos benchmark")
                    number = job.job.trial_number
                    self.corrupted.add(number)
                    self.faults.append(Fault("corrupted artifact", f"trial {number}", at,
                                             note="bytes appended to the stored ONNX file of a job not yet delivered",
                                             recovery=lambda n=number: self.dead_lettered(n)))
                    return
                self.wait(0.2)
        finally:
            if paused:
                assert consumer.proc is not None
                os.kill(consumer.proc.pid, signal.SIGCONT)

    @staticmethod
    def undelivered(client: redis.Redis, key: str) -> str | None:
        """The body of the first job of the stream that the consumer group has not delivered yet."""
        groups = client.xinfo_groups(key) if client.exists(key) else []
        delivered = next((g["last-delivered-id"] for g in groups if g["name"] == GROUP), "0-0")
        entries = client.xrange(key, f"({delivered}", "+", count=1)
        return entries[0][1]["body"] if entries else None

    def dead_lettered(self, number: int) -> bool:
        letters = get_queue(self.redis.url).dead_letters(self.cfg.study_name)
        return any(json.loads(d.body)["job"]["trial_number"] == number for d in letters)

    # --------------------------------------------------------------------------------------------- run
    def run(self) -> dict[str, Any]:
        started = time.time()
        for agent in self.agents.values():
            agent.start()
        plan = [("kill -9", signal.SIGKILL), ("SIGTERM", signal.SIGTERM), ("kill -9", signal.SIGKILL),
                ("redis restart", None), ("corrupted artifact", None)]
        self.rng.shuffle(plan)
        points = len(FIRST) * len(SECOND)  # each fault strikes once so many trials were handed off, so all of
        milestones = sorted(self.rng.sample(range(1, points - 4), len(plan)))  # them land while the sweep runs
        for (kind, sig), milestone in zip(plan, milestones, strict=True):
            while not self.holds(lambda m=milestone: self.handed_off() >= m):
                self.wait(0.5)
            self.wait(self.rng.uniform(0.0, 2.0))
            if kind == "redis restart":
                self.redis_restart()
            elif kind == "corrupted artifact":
                self.corrupt()
            else:
                self.agent_fault(kind, sig)
            print(f"{time.time() - started:6.1f} s  {kind}: {self.faults[-1].target}", flush=True)
        while not (self.holds(self.done) and all(f.recovered_at is not None for f in self.faults)):
            self.wait(1.0)
        wall = time.time() - started
        for agent in self.agents.values():
            agent.signal(signal.SIGTERM)
        return {"wall_s": round(wall, 1), "faults": self.faults, "invariants": self.invariants()}

    def invariants(self) -> dict[str, tuple[bool, str]]:
        trials = self.trials()
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        per_point = Counter((t.params["first"], t.params["second"]) for t in complete)
        corrupted_points = {(t.params["first"], t.params["second"]) for t in trials if t.number in self.corrupted}
        grid = [(a, b) for a in FIRST for b in SECOND]
        missing = [p for p in grid if per_point[p] == 0 and p not in corrupted_points]
        doubled = [p for p in grid if per_point[p] > 1]
        valued = all(t.values is not None and len(t.values) == 2 and all(v is not None for v in t.values)
                     for t in complete)
        letters = get_queue(self.redis.url).dead_letters(self.cfg.study_name)
        dead = sorted(json.loads(d.body)["job"]["trial_number"] for d in letters)
        logs = {p.name: p.read_text(errors="replace") for p in self.logs.glob("*.log")}
        told = Counter(int(n) for n in re.findall(r"trial (\d+) \S*done\S*:", logs["consumer.log"]))
        twice = sorted(n for n, c in told.items() if c > 1)
        unmeasured = len(re.findall(r"is finished already", logs["consumer.log"]))
        traced = sorted(name for name, text in logs.items() if "Traceback" in text)
        running = [t.number for t in trials if t.state == TrialState.RUNNING]
        return {
            "one COMPLETE trial per grid point, with both values": (
                not missing and not doubled and valued,
                f"{len(complete)} complete over {len(grid)} points; missing {missing}, doubled {doubled}"),
            "nothing RUNNING": (not running, f"running: {running}"),
            "dead letters only for the corrupted artifact": (
                dead == sorted(self.corrupted), f"dead-lettered trials {dead}, corrupted {sorted(self.corrupted)}"),
            "no trial measured and told twice": (
                not twice and not doubled, f"told twice: {twice}; {unmeasured} redelivered jobs of finished trials "
                                           "acknowledged unmeasured"),
            "no traceback in any log": (not traced, f"logs with a traceback: {traced}"),
        }

    def close(self) -> None:
        for agent in self.agents.values():
            if agent.alive():
                agent.signal(signal.SIGKILL)
        self.redis.kill(signal.SIGTERM)
        self.db.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--time-limit", type=float, default=900.0, help="seconds before it gives up (fails)")
    parser.add_argument("--keep", type=Path, help="keep the run directory (logs, artifacts) here")
    args = parser.parse_args()
    if shutil.which("redis-server") is None:
        sys.exit("redis-server is not installed")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    root = Path(tempfile.mkdtemp(prefix="edgeprune-chaos-"))
    try:
        chaos = Chaos(args.seed, root, args.time_limit)
        try:
            result = chaos.run()
        finally:
            chaos.close()
            if args.keep:
                shutil.copytree(root, args.keep, dirs_exist_ok=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"seed {args.seed}: {len(FIRST) * len(SECOND)}-point grid, 2 producers + 1 consumer, "
          f"{result['wall_s']} s wall")
    print("faults injected (recovery: until the event that undoes the fault):")
    for f in result["faults"]:
        print(f"  t={f.at - result['faults'][0].at:6.1f} s  {f.kind:<18} {f.target:<28} "
              f"recovered in {f.recovery_s:5.1f} s  ({f.note})")
    print("invariants:")
    for name, (ok, detail) in result["invariants"].items():
        print(f"  [{'PASS' if ok else 'FAIL'}] {name}: {detail}")
    return 0 if all(ok for ok, _ in result["invariants"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
