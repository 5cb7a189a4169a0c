"""Sweep files: WandB's grammar (inference, defaults, nesting) and every mistake located with a suggestion."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from edgeprune.schedule.config import ScheduleError
from edgeprune.sweep.config import SweepError, load_sweep, parse_sweep
from edgeprune.sweep.template import TemplateError

TEMPLATE = """\
version: 1
pruners:
  p1:
    class: L1RankedStructureParameterPruner
    group_type: Filters
    desired_sparsity: ${sparsity}
    weights: [module.layer1.0.conv1.weight]
extensions:
  thinner: {class: FilterRemover, thinning_func_str: remove_filters, arch: resnet20_cifar, dataset: digits}
policies:
  - pruner: {instance_name: p1}
    epochs: [0]
  - extension: {instance_name: thinner}
    epochs: [0]
"""


def program_sweep(parameters: str, extra: str = "") -> str:
    return textwrap.dedent("""\
        program: train.py
        method: random
        metric: {name: val_acc, goal: maximize}
        """) + extra + "parameters:\n" + textwrap.indent(textwrap.dedent(parameters), "  ")


def write_pipeline(tmp_path: Path, body: str, template: str = TEMPLATE) -> Path:
    (tmp_path / "template.yaml").write_text(template)
    path = tmp_path / "sweep.yaml"
    path.write_text(textwrap.dedent(body))
    return path


PIPELINE = """\
    method: bayes
    objectives:
      - {name: top1, goal: maximize}
      - {name: latency_ms, goal: minimize}
    parameters:
      sparsity: {min: 0.1, max: 0.9}
    model: resnet20_cifar
    schedule_template: template.yaml
    """


def test_wandb_inference_and_defaults() -> None:
    cfg = parse_sweep(program_sweep("""\
        lr: {min: 0.001, max: 0.1}
        layers: {min: 1, max: 4}
        opt: {values: [sgd, adam]}
        weighted: {values: [a, b], probabilities: [0.2, 0.8]}
        const: {value: 3}
        noise: {distribution: normal}
        qn: {distribution: q_normal, mu: 5, sigma: 2}
        b: {distribution: beta}
        lu: {distribution: log_uniform, min: -5, max: 0}
        """))
    kinds = {p.name: (p.kind, dict(p.config)) for p in cfg.space.params}
    assert kinds["lr"][0] == "uniform" and kinds["layers"][0] == "int_uniform"
    assert kinds["opt"][0] == "categorical" and kinds["weighted"][0] == "categorical_w_probabilities"
    assert kinds["const"] == ("constant", {"value": 3})
    assert kinds["noise"] == ("normal", {"mu": 0.0, "sigma": 1.0})  # WandB's schema defaults
    assert kinds["qn"][1]["q"] == 1.0 and isinstance(kinds["qn"][1]["q"], float)
    assert kinds["b"][1] == {"a": 1, "b": 1}
    assert [p.name for p in cfg.space.searchable] == ["lr", "layers", "opt", "weighted", "noise", "qn", "b", "lu"]
    assert cfg.directions[0].name == "val_acc" and cfg.is_program


def test_nested_parameters_flatten_and_nest() -> None:
    cfg = parse_sweep(program_sweep("""\
        optimizer:
          parameters:
            lr: {values: [0.1, 0.01]}
            momentum: {value: 0.9}
        epochs: {value: 2}
        """))
    assert cfg.space.names == ["optimizer.lr", "optimizer.momentum", "epochs"]
    flat = cfg.space.values({"optimizer.lr": 0.01})
    assert cfg.space.nest(flat) == {"optimizer": {"lr": 0.01, "momentum": 0.9}, "epochs": 2}


@pytest.mark.parametrize(("parameters", "match", "line"), [
    ("lr: {min: 0.5, max: 0.1}\n", "min 0.5 is not less than max 0.1", 5),
    ("lr: {distribution: log_unifrom, min: 1, max: 2}\n", "did you mean 'log_uniform'", 5),
    ("lr: {min: 0.1, max: 0.5, mx: 3}\n", "did you mean 'max'", 5),
    ("lr: {distribution: int_uniform, min: 1, max: 2.5}\n", "integer bounds", 5),
    ("lr: {distribution: log_uniform_values, min: 0, max: 1}\n", "min must be > 0", 5),
    ("lr: {values: [1, 2], probabilities: [0.5, 0.6]}\n", "sum to 1.1", 5),
    ("lr: {values: [1, 2], probabilities: [1.0]}\n", "as long as 'values'", 5),
    ("lr: 0.1\n", "value: 0.1", 5),
    ("lr: {distribution: q_uniform, min: 0, max: 1, q: 0}\n", "q must be > 0", 5),
    ("lr: {distribution: beta, a: 0}\n", "needs a > 0", 5),
])
def test_parameter_mistakes_are_located(parameters: str, match: str, line: int) -> None:
    with pytest.raises(SweepError, match=match) as info:
        parse_sweep(program_sweep(parameters), "s.yaml")
    assert info.value.line == line and info.value.file == "s.yaml"


def test_unknown_top_level_key_suggests() -> None:
    with pytest.raises(SweepError, match="did you mean 'run_cap'") as info:
        parse_sweep(program_sweep("lr: {min: 0.1, max: 0.5}\n", "run_cpa: 3\n"), "s.yaml")
    assert info.value.line == 4


def test_yaml_syntax_error_is_located() -> None:
    with pytest.raises(ScheduleError, match="invalid YAML") as info:
        parse_sweep("method: grid\nparameters:\n  a: {values: [1, 2}\n", "s.yaml")
    assert info.value.line == 3


@pytest.mark.parametrize(("body", "match"), [
    ("method: grid\nparameters: {a: {values: [1]}}\nprogram: t.py\n", "names no 'metric'"),
    ("metric: {name: x}\nparameters: {a: {values: [1, 2]}}\nprogram: t.py\n", "has no 'method'"),
    ("method: grid\nmetric: {name: x}\nparameters: {a: {min: 0.0, max: 1.0}}\nprogram: t.py\n", "grid search walks"),
    ("method: grid\nmetric: {name: x}\nparameters: {a: {value: 1}}\nprogram: t.py\n", "nothing to search"),
    ("method: random\nmetric: {name: x}\nparameters: {a: {values: [1, 2]}}\nprogram: t.py\ncontroller: {type: local}\n",
     "edgeprune's study is the controller"),
    ("method: random\nmetric: {name: x}\nparameters: {a: {values: [1, 2]}}\nprogram: t.py\nmodel: resnet20_cifar\n",
     "built-in pipeline"),
    ("method: random\nmetric: {name: x}\nparameters: {a: {values: [1, 2]}}\ncommand: [python, '${program}']\n",
     "'program' is not set"),
    ("method: random\nmetric: {name: x}\nparameters: {a: {values: [1, 2]}}\nprogram: t.py\n"
     "early_terminate: {type: hyperband, max_iter: 9}\n", "needs 's' too"),
    ("method: bayes\nmetric: {name: x, impute: worst}\nparameters: {a: {values: [1, 2]}}\nprogram: t.py\n",
     "metric.impute is not supported"),
])
def test_whole_file_mistakes(body: str, match: str) -> None:
    with pytest.raises(SweepError, match=match):
        parse_sweep(body, "s.yaml")


def test_grid_values_follow_wandb() -> None:
    cfg = parse_sweep("method: grid\nmetric: {name: x}\nprogram: t.py\nparameters:\n"
                      "  a: {distribution: q_uniform, min: 0, max: 1, q: 0.25}\n  b: {min: 1, max: 3}\n")
    assert cfg.space.grid() == {"a": [0.0, 0.25, 0.5, 0.75], "b": [1, 2, 3]}  # arange excludes max; range includes it


def test_pipeline_sweep_paths_and_metrics(tmp_path: Path) -> None:
    cfg = load_sweep(write_pipeline(tmp_path, PIPELINE))
    assert cfg.schedule_template == str(tmp_path / "template.yaml") and cfg.template_text == TEMPLATE
    assert [o.name for o in cfg.directions] == ["top1", "latency_ms"]
    bad = PIPELINE.replace("name: latency_ms", "name: latency")
    with pytest.raises(SweepError, match="did you mean 'latency_ms'"):
        load_sweep(write_pipeline(tmp_path, bad))


def test_hyperband_needs_a_per_epoch_metric(tmp_path: Path) -> None:
    body = PIPELINE.rstrip(" ") + ("    metric: {name: latency_ms, goal: minimize}\n"
                                   "    early_terminate: {type: hyperband, min_iter: 1}\n")
    with pytest.raises(SweepError, match="reported every retraining epoch"):
        load_sweep(write_pipeline(tmp_path, body))


def test_template_placeholder_without_parameter(tmp_path: Path) -> None:
    template = TEMPLATE.replace("desired_sparsity: ${sparsity}", "desired_sparsity: ${sparsty}")
    with pytest.raises(TemplateError, match=r"\$\{sparsty\} has no sweep parameter; did you mean 'sparsity'") as info:
        load_sweep(write_pipeline(tmp_path, PIPELINE, template))
    assert info.value.file.endswith("template.yaml") and (info.value.line, info.value.column) == (6, 23)


def test_parameter_never_used(tmp_path: Path) -> None:
    body = PIPELINE.replace("sparsity: {min: 0.1, max: 0.9}", "sparsity: {min: 0.1, max: 0.9}\n      lr: {value: 1}")
    with pytest.raises(SweepError, match="parameter 'lr' is never used") as info:
        load_sweep(write_pipeline(tmp_path, body))
    assert info.value.line == 7


def test_malformed_placeholder(tmp_path: Path) -> None:
    template = TEMPLATE.replace("${sparsity}", "${sparsity")
    with pytest.raises(TemplateError, match="malformed placeholder"):
        load_sweep(write_pipeline(tmp_path, PIPELINE, template))


def test_template_rendering_into_an_invalid_schedule_shows_the_values(tmp_path: Path) -> None:
    template = TEMPLATE.replace("  - pruner: {instance_name: p1}\n    epochs: [0]", "  - pruner: {instance_name: p1}\n"
                                "    epochs: [${first_epoch}]")
    body = PIPELINE.replace("sparsity: {min: 0.1, max: 0.9}", "sparsity: {min: 0.1, max: 0.9}\n"
                            "      first_epoch: {values: [-1, 0]}")
    with pytest.raises(TemplateError, match=r"policies\[0\].epochs\[0\]: epoch -1 is invalid.*\(rendered for the "
                                            r"preview values: sparsity=0.5, first_epoch=-1\)") as info:
        load_sweep(write_pipeline(tmp_path, body, template))
    assert info.value.line == 12


def test_every_training_setting_of_a_sweep_is_a_field_of_the_trainers_config() -> None:
    """``pretrain:``/``retrain:`` map onto TrainConfig by name (sweep.prepare.train_config): a setting added to
    the sweep schema but not to the trainer would otherwise be accepted from YAML and silently dropped."""
    import dataclasses

    from edgeprune.sweep.config import RetrainSettings, TrainSettings
    from edgeprune.sweep.prepare import train_config
    from edgeprune.training.loop import TrainConfig

    assert set(TrainSettings.model_fields) <= {f.name for f in dataclasses.fields(TrainConfig)}
    cfg = train_config(RetrainSettings(epochs=3, batch_size=16, lr=0.2, optimizer="adam", momentum=0.5,
                                       weight_decay=0.0, lr_schedule="step"), seed=7)
    assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.optimizer, cfg.momentum, cfg.weight_decay, cfg.lr_schedule,
            cfg.seed, cfg.progress) == (3, 16, 0.2, "adam", 0.5, 0.0, "step", 7, False)
