"""Compression schedules: Distiller's grammar and timing, the callback semantics, errors located in the YAML."""

from __future__ import annotations

import io
import logging
import re
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from edgeprune.models import create_model
from edgeprune.models.summary import model_summary
from edgeprune.schedule.config import ScheduleError, ScheduleWarning, load_schedule, parse_schedule
from edgeprune.schedule.policies import LRPolicy, PruningPolicy
from edgeprune.schedule.scheduler import CompressionScheduler
from edgeprune.schedule.timeline import timeline, timeline_runs, timeline_table

SEED = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "seed-schedule.yaml"

CONV2_PRUNER = """\
pruners:
  p1:
    class: L1RankedStructureParameterPruner
    group_type: Filters
    desired_sparsity: 0.5
    weights: [conv2.weight]
"""


def yaml_text(text: str) -> str:
    return textwrap.dedent(text)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "schedule.yaml"
    path.write_text(yaml_text(text))
    return path


def simplenet() -> nn.Module:
    torch.manual_seed(0)
    return create_model("simplenet_cifar")


def batches(n: int = 2, seed: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(4, 3, 32, 32, generator=g), torch.randint(0, 10, (4,), generator=g)) for _ in range(n)]


def train(sched: CompressionScheduler, model: nn.Module, opt: torch.optim.Optimizer, epochs: range,
          data: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    """The training loop's callback order (train/loop.py), on fixed data."""
    for epoch in epochs:
        sched.on_epoch_begin(epoch, model, opt)
        for step, (x, y) in enumerate(data):
            sched.on_minibatch_begin(epoch, step, len(data), opt)
            loss = sched.before_backward_pass(epoch, step, len(data), F.cross_entropy(model(x), y), opt)
            opt.zero_grad()
            loss.backward()
            sched.before_parameter_optimization(epoch, step, len(data), opt)
            opt.step()
            sched.on_minibatch_end(epoch, step, len(data), opt)
        sched.on_epoch_end(epoch, opt, {"top1": 50.0, "top5": 90.0, "loss": 1.0})


def zero_filters(weight: torch.Tensor) -> int:
    return int((weight.detach().flatten(1).abs().sum(1) == 0).sum())


def policy_text(timing: str, kind: str = "pruner", name: str = "p1") -> str:
    return f"{CONV2_PRUNER}policies:\n  - {kind}:\n      instance_name: {name}\n{textwrap.indent(timing, '    ')}"


# ------------------------------------------------------------------------------------- add_policy (§8.5)
@pytest.mark.parametrize(("timing", "metadata", "epochs"), [
    ("epochs: [1, 2, 3]\n", {"starting_epoch": 1, "ending_epoch": 4, "frequency": None}, [1, 2, 3]),
    ("epochs: [5]\n", {"starting_epoch": 5, "ending_epoch": 6, "frequency": None}, [5]),
    ("starting_epoch: 4\nending_epoch: 5\nfrequency: 1\n", {"starting_epoch": 4, "ending_epoch": 5, "frequency": 1},
     [4]),
    ("starting_epoch: 0\nending_epoch: 30\nfrequency: 2\n", {"starting_epoch": 0, "ending_epoch": 30, "frequency": 2},
     list(range(0, 30, 2))),
])
def test_policy_timing_forms(timing: str, metadata: dict, epochs: list[int]) -> None:
    spec = parse_schedule(policy_text(timing), "schedule.yaml")
    assert spec.policies[0].metadata == metadata
    sched = CompressionScheduler(simplenet(), spec)
    assert sched.policies[0].epochs == epochs
    assert sorted(sched.epoch_policies) == epochs


@pytest.mark.parametrize(("timing", "key_path", "phrase"), [
    ("{}\n", "policies[0]", "neither when it runs"),
    ("epochs: [1, 2, 3]\nstarting_epoch: 4\nending_epoch: 5\nfrequency: 1\n", "policies[0].starting_epoch",
     "not both"),
    ("starting_epoch: 4\nending_epoch: 5\n", "policies[0].starting_epoch", "missing frequency"),
    ("starting_epoch: 5\nending_epoch: 5\nfrequency: 1\n", "policies[0].ending_epoch", "starting_epoch < ending_epoch"),
    ("starting_epoch: -1\nending_epoch: 5\nfrequency: 1\n", "policies[0].ending_epoch", "0 <= starting_epoch"),
    ("starting_epoch: 0\nending_epoch: 5\nfrequency: 6\n", "policies[0].frequency", "frequency <="),
    ("starting_epoch: 0\nending_epoch: 5\nfrequency: 0\n", "policies[0].frequency", "0 < frequency"),
    ("epochs: []\n", "policies[0].epochs", "empty"),
    ("epochs: [3, 1]\n", "policies[0].epochs[1]", "increasing"),
])
def test_policy_timing_errors(timing: str, key_path: str, phrase: str) -> None:
    text = policy_text(timing).replace("    {}\n", "")
    with pytest.raises(ScheduleError) as info:
        parse_schedule(text, "schedule.yaml")
    assert info.value.key_path == key_path
    assert phrase in str(info.value)
    assert str(info.value).startswith("schedule.yaml:")


# ------------------------------------------------------------------------------------------ flattened form
def test_flattened_policy_is_read_as_canonical_with_a_warning() -> None:
    canonical = f"""{CONV2_PRUNER}policies:
  - pruner:
      instance_name: p1
      args: {{keep_mask: true}}
    epochs: [0, 1]
"""
    flattened = f"""{CONV2_PRUNER}policies:
  - pruner:
    instance_name: p1
    args: {{keep_mask: true}}
    epochs: [0, 1]
"""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        expected = parse_schedule(canonical, "schedule.yaml")
    canonical_text = r"(?s)schedule.yaml:8:5: policies\[0\].*- pruner:\n      instance_name: p1"
    with pytest.warns(ScheduleWarning, match=canonical_text):
        got = parse_schedule(flattened, "schedule.yaml")
    assert got.model_dump() == expected.model_dump()
    assert got.policies[0].options.keep_mask is True


def test_flattened_keys_keep_their_own_positions_in_errors() -> None:
    text = f"{CONV2_PRUNER}policies:\n  - pruner:\n    instance_name: nope\n    epochs: [0]\n"
    with pytest.warns(ScheduleWarning), pytest.raises(ScheduleError) as info:
        parse_schedule(text, "schedule.yaml")
    assert (info.value.line, info.value.key_path) == (9, "policies[0].pruner.instance_name")


def test_null_pruner_without_flattened_keys_is_an_error() -> None:
    with pytest.raises(ScheduleError, match=r"schedule.yaml:8:5: policies\[0\].pruner: a policy is defined with a "
                                            r"null pruner"):
        parse_schedule(f"{CONV2_PRUNER}policies:\n  - pruner:\n    epochs: [0]\n", "schedule.yaml")


# ------------------------------------------------------------------------------------------------ seed file
@pytest.fixture
def seed_path() -> Path:
    if not SEED.exists():
        pytest.skip(f"{SEED} is absent (../shared holds the reference files beside the checkout)")
    return SEED


def test_seed_schedule_prunes_14_of_16_filters_at_epoch_zero(seed_path: Path) -> None:
    with pytest.warns(ScheduleWarning, match="canonical form"):
        spec = load_schedule(seed_path)
    assert [p.kind for p in spec.policies] == ["pruner", "lr_scheduler"]
    model = create_model("resnet56_cifar")
    untouched = model.layer1[2].conv1.weight.detach().clone()
    sched = CompressionScheduler(model, spec)
    assert sched.owns_lr
    fired = sched.apply_epoch_zero(torch.optim.SGD(model.parameters(), lr=0.1))
    assert [type(p) for p in fired] == [PruningPolicy]
    assert zero_filters(model.layer1[0].conv1.weight) == 14  # floor(0.9 * 16) pruned, 2 kept
    assert zero_filters(model.layer1[1].conv1.weight) == 14
    assert torch.equal(model.layer1[2].conv1.weight, untouched)


# ----------------------------------------------------------------------------------------------- LR timing
EXP_LR = """\
lr_schedulers:
  exp:
    class: ExponentialLR
    gamma: 0.95
policies:
  - lr_scheduler:
      instance_name: exp
    starting_epoch: 10
    ending_epoch: 300
    frequency: 1
"""


def test_exponential_lr_example_of_the_reference() -> None:
    model = simplenet()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = CompressionScheduler(model, parse_schedule(EXP_LR))
    lr_in_epoch = [opt.param_groups[0]["lr"]]
    for epoch in range(14):
        sched.on_epoch_begin(epoch, model, opt)
        sched.on_epoch_end(epoch, opt, {"top1": 1.0, "top5": 1.0, "loss": 1.0})
        lr_in_epoch.append(opt.param_groups[0]["lr"])
    assert lr_in_epoch[:11] == [0.1] * 11  # epochs 0..10 train at the base LR
    for epoch in range(11, 15):
        assert lr_in_epoch[epoch] == pytest.approx(0.1 * 0.95**epoch, rel=1e-12)


def test_lr_policies_run_after_every_other_policy_of_the_epoch() -> None:
    text = f"""{CONV2_PRUNER}lr_schedulers:
  exp:
    class: ExponentialLR
    gamma: 0.95
policies:
  - lr_scheduler:
      instance_name: exp
    epochs: [0, 1]
  - pruner:
      instance_name: p1
    epochs: [0, 1]
"""
    sched = CompressionScheduler(simplenet(), parse_schedule(text))
    for epoch in (0, 1):
        assert [type(p) for p in sched.epoch_policies[epoch]] == [PruningPolicy, LRPolicy]


def test_reduce_lr_on_plateau_watches_validation_loss_or_top1() -> None:
    text = """\
lr_schedulers:
  plateau:
    class: ReduceLROnPlateau
    mode: {mode}
    patience: 0
    factor: 0.5
policies:
  - lr_scheduler:
      instance_name: plateau
    starting_epoch: 0
    ending_epoch: 10
    frequency: 1
"""
    for mode, key in (("min", "loss"), ("max", "top1")):
        model = simplenet()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        sched = CompressionScheduler(model, parse_schedule(text.replace("{mode}", mode)))
        sched.on_epoch_end(0, opt, {"top1": 50.0, "top5": 90.0, "loss": 1.0})
        other = "top1" if key == "loss" else "loss"
        sched.on_epoch_end(1, opt, {key: 1.0 if key == "loss" else 50.0, other: 123.0, "top5": 0.0})
        assert opt.param_groups[0]["lr"] == pytest.approx(0.05), mode  # no improvement of the watched metric


def test_lr_scheduler_bound_late_keeps_the_optimizer_lr_and_owns_lr() -> None:
    model = simplenet()
    sched = CompressionScheduler(model, parse_schedule(EXP_LR))
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    sched.on_epoch_begin(0, model, opt)
    assert opt.param_groups[0]["lr"] == 0.2
    assert sched.owns_lr
    assert not CompressionScheduler(simplenet(), parse_schedule(policy_text("epochs: [0]\n"))).owns_lr


# ----------------------------------------------------------------------------------------- mask semantics
def test_masks_stay_enforced_after_the_policy_range_ended() -> None:
    model = simplenet()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01)
    sched = CompressionScheduler(model, parse_schedule(policy_text("epochs: [0]\n")))
    train(sched, model, opt, range(3), batches())
    assert 2 not in sched.epoch_policies
    assert zero_filters(model.conv2.weight) == 8
    # Without the scheduler's re-masking, momentum would move the pruned weights off zero.
    opt.step()
    assert zero_filters(model.conv2.weight) < 8


