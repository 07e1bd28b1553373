import numpy as np
import pytest
from scipy.special import expit

from diag.arrhenius import LogisticFit, fit_arrhenius, fit_logistic, softness_grid
from diag.errors import InsufficientDataError


def _exact_fits(e0, e1, s0, s1, temps, cov_scale=1e-12):
    """Logistic fits whose log-odds are exactly Sigma(S) - DeltaE(S)/T."""
    return [
        LogisticFit(t, s0 - e0 / t, s1 - e1 / t, np.eye(2) * cov_scale, 10**6, 10**3, 10**3) for t in temps
    ]


def test_arrhenius_recovers_exact_lines_deep_in_the_regime():
    temps = [0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    e0, e1, s0, s1 = 20.0, -2.0, 1.0, 0.3
    grid = np.linspace(-3, 0, 7)  # log-odds <= -13: log P equals the log-odds within 3e-6
    res = fit_arrhenius(_exact_fits(e0, e1, s0, s1, temps), grid, n_draws=50)
    assert res.in_regime.all()
    np.testing.assert_allclose(res.delta_e, e0 + e1 * grid, atol=1e-5)
    np.testing.assert_allclose(res.sigma, s0 + s1 * grid, atol=1e-5)
    assert res.e0 == pytest.approx(e0, abs=1e-5) and res.e1 == pytest.approx(e1, abs=1e-5)
    assert res.linear.all() and (res.r2 > 1 - 1e-9).all()
    # with a vanishing covariance the intervals collapse onto the estimate
    assert res.e1_ci[0] == pytest.approx(e1, abs=1e-4) and res.e1_ci[1] == pytest.approx(e1, abs=1e-4)


def test_regime_cut_drops_the_soft_side():
    temps = [0.5, 1.0]
    fits = [LogisticFit(t, 0.0, 2.0 / t, np.eye(2) * 1e-12, 1000, 500, 10) for t in temps]
    grid = np.array([-2.0, -1.0, -0.1, 0.1, 1.0])
    res = fit_arrhenius(fits, grid, p_max=0.5, n_draws=10)
    np.testing.assert_array_equal(res.in_regime, [True, True, True, False, False])
    assert np.isnan(res.chi2_p).all()  # two temperatures: no residual degrees of freedom


def test_needs_two_temperatures_and_two_grid_points():
    fits = _exact_fits(20, -2, 1, 0.3, [1.0])
    with pytest.raises(InsufficientDataError):
        fit_arrhenius(fits, np.linspace(-1, 0, 3))
    fits = [LogisticFit(t, 5.0, 0.0, np.eye(2) * 1e-12, 10, 5, 10) for t in (0.5, 1.0)]
    with pytest.raises(InsufficientDataError):
        fit_arrhenius(fits, np.linspace(-1, 0, 3))


def test_logistic_fit_is_the_maximum_likelihood_estimate():
    rng = np.random.default_rng(0)
    S = rng.normal(size=20_000)
    R = (rng.random(S.size) < expit(-1.0 + 2.5 * S)).astype(int)
    f = fit_logistic(S, R, 1.0)
    p = expit(f.alpha + f.beta * S)
    # the score vanishes at the MLE
    np.testing.assert_allclose([np.sum(R - p), np.sum((R - p) * S)], 0, atol=1e-4)
    # without groups the covariance is the inverse Fisher information
    X = np.column_stack([np.ones_like(S), S])
    np.testing.assert_allclose(f.cov, np.linalg.inv((X * (p * (1 - p))[:, None]).T @ X), rtol=1e-6)
    assert abs(f.alpha + 1.0) < 4 * np.sqrt(f.cov[0, 0]) and abs(f.beta - 2.5) < 4 * np.sqrt(f.cov[1, 1])


def test_clustered_covariance_sees_through_duplicated_samples():
    rng = np.random.default_rng(1)
    S = rng.normal(size=5000)
    R = (rng.random(S.size) < expit(0.5 - S)).astype(int)
    single = fit_logistic(S, R, 1.0, groups=np.arange(S.size))
    # every sample twice, the two copies in one group: same information, not twice as much
    dup = fit_logistic(np.repeat(S, 2), np.repeat(R, 2), 1.0, groups=np.repeat(np.arange(S.size), 2))
    naive = fit_logistic(np.repeat(S, 2), np.repeat(R, 2), 1.0)
    np.testing.assert_allclose(dup.cov, single.cov, rtol=1e-4)
    np.testing.assert_allclose(naive.cov * 2, fit_logistic(S, R, 1.0).cov, rtol=1e-4)


def test_logistic_needs_both_classes():
    with pytest.raises(InsufficientDataError):
        fit_logistic(np.arange(5.0), np.zeros(5, int), 0.7)


def test_softness_grid_spans_quantiles():
    S = np.arange(1001.0)
    g = softness_grid(S, 11, (0.1, 0.9))
    np.testing.assert_allclose(g, np.linspace(100, 900, 11))
