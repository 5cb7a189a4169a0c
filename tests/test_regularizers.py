"""L1 and Group Lasso regularizers: loss values by hand, thresholding, and keep_mask through the schedule."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from edgeprune.errors import ConfigError
from edgeprune.models import create_model
from edgeprune.pruning.regularizers import EPSILON, GroupLassoRegularizer, GroupVarianceRegularizer, L1Regularizer
from edgeprune.schedule.config import ScheduleError, parse_schedule
from edgeprune.schedule.scheduler import CompressionScheduler


class Tiny(nn.Module):
    """A conv weight w4 (2 filters, 2 channels, 1x2 kernels) and a 2x3 matrix m, with hand-picked values."""

    def __init__(self) -> None:
        super().__init__()
        self.w4 = nn.Parameter(torch.tensor([[[[1.0, 2.0]], [[0.0, 0.0]]], [[[3.0, 0.0]], [[0.0, 4.0]]]]))
        self.m = nn.Parameter(torch.tensor([[3.0, 4.0, 0.0], [0.0, 0.0, 0.0]]))


def groups(*squared_sums: float) -> float:
    """Distiller's group-lasso term: Σ sqrt(Σ w² + ε)."""
    return sum(math.sqrt(s + EPSILON) for s in squared_sums)


S = 0.5
W4_LOSSES = {
    "2D": S * groups(5, 0, 9, 16),  # kernels [1,2] [0,0] [3,0] [0,4]
    "Channels": S * groups(1 + 4 + 9, 16),  # channel 0: 1,2,3,0; channel 1: 0,0,0,4
    "3D": S * groups(5, 25),  # filters: 1,2,0,0 and 3,0,0,4
    "Filters": S * groups(5, 25),
    "4D": S * math.sqrt(30),  # one group, no epsilon
    "Channels+4D": S * groups(14, 16) + S * math.sqrt(30),
}
M_LOSSES = {
    "Rows": S * groups(25, 0),
    "Cols": S * groups(9, 16, 0),
    "Rows+Cols": S * groups(25, 0) + S * groups(9, 16, 0),
}


@pytest.mark.parametrize("group", list(W4_LOSSES) + list(M_LOSSES))
def test_group_lasso_loss_by_hand(group: str) -> None:
    model = Tiny()
    name, expected = ("w4", W4_LOSSES[group]) if group in W4_LOSSES else ("m", M_LOSSES[group])
    reg = GroupLassoRegularizer("r", model, {name: [S, group]})
    assert reg.loss(getattr(model, name), name).item() == pytest.approx(expected, rel=1e-6)
    other = "m" if name == "w4" else "w4"
    assert reg.loss(getattr(model, other), other) is None


def test_l1_loss_and_threshold() -> None:
    model = Tiny()
    reg = L1Regularizer("r", model, {"module.w4": 0.1})  # a DataParallel name is the same weight
    assert reg.params_names == ["w4"]
    assert reg.loss(model.w4, "w4").item() == pytest.approx(0.1 * 10)
    assert reg.threshold_mask(model.w4, "w4") is None  # no threshold_criteria: no thresholding
    reg = L1Regularizer("r", model, {"w4": 2.0}, threshold_criteria="Mean_Abs")
    assert reg.threshold_mask(model.w4, "w4").flatten().tolist() == [0, 0, 0, 0, 1, 0, 0, 1]  # |w| > 2


@pytest.mark.parametrize(("name", "group", "criteria", "threshold", "expected"), [
    ("w4", "Filters", "Mean_Abs", 1.0, [0, 0, 0, 0, 1, 1, 1, 1]),  # filter means .75 and 1.75
    ("w4", "3D", "Max", 3.0, [0, 0, 0, 0, 1, 1, 1, 1]),  # filter maxima 2 and 4
    ("w4", "Channels", "Mean_Abs", 1.2, [1, 1, 0, 0, 1, 1, 0, 0]),  # channel means 1.5 and 1
    ("w4", "2D", "Max", 2.5, [0, 0, 0, 0, 1, 1, 1, 1]),  # kernel maxima 2, 0, 3, 4
    ("m", "Rows", "Max", 1.0, [1, 1, 1, 0, 0, 0]),
    ("m", "Cols", "Max", 3.5, [0, 1, 0, 0, 1, 0]),
])
def test_group_thresholding(name: str, group: str, criteria: str, threshold: float, expected: list[int]) -> None:
    model = Tiny()
    reg = GroupLassoRegularizer("r", model, {name: [threshold, group]}, threshold_criteria=criteria)
    assert reg.threshold_mask(getattr(model, name), name).flatten().tolist() == expected