def test_keep_mask_and_is_last_epoch() -> None:
    args = "args: {mask_on_forward_only: true, mask_gradients: true, keep_mask: %s}"
    for keep in ("true", "false"):
        text = policy_text("starting_epoch: 0\nending_epoch: 2\nfrequency: 1\n").replace(
            "instance_name: p1", "instance_name: p1\n      " + args % keep)
        model = simplenet()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        sched = CompressionScheduler(model, parse_schedule(text))
        masker = sched.zeros_mask_dict["conv2.weight"]
        train(sched, model, opt, range(1), batches())
        assert masker.mask_on_forward_only and masker.backward_hook_handle is not None
        assert not sched.zeros_mask_dict["conv1.weight"].mask_on_forward_only  # only the pruner's own weights
        train(sched, model, opt, range(1, 2), batches())  # epoch 1 is ending_epoch - 1: the last epoch
        assert masker.backward_hook_handle is None
        assert masker.mask_on_forward_only is (keep == "false")


def test_keep_mask_never_fires_when_the_last_epoch_is_not_scheduled() -> None:
    sched = CompressionScheduler(simplenet(), parse_schedule(
        policy_text("starting_epoch: 0\nending_epoch: 30\nfrequency: 2\n")))
    policy = sched.policies[0]
    for epoch in policy.epochs:
        policy.meta["current_epoch"] = epoch
        assert not policy.is_last_epoch


