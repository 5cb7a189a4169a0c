"""Every WandB distribution, sampled through Optuna, draws WandB's law (sample statistics over many draws)."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import optuna
import pytest
from scipy import stats

from edgeprune.sweep.config import parse_sweep
from edgeprune.sweep.space import quantise

N = 4000
P_MIN = 1e-3  # KS p-value below which the sample is not from the law (seeded, so deterministic)

PARAMETERS = """\
method: random
metric: {name: x}
program: t.py
parameters:
  uniform: {min: -2.0, max: 3.0}
  int_uniform: {min: 1, max: 6}
  q_uniform: {distribution: q_uniform, min: 0, max: 10, q: 2}
  log_uniform: {distribution: log_uniform, min: -3, max: 1}
  log_uniform_values: {distribution: log_uniform_values, min: 0.001, max: 0.1}
  q_log_uniform: {distribution: q_log_uniform, min: 2.772588722239781, max: 5.545177444479562, q: 1}
  q_log_uniform_values: {distribution: q_log_uniform_values, min: 16, max: 256, q: 8}
  inv_log_uniform: {distribution: inv_log_uniform, min: 0, max: 3}
  inv_log_uniform_values: {distribution: inv_log_uniform_values, min: 0.01, max: 1.0}
  normal: {distribution: normal, mu: 1.0, sigma: 2.0}
  q_normal: {distribution: q_normal, mu: 10, sigma: 3}
  log_normal: {distribution: log_normal, mu: 0.0, sigma: 0.5}
  q_log_normal: {distribution: q_log_normal, mu: 2.0, sigma: 0.3, q: 0.5}
  beta: {distribution: beta, a: 2, b: 5}
  q_beta: {distribution: q_beta, a: 2, b: 2, q: 0.1}
  categorical: {values: [a, b, c]}
  weighted: {values: [x, y, z], probabilities: [0.1, 0.2, 0.7]}
  lists: {values: [[1, 2], [3]]}
  constant: {value: {k: 1}}
"""


@pytest.fixture(scope="module")
def draws() -> dict[str, list]:
    cfg = parse_sweep(PARAMETERS)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    out: dict[str, list] = {name: [] for name in cfg.space.names}
    for _ in range(N):
        trial = study.ask(cfg.space.distributions())
        for name, value in cfg.space.values(trial.params).items():
            out[name].append(value)
        study.tell(trial, 0.0)
    return out


def ks(samples: list[float], cdf) -> float:
    return stats.kstest(np.asarray(samples, float), cdf).pvalue


def freq(samples: list, value) -> float:
    return sum(1 for s in samples if s == value) / len(samples)


def test_continuous_laws(draws: dict[str, list]) -> None:
    assert ks(draws["uniform"], stats.uniform(-2, 5).cdf) > P_MIN
    assert ks(np.log(draws["log_uniform"]), stats.uniform(-3, 4).cdf) > P_MIN  # exponent bounds
    assert ks(np.log(draws["log_uniform_values"]), stats.uniform(math.log(1e-3), math.log(100)).cdf) > P_MIN
    assert ks(np.log(1 / np.asarray(draws["inv_log_uniform"])), stats.uniform(0, 3).cdf) > P_MIN
    lo, hi = math.log(1 / 1.0), math.log(1 / 0.01)
    assert ks(np.log(1 / np.asarray(draws["inv_log_uniform_values"])), stats.uniform(lo, hi - lo).cdf) > P_MIN
    assert ks(draws["normal"], stats.norm(1.0, 2.0).cdf) > P_MIN
    assert ks(np.log(draws["log_normal"]), stats.norm(0.0, 0.5).cdf) > P_MIN
    assert ks(draws["beta"], stats.beta(2, 5).cdf) > P_MIN


def test_quantised_laws_round_like_wandb(draws: dict[str, list]) -> None:
    q = draws["q_uniform"]
    assert set(q) <= {0, 2, 4, 6, 8, 10} and all(isinstance(v, int) for v in q)  # q written as an int
    assert freq(q, 0) == pytest.approx(0.1, abs=0.02) and freq(q, 4) == pytest.approx(0.2, abs=0.03)  # half-width ends
    qlu = draws["q_log_uniform"]
    assert all(isinstance(v, int) and 16 <= v <= 256 for v in qlu)
    assert np.mean(np.asarray(qlu) <= 64) == pytest.approx(0.5, abs=0.03)  # log-uniform: median at 64
    assert all(v % 8 == 0 and 16 <= v <= 256 for v in draws["q_log_uniform_values"])
    qn = draws["q_normal"]
    assert all(float(v).is_integer() and isinstance(v, float) for v in qn)  # default q=1.0: WandB returns floats
    assert np.mean(qn) == pytest.approx(10, abs=0.2) and np.std(qn) == pytest.approx(3, abs=0.2)
    assert all(math.isclose(v / 0.5, round(v / 0.5)) for v in draws["q_log_normal"])
    qb = draws["q_beta"]
    assert set(qb) <= {round(i / 10, 1) for i in range(11)} and np.mean(qb) == pytest.approx(0.5, abs=0.02)


def test_discrete_laws(draws: dict[str, list]) -> None:
    ints = Counter(draws["int_uniform"])
    assert set(ints) == {1, 2, 3, 4, 5, 6} and all(abs(n / N - 1 / 6) < 0.025 for n in ints.values())
    cats = Counter(draws["categorical"])
    assert set(cats) == {"a", "b", "c"} and all(abs(n / N - 1 / 3) < 0.03 for n in cats.values())
    weighted = draws["weighted"]
    for value, p in (("x", 0.1), ("y", 0.2), ("z", 0.7)):
        assert freq(weighted, value) == pytest.approx(p, abs=0.025)
    assert {tuple(v) for v in draws["lists"]} == {(1, 2), (3,)}  # non-scalar values survive Optuna's storage
    assert all(v == {"k": 1} for v in draws["constant"])


def test_quantise_matches_wandb_rounding() -> None:
    assert quantise(2.5, 1) == 2 and quantise(3.5, 1) == 4  # half to even, like numpy.round
    assert quantise(0.3000001, 0.1) == 0.3 and isinstance(quantise(7.0, 2), int)


def test_grid_and_bayes_distributions() -> None:
    cfg = parse_sweep(PARAMETERS.replace("method: random", "method: bayes"))
    dists = cfg.space.distributions()
    assert isinstance(dists["normal"], optuna.distributions.FloatDistribution) and dists["normal"].high == 1.0
    assert dists["log_uniform"].log and dists["log_uniform"].low == pytest.approx(math.exp(-3))
    assert "constant" not in dists  # constants are not searched, as in WandB