def test_4d_thresholding_is_all_or_nothing() -> None:
    model = Tiny()  # mean |w| = 10 / 8 = 1.25
    assert GroupLassoRegularizer("r", model, {"w4": [1.0, "4D"]}, "Mean_Abs").threshold_mask(model.w4, "w4") is None
    mask = GroupLassoRegularizer("r", model, {"w4": [2.0, "4D"]}, "Mean_Abs").threshold_mask(model.w4, "w4")
    assert mask is not None and not mask.any()


@pytest.mark.parametrize(("regims", "criteria", "phrase"), [
    ({"w4": [0.1, "Kernels"]}, None, "unknown group 'Kernels'"),
    ({"w4": [0.1, "Rows"]}, None, "needs a 2D weight"),
    ({"m": [0.1, "Rows+Cols"]}, "Max", "combined group"),
    ({"w4": [0.1, "3D"]}, "L2", "threshold_criteria"),
    ({"w4": 0.1}, None, r"expected \[strength, group\]"),
    ({}, None, "reg_regims"),
])
def test_group_lasso_refuses_bad_configurations(regims: dict, criteria: str | None, phrase: str) -> None:
    with pytest.raises(ConfigError, match=phrase):
        GroupLassoRegularizer("r", Tiny(), regims, threshold_criteria=criteria)


# --------------------------------------------------------------------------------------- through the schedule
SCHEDULE = """\
regularizers:
  lasso:
    class: GroupLassoRegularizer
    reg_regims:
      fc2.weight: [0.01, Rows]
    threshold_criteria: Max
policies:
  - regularizer:
      instance_name: lasso
      args: {keep_mask: %s}
    epochs: [0, 1]
"""


def run(keep_mask: str) -> tuple[nn.Module, CompressionScheduler, list[int]]:
    """Two regularized epochs and one free epoch; returns which fc2 rows are zero after each epoch."""
    torch.manual_seed(0)
    model = create_model("simplenet_cifar")
    with torch.no_grad():
        model.fc2.weight[:10] = 1e-3  # these rows are below the 0.01 threshold
    sched = CompressionScheduler(model, parse_schedule(SCHEDULE % keep_mask))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    zero_rows = []
    for epoch in range(3):
        sched.on_epoch_begin(epoch, model, opt)
        for step in range(2):
            sched.on_minibatch_begin(epoch, step, 2, opt)
            loss = F.cross_entropy(model(x), y)
            total = sched.before_backward_pass(epoch, step, 2, loss, opt)
            if epoch < 2:
                expected = sched.policies[0].regularizer.loss(model.fc2.weight, "fc2.weight")
                assert (total - loss).item() == pytest.approx(expected.item())
            else:
                assert total is loss  # the policy is not scheduled in epoch 2
            opt.zero_grad()
            total.backward()
            opt.step()
            sched.on_minibatch_end(epoch, step, 2, opt)
        sched.on_epoch_end(epoch, opt, {"top1": 0.0, "top5": 0.0, "loss": 0.0})
        zero_rows.append(int((model.fc2.weight.abs().sum(1) == 0).sum()))
    return model, sched, zero_rows


def test_thresholding_is_transient_without_keep_mask() -> None:
    _, sched, zero_rows = run("false")
    assert zero_rows[:2] == [10, 10]
    assert zero_rows[2] < 10  # nothing holds the rows at zero once the policy stops (dead ReLUs aside)
    assert sched.zeros_mask_dict["fc2.weight"].mask is None


def test_keep_mask_makes_the_last_thresholding_permanent() -> None:
    _, sched, zero_rows = run("true")
    assert zero_rows == [10, 10, 10]
    mask = sched.zeros_mask_dict["fc2.weight"].mask
    assert mask is not None and int((mask.sum(1) == 0).sum()) == 10


