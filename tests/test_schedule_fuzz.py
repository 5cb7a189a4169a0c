"""Property: any schedule, however broken, builds and runs its epoch 0 or raises an EdgepruneError.

Valid schedules are mutated (keys dropped or renamed, values replaced by random ones of any type,
sections deleted, lines of the YAML text deleted or re-indented); anything other than an
:class:`~edgeprune.errors.EdgepruneError` escaping from parsing, building or the first epoch is a bug.
The real schedule and sweep files of the repository are also mutated byte by byte (control characters,
broken UTF-8, stray brackets): reading them gives a located ConfigError or a valid document, nothing else.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeprune.errors import ConfigError, EdgepruneError
from edgeprune.models import create_model
from edgeprune.schedule.config import ScheduleError, load_schedule, parse_schedule
from edgeprune.schedule.scheduler import CompressionScheduler
from edgeprune.sweep.config import load_sweep

REPO = Path(__file__).resolve().parents[1]
SCHEDULE_FILES = sorted([*(REPO / "examples" / "schedules").glob("*.yaml"),
                         *(REPO / "examples" / "cifar10_resnet20").glob("*.yaml")])
SWEEP_FILES = sorted((REPO / "examples" / "sweeps").glob("*.yaml"))


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


@st.composite
def byte_mutations(draw: st.DrawFn) -> tuple[Path, bytes]:
    """A real schedule or sweep file with one to three bytes replaced, inserted or deleted."""
    path = draw(st.sampled_from([*SCHEDULE_FILES, *SWEEP_FILES]))
    data = bytearray(path.read_bytes())
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["replace", "insert", "delete"]))
        if op == "delete":
            del data[at]
        else:
            byte = draw(st.one_of(st.integers(0, 0x1F), st.integers(0x7F, 0xFF), st.sampled_from(b"[]{}:-&*!|>#%@`")))
            data[at:at + (op == "replace")] = bytes([byte])
    return path, bytes(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(byte_mutations())
def test_any_byte_mutation_of_a_real_file_is_a_located_config_error(tmp_path_factory, mutation) -> None:
    original, data = mutation
    path = tmp_path_factory.mktemp("mutated") / original.name
    path.write_bytes(data)
    load = load_sweep if original in SWEEP_FILES else load_schedule
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            load(path)
    except ConfigError as exc:
        assert str(exc).startswith(str(path)), str(exc)


def test_a_control_character_is_located_at_its_line_and_column(tmp_path: Path) -> None:
    """Byte 0x07 once escaped as a ``yaml.reader.ReaderError`` traceback from prune, train, check and sweep."""
    text = SCHEDULE_FILES[0].read_text(encoding="utf-8").splitlines(keepends=True)
    line = next(i for i, t in enumerate(text) if "class:" in t)
    column = text[line].index("class:") + 3
    text[line] = text[line][: column - 1] + "\x07" + text[line][column - 1:]
    for name, load in (("s.yaml", load_schedule), ("sweep.yaml", load_sweep)):
        (tmp_path / name).write_text("".join(text), encoding="utf-8")
        try:
            load(tmp_path / name)
        except ConfigError as exc:
            assert exc.message.startswith(f"{tmp_path / name}:{line + 1}:{column}: invalid YAML: unacceptable "
                                          "character #x0007"), exc.message
        else:
            raise AssertionError("a control character was accepted")


def test_values_their_yaml_tag_cannot_hold_are_located() -> None:
    for text, message in (("policies: !!int abc\n", "fuzz.yaml:1:11: invalid YAML: 'abc' is not a valid int"),
                          ("policies: !!bool 7\n", "fuzz.yaml:1:11: invalid YAML: '7' is not a valid bool"),
                          ("policies: " + "[" * 3000 + "\n", "fuzz.yaml: invalid YAML: brackets or indentation")):
        try:
            parse_schedule(text, "fuzz.yaml")
        except ScheduleError as exc:
            assert exc.message.startswith(message), exc.message
        else:
            raise AssertionError(f"{text[:20]!r} was accepted")
