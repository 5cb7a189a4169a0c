"""A producer on its own, over the embedded queue and a SQLite study: hyperband stops a hopeless trial in the middle
of its retraining, where the producer sees each epoch, and nothing is queued for it."""

from __future__ import annotations

import io
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from rich.console import Console

from edgeprune.agents.artifacts import DirectoryStore
from edgeprune.agents.producer import Producer
from edgeprune.agents.queue import get_queue
from edgeprune.agents.sweeps import resolve_sweep
from edgeprune.sweep.prepare import prepare_base
from tests.test_agents_flow import TEMPLATE

pytest.importorskip("onnxruntime", reason="pipeline trials export ONNX: pip install 'edgeprune[sweep]'")

SWEEP = """\
name: hb
method: random
metric: {name: top1, goal: maximize}
early_terminate: {type: hyperband, min_iter: 1, eta: 2}
parameters:
  sparsity: {values: [0.7, 0.75]}
model: resnet20_cifar
data: digits
schedule_template: template.yaml
retrain: {epochs: 3, batch_size: 128}
export: {exporter: torchscript, parity_images: 8}
"""


def test_hyperband_stops_a_hopeless_trial_after_the_epoch_of_its_band(tmp_path: Path) -> None:
    (tmp_path / "template.yaml").write_text(TEMPLATE)
    (tmp_path / "sweep.yaml").write_text(SWEEP)
    queue = get_queue(f"sqlite:///{tmp_path / 'queue.db'}")
    cfg = resolve_sweep(str(tmp_path / "sweep.yaml"), queue, tmp_path)
    log = io.StringIO()
    producer = Producer(cfg, f"sqlite:///{tmp_path / 'study.db'}", queue, DirectoryStore(tmp_path / "artifacts"),
                        work_dir=tmp_path, threads=1, console=Console(file=log, width=200))
    for _ in range(3):  # earlier trials reached 99.5 % by epoch 1 (band 1): an untrained net will not
        earlier = producer.study.ask()
        assert earlier is not None
        producer.study.complete(earlier.trial, {"top1": 99.5}, history=[{"epoch": 0.0, "top1": 99.0},
                                                                        {"epoch": 1.0, "top1": 99.5}])
    producer.base = prepare_base(cfg, tmp_path, Console(file=io.StringIO()))
    producer.produce_one()
    pruned = producer.study.trials()[-1]
    assert pruned.state == TrialState.PRUNED, pruned.user_attrs.get("error")
    assert pruned.user_attrs["error"] == "stopped by hyperband: top1 after step 1 is worse than its band"
    assert [row["epoch"] for row in pruned.user_attrs["history"]] == [0.0, 1.0]  # recorded live, epoch by epoch
    assert pruned.intermediate_values.keys() == {0, 1} and producer.produced == 0
    assert queue.counts("hb").queued == 0 and "pruned" in log.getvalue()
    assert optuna.load_study(study_name="hb", storage=f"sqlite:///{tmp_path / 'study.db'}").trials[-1].state == \
        TrialState.PRUNED