def test_mask_gradients_needs_mask_on_forward_only() -> None:
    text = policy_text("epochs: [0]\n").replace("instance_name: p1", "instance_name: p1\n      args: "
                                                 "{mask_gradients: true}")
    with pytest.raises(ScheduleError, match=r"schedule.yaml:10:\d+: policies\[0\].pruner.args.mask_gradients: "
                                            "mask_gradients needs mask_on_forward_only"):
        parse_schedule(text, "schedule.yaml")


def test_fold_batchnorm_ranks_the_bn_scaled_filters() -> None:
    model = create_model("resnet20_cifar")
    conv, bn = model.layer1[0].conv1, model.layer1[0].bn1
    with torch.no_grad():
        conv.weight.copy_(torch.arange(1, 17.0).view(16, 1, 1, 1).expand_as(conv.weight))
        bn.weight.copy_(1.0 / torch.arange(1, 17.0) ** 2)  # folded magnitudes fall with the filter index
    text = """\
pruners:
  p1:
    class: L1RankedStructureParameterPruner
    group_type: Filters
    desired_sparsity: 0.25
    weights: [layer1.0.conv1.weight]
policies:
  - pruner:
      instance_name: p1
      args: {fold_batchnorm: %s}
    epochs: [0]
"""
    for fold, pruned in (("false", [0, 1, 2, 3]), ("true", [12, 13, 14, 15])):
        m = create_model("resnet20_cifar")
        m.load_state_dict(model.state_dict())
        CompressionScheduler(m, parse_schedule(text % fold)).apply_epoch_zero()
        zero = (m.layer1[0].conv1.weight.detach().flatten(1).abs().sum(1) == 0).nonzero().flatten().tolist()
        assert zero == pruned, fold


