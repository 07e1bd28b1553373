"""Is the data enough? Is C sensible? Learning curve and C sweep on the toy model."""

import numpy as np
import pytest

from diag.audit import AuditOptions
from diag.checks import c_grid, c_sweep, default_sizes, deficit_test, learning_curve
from diag.selection import SelectionOptions


def test_learning_curve_flags_a_small_training_set(toy_default):
    """About 100-200 per class: barriers biased low (METHOD 4) and the curve says so."""
    lc = learning_curve(toy_default, AuditOptions(train_per_class=200, seed=0), SelectionOptions(lc_repeats=3))
    assert lc.sizes[-1] == 200 and len(lc.sizes) >= 5
    assert lc.answer == "rising" and lc.still_rising and lc.test.deficit_lower > lc.test.tol
    assert "still rising" in lc.verdict and "more training data" in lc.verdict
    assert lc.test.n_needed > 200  # how much data would be enough, beyond what there is
    rows = lc.summary()
    assert rows[-1]["truth_slope"] < 0.8  # the truth: underestimated
    assert rows[-1]["variance"] > rows[0]["variance"]
    assert rows[-1]["accuracy"] > 0.8  # while the accuracy looks fine


def test_learning_curve_does_not_flag_a_large_training_set(toy_default):
    lc = learning_curve(toy_default, AuditOptions(seed=0), SelectionOptions(lc_repeats=3))
    assert lc.sizes[-1] > 10_000 and len(lc.sizes) == 6
    assert lc.answer == "levelled" and not lc.still_rising
    assert lc.test.deficit_upper < lc.test.tol and lc.test.n_needed is None
    assert "levelled off" in lc.verdict
    rows = lc.summary()
    assert rows[-1]["n_repeats"] == 1  # the whole rarer class: one draw
    assert rows[-1]["truth_slope"] == pytest.approx(1.02, abs=0.05)
    # points are seeded: the same call gives the same curve
    again = learning_curve(toy_default, AuditOptions(seed=0), SelectionOptions(lc_repeats=3, lc_sizes=(100, 200)))
    first = learning_curve(toy_default, AuditOptions(seed=0), SelectionOptions(lc_repeats=3, lc_sizes=(100, 200)))
    assert again.to_dict() == first.to_dict()


def test_deficit_rule_on_exact_curves():
    n = np.repeat([1000.0, 2000.0, 4000.0, 8000.0], 3)
    rng = np.random.default_rng(0)
    # V = 10 - 2000 / N: at N = 8000, 0.25 of 10 is missing (2.5 %)
    t = deficit_test(n, 10 - 2000 / n, tol=0.02, n_tail=3)
    assert t.sizes_used == [2000, 4000, 8000]
    assert deficit_test(n, 10 - 2000 / n).sizes_used == [1000, 2000, 4000, 8000]  # default: four sizes
    assert t.v_inf == pytest.approx(10) and t.deficit == pytest.approx(0.025)
    assert t.answer == "rising" and t.still_rising
    # exact curve: the data needed to miss less than 2% is a / (0.02 V_inf) = 10,000 per class
    assert t.n_needed == pytest.approx(2000 / (0.02 * 10))
    t3 = deficit_test(n, 10 - 2000 / n, tol=0.03)
    assert t3.answer == "levelled" and not t3.still_rising and t3.n_needed is None
    # flat or falling curves never count as rising; tight ones are levelled
    flat = deficit_test(n, 10 + 0.01 * rng.standard_normal(n.size))
    assert flat.answer == "levelled" and flat.deficit_upper < flat.tol
    assert deficit_test(n, 10 + 100 / n).answer == "levelled"
    # a rise buried in noise is neither rising nor levelled: cannot tell
    for seed in range(5):
        noisy = 10 - 2000 / n + 2.0 * np.random.default_rng(seed).standard_normal(n.size)
        t = deficit_test(n, noisy, tol=0.02)
        assert t.deficit_lower < t.deficit < t.deficit_upper
        assert t.answer == "cannot-tell" and not t.still_rising
        assert t.deficit_lower < t.tol < t.deficit_upper and t.n_needed > 8000
    # two sizes, one point each: no dof, no decision
    two = deficit_test(np.array([100.0, 200.0]), np.array([5.0, 7.0]))
    assert two.dof == 0 and two.answer == "cannot-tell"


def test_default_sizes_span_three_doublings():
    s = default_sizes(12_450, 6, 100)
    assert s[0] == 100 and s[-1] == 12_450 and len(s) == 6 and s == sorted(s)
    s = default_sizes(200, 6, 100)
    assert s[0] == 25 and s[-1] == 200
    assert default_sizes(5, 6, 100) == [5]


def test_c_sweep_flags_a_too_small_C_with_correlated_extras(toy_cube):
    opts = AuditOptions(C=1e-3, train_per_class=1000, seed=0)
    cs = c_sweep(toy_cube, opts, SelectionOptions())
    Cs = [p.C for p in cs.points]
    assert Cs == sorted(Cs) and 1e-3 in Cs and len(Cs) == 8
    assert cs.flag and cs.best_C > 0.1 and cs.answer == "better"  # same held-out data: optimistic
    assert "same held-out data" in cs.verdict
    var = {p.C: p.evaluation.variance for p in cs.points}
    acc = {p.C: p.evaluation.accuracy for p in cs.points}
    assert var[cs.best_C] > 1.5 * var[1e-3]
    assert abs(acc[cs.best_C] - acc[1e-3]) < 0.015  # the accuracy hardly notices
    d = cs.to_dict()
    assert d["audit_C"] == 1e-3 and len(d["points"]) == 8


def test_c_grid_is_relative_to_the_training_size():
    g = c_grid(2000, 0.3)
    assert g == sorted(g) and 0.3 in g and g[0] == pytest.approx(5e-5) and g[-1] == pytest.approx(50)


def test_c_sweep_choice_confirmed_on_untouched_groups(toy_cube):
    """The best C is chosen on inner groups and beats the audit's C on groups it never saw."""
    from diag.audit import make_split
    from diag.nested import compare_untouched, nested_split
    from diag.selection import HeldOut

    opts = AuditOptions(C=1e-3, train_per_class=1000, seed=0)
    sel = SelectionOptions(c_grid=(1e-3, 0.05, 5.0))
    nest = nested_split(toy_cube, make_split(toy_cube, opts), 0.5, seed=0)
    held = HeldOut(toy_cube, nest.inner, opts, sel.eval_n_draws, sel.eval_max_per_temperature, sel.eval_n_boot, 0)
    cs = c_sweep(toy_cube, opts, sel, split=nest.inner, heldout=held)
    cmp = compare_untouched(toy_cube, nest.outer, ("C = 0.001", None, 1e-3), ("best", None, cs.best_C), opts,
                            diagnostic="c_sweep", margin=0.03)
    cs.set_untouched(cmp)
    assert cmp.answer == "better" and cmp.scale_gain_ci[0] > 0.03 and cs.flag
    # the truth agrees: the audit's C gives barriers too narrow by about the measured deficit
    slope_a, slope_b = cmp.baseline_eval.truth_slope, cmp.candidate_eval.truth_slope
    assert slope_b / slope_a - 1 == pytest.approx(cmp.scale_gain, abs=0.05)
    assert "use C" in cs.verdict and cs.to_dict()["answer"] == "better"
