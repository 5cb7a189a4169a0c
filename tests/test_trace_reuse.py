"""One trace per prune + thin, and copies of a traced network that reuse its run: the same graphs, counts and
thinning as tracing afresh, bound to their own layers, and a fresh run whenever anything that decides it differs."""

from __future__ import annotations

import copy
import sys
from collections.abc import Iterator

import pytest
import torch
from torch import fx, nn

from edgeprune.models import create_model
from edgeprune.models.summary import model_summary
from edgeprune.pruning import dependency, thinning
from edgeprune.pruning.dependency import build_channel_graph, channel_graph, clear_twins
from edgeprune.pruning.masks import create_model_masks_dict
from edgeprune.pruning.thinning import remove_filters
from edgeprune.schedule import CompressionScheduler
from edgeprune.schedule.config import parse_schedule
from tests.tiny_nets import tiny_resnet

SCHEDULE = """\
version: 1
pruners:
  p:
    class: L1RankedStructureParameterPruner
    group_type: Filters
    desired_sparsity: 0.5
    weights: [layer1.0.conv1.weight, layer2.1.conv1.weight, layer3.2.conv1.weight]
extensions:
  t:
    class: FilterRemover
    thinning_func_str: remove_filters
    arch: resnet20_cifar
    dataset: cifar10
policies:
  - pruner: {instance_name: p}
    epochs: [0]
  - extension: {instance_name: t}
    epochs: [0]
"""


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    """No kept runs from elsewhere, and the global RNG left as found (the seeds here are these tests' own)."""
    clear_twins()
    with torch.random.fork_rng():
        yield
    clear_twins()


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How often the model was traced and the traced graph run (the real methods still do the work)."""
    calls = {"trace": 0, "run": 0}
    trace, run = fx.Tracer.trace, dependency._ChannelTracer.run

    def counting_trace(self, *args, **kwargs):
        calls["trace"] += 1
        return trace(self, *args, **kwargs)

    def counting_run(self, *args, **kwargs):
        calls["run"] += 1
        return run(self, *args, **kwargs)

    monkeypatch.setattr(fx.Tracer, "trace", counting_trace)
    monkeypatch.setattr(dependency._ChannelTracer, "run", counting_run)
    return calls


def graph_tables(graph: dependency.ChannelGraph) -> tuple:
    """Everything a graph says, with each layer's module by identity."""
    tables = tuple((table, tuple((name, id(layer.module), layer.classes.tolist())
                                 for name, layer in getattr(graph, table).items()))
                   for table in ("producers", "consumers", "followers"))
    locks = [(lock.reason, lock.classes.tolist()) for lock in graph.locks]
    return graph.num_classes, tables, list(graph.fixed.items()), locks, graph.dense_counts


def test_prune_and_thin_traces_once_and_counts_as_the_summary(counted: dict[str, int]) -> None:
    torch.manual_seed(0)
    model = create_model("resnet20_cifar").eval()
    dense = model_summary(model)
    scheduler = CompressionScheduler(model, parse_schedule(SCHEDULE, "<test>"))
    scheduler.apply_epoch_zero()
    assert counted == {"trace": 1, "run": 1}  # the coupling check's trace, reused by thinning
    assert model.layer1[0].conv1.out_channels == 8 and model.layer3[2].conv2.in_channels == 32
    record = remove_filters(model, scheduler.zeros_mask_dict)  # nothing left to remove; counts the thinned model
    thinned = model_summary(model)
    assert (record.macs_before, record.weight_params_before) == (thinned.macs, thinned.weight_params)
    assert thinned.macs < dense.macs


def test_the_trace_counts_are_distillers_batch_1_counts() -> None:
    for arch in ("resnet20_cifar", "mobilenet_cifar", "vgg11_bn_cifar", "alexnet"):
        model = create_model(arch)
        assert build_channel_graph(model, model.input_shape).dense_counts == model_summary(model).layers, arch


def test_a_copy_reuses_the_run_bound_to_its_own_layers(counted: dict[str, int]) -> None:
    torch.manual_seed(0)
    original = create_model("resnet20_cifar")
    copied = copy.deepcopy(original)
    first = build_channel_graph(original, original.input_shape)
    reused = build_channel_graph(copied, copied.input_shape)
    assert counted == {"trace": 1, "run": 1}  # the copy is not even traced
    tables = (reused.producers, reused.consumers, reused.followers)
    assert all(layer.module is copied.get_submodule(name) for table in tables for name, layer in table.items())
    clear_twins()
    assert graph_tables(reused) == graph_tables(build_channel_graph(copied, copied.input_shape))
    assert graph_tables(first)[0] == graph_tables(reused)[0]


def test_a_separately_built_twin_thins_exactly_as_when_traced_afresh() -> None:
    results = []
    for reuse in (False, True):
        torch.manual_seed(0)
        build_channel_graph(tiny_resnet(), (1, 8, 8))  # another network of the same architecture
        if not reuse:
            clear_twins()
        torch.manual_seed(1)
        model = tiny_resnet().eval()
        masks = create_model_masks_dict(model)
        weight = model.block.conv_a.weight
        masks["block.conv_a.weight"].mask = (weight.flatten(1).abs().sum(1) > weight.flatten(1).abs().sum(1)
                                             .median()).float()[:, None, None, None].expand_as(weight).clone()
        masks["block.conv_a.weight"].apply_mask(weight)
        record = remove_filters(model, masks)
        x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(2))
        results.append((str(record), {k: v.clone() for k, v in model.state_dict().items()}, model(x)))
    assert results[0][0] == results[1][0] and "block.conv_a" in results[0][0]
    assert results[0][1].keys() == results[1][1].keys()
    assert all(torch.equal(results[0][1][k], results[1][1][k]) for k in results[0][1])
    assert torch.equal(results[0][2], results[1][2])


