"""A consumer on OpenVINO 2022.3 LTS (the Neural Compute Stick 2's last runtime) fed by producers on today's stack.

The consumer runs in a real Python 3.10 venv with ``openvino==2022.3.2`` and ``edgeprune[consumer]`` — no torch —
(:mod:`tests.consumer_venv`, cached), against a real Redis queue (its own key prefix); producers run here, with
torch 2.13 and OpenVINO 2026. Checked: every trial of a small sweep measured by 2022.3 and recorded, the 2022.3
model's accuracy equal to ONNX Runtime's on the same images, nothing dead-lettered; and a file 2022.3 cannot read
dead-lettered at once, with the reason said once. Without Python 3.10 the tests skip, saying so.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import uuid
from pathlib import Path

import numpy as np
import pytest
import yaml
from optuna.trial import TrialState
from rich.console import Console

from edgeprune.agents.artifacts import DirectoryStore
from edgeprune.agents.producer import Producer
from edgeprune.agents.queue import get_queue
from edgeprune.agents.sweeps import resolve_sweep
from edgeprune.data import load_dataset
from edgeprune.jobs.export import export_model
from edgeprune.measurement.images import prepare
from edgeprune.runtime.backends import RunSettings, open_runner
from edgeprune.runtime.modelfile import inspect_onnx
from edgeprune.sweep.config import load_sweep
from edgeprune.sweep.engine import SweepStudy
from edgeprune.sweep.job import ArtifactFormat, TrialJob, sha256_file

from .consumer_venv import NoPython310, consumer_python
from .test_agents_flow import TEMPLATE  # the same one-shot, thinned resnet20 schedule

pytest_plugins = ["tests.services"]
pytestmark = [pytest.mark.ov2022, pytest.mark.redis]

REPO = Path(__file__).resolve().parents[1]
SWEEP = {  # a two-point grid: resnet20 trained one epoch on digits, one-shot pruned and thinned, not fine-tuned
    "method": "grid", "model": "resnet20_cifar", "data": "digits", "schedule_template": "template.yaml",
    "objectives": [{"name": "top1", "goal": "maximize"}, {"name": "latency_ms", "goal": "minimize"}],
    "parameters": {"sparsity": {"values": [0.25, 0.75]}}, "pretrain": {"epochs": 1}, "retrain": {"epochs": 0},
    "benchmark": {"backend": "openvino", "threads": 1, "niter": 100, "warmup": 10, "budget_s": 0},
}
RUN_OV2022 = """\
import sys, numpy as np
from edgeprune.runtime.backends import RunSettings, open_runner
for model, inputs, out in zip(sys.argv[1::3], sys.argv[2::3], sys.argv[3::3]):
    np.save(out, open_runner("openvino", model, RunSettings(threads=1)).infer_all(np.load(inputs)))
"""


@pytest.fixture(scope="module")
def ov2022() -> Path:
    """The Python of the device host's venv: 3.10, OpenVINO 2022.3.2, edgeprune[consumer]."""
    try:
        return consumer_python()
    except NoPython310 as exc:
        pytest.skip(f"NOT TESTED — the consumer on OpenVINO 2022.3 LTS: {exc}")


