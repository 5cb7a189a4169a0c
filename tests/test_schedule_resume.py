"""Resuming after the schedule file was edited: refused with the changes listed, or continued under the edit.

Before, the pruner attributes saved in the checkpoint silently overwrote the edited YAML's: a run resumed
after ``desired_sparsity: 0.25`` became ``0.75`` went on pruning 3 of 12 filters without a word.
"""

from __future__ import annotations

import json

import pytest
from rich.console import Console

from edgeprune.jobs.train import train_model
from edgeprune.models.checkpoint import load_checkpoint
from edgeprune.schedule.config import parse_schedule
from edgeprune.schedule.resume import (
    ABSENT,
    ScheduleChange,
    ScheduleChangedError,
    matching_policies,
    schedule_changes,
    schedule_document,
)
from edgeprune.training import TrainConfig

from .conftest import run_cli

MODEL = "tests.tiny_nets:tiny_resnet"
SCHEDULE = """\
pruners:
  filters:
    class: L1RankedStructureParameterPruner
    group_type: Filters
    desired_sparsity: {sparsity}
    weights: [conv2.weight]
policies:
  - pruner:
      instance_name: filters
    starting_epoch: 0
    ending_epoch: 10
    frequency: 1
"""


def _config(epochs: int) -> TrainConfig:
    return TrainConfig(epochs=epochs, batch_size=64, lr=0.05, device="cpu", progress=False, augment=False)


def _zero_filters(run) -> int:
    weight = load_checkpoint(run / "checkpoint.pth").state_dict["conv2.weight"]
    return int((weight.abs().sum(dim=(1, 2, 3)) == 0).sum())


def _first_epoch(tmp_path):
    schedule, run = tmp_path / "s.yaml", tmp_path / "run"
    schedule.write_text(SCHEDULE.format(sparsity=0.25))
    train_model(MODEL, "digits", run, _config(1), schedule=schedule)
    assert _zero_filters(run) == 3  # 25 % of conv2's 12 filters
    return schedule, run


def test_an_edited_schedule_is_refused_by_default_with_what_changed(tmp_path) -> None:
    schedule, run = _first_epoch(tmp_path)
    before = (run / "checkpoint.pth").read_bytes()
    schedule.write_text(SCHEDULE.format(sparsity=0.75))
    with pytest.raises(ScheduleChangedError) as info:
        train_model(MODEL, "digits", run, _config(3), schedule=schedule)
    assert "pruners.filters.desired_sparsity: 0.25 → 0.75" in info.value.message
    assert "--schedule-changed continue" in info.value.hint and "--no-resume" in info.value.hint
    assert (run / "checkpoint.pth").read_bytes() == before  # nothing lost, nothing trained


def test_continue_prunes_under_the_edited_schedule_from_the_next_epoch(tmp_path) -> None:
    schedule, run = _first_epoch(tmp_path)
    schedule.write_text(SCHEDULE.format(sparsity=0.75))
    console = Console(record=True, width=200)
    result, _ = train_model(MODEL, "digits", run, _config(3), schedule=schedule, schedule_changed="continue",
                            console=console)
    assert [h["epoch"] for h in result.history] == [0, 1, 2]  # resumed, not restarted
    assert _zero_filters(run) == 9  # 75 % of 12, the edited value
    text = console.export_text()
    assert "pruners.filters.desired_sparsity: 0.25 → 0.75" in text
    assert "policies[0] (pruner 'filters') starts afresh at epoch 1" in text


def test_an_unedited_schedule_resumes_silently_even_if_reformatted(tmp_path) -> None:
    schedule, run = _first_epoch(tmp_path)
    schedule.write_text("# the same schedule, re-indented\n" + SCHEDULE.format(sparsity=0.25).replace(
        "weights: [conv2.weight]", "weights:\n      - conv2.weight"))
    result, _ = train_model(MODEL, "digits", run, _config(2), schedule=schedule)
    assert len(result.history) == 2 and _zero_filters(run) == 3


def test_dropping_or_adding_the_schedule_on_resume_is_a_change_too(tmp_path) -> None:
    """Without --schedule a pruned run's masks would silently stop; added, a schedule would start mid-run."""
    _, run = _first_epoch(tmp_path)
    with pytest.raises(ScheduleChangedError, match="trained under a compression schedule and no --schedule") as info:
        train_model(MODEL, "digits", run, _config(2))
    assert "Give the --schedule it was trained under" in info.value.hint
    console = Console(record=True, width=200)
    train_model(MODEL, "digits", run, _config(2), schedule_changed="continue", console=console)
    assert "its masks are no longer applied" in console.export_text()

    plain, schedule = tmp_path / "plain", tmp_path / "s.yaml"
    train_model(MODEL, "digits", plain, _config(1))
    with pytest.raises(ScheduleChangedError, match="trained without a compression schedule: resuming under"):
        train_model(MODEL, "digits", plain, _config(2), schedule=schedule)
    console = Console(record=True, width=200)
    train_model(MODEL, "digits", plain, _config(2), schedule=schedule, schedule_changed="continue", console=console)
    assert "its policies of epochs before 1 never fire" in console.export_text()


def test_changes_are_listed_by_key_path() -> None:
    old = {"pruners": {"p": {"class": "X", "desired_sparsity": 0.5, "weights": ["a", "b"]}}, "policies": [{"a": 1}]}
    new = {"pruners": {"p": {"class": "X", "desired_sparsity": 0.5, "weights": ["a", "c"], "noise": 0.1}},
           "policies": [{"a": 1}, {"b": 2}]}
    changes = schedule_changes(old, new)
    assert changes == [ScheduleChange(("pruners", "p", "weights", 1), "b", "c"),
                       ScheduleChange(("pruners", "p", "noise"), ABSENT, 0.1),
                       ScheduleChange(("policies",), [{"a": 1}], [{"a": 1}, {"b": 2}])]
    assert str(changes[1]) == "pruners.p.noise: (absent) → 0.1"
    assert schedule_changes({"x": 1}, {"x": 1.0}) == [] and schedule_changes({"x": 1}, {"x": True}) != []


def test_the_recorded_schedule_is_plain_json_data(tmp_path) -> None:
    """A YAML date (``version: 2020-01-01``) would make the checkpoint unreadable by a weights-only loader."""
    document = schedule_document(parse_schedule("version: 2020-01-01\n" + SCHEDULE.format(sparsity=0.25)))
    assert json.loads(json.dumps(document)) == document and document["version"] == "2020-01-01"


def test_only_policies_whose_definition_changed_start_afresh() -> None:
    second = "  - pruner:\n      instance_name: filters\n    epochs: [{epoch}]\n"
    old = schedule_document(parse_schedule(SCHEDULE.format(sparsity=0.25) + second.format(epoch=3)))
    moved = schedule_document(parse_schedule(SCHEDULE.format(sparsity=0.25) + second.format(epoch=4)))
    edited = schedule_document(parse_schedule(SCHEDULE.format(sparsity=0.5) + second.format(epoch=3)))
    assert matching_policies(old, old) == [0, 1]
    assert matching_policies(old, moved) == [0, None]
    assert matching_policies(old, edited) == [None, None]  # both drive the edited pruner


def test_the_cli_refuses_in_one_paragraph(tmp_path) -> None:
    schedule, run = _first_epoch(tmp_path)
    schedule.write_text(SCHEDULE.format(sparsity=0.75))
    refused = run_cli("train", MODEL, "--data", "digits", "--epochs", "3", "--schedule", str(schedule),
                      "-o", str(run))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    assert "desired_sparsity: 0.25 → 0.75" in refused.stderr and "--schedule-changed continue" in refused.stderr