EXTRA = False  # read by Gated.forward from its globals


class Gated(nn.Module):
    """Takes an extra layer in training mode or when a global says so, and doubles its channels (then drops the
    copy) when a class attribute says so: what its forward reads besides its layers decides its graph."""

    doubled = False

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.extra = nn.Conv2d(8, 8, 1)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.training or EXTRA:
            x = x + self.extra(x)
        if self.doubled:
            x = torch.cat([x, x], 1)[:, :8]
        return self.head(x).mean((2, 3))


def test_what_the_trace_sees_decides_the_reuse(counted: dict[str, int]) -> None:
    training = Gated().train()
    build_channel_graph(training, (3, 8, 8))
    evaluating = copy.deepcopy(training).eval()
    graph = build_channel_graph(evaluating, (3, 8, 8))
    assert counted["run"] == 2 and "extra" not in graph.consumers
    hooked = copy.deepcopy(evaluating)
    hooked.head.register_forward_hook(lambda module, inputs, output: output)
    build_channel_graph(hooked, (3, 8, 8))  # a hook may change a result: no reuse
    wider = copy.deepcopy(evaluating)
    wider.head.stride = (2, 2)
    build_channel_graph(wider, (3, 8, 8))
    build_channel_graph(copy.deepcopy(evaluating), (3, 16, 16))
    assert counted["run"] == 5
    build_channel_graph(copy.deepcopy(evaluating), (3, 8, 8))
    assert counted["run"] == 5


class Sliced(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Conv2d(4, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x)[:, :4]).mean((2, 3))


def test_a_graph_with_an_operation_outside_the_known_ones_is_run_every_time(counted: dict[str, int]) -> None:
    model = Sliced()
    build_channel_graph(model, (3, 8, 8))
    build_channel_graph(copy.deepcopy(model), (3, 8, 8))
    assert counted["run"] == 2


def test_a_replaced_layer_of_the_same_shape_is_traced_again() -> None:
    model = tiny_resnet()
    assert channel_graph(model, (1, 8, 8)) is channel_graph(model, (1, 8, 8))
    model.conv2 = nn.Conv2d(8, 12, 3, stride=2, padding=1, bias=False)
    assert channel_graph(model, (1, 8, 8)).producers["conv2"].module is model.conv2


def test_a_copy_is_traced_again_when_a_global_or_class_attribute_its_forward_reads_changed(
        counted: dict[str, int], monkeypatch: pytest.MonkeyPatch) -> None:
    model = Gated().eval()
    assert "extra" not in build_channel_graph(model, (3, 8, 8)).consumers
    build_channel_graph(copy.deepcopy(model), (3, 8, 8))
    assert counted == {"trace": 1, "run": 1}
    monkeypatch.setattr(sys.modules[__name__], "EXTRA", True)
    assert "extra" in build_channel_graph(copy.deepcopy(model), (3, 8, 8)).consumers
    assert counted == {"trace": 2, "run": 2}
    monkeypatch.setattr(Gated, "doubled", True)
    graph = build_channel_graph(copy.deepcopy(model), (3, 8, 8))
    assert counted["trace"] == 3 and "extra" in graph.consumers


def test_a_thinned_twin_reuses_the_verified_counts_of_the_first(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    dense = create_model("resnet20_cifar").eval()
    passes = {"n": 0}
    summary = thinning.model_summary

    def counting_summary(*args, **kwargs):
        passes["n"] += 1
        return summary(*args, **kwargs)

    monkeypatch.setattr(thinning, "model_summary", counting_summary)
    pruner, policies = SCHEDULE.split("extensions:")[0], SCHEDULE.split("policies:")[1].split("  - extension")[0]
    masks_only = f"{pruner}policies:{policies}"  # the pruner alone: thinning is called below
    records = []
    for _ in range(2):
        model = copy.deepcopy(dense)
        scheduler = CompressionScheduler(model, parse_schedule(masks_only, "<test>"))
        scheduler.apply_epoch_zero()
        records.append((remove_filters(model, scheduler.zeros_mask_dict), model_summary(model)))
    assert passes["n"] == 1  # only the first thinned copy's forward pass
    (first, _), (second, second_summary) = records
    assert str(first) == str(second) and "layer1.0.conv1" in str(second)
    assert (second.macs_after, second.weight_params_after) == (second_summary.macs, second_summary.weight_params)
    assert [c.macs_after for c in second.layers] == [c.macs_after for c in first.layers]


@pytest.mark.parametrize("arch", ["mobilenet_cifar", "preact_resnet20_cifar", "vgg11_bn_cifar", "simplenet_mnist"])
def test_a_copy_of_a_zoo_network_gets_the_graph_a_fresh_trace_gives(arch: str, counted: dict[str, int]) -> None:
    model = create_model(arch).eval()
    build_channel_graph(model, model.input_shape)
    copied = copy.deepcopy(model)
    reused = build_channel_graph(copied, copied.input_shape)
    assert counted == {"trace": 1, "run": 1}
    clear_twins()
    assert graph_tables(reused) == graph_tables(build_channel_graph(copied, copied.input_shape))
