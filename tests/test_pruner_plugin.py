"""A pruner defined in a user's own module, used from a Distiller YAML schedule by ``package.module:ClassName``.

The one extension point is ``RankedStructurePruner.structure_scores``; counting, rounding, groups and masks come
from the base. Expected masks are computed here by hand from the weights, not with edgeprune's own ranking.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from edgeprune.schedule import CompressionScheduler, ScheduleError, parse_schedule

PLUGIN = '''
import torch
from edgeprune.pruning.pruners import RankedStructurePruner


class MaxAbsFilterPruner(RankedStructurePruner):
    """Ranks filters by their largest |w| (a criterion edgeprune does not ship)."""

    def structure_scores(self, param, param_name, meta):
        return param.detach().abs().amax(dim=(1, 2, 3))


class NotAPruner:
    pass
'''

SCHEDULE = """\
pruners:
  mine:
    class: {cls}
    group_type: Filters
    desired_sparsity: 0.5
    weights: [conv.weight]
policies:
  - pruner:
      instance_name: mine
    epochs: [0]
"""


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 6, 1, bias=False)
        self.fc = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).mean(dim=(2, 3)))


@pytest.fixture
def plugin_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    name = f"user_pruners_{tmp_path.name}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(PLUGIN))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_user_pruner_from_yaml_prunes_the_filters_its_scores_rank_lowest(plugin_module: str) -> None:
    model = Net()
    with torch.no_grad():
        # max |w| per filter: 0.35, 0.1, 0.5, 0.2, 0.8, 0.3; mean |w| (L1): 0.175, 0.1, 0.5, 0.2, 0.8, 0.3, so
        # L1 ranking would prune filters 1, 0, 3 -- the user's criterion must prune 1, 3, 5
        model.conv.weight.copy_(torch.tensor([[0.35, 0.0], [0.1, 0.1], [0.5, 0.5], [0.2, 0.2], [0.8, 0.8],
                                              [0.3, -0.3]]).view(6, 2, 1, 1))
    spec = parse_schedule(SCHEDULE.format(cls=f"{plugin_module}:MaxAbsFilterPruner"), "s.yaml")
    CompressionScheduler(model, spec).apply_epoch_zero(torch.optim.SGD(model.parameters(), lr=0.1))
    zeroed = [i for i in range(6) if model.conv.weight[i].abs().sum() == 0]
    assert zeroed == [1, 3, 5]  # floor(0.5 * 6) = 3 filters with the smallest max |w|: 0.1, 0.2, 0.3


def test_a_class_that_is_not_a_pruner_is_refused_at_its_key(plugin_module: str) -> None:
    with pytest.raises(ScheduleError, match=r"s\.yaml:3:\d+: pruners\.mine\.class: .*NotAPruner.* is not a "
                                            r"BasePruner subclass"):
        CompressionScheduler(Net(), parse_schedule(SCHEDULE.format(cls=f"{plugin_module}:NotAPruner"), "s.yaml"))


def test_a_misspelt_class_in_the_module_gets_the_close_match(plugin_module: str) -> None:
    with pytest.raises(ScheduleError, match="MaxAbsFilterPruner"):
        CompressionScheduler(Net(), parse_schedule(SCHEDULE.format(cls=f"{plugin_module}:MaxAbsFilterPrunr"),
                                                   "s.yaml"))


def test_a_module_that_does_not_import_is_named() -> None:
    with pytest.raises(ScheduleError, match="Cannot import module 'no_such_pruner_module'"):
        CompressionScheduler(Net(), parse_schedule(SCHEDULE.format(cls="no_such_pruner_module:P"), "s.yaml"))