def host_env() -> dict[str, str]:
    """The venv runs this checkout's sources (the installed copy proved the install target)."""
    return {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1", "COLUMNS": "200"}


def write_sweep(directory: Path) -> Path:
    (directory / "template.yaml").write_text(TEMPLATE)
    (directory / "sweep.yaml").write_text(yaml.safe_dump({"name": f"ov2022-{uuid.uuid4().hex[:8]}", **SWEEP}))
    return directory / "sweep.yaml"


def consumer_cmd(python: Path, queue: str, storage: str, work: Path, *more: str) -> list[str]:
    return [str(python), "-m", "edgeprune", "agent", "consumer", "--queue", queue, "--storage", storage,
            "--work-dir", str(work / "consumer"), "--name", "ov2022-consumer", "--stats", str(work / "stats.json"),
            "--retry-delay", "0.1", *more]


def test_the_venv_is_a_device_host_without_torch(ov2022: Path) -> None:
    done = subprocess.run([str(ov2022), "-c", "import sys, openvino.runtime as ov; print(sys.version_info[:2], "
                           "ov.get_version()); import torch"], capture_output=True, text=True, env=host_env())
    assert done.stdout.startswith("(3, 10) 2022.3.2"), done.stdout + done.stderr
    assert "No module named 'torch'" in done.stderr


def test_a_2022_3_consumer_measures_every_trial_of_a_sweep_produced_on_todays_stack(
        ov2022: Path, redis_url: str, redis_prefix: str, tmp_path: Path) -> None:
    queue_url, storage = f"{redis_url}?prefix={redis_prefix}", f"sqlite:///{tmp_path / 'study.db'}"
    sweep = write_sweep(tmp_path)
    with open(tmp_path / "consumer.log", "w") as log:
        consumer = subprocess.Popen(consumer_cmd(ov2022, queue_url, storage, tmp_path, "--exit-when-done"),
                                    stdout=log, stderr=subprocess.STDOUT, env=host_env())
        try:
            q = get_queue(queue_url)
            cfg = resolve_sweep(str(sweep), q, tmp_path / "producer")
            producer = Producer(cfg, storage, q, DirectoryStore(tmp_path / "artifacts"), threads=1,
                                work_dir=tmp_path / "producer", console=Console(file=io.StringIO()))
            assert producer.run() == 2
            assert consumer.wait(timeout=300) == 0
        finally:
            consumer.kill()
    output = (tmp_path / "consumer.log").read_text()
    assert json.loads((tmp_path / "stats.json").read_text())["outcomes"] == {"measured": 2}, output
    assert "dense model measured" in output
    counts = q.counts(cfg.study_name)
    assert (counts.queued, counts.in_flight, counts.dead) == (0, [], 0) and q.dead_letters(cfg.study_name) == []

    trials = SweepStudy(load_sweep(sweep), storage).trials()
    assert sorted(t.params["sparsity"] for t in trials) == [0.25, 0.75]
    assert all(t.state == TrialState.COMPLETE for t in trials)
    test = load_dataset("digits", "test")
    for trial in trials:
        metrics, files = trial.user_attrs["metrics"], trial.user_attrs["artifacts"]
        bench = json.loads(Path(files["bench"]).read_text())
        assert bench["environment"]["versions"]["openvino"] == "2022.3.2"
        assert bench["environment"]["versions"]["torch"] is None
        assert bench["device_plugin"].startswith("openvino_intel_cpu_plugin 2022.3.2")
        assert bench["latency_iterations"] == bench["e2e_iterations"] == 100 and bench["precision_used"] == "f32"
        assert metrics["latency_ms"] == bench["latency_median_ms"] > 0 and metrics["throughput_fps"] > 0
        assert json.loads(Path(files["job"]).read_text())["artifact_format"] == {"format": "onnx", "opset": 17,
                                                                                  "exporter": "torchscript"}
        # the same images through OpenVINO 2022.3 (in the venv) and ONNX Runtime (here): the same accuracy
        onnx = Path(files["onnx"])
        x = prepare(test.images, inspect_onnx(onnx).metadata["normalize"])
        np.save(tmp_path / "x.npy", x)
        done = subprocess.run([str(ov2022), "-c", RUN_OV2022, str(onnx), str(tmp_path / "x.npy"),
                               str(tmp_path / "ov.npy")], capture_output=True, text=True, env=host_env(), timeout=300)
        assert done.returncode == 0, done.stderr
        ov_logits = np.load(tmp_path / "ov.npy")
        ort_logits = open_runner("onnxruntime", str(onnx), RunSettings(threads=1)).infer_all(x)
        ov_top1, ort_top1 = (float(np.mean(a.argmax(1) == test.labels)) for a in (ov_logits, ort_logits))
        assert ov_top1 == ort_top1
        assert np.abs(ov_logits - ort_logits).max() <= 1e-4 * np.abs(ort_logits).max()
        assert abs(100 * ort_top1 - metrics["top1"]) <= 100 / len(test) + 1e-9  # PyTorch's, recorded by the producer


def test_a_file_2022_3_cannot_read_is_dead_lettered_at_once_with_the_reason(
        ov2022: Path, redis_url: str, redis_prefix: str, tmp_path: Path) -> None:
    """The dynamo exporter writes opset >= 18, whose reductions 2022.3 misreads: refused on the first delivery."""
    queue_url, storage = f"{redis_url}?prefix={redis_prefix}", f"sqlite:///{tmp_path / 'study.db'}"
    sweep = write_sweep(tmp_path)
    q = get_queue(queue_url)
    producer = Producer(resolve_sweep(str(sweep), q, tmp_path / "producer"), storage, q,
                        DirectoryStore(tmp_path / "artifacts"), threads=1, work_dir=tmp_path / "producer",
                        console=Console(file=io.StringIO()))
    exported = export_model("tests.tiny_nets:tiny_resnet", tmp_path / "dynamo.onnx", exporter="dynamo")
    onnx = exported.onnx
    assert exported.opset >= 18
    asked = producer.study.ask()
    assert asked is not None
    job = TrialJob(study_name=producer.sweep, trial_number=asked.trial.number, values=asked.values,
                   artifact=str(onnx), artifact_sha256=sha256_file(onnx), checkpoint="", schedule="",
                   input_shape=[1, 8, 8], metrics={}, history=[], benchmark=producer.cfg.benchmark, host="here",
                   artifact_format=ArtifactFormat(opset=exported.opset, exporter="dynamo"))
    producer.hand_off(asked.trial, job)
    q.forget_producer(producer.sweep, producer.name)
    done = subprocess.run(consumer_cmd(ov2022, queue_url, storage, tmp_path, "--max-jobs", "1"),
                          capture_output=True, text=True, env=host_env(), timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "stats.json").read_text())["outcomes"] == {"dead": 1}
    [dead] = q.dead_letters(producer.sweep)
    assert dead.deliveries == 1
    assert "OpenVINO 2022.3.2 reads ONNX up to opset 17" in dead.reason
    assert f"has ONNX opset {exported.opset}, exported by torch.onnx dynamo" in dead.reason
    assert "exporter: torchscript" in dead.reason  # what to do about it
    assert done.stderr.count("reads ONNX up to opset 17") == 1 and "Traceback" not in done.stderr
    [trial] = producer.study.trials()
    assert trial.state == TrialState.FAIL
    assert trial.user_attrs["error"].startswith("dead-lettered after 1 deliveries: this consumer cannot read")