def test_regularizer_weight_not_in_model_is_located() -> None:
    text = SCHEDULE.replace("fc2.weight", "module.fc4.weight") % "false"
    with pytest.raises(ScheduleError, match=r"(?s)schedule.yaml:5:7: regularizers.lasso.reg_regims.module.fc4.weight: "
                                            r"'fc4.weight' is not a parameter of the model.*module\."):
        CompressionScheduler(create_model("simplenet_cifar"), parse_schedule(text, "schedule.yaml"))


def test_regularizer_configuration_error_is_located() -> None:
    text = SCHEDULE.replace("Rows]", "Channels]") % "false"
    with pytest.raises(ScheduleError, match=r"schedule.yaml:2:3: regularizers.lasso: .*needs a 4D weight"):
        CompressionScheduler(create_model("simplenet_cifar"), parse_schedule(text, "schedule.yaml"))


# --------------------------------------------------------------------------------------- group variance
def test_group_variance_loss_by_hand() -> None:
    """strength / unbiased variance of the input channels' norms: w4's channels have norms sqrt(14+ε), sqrt(16+ε)."""
    model = Tiny()
    reg = GroupVarianceRegularizer("v", model, {"module.w4": [S, "Channels"]})
    a, b = math.sqrt(14 + EPSILON), math.sqrt(16 + EPSILON)
    variance = ((a - b) / 2) ** 2 * 2  # two values, n - 1 = 1
    assert reg.loss(model.w4, "w4").item() == pytest.approx(S / variance, rel=1e-5)
    assert reg.loss(model.m, "m") is None and reg.threshold_mask(model.w4, "w4") is None
    # the penalty falls as the channels' norms spread apart: what lets a Group Lasso beside it pick the weak ones
    spread = Tiny()
    with torch.no_grad():
        spread.w4[:, 1] *= 3
    assert reg.loss(spread.w4, "w4").item() < reg.loss(model.w4, "w4").item()


@pytest.mark.parametrize("regims, phrase", [
    ({"w4": [0.1, "Filters"]}, "takes only 'Channels'"),
    ({"w4": 0.1}, r"expected \[strength, Channels\]"),
    ({"m": [0.1, "Channels"]}, "needs a conv weight with at least 2 input channels"),
])
def test_group_variance_refuses_bad_configurations(regims: dict, phrase: str) -> None:
    with pytest.raises(ConfigError, match=phrase):
        GroupVarianceRegularizer("v", Tiny(), regims)


def test_distillers_gss_schedule_trains_with_both_regularizers() -> None:
    """Distiller's GSS example pairs a thresholded Group Lasso with a Group Variance regularizer on the same convs:
    both losses are added, in the epochs the policies give."""
    text = """\
regularizers:
  lasso:
    class: GroupLassoRegularizer
    reg_regims:
      module.layer1.0.conv2.weight: [0.0028, Channels]
    threshold_criteria: Mean_Abs
  variance:
    class: GroupVarianceRegularizer
    reg_regims:
      module.layer1.0.conv2.weight: [0.000008, Channels]
policies:
  - regularizer: {instance_name: lasso}
    epochs: [0]
  - regularizer: {instance_name: variance}
    epochs: [0]
"""
    torch.manual_seed(0)
    model = create_model("resnet20_cifar")
    sched = CompressionScheduler(model, parse_schedule(text))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    sched.on_epoch_begin(0, model, opt)
    sched.on_minibatch_begin(0, 0, 1, opt)
    loss = F.cross_entropy(model(torch.randn(2, 3, 32, 32)), torch.tensor([0, 1]))
    total = sched.before_backward_pass(0, 0, 1, loss, opt)
    w = model.layer1[0].conv2.weight
    expected = sum(p.regularizer.loss(w, "layer1.0.conv2.weight") for p in sched.policies)
    assert (total - loss).item() == pytest.approx(expected.item(), rel=1e-5)
    assert all(p.regularizer.loss(w, "layer1.0.conv2.weight").item() > 0 for p in sched.policies)