def test_extension_thins_after_the_pruners_of_the_same_epoch() -> None:
    text = f"""{CONV2_PRUNER.replace('conv2', 'conv1')}extensions:
  thin:
    class: FilterRemover
    thinning_func_str: remove_filters
    arch: simplenet_cifar
    dataset: cifar10
policies:
  - pruner:
      instance_name: p1
    epochs: [0]
  - extension:
      instance_name: thin
    epochs: [0]
"""
    model = simplenet()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = CompressionScheduler(model, parse_schedule(text))
    train(sched, model, opt, range(2), batches())
    assert model.conv1.weight.shape == (3, 3, 5, 5)
    assert model.conv2.weight.shape == (16, 3, 5, 5)


def test_thin_all_removes_zeroed_filters() -> None:
    model = simplenet()
    sched = CompressionScheduler(model, parse_schedule(policy_text("epochs: [0]\n")))
    sched.apply_epoch_zero()
    sched.thin_all()
    assert model.conv2.weight.shape[0] == 8 and model.fc1.weight.shape[1] == 8 * 25


def test_activation_ranked_pruner_collects_statistics_from_batches(caplog: pytest.LogCaptureFixture) -> None:
    text = policy_text("epochs: [0]\n").replace("L1RankedStructureParameterPruner", "ActivationAPoZRankedFilterPruner")
    model = simplenet()
    with pytest.raises(ScheduleError, match=r"schedule.yaml:2:3: pruners.p1: .*needs a few training batches"):
        CompressionScheduler(model, parse_schedule(text, "schedule.yaml")).apply_epoch_zero()
    with caplog.at_level(logging.INFO, logger="edgeprune.schedule"):
        CompressionScheduler(model, parse_schedule(text), batches=batches()).apply_epoch_zero()
    assert "collected activation statistics" in caplog.text
    assert zero_filters(model.conv2.weight) == 8


