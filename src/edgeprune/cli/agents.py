"""``edgeprune agent producer|consumer|janitor``: the agents of a sweep spread over machines."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgeprune.cli.app import (
    AgentNameOpt,
    AgentStorageOpt,
    ArtifactsOpt,
    QueueOpt,
    SweepsOpt,
    WorkDirOpt,
    agent_storage,
    app,
    err,
    exit_interrupted,
    out,
)

agent_app = typer.Typer(no_args_is_help=True, help="Producer/consumer agents: produce a sweep's trials on some "
                                                   "machines, measure them on others.")
app.add_typer(agent_app, name="agent")


@agent_app.command("producer")
def agent_producer(
    sweep: Annotated[str, typer.Option("--sweep", help="A sweep file (it is registered in the queue), or the name "
                                                       "of a sweep registered there.")],
    storage: AgentStorageOpt = None,
    queue: QueueOpt = None,
    artifacts: ArtifactsOpt = None,
    work_dir: WorkDirOpt = None,
    max_trials: Annotated[int | None, typer.Option("--max-trials", help="Stop after producing N trials.")] = None,
    max_queued: Annotated[int, typer.Option("--max-queued", help="Ask no trial while N jobs wait unmeasured.")] = 4,
    stop_at: Annotated[int | None, typer.Option("--stop-at", help="Ask no trial once the study counts N trials "
                                                                  "(a run_cap for this run).")] = None,
    threads: Annotated[int | None, typer.Option(min=1, help="Training threads (default: all usable CPUs).")] = None,
    name: AgentNameOpt = None,
) -> None:
    """Ask the study, prune + retrain + export each trial to a verified ONNX, and queue it for the consumers."""
    from edgeprune.agents.artifacts import get_artifact_store
    from edgeprune.agents.producer import Producer
    from edgeprune.agents.queue import DEFAULT_DIR, get_queue
    from edgeprune.agents.sweeps import resolve_sweep

    q = get_queue(queue)
    cfg = resolve_sweep(sweep, q, work_dir or DEFAULT_DIR)
    producer = Producer(cfg, agent_storage(storage), q, get_artifact_store(artifacts), work_dir=work_dir, name=name,
                        threads=threads, max_trials=max_trials, max_queued=max_queued, stop_at=stop_at, console=err)
    from edgeprune.signals import sigterm_as_interrupt

    try:
        with sigterm_as_interrupt():
            produced = producer.run()
    except KeyboardInterrupt:
        err.print(f"interrupted: trial {', '.join(map(str, producer.handed_back))} is queued again"
                  if producer.handed_back else "interrupted: no trial was being produced, nothing to queue again")
        exit_interrupted()
    out.print(f"{cfg.study_name}: {produced} trials produced by {producer.name}")


@agent_app.command("consumer")
def agent_consumer(
    queue: QueueOpt = None,
    storage: AgentStorageOpt = None,
    sweep: SweepsOpt = None,
    artifacts: ArtifactsOpt = None,
    work_dir: WorkDirOpt = None,
    backend: Annotated[str | None, typer.Option(help="openvino | onnxruntime (default: the sweep's).")] = None,
    device: Annotated[str | None, typer.Option(help="CPU | GPU | NPU | AUTO, or MYRIAD on OpenVINO 2022.3 "
                                                    "(default: the sweep's).")] = None,
    threads: Annotated[int | None, typer.Option(min=1, help="Inference threads (default: the sweep's).")] = None,
    niter: Annotated[int | None, typer.Option(min=1, help="Timed iterations per round (default: the sweep's).")
                     ] = None,
    warmup: Annotated[int | None, typer.Option(min=0, help="Untimed iterations (default: the sweep's).")] = None,
    budget: Annotated[float | None, typer.Option(min=0, help="Seconds of repeated rounds (default: the sweep's).")
                      ] = None,
    name: AgentNameOpt = None,
    visibility_timeout: Annotated[float, typer.Option(help="Seconds before a job whose consumer went silent goes "
                                                           "to another.")] = 60.0,
    max_deliveries: Annotated[int, typer.Option(help="Attempts per job before it is dead-lettered.")] = 3,
    retry_delay: Annotated[float, typer.Option(help="Seconds before a failed attempt is tried again.")] = 1.0,
    max_jobs: Annotated[int | None, typer.Option(help="Stop after handling N jobs.")] = None,
    exit_when_done: Annotated[bool, typer.Option("--exit-when-done", help="Stop once every served sweep is finished "
                                                                          "and no producer is alive.")] = False,
    stats: Annotated[Path | None, typer.Option(help="Write what this consumer did (busy fraction ...) as JSON.")
                     ] = None,
    quiet_wait: Annotated[float, typer.Option(help="Before measuring, wait up to S seconds for producers on this "
                                                   "machine to stop producing (they share its CPU).")] = 0.0,
) -> None:
    """Fetch and verify each queued artifact, benchmark it, tell the study, acknowledge; serves several sweeps, and
    the files latency searches send (edgeprune search --queue)."""
    from edgeprune.agents.artifacts import get_artifact_store
    from edgeprune.agents.consumer import Consumer
    from edgeprune.agents.queue import get_queue
    from edgeprune.fileio import write_json

    bench = {"backend": backend, "device": device, "threads": threads, "niter": niter, "warmup": warmup,
             "budget_s": budget}
    consumer = Consumer(get_queue(queue, visibility_timeout_s=visibility_timeout), agent_storage(storage),
                        name=name, sweeps=sweep, artifacts=get_artifact_store(artifacts), work_dir=work_dir,
                        bench={k: v for k, v in bench.items() if v is not None}, max_deliveries=max_deliveries,
                        retry_delay_s=retry_delay, quiet_wait_s=quiet_wait, console=err)
    from edgeprune.signals import sigterm_as_interrupt

    try:
        with sigterm_as_interrupt():
            result = consumer.run(max_jobs=max_jobs, exit_when_done=exit_when_done)
    except KeyboardInterrupt:
        err.print(consumer_interrupted(consumer), highlight=False)
        exit_interrupted()
    if stats is not None:
        write_json(stats, result.to_dict())
    shown = ", ".join(f"{n} {outcome}" for outcome, n in sorted(result.outcomes.items())) or "no jobs"
    out.print(f"consumer {consumer.name}: {shown}; busy {result.busy_fraction:.0%} of the time")


def consumer_interrupted(consumer) -> str:
    """What an interrupted consumer gave back: the job it was measuring, or nothing when it was idle."""
    if not consumer.handed_back:
        return "interrupted: no job was being measured, nothing to give back"
    jobs = ", ".join(f"{d.sweep} job {d.message_id}" for d in consumer.handed_back)
    return f"interrupted: {jobs} went back to the queue for the next consumer"


@agent_app.command("janitor")
def agent_janitor(
    queue: QueueOpt = None,
    storage: AgentStorageOpt = None,
    sweep: SweepsOpt = None,
    work_dir: WorkDirOpt = None,
    every: Annotated[float, typer.Option(help="Seconds between passes.")] = 30.0,
    once: Annotated[bool, typer.Option("--once", help="One pass, then exit.")] = False,
) -> None:
    """Fail and queue again the trials whose producer died or whose job the queue lost (consumers do it too)."""
    from edgeprune.agents.janitor import run_janitor
    from edgeprune.agents.queue import DEFAULT_DIR, get_queue
    from edgeprune.agents.sweeps import SweepStudies

    studies = SweepStudies(get_queue(queue), agent_storage(storage), work_dir or DEFAULT_DIR)
    run_janitor(studies, sweep, every_s=every, once=once, console=err)
