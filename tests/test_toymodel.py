import numpy as np
import pytest
from scipy.special import expit

from diag.errors import UsageError
from toymodel import ToyModel


def test_feature_names_and_families():
    m = ToyModel(n_energy=4, n_noise=2, extra="triple")
    assert m.feature_names == ["x1", "x2", "x3", "x4", "x5", "x6", "x1*x2*x3", "x2*x3*x4", "x3*x4*x1", "x4*x1*x2"]
    assert m.feature_families[:6] == ["energy"] * 4 + ["noise"] * 2
    assert ToyModel(n_energy=3, n_noise=0, extra="cube").feature_names == ["x1", "x2", "x3", "x1^3", "x2^3", "x3^3"]
    assert ToyModel(n_energy=3, coef=[1, 0, 2]).energy_features == ["x1", "x3"]


def test_energy_and_extras_are_the_stated_functions():
    m = ToyModel(n_energy=5, n_noise=2, coef=[1, 2, 3, 4, 5], extra="cube", offset=7.0)
    s = m.sample(1000, 1.0, np.random.default_rng(0))
    x = s.X[:, :7]
    np.testing.assert_allclose(s.energy, x[:, :5] @ [1, 2, 3, 4, 5] + 7.0)
    np.testing.assert_allclose(s.X[:, 7:], x[:, :5] ** 3)
    t = ToyModel(n_energy=4, n_noise=0, extra="triple").sample(10, 1.0, np.random.default_rng(1))
    np.testing.assert_allclose(t.X[:, 7], t.X[:, 3] * t.X[:, 0] * t.X[:, 1])


def test_labels_follow_the_logistic_law():
    m = ToyModel()
    s = m.sample(200_000, 0.7, np.random.default_rng(2))
    bins = np.linspace(-4, 4, 9)
    idx = np.digitize(s.energy, bins)
    for b in range(1, len(bins)):
        sel = idx == b
        p_emp = s.label[sel].mean()
        p_law = expit(-s.energy[sel] / 0.7).mean()
        # 4 standard errors of a binomial mean
        assert abs(p_emp - p_law) < 4 * np.sqrt(p_law * (1 - p_law) / sel.sum())


def test_bayes_accuracy_matches_method_and_monte_carlo():
    m = ToyModel()
    assert m.bayes_accuracy(1.0) == pytest.approx(0.843, abs=5e-4)
    # Monte Carlo of the Bayes rule itself (predict R=1 when E < 0 for the centred toy)
    s = m.sample(400_000, 1.0, np.random.default_rng(3))
    pred = s.energy < 0
    bacc = 0.5 * (pred[s.label == 1].mean() + (~pred)[s.label == 0].mean())
    assert bacc == pytest.approx(m.bayes_accuracy(1.0), abs=3e-3)
    # with an offset the balanced rule thresholds at the class prior
    mo = ToyModel(coef=0.5, offset=5.0)
    so = mo.sample(400_000, 1.0, np.random.default_rng(4))
    pi1 = so.label.mean()
    e_star = np.log((1 - pi1) / pi1)
    pred = so.energy < e_star
    bacc = 0.5 * (pred[so.label == 1].mean() + (~pred)[so.label == 0].mean())
    assert bacc == pytest.approx(mo.bayes_accuracy(1.0), abs=0.01)


def test_dataset_is_reproducible_and_temperatures_independent():
    a = ToyModel().to_dataset(temperatures=[0.5, 1.0], per_temperature=1000, seed=5)
    b = ToyModel().to_dataset(temperatures=[0.5, 1.0], per_temperature=1000, seed=5)
    np.testing.assert_array_equal(a.features, b.features)
    np.testing.assert_array_equal(a.label, b.label)
    assert a.provenance["seed"] == 5
    assert a.energy is not None and a.n_features == 14
    # groups never straddle temperatures
    for g in np.unique(a.group):
        assert np.unique(a.temperature[a.group == g]).size == 1


def test_bad_parameters_are_usage_errors():
    with pytest.raises(UsageError):
        ToyModel(extra="square")
    with pytest.raises(UsageError):
        ToyModel(n_energy=3, coef=[1, 2])
    with pytest.raises(UsageError):
        ToyModel(n_energy=2, extra="triple")