def test_an_ir_saved_by_openvino_2026_runs_on_2022_3_with_its_metadata(ov2022: Path, tmp_path: Path) -> None:
    """The other hand-over 2022.3 reads: an IR converted here, its edgeprune rt_info read back from the .xml."""
    exported = export_model("tests.tiny_nets:tiny_resnet", tmp_path / "tiny.onnx", openvino_dir=tmp_path,
                            exporter="torchscript")
    assert exported.ir is not None
    x = np.random.default_rng(0).standard_normal((16, 1, 8, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    show = "\nimport json\nprint(json.dumps(open_runner('openvino', sys.argv[1], RunSettings()).io.metadata))"
    done = subprocess.run([str(ov2022), "-c", RUN_OV2022 + show, str(exported.ir), str(tmp_path / "x.npy"),
                           str(tmp_path / "ov.npy")], capture_output=True, text=True, env=host_env(), timeout=300)
    assert done.returncode == 0, done.stderr
    metadata = json.loads(done.stdout)
    assert (metadata["arch"], metadata["input_shape"], metadata["ir_weights"]) == (exported.metadata["arch"], [1, 8, 8],
                                                                                    "f32")
    ort_logits = open_runner("onnxruntime", str(exported.onnx), RunSettings(threads=1)).infer_all(x)
    assert np.abs(np.load(tmp_path / "ov.npy") - ort_logits).max() <= 1e-4 * np.abs(ort_logits).max()


def test_myriad_without_a_stick_lists_the_devices_2022_3_sees(ov2022: Path, tmp_path: Path) -> None:
    onnx = export_model("tests.tiny_nets:tiny_resnet", tmp_path / "tiny.onnx", exporter="torchscript", opset=17).onnx
    done = subprocess.run([str(ov2022), "-m", "edgeprune", "bench", str(onnx), "--backend", "openvino", "--device",
                           "MYRIAD"], capture_output=True, text=True, env=host_env(), timeout=300)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    text = " ".join(done.stderr.split())
    assert "Device 'MYRIAD' is not available to OpenVINO 2022.3.2 on this machine. Available: CPU" in text
    assert "no MYRIAD plugin (the pip wheel of 2022.3 ships none)" in text
    assert "removed from OpenVINO" not in text  # that explanation is for OpenVINO >= 2023 (tests/test_bench.py)
