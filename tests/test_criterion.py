import numpy as np
import pytest

from diag.arrhenius import LogisticFit, fit_arrhenius
from diag.audit import balanced_accuracy
from diag.criterion import inferred_energy, truth_comparison, variance_criterion


def test_variance_is_e1_squared_var_s():
    temps = [0.5, 0.75, 1.0]
    fits = [LogisticFit(t, 1 - 20 / t, 0.3 + 2 / t, np.eye(2) * 1e-10, 10**5, 10**3, 100) for t in temps]
    arr = fit_arrhenius(fits, np.linspace(-3, 0, 5), n_draws=100)
    S = np.random.default_rng(0).normal(0, 1.5, 5000)
    cr = variance_criterion(S, fits[-1], arr, n_draws=100)
    assert cr.variance == pytest.approx(arr.e1**2 * S.var(), rel=1e-12)
    assert cr.variance == pytest.approx(4 * S.var(), rel=1e-4)
    np.testing.assert_allclose(cr.variance, np.var(inferred_energy(S, arr.e0, arr.e1)), rtol=1e-9)
    assert cr.variance_ci[0] <= cr.variance <= cr.variance_ci[1]
    assert cr.logp_variance == pytest.approx(np.var(fits[-1].log_p(S)))


def test_no_arrhenius_still_gives_the_proxy():
    fit = LogisticFit(1.0, 0.0, 1.0, np.eye(2) * 1e-4, 1000, 500, 10)
    cr = variance_criterion(np.linspace(-2, 2, 101), fit, None, n_draws=50)
    assert cr.variance is None and cr.variance_ci is None and cr.logp_variance > 0


def test_truth_comparison_on_an_exact_line():
    E = np.linspace(-3, 3, 61)
    tr = truth_comparison(2.0 + 0.5 * E, E)
    assert (tr.slope, tr.intercept, tr.r2, tr.n) == (pytest.approx(0.5), pytest.approx(2.0), pytest.approx(1.0), 61)


def test_balanced_accuracy_by_hand():
    R = np.array([1, 1, 1, 1, 0, 0])
    pred = np.array([1, 1, 1, 0, 0, 1])
    groups = np.array([0, 0, 1, 1, 2, 2])
    acc, ci = balanced_accuracy(pred, R, groups, 200, 0.95, np.random.default_rng(0))
    assert acc == pytest.approx(0.5 * (3 / 4 + 1 / 2))
    assert ci[0] <= acc <= ci[1]
