"""Property: any schedule, however broken, builds and runs its epoch 0 or raises an EdgepruneError.

Valid schedules are mutated (keys dropped or renamed, values replaced by random ones of any type,
sections deleted, lines of the YAML text deleted or re-indented); anything other than an
:class:`~edgeprune.errors.EdgepruneError` escaping from parsing, building or the first epoch is a bug.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator
from typing import Any

import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeprune.errors import EdgepruneError
from edgeprune.models import create_model
from edgeprune.schedule.config import ScheduleError, parse_schedule
from edgeprune.schedule.scheduler import CompressionScheduler


def policy(kind: str, name: str, **timing: Any) -> dict[str, Any]:
    return {kind: {"instance_name": name}, **timing}


BASES: list[dict[str, Any]] = [
    {
        "version": 1,
        "pruners": {"filters": {"class": "L1RankedStructureParameterPruner", "group_type": "Filters",
                                "desired_sparsity": 0.5, "weights": ["module.conv2.weight"]}},
        "lr_schedulers": {"exp": {"class": "ExponentialLR", "gamma": 0.95}},
        "policies": [policy("pruner", "filters", epochs=[0]),
                     policy("lr_scheduler", "exp", starting_epoch=1, ending_epoch=10, frequency=1)],
    },
    {
        "pruners": {"agp": {"class": "L1RankedStructureParameterPruner_AGP", "initial_sparsity": 0.1,
                            "final_sparsity": 0.5, "group_type": "Filters", "weights": ["conv1.weight"]},
                    "fine": {"class": "AutomatedGradualPruner", "initial_sparsity": 0.05, "final_sparsity": 0.4,
                             "weights": ["fc1.weight"]}},
        "regularizers": {"lasso": {"class": "GroupLassoRegularizer", "reg_regims": {"fc2.weight": [0.01, "Rows"]},
                                   "threshold_criteria": "Max"}},
        "extensions": {"thin": {"class": "FilterRemover", "thinning_func_str": "remove_filters",
                                "arch": "simplenet_cifar", "dataset": "cifar10"}},
        "lr_schedulers": {"steps": {"class": "MultiStepMultiGammaLR", "milestones": [2, 4], "gammas": [0.5, 0.5]}},
        "policies": [policy("pruner", "agp", starting_epoch=0, ending_epoch=4, frequency=2),
                     policy("pruner", "fine", starting_epoch=0, ending_epoch=3, frequency=1),
                     {"regularizer": {"instance_name": "lasso", "args": {"keep_mask": True}}, "epochs": [0, 1]},
                     policy("extension", "thin", epochs=[0]),
                     policy("lr_scheduler", "steps", starting_epoch=0, ending_epoch=6, frequency=1)],
    },
    {
        "pruners": {"levels": {"class": "SparsityLevelParameterPruner", "levels": {"fc1.weight": 0.5, "*": 0.1}},
                    "leader": {"class": "L2RankedStructureParameterPruner", "group_type": "Channels",
                               "desired_sparsity": 0.25, "weights": ["fc2.weight"], "group_dependency": "Leader"}},
        "lr_schedulers": {"plateau": {"class": "ReduceLROnPlateau", "mode": "max", "patience": 1}},
        "policies": [{"pruner": {"instance_name": "levels", "args": {"levels": {"fc2.weight": 0.3},
                                                                    "mini_batch_pruning_frequency": 2}},
                      "epochs": [0, 2]},
                     policy("pruner", "leader", epochs=[0]),
                     policy("lr_scheduler", "plateau", starting_epoch=0, ending_epoch=5, frequency=1)],
    },
]

RANDOM_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 400), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8), st.sampled_from(["Filters", "Channels", "Leader", "conv2.weight", "*", "L1RankedStructure"
                                          "ParameterPruner", "ExponentialLR", "remove_channels"]),
    st.lists(st.integers(-2, 40), max_size=4), st.dictionaries(st.text(max_size=5), st.integers(-1, 3), max_size=2),
)


def paths(node: Any, prefix: tuple = ()) -> Iterator[tuple]:
    """Every path to a value inside a nested dict/list document."""
    yield prefix
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in children:
        yield from paths(child, (*prefix, key))


def parent_of(doc: Any, path: tuple) -> Any:
    for key in path[:-1]:
        doc = doc[key]
    return doc


@st.composite
def mutated_schedules(draw: st.DrawFn) -> str:
    doc: Any = copy.deepcopy(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(1, 2))):
        path = draw(st.sampled_from(list(paths(doc))))
        op = draw(st.sampled_from(["replace"] * 5 + ["drop"] * 2 + ["rename"] * 2 + ["section"]))
        if not path:
            doc = draw(RANDOM_VALUES) if op == "replace" else doc
            continue
        parent, key = parent_of(doc, path), path[-1]
        if op == "section" and isinstance(doc, dict) and doc:
            del doc[draw(st.sampled_from(sorted(doc)))]
        elif op == "drop":
            del parent[key]
        elif op == "rename" and isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=12)) + draw(st.sampled_from(["", "s", "_"]))] = parent.pop(key)
        else:
            parent[key] = draw(RANDOM_VALUES)
    text = yaml.safe_dump(doc, sort_keys=False)
    lines = text.splitlines()
    if lines and draw(st.integers(0, 3)) == 0:
        i = draw(st.integers(0, len(lines) - 1))
        edit = draw(st.sampled_from(["delete", "dedent", "indent", "truncate"]))
        if edit == "delete":
            del lines[i]
        elif edit == "dedent":
            lines[i] = lines[i].removeprefix("  ")
        elif edit == "indent":
            lines[i] = "  " + lines[i]
        else:
            lines[i] = lines[i][: draw(st.integers(0, len(lines[i])))]
    return "\n".join(lines) + "\n"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_schedules())
def test_mutated_schedules_build_or_raise_edgeprune_errors(text: str) -> None:
    torch.manual_seed(0)
    model = create_model("simplenet_cifar")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sched = CompressionScheduler(model, parse_schedule(text, "fuzz.yaml"))
            optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
            sched.apply_epoch_zero(optimizer)
            sched.on_epoch_end(0, optimizer, {"top1": 10.0, "top5": 50.0, "loss": 2.0})
    except ScheduleError as exc:
        assert str(exc).startswith("fuzz.yaml"), str(exc)
    except EdgepruneError:
        pass


def test_the_unmutated_bases_run() -> None:
    for base in BASES:
        model = create_model("simplenet_cifar")
        sched = CompressionScheduler(model, parse_schedule(yaml.safe_dump(base, sort_keys=False), "fuzz.yaml"))
        sched.apply_epoch_zero(torch.optim.SGD(model.parameters(), lr=0.1))