# ------------------------------------------------------------------------------------------------- resume
RESUME = """\
pruners:
  agp:
    class: L1RankedStructureParameterPruner_AGP
    initial_sparsity: 0.1
    final_sparsity: 0.5
    group_type: Filters
    weights: [conv2.weight]
  sens:
    class: SensitivityPruner
    sensitivities: {fc1.weight: 0.5}
regularizers:
  lasso:
    class: GroupLassoRegularizer
    reg_regims: {fc2.weight: [0.001, Rows]}
    threshold_criteria: Max
lr_schedulers:
  steps:
    class: MultiStepMultiGammaLR
    milestones: [1, 3]
    gammas: [0.5, 0.2]
policies:
  - pruner:
      instance_name: agp
    starting_epoch: 0
    ending_epoch: 4
    frequency: 1
  - pruner:
      instance_name: sens
    epochs: [0, 2]
  - regularizer:
      instance_name: lasso
    epochs: [1, 2]
  - lr_scheduler:
      instance_name: steps
    starting_epoch: 0
    ending_epoch: 5
    frequency: 1
"""


def test_state_dict_round_trip_continues_exactly() -> None:
    data = batches(3)
    spec = parse_schedule(RESUME)
    straight = simplenet()
    opt = torch.optim.SGD(straight.parameters(), lr=0.1, momentum=0.9)
    sched = CompressionScheduler(straight, spec)
    train(sched, straight, opt, range(5), data)

    first = simplenet()
    opt1 = torch.optim.SGD(first.parameters(), lr=0.1, momentum=0.9)
    sched1 = CompressionScheduler(first, spec)
    train(sched1, first, opt1, range(2), data)
    buffer = io.BytesIO()
    torch.save({"model": first.state_dict(), "opt": opt1.state_dict(), "sched": sched1.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)

    resumed = simplenet()
    resumed.load_state_dict(saved["model"])
    opt2 = torch.optim.SGD(resumed.parameters(), lr=0.1, momentum=0.9)
    opt2.load_state_dict(saved["opt"])
    sched2 = CompressionScheduler(resumed, parse_schedule(RESUME))
    sched2.load_state_dict(saved["sched"])
    train(sched2, resumed, opt2, range(2, 5), data)

    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5 * 0.2)
    for name, param in straight.state_dict().items():
        assert torch.equal(param, resumed.state_dict()[name]), name
    for name, masker in sched.zeros_mask_dict.items():
        other = sched2.zeros_mask_dict[name].mask
        assert (masker.mask is None and other is None) or torch.equal(masker.mask, other), name
    assert zero_filters(resumed.conv2.weight) == 8


def test_load_state_dict_refuses_masks_of_another_model() -> None:
    sched = CompressionScheduler(simplenet(), parse_schedule(policy_text("epochs: [0]\n")))
    with pytest.raises(Exception, match="does not have"):
        sched.load_state_dict({"masks_dict": {"module.nope.weight": None}})
    with pytest.raises(Exception, match="policies"):
        sched.load_state_dict({"masks_dict": {}, "policies": []})


# --------------------------------------------------------------------------------------------------- timeline
def test_timeline_lists_firings_in_scheduler_order_with_agp_targets() -> None:
    text = RESUME.replace("ending_epoch: 4\n", "ending_epoch: 30\n").replace(
        "    starting_epoch: 0\n    ending_epoch: 30\n    frequency: 1", "    starting_epoch: 0\n    ending_epoch: 30\n"
        "    frequency: 2").replace("initial_sparsity: 0.1", "initial_sparsity: 0.1")
    rows = timeline(parse_schedule(text), simplenet())
    agp = {r.epoch: r.agp_target for r in rows if r.instance == "agp"}
    assert agp[0] == pytest.approx(0.1) and agp[2] == pytest.approx(0.18, abs=5e-4)
    assert agp[4] == pytest.approx(0.248, abs=5e-4) and agp[28] == pytest.approx(0.5)
    epoch0 = [(r.kind, r.instance) for r in rows if r.epoch == 0]
    assert epoch0 == [("pruner", "agp"), ("pruner", "sens"), ("lr_scheduler", "steps")]
    assert max(r.epoch for r in timeline(parse_schedule(text), simplenet(), epochs=3)) == 2
    assert timeline_table(rows, per_epoch=True).row_count == len(rows)
    runs = timeline_runs(rows)
    assert [(r.first.instance, r.epochs_text, r.agp_text) for r in runs if r.first.instance == "agp"] == [
        ("agp", "0–28, every 2nd epoch", "0.1000 → 0.5000")]
    assert timeline_table(rows).row_count == len(runs) < len(rows)


