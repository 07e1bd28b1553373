"""Tests of the true-hinge softness SVM (diag.svm) against libsvm and by construction."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.svm import SVC

from diag.svm import HingeResult, SoftnessSVM, fit_hinge, standardize


def primal(Z, R, C, w, b, s=None):
    """True hinge objective 0.5||w||^2 + C sum s_i max(0, 1 - y_i (w.z_i + b)), in float64."""
    y = 2.0 * np.asarray(R) - 1.0
    loss = np.maximum(0.0, 1.0 - y * (np.asarray(Z, np.float64) @ w + b))
    if s is not None:
        loss = loss * s
    return 0.5 * float(w @ w) + C * float(loss.sum())


def make_data(kind: str, n: int, d: int, seed: int):
    """Small labelled problems in several regimes; returns standardised Z (float64) and R."""
    rng = np.random.default_rng(seed)
    if kind == "logistic":  # overlapping classes, labels from a logistic law
        X = rng.standard_normal((n, d))
        f = X @ rng.uniform(0.5, 1.5, d)
        R = (rng.random(n) < 1.0 / (1.0 + np.exp(-f))).astype(int)
    elif kind == "cubes":  # the toy model's correlated extras: x and x^3
        x = rng.standard_normal((n, d // 2))
        X = np.concatenate([x, x**3], axis=1)
        E = x.sum(axis=1)
        R = (rng.random(n) < 1.0 / (1.0 + np.exp(E))).astype(int)
    elif kind == "separable":
        X = rng.standard_normal((n, d))
        R = (X @ rng.standard_normal(d) > 0).astype(int)
    else:
        raise ValueError(kind)
    Z = (X - X.mean(0)) / X.std(0)
    return Z, R


def svc_reference(Z, R, C, s=None):
    m = SVC(kernel="linear", C=C, tol=1e-10).fit(Z, R, sample_weight=s)
    return m.coef_.ravel(), float(m.intercept_[0])


CASES = [
    ("logistic", 400, 12, 1e-3),
    ("logistic", 400, 12, 0.1),
    ("logistic", 2000, 15, 1.0),
    ("cubes", 600, 20, 1e-3),
    ("cubes", 600, 20, 10.0),
    ("separable", 300, 10, 10.0),
    ("separable", 20, 5, 1.0),  # tiny n
]


@pytest.mark.parametrize("kind,n,d,C", CASES)
def test_matches_libsvm(kind, n, d, C):
    Z, R = make_data(kind, n, d, seed=n + d)
    res = fit_hinge(Z, R, C, tol=1e-10)
    assert isinstance(res, HingeResult) and res.converged
    w_ref, b_ref = svc_reference(Z, R, C)
    P, P_ref = primal(Z, R, C, res.coef, res.intercept), primal(Z, R, C, w_ref, b_ref)
    assert P <= P_ref * (1 + 1e-6)  # ours agrees or is lower (libsvm's tol is on the KKT conditions)
    assert res.objective == pytest.approx(P, rel=1e-12)  # the reported objective is the true hinge one
    assert res.gap <= 1e-10 * res.objective
    scale = max(1.0, np.abs(w_ref).max())
    np.testing.assert_allclose(res.coef, w_ref, atol=1e-3 * scale)
    assert res.intercept == pytest.approx(b_ref, abs=1e-3 * max(1.0, abs(b_ref)))


def test_weighted_imbalanced_matches_libsvm():
    Z, R = make_data("logistic", 500, 10, seed=7)
    rng = np.random.default_rng(8)
    s = np.where(R == 1, 5.0, 0.5) * rng.uniform(0.5, 1.5, R.size)
    res = fit_hinge(Z, R, 0.2, sample_weight=s, tol=1e-10)
    w_ref, b_ref = svc_reference(Z, R, 0.2, s)
    assert res.converged
    assert primal(Z, R, 0.2, res.coef, res.intercept, s) <= primal(Z, R, 0.2, w_ref, b_ref, s) * (1 + 1e-6)
    np.testing.assert_allclose(res.coef, w_ref, atol=1e-3 * max(1.0, np.abs(w_ref).max()))


def test_estimator_matches_libsvm_on_raw_features():
    rng = np.random.default_rng(11)
    X = rng.standard_normal((800, 8)) * rng.uniform(0.1, 10, 8) + rng.uniform(-5, 5, 8)
    R = (rng.random(800) < 1 / (1 + np.exp(-(X - X.mean(0)) @ rng.standard_normal(8)))).astype(int)
    m = SoftnessSVM(C=0.5, tol=1e-10).fit(X, R)
    np.testing.assert_allclose(m.mean_, X.mean(0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(m.scale_, X.std(0), rtol=1e-12)
    Z = (X - X.mean(0)) / X.std(0)
    w_ref, b_ref = svc_reference(Z, R, 0.5)
    assert m.converged_ and m.objective_ <= primal(Z, R, 0.5, w_ref, b_ref) * (1 + 1e-6)
    assert m.objective_ == pytest.approx(primal(Z, R, 0.5, m.coef_, m.intercept_), rel=1e-10)
    np.testing.assert_allclose(m.decision_function(X), Z @ m.coef_ + m.intercept_, rtol=1e-10, atol=1e-10)
    np.testing.assert_array_equal(m.predict(X), (Z @ m.coef_ + m.intercept_ > 0).astype(int))
    assert list(m.classes_) == [0, 1] and m.n_features_in_ == 8


def test_softness_of_hand_built_hyperplane():
    m = SoftnessSVM()
    m.mean_ = np.array([1.0, -2.0, 0.5])
    m.scale_ = np.array([2.0, 0.5, 1.0])
    m.coef_ = np.array([3.0, 0.0, -4.0])  # ||w|| = 5
    m.intercept_ = 1.0
    m.n_features_in_ = 3
    m.classes_ = np.array([0, 1])
    X = np.array([[1.0, -2.0, 0.5], [3.0, 7.0, 0.5], [1.0, -2.0, 1.75], [-1.0, 0.0, -0.5]])
    # z rows: (0,0,0), (1,18,0), (0,0,1.25), (-1,4,-1)  ->  w.z + b = 1, 4, -4, 2
    np.testing.assert_allclose(m.decision_function(X), [1.0, 4.0, -4.0, 2.0])
    np.testing.assert_allclose(m.softness(X), [0.2, 0.8, -0.8, 0.4])
    # geometric meaning: moving by distance 0.3 along w/||w|| in z-space changes S by 0.3
    z_on_plane = np.array([-1.0 / 3.0, 0.0, 0.0])  # w.z + b = 0
    z = z_on_plane + 0.3 * m.coef_ / 5.0
    assert m.softness((z * m.scale_ + m.mean_)[None, :])[0] == pytest.approx(0.3)
    np.testing.assert_array_equal(m.predict(X), [1, 1, 0, 1])


def test_clone_and_params_round_trip():
    m = SoftnessSVM(C=0.3, tol=1e-8, max_iter=50, warm_start=True)
    params = m.get_params()
    assert params == {"C": 0.3, "tol": 1e-8, "max_iter": 50, "warm_start": True}
    c = clone(m)
    assert c.get_params() == params and c is not m
    c.set_params(C=2.0)
    assert c.C == 2.0 and m.C == 0.3
    Z, R = make_data("logistic", 300, 6, seed=3)
    m.fit(Z, R)
    c2 = clone(m)
    assert not hasattr(c2, "coef_") and c2.get_params() == params
    assert m.fit(Z, R) is m


def test_warm_start_same_answer_fewer_iterations():
    Z, R = make_data("cubes", 20_000, 20, seed=5)
    cold = SoftnessSVM(C=0.01, tol=1e-9).fit(Z, R)
    warm = SoftnessSVM(C=0.01, tol=1e-9, warm_start=True)
    warm.fit(Z, R)  # first fit is cold
    warm.fit(Z, R)  # second starts from the first
    assert warm.converged_ and cold.converged_
    assert warm.objective_ == pytest.approx(cold.objective_, rel=1e-9)
    np.testing.assert_allclose(warm.coef_, cold.coef_, atol=1e-4 * np.abs(cold.coef_).max())
    assert warm.n_iter_ < cold.n_iter_


def test_fit_hinge_warm_start_after_dropping_a_column():
    """The recursive-feature-elimination pattern: refit without the smallest |w_j|."""
    Z, R = make_data("cubes", 20_000, 20, seed=6)
    Z = Z.astype(np.float32)
    full = fit_hinge(Z, R, 0.01)
    cols = np.delete(np.arange(20), np.argmin(np.abs(full.coef)))
    w0 = np.delete(full.coef, np.argmin(np.abs(full.coef)))
    warm = fit_hinge(Z, R, 0.01, columns=cols, coef_init=w0, intercept_init=full.intercept)
    cold = fit_hinge(Z, R, 0.01, columns=cols)
    assert warm.converged and cold.converged
    assert warm.objective == pytest.approx(cold.objective, rel=2e-6)
    assert warm.n_iter < cold.n_iter


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cols", [[0, 3, 4, 9], list(range(1, 12))])  # copied / read in place
def test_columns_equals_sliced_matrix(dtype, cols):
    Z, R = make_data("logistic", 1500, 12, seed=9)
    Z = Z.astype(dtype)
    a = fit_hinge(Z, R, 0.5, columns=np.array(cols), tol=1e-10)
    b = fit_hinge(np.ascontiguousarray(Z[:, cols]), R, 0.5, tol=1e-10)
    assert a.converged and b.converged and a.coef.shape == (len(cols),)
    assert a.objective == pytest.approx(b.objective, rel=1e-9)
    np.testing.assert_allclose(a.coef, b.coef, atol=1e-5)
    assert a.intercept == pytest.approx(b.intercept, abs=1e-5)


def test_weight_two_equals_double_C():
    Z, R = make_data("cubes", 800, 10, seed=12)
    a = fit_hinge(Z, R, 0.05, sample_weight=np.full(800, 2.0), tol=1e-10)
    b = fit_hinge(Z, R, 0.1, tol=1e-10)
    assert a.objective == pytest.approx(b.objective, rel=1e-9)
    np.testing.assert_allclose(a.coef, b.coef, atol=1e-6)
    m1 = SoftnessSVM(C=0.05, tol=1e-10).fit(Z, R, sample_weight=np.full(800, 2.0))
    m2 = SoftnessSVM(C=0.1, tol=1e-10).fit(Z, R)
    np.testing.assert_allclose(m1.coef_, m2.coef_, atol=1e-6)


def test_convergence_warning_when_iterations_run_out():
    Z, R = make_data("cubes", 3000, 20, seed=13)
    with pytest.warns(ConvergenceWarning):
        m = SoftnessSVM(C=10.0, max_iter=1).fit(Z, R)
    assert m.converged_ is False and m.n_iter_ <= 1
    # the reported objective is still the true objective of the returned point
    assert m.objective_ == pytest.approx(primal(Z, R, 10.0, m.coef_, m.intercept_), rel=1e-10)
    res = fit_hinge(Z, R, 10.0, max_iter=1)  # the function reports, never warns
    assert not res.converged and res.gap > 1e-6 * res.objective


def test_no_warning_and_certified_gap_when_converged():
    Z, R = make_data("logistic", 1000, 10, seed=14)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = SoftnessSVM(C=1.0, tol=1e-7).fit(Z, R)
    assert m.converged_ and 0 <= m.duality_gap_ <= 1e-7 * m.objective_


def test_float32_large_n_uses_subsample_start_and_stays_exact():
    """Large n: subsample start, float32 passes, working-set finish; compared with a tight float64 fit."""
    rng = np.random.default_rng(15)
    n, d = 200_000, 20
    x = rng.standard_normal((n, d // 2))
    X = np.concatenate([x, x**3], axis=1).astype(np.float32)
    R = (rng.random(n) < 1 / (1 + np.exp(x.sum(1)))).astype(np.int8)
    Z32, mean, scale = standardize(X)
    assert Z32.dtype == np.float32
    fast = fit_hinge(Z32, R, 0.01, tol=1e-6)
    ref = fit_hinge(Z32.astype(np.float64), R, 0.01, tol=1e-11)
    assert fast.converged and ref.converged
    assert fast.objective <= ref.objective * (1 + 1e-6)
    assert fast.objective >= ref.objective * (1 - 1e-6)  # float32 data rounding is far below 1e-6
    assert fast.n_passes < 30


def test_standardize_matches_float64_statistics():
    rng = np.random.default_rng(16)
    X = (rng.standard_normal((10_001, 5)) * [1, 10, 1e-3, 1, 2] + [0, 1e4, 5, -3, 0]).astype(np.float32)
    X[:, 3] = 7.0  # constant column: scale 1, like StandardScaler
    Z, mean, scale = standardize(X)
    X64 = X.astype(np.float64)
    np.testing.assert_allclose(mean, X64.mean(0), rtol=1e-13)
    np.testing.assert_allclose(scale[[0, 1, 2, 4]], X64.std(0)[[0, 1, 2, 4]], rtol=1e-12)
    assert scale[3] == 1.0 and np.all(Z[:, 3] == 0)
    np.testing.assert_allclose(Z, (X64 - mean) / scale, rtol=1e-6, atol=1e-6)
    Z64, _, _ = standardize(X, dtype=np.float64)
    assert Z64.dtype == np.float64


def test_input_validation():
    Z, R = make_data("logistic", 100, 4, seed=17)
    with pytest.raises(ValueError):
        SoftnessSVM().fit(Z, np.zeros(100, int))  # one class
    with pytest.raises(ValueError):
        SoftnessSVM().fit(Z, 2 * R)  # labels must be 0/1
    bad = Z.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError):
        SoftnessSVM().fit(bad, R)
    with pytest.raises(ValueError):
        fit_hinge(Z, R, 1.0, sample_weight=-np.ones(100))
    with pytest.raises(ValueError):
        fit_hinge(Z, R, 1.0, columns=[0, 0])
    with pytest.raises(ValueError):
        fit_hinge(Z, R, 1.0, coef_init=np.zeros(3))