SEED_LIKE = """\
pruners:
  p:
    class: L1RankedStructureParameterPruner
    group_type: Filters
    desired_sparsity: 0.9
    weights: [module.conv2.weight]
lr_schedulers:
  exp:
    class: ExponentialLR
    gamma: 0.95
policies:
  - pruner:
      instance_name: p
    epochs: [0]
  - lr_scheduler:
      instance_name: exp
    starting_epoch: 10
    ending_epoch: 300
    frequency: 1
  - pruner:
      instance_name: p
    epochs: [3, 7, 20, 22]
"""


def test_timeline_summarises_a_policy_firing_every_epoch_as_one_range() -> None:
    """The founding example's ExponentialLR from epoch 10 to 300 was 290 table rows before anything else."""
    rows = timeline(parse_schedule(SEED_LIKE), simplenet())
    assert len(rows) == 1 + 290 + 4
    runs = [(r.first.policy, r.epochs_text) for r in timeline_runs(rows)]
    assert runs == [(0, "0"), (2, "3, 7"), (1, "10–299, every epoch"), (2, "20, 22")]
    assert timeline_table(rows).row_count == 4 and timeline_table(rows, per_epoch=True).row_count == len(rows)


# ----------------------------------------------------------------------------------------------- bad input
BAD_INPUTS = {
    "yaml syntax": (f"{CONV2_PRUNER}policies:\n  - pruner:\n      instance_name: [p1\n    epochs: [0]\n",
                    r"schedule.yaml:10:11: policies\[0\].pruner.instance_name(\[0\])?: invalid YAML"),
    "unknown class": (policy_text("epochs: [0]\n").replace("L1RankedStructureParameterPruner",
                                                           "L1RankedStructurePruner"),
                      r"schedule.yaml:3:5: pruners.p1.class: unknown class 'L1RankedStructurePruner'; did you mean "
                      r"'L1RankedStructureParameterPruner'\?"),
    "unknown key": (policy_text("epochs: [0]\n").replace("desired_sparsity", "desired_sparsty"),
                    r"(?s)schedule.yaml:5:5: pruners.p1.desired_sparsty: L1RankedStructureParameterPruner does not "
                    r"accept 'desired_sparsty'; did you mean 'desired_sparsity'\?.*Accepted keys: .*group_type"),
    "unknown weight": (policy_text("epochs: [0]\n").replace("[conv2.weight]", "[conv1.weight, module.conv3.weight]"),
                       r"(?s)schedule.yaml:6:29: pruners.p1.weights\[1\]: 'conv3.weight' is not a parameter of the "
                       r"model; closest: conv.\.weight.*'module.'"),
    "undefined instance": (policy_text("epochs: [0]\n", name="p2"),
                           r"(?s)schedule.yaml:9:7: policies\[0\].pruner.instance_name: pruner 'p2' was not defined "
                           r"in 'pruners'.*Defined pruners: 'p1'"),
    "epochs and range": (policy_text("epochs: [0]\nstarting_epoch: 0\nending_epoch: 2\nfrequency: 1\n"),
                         r"schedule.yaml:11:5: policies\[0\].starting_epoch: a policy takes either 'epochs'"),
    "agp without range": (policy_text("epochs: [0, 1]\n").replace(
        "L1RankedStructureParameterPruner\n", "L1RankedStructureParameterPruner_AGP\n    initial_sparsity: 0.1\n"
        "    final_sparsity: 0.5\n").replace("    desired_sparsity: 0.5\n", ""),
        r"schedule.yaml:11:5: policies\[0\].epochs: AGP pruner 'p1' needs a range"),
    "sparsity out of range": (policy_text("epochs: [0]\n").replace("0.5", "60"),
                              r"schedule.yaml:5:5: pruners.p1.desired_sparsity: sparsity must be a number in \[0, 1\], "
                              r"got 60"),
    "leader sizes": (policy_text("epochs: [0]\n").replace("[conv2.weight]", "[conv2.weight, conv1.weight]").replace(
        "desired_sparsity: 0.5\n", "desired_sparsity: 0.5\n    group_dependency: Leader\n"),
        r"schedule.yaml:2:3: pruners.p1: .*Leader' needs every weight to have as many Filters"),
    "quantizer": (policy_text("epochs: [0]\n").replace("policies:", "quantizers:\n  q:\n    class: Q\npolicies:"),
                  r"schedule.yaml:8:3: quantizers.q: quantization is not supported"),
    "top-level typo": (policy_text("epochs: [0]\n").replace("policies:", "polices: []\npolicies:"),
                       r"schedule.yaml:7:1: polices: unknown top-level key 'polices'; did you mean 'policies'\?"),
    "policy arg typo": (policy_text("epochs: [0]\n").replace("instance_name: p1", "instance_name: p1\n      args: "
                                                             "{keep_masks: true}"),
                        r"schedule.yaml:10:14: policies\[0\].pruner.args.keep_masks: unknown pruner policy args key "
                        r"'keep_masks'; did you mean 'keep_mask'\?"),
    "bad lr value": (EXP_LR.replace("gamma: 0.95", "gamma: fast"),
                     r"schedule.yaml:4:5: lr_schedulers.exp.gamma: Input should be a valid number, got 'fast'"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_a_located_schedule_error(case: str, tmp_path: Path) -> None:
    text, pattern = BAD_INPUTS[case]
    path = write(tmp_path, text)
    with pytest.raises(ScheduleError) as info:
        CompressionScheduler(simplenet(), path).apply_epoch_zero()
    message = str(info.value)
    assert str(path) in message and info.value.line is not None and info.value.key_path
    assert info.value.key_path in message and f":{info.value.line}:" in message
    assert re.search(pattern, message), message


def test_unreadable_schedule_file(tmp_path: Path) -> None:
    with pytest.raises(ScheduleError, match="cannot read"):
        load_schedule(tmp_path / "missing.yaml")


def test_questionable_but_accepted_input_warns_with_its_location() -> None:
    duplicate = policy_text("epochs: [0]\n").replace("    group_type: Filters\n", "    group_type: Filters\n" * 2)
    with pytest.warns(ScheduleWarning, match=r"schedule.yaml:5:5: pruners.p1.group_type: duplicate key"):
        parse_schedule(duplicate, "schedule.yaml")
    lr_args = EXP_LR.replace("instance_name: exp", "instance_name: exp\n      args: {x: 1}")
    with pytest.warns(ScheduleWarning, match=r"schedule.yaml:8:7: policies\[0\].lr_scheduler.args: lr_scheduler "
                                             r"policies ignore 'args'"):
        parse_schedule(lr_args, "schedule.yaml")


def test_policy_args_at_the_wrong_indentation() -> None:
    text = f"{CONV2_PRUNER}policies:\n  - pruner:\n      instance_name: p1\n    args: {{keep_mask: true}}\n" \
           "    epochs: [0]\n"
    with pytest.raises(ScheduleError, match=r"schedule.yaml:10:5: policies\[0\].args: 'args' belongs under 'pruner:'"):
        parse_schedule(text, "schedule.yaml")


def test_reference_one_shot_filter_rank_case_end_to_end() -> None:
    """Reference §7: resnet56 filter ranking at epoch 0 then FilterRemover gives Distiller's shapes and counts."""

    def pruner(name: str, sparsity: float, layers: str) -> str:
        weights = ", ".join(f"module.{layer}.conv1.weight" for layer in layers.split())
        return (f"  {name}:\n    class: L1RankedStructureParameterPruner\n    group_type: Filters\n"
                f"    desired_sparsity: {sparsity}\n    weights: [{weights}]\n")

    groups = {"p60": (0.6, " ".join(f"layer1.{i}" for i in range(9))),
              "p50": (0.5, " ".join(f"layer2.{i}" for i in (1, 2, 3, 4, 6, 7))),
              "p10": (0.1, "layer3.1"), "p30": (0.3, " ".join(f"layer3.{i}" for i in (2, 3, 5, 6, 7, 8)))}
    text = "version: 1\npruners:\n" + "".join(pruner(n, s, layers) for n, (s, layers) in groups.items())
    text += ("extensions:\n  net_thinner:\n    class: 'FilterRemover'\n    thinning_func_str: remove_filters\n"
             "    arch: 'resnet56_cifar'\n    dataset: 'cifar10'\n")
    text += "lr_schedulers:\n  exp_finetuning_lr:\n    class: ExponentialLR\n    gamma: 0.95\npolicies:\n"
    text += "".join(f"  - pruner:\n      instance_name: {n}\n    epochs: [0]\n" for n in groups)
    text += "  - extension:\n      instance_name: net_thinner\n    epochs: [0]\n"
    text += ("  - lr_scheduler:\n      instance_name: exp_finetuning_lr\n"
             "    starting_epoch: 10\n    ending_epoch: 300\n    frequency: 1\n")
    model = create_model("resnet56_cifar")
    CompressionScheduler(model, parse_schedule(text)).apply_epoch_zero(torch.optim.SGD(model.parameters(), lr=0.1))
    assert model.layer1[0].conv1.weight.shape == (7, 16, 3, 3)
    assert model.layer2[1].conv1.weight.shape == (16, 32, 3, 3)
    assert model.layer3[1].conv1.weight.shape == (58, 64, 3, 3)
    assert model.layer3[2].conv1.weight.shape == (45, 64, 3, 3)
    summary = model_summary(model)
    assert (summary.weight_params, summary.macs) == (634_640, 78_856_832)


def with_args(args: str, timing: str = "epochs: [0, 1]\n") -> str:
    return policy_text(timing).replace("instance_name: p1", "instance_name: p1\n      args: {" + args + "}")


def test_skip_first_minibatch_defers_the_first_masks_to_global_minibatch_1() -> None:
    model = simplenet()
    sched = CompressionScheduler(model, parse_schedule(with_args("skip_first_minibatch: true")))
    sched.on_epoch_begin(0, model, None)
    sched.on_minibatch_begin(0, 0, 4, None)
    assert sched.zeros_mask_dict["conv2.weight"].mask is None
    sched.on_minibatch_begin(0, 1, 4, None)
    assert zero_filters(model.conv2.weight) == 8


def test_mini_batch_pruning_frequency_recomputes_masks_inside_the_epoch() -> None:
    model = simplenet()
    sched = CompressionScheduler(model, parse_schedule(with_args("mini_batch_pruning_frequency: 2")))
    pruner = sched.policies[0].pruner
    calls = []
    original = pruner.set_param_mask
    pruner.set_param_mask = lambda param, name, masks, meta: calls.append(name) or original(param, name, masks, meta)
    sched.on_epoch_begin(1, model, None)
    for step in range(4):
        sched.on_minibatch_begin(1, step, 3, None)  # global minibatches 3, 4, 5, 6: recompute at 4 and 6
    per_pass = len(list(model.parameters()))
    assert len(calls) == 3 * per_pass


def test_double_copies_train_the_unmasked_weights() -> None:
    model = simplenet()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = CompressionScheduler(model, parse_schedule(with_args(
        "use_double_copies: true, mask_on_forward_only: true")))
    x, y = batches(1)[0]
    sched.on_epoch_begin(0, model, opt)
    sched.on_minibatch_begin(0, 0, 1, opt)
    assert zero_filters(model.conv2.weight) == 8  # the forward pass sees the masked weights
    F.cross_entropy(model(x), y).backward()
    sched.before_parameter_optimization(0, 0, 1, opt)
    assert zero_filters(model.conv2.weight) == 0  # the optimizer updates the unmasked copy
    opt.step()
    sched.on_minibatch_end(0, 0, 1, opt)
    assert zero_filters(model.conv2.weight) == 0  # forward-only masks are not re-applied after the step


def test_discard_masks_at_minibatch_end() -> None:
    model = simplenet()
    sched = CompressionScheduler(model, parse_schedule(with_args("discard_masks_at_minibatch_end: true")))
    sched.apply_epoch_zero()
    assert zero_filters(model.conv2.weight) == 8
    sched.on_minibatch_end(0, 0, 1, None)
    assert sched.zeros_mask_dict["conv2.weight"].mask is None
