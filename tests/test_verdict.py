"""The verdict carries the diagnostics' three answers through (diag.verdict), on hand-made results."""

from types import SimpleNamespace

import numpy as np
import pytest

from diag.checks import DeficitTest
from diag.nested import PairedComparison
from diag.verdict import make_verdict


def _arr():
    n = 10
    return SimpleNamespace(linear=np.ones(n, bool), other_deviation=np.zeros(n, bool),
                           convex_deviation=np.zeros(n, bool), e0=0.0, e1=-2.0, in_regime=np.ones(12, bool))


def _result(n_features=24):
    return SimpleNamespace(classifier=SimpleNamespace(converged=True, C=1.0), arrhenius=_arr(), truth=None,
                           warnings=[], dataset={"n_features": n_features})


def _cmp(diagnostic, answer, gain, ci, same=False, factor=None, k=10):
    return PairedComparison(
        diagnostic=diagnostic, baseline="all features", candidate="RFE recommended" if diagnostic == "rfe" else "C = 0.05",
        baseline_eval=None, candidate_eval=None, scale_gain=gain, scale_gain_ci=ci, margin=0.03, answer=answer,
        same=same, data_factor=factor, n_outer=1000, n_outer_groups=20, criterion="variance", ci_level=0.95,
        candidate_features=[f"x{i}" for i in range(1, k + 1)],
    )


def _lc(answer, deficit=0.01, lo=0.0, hi=0.02, n_needed=None):
    test = DeficitTest([1, 2, 3, 4], 10.0, deficit, lo, 0.06, 0.9, 8, answer == "rising", hi, answer, n_needed)
    return SimpleNamespace(test=test, answer=answer, verdict=f"learning curve: {answer}", still_rising=answer == "rising")


def _selection(untouched, lc):
    rfe = SimpleNamespace(recommended=[f"x{i}" for i in range(1, 11)])
    cs = SimpleNamespace(verdict="C sweep: sentence", flag=untouched.get("c_sweep") is not None
                         and untouched["c_sweep"].answer == "better")
    return SimpleNamespace(untouched=untouched, learning_curve=lc, rfe=rfe, c_sweep=cs)


def test_better_on_untouched_groups_is_biased_low_with_the_measured_deficit():
    sel = _selection({"rfe": _cmp("rfe", "better", 0.32, (0.26, 0.39))}, _lc("cannot-tell", 0.12, -0.04, 0.28, 4600))
    v = make_verdict(_result(), sel)
    assert v.level == "biased-low" and v.remedy == "RFE recommended"
    assert v.recommended == [f"x{i}" for i in range(1, 11)]
    assert v.scale_deficit == pytest.approx(1 - 1 / 1.32)
    assert v.scale_deficit_ci == pytest.approx((1 - 1 / 1.26, 1 - 1 / 1.39))
    assert "24%" in v.headline and "10 recommended" in v.headline
    assert {e.diagnostic: e.answer for e in v.evidence} == {"rfe": "better", "learning_curve": "cannot-tell"}


def test_no_better_everywhere_is_trustworthy_and_recommends_nothing():
    sel = _selection({"rfe": _cmp("rfe", "no-better", 0.004, (-0.01, 0.02)),
                      "c_sweep": _cmp("c_sweep", "no-better", 0.0, (0.0, 0.0), same=True)}, _lc("levelled"))
    v = make_verdict(_result(), sel)
    assert v.level == "trustworthy" and v.recommended is None and v.scale_deficit is None
    assert any("no evidence that the 10 features RFE chose are better" in r for r in v.reasons)


def test_an_undecided_comparison_is_cannot_tell_not_a_recommendation():
    """The issue's real-data case: a broad peak and an inflated gain must not become advice."""
    sel = _selection({"rfe": _cmp("rfe", "cannot-tell", 0.05, (-0.02, 0.12), factor=6.2, k=42)}, _lc("levelled"))
    v = make_verdict(_result(146), sel)
    assert v.level == "cannot-tell" and v.recommended is None and v.remedy is None
    assert any("cannot tell whether the 42 features RFE chose" in r and "6 times the held-out data" in r
               for r in v.reasons)


def test_a_rising_learning_curve_alone_is_biased_low_with_more_data_as_remedy():
    sel = _selection({"rfe": _cmp("rfe", "no-better", 0.0, (-0.01, 0.01))}, _lc("rising", 0.36, 0.2, 0.5, 900))
    v = make_verdict(_result(), sel)
    assert v.level == "biased-low" and v.remedy == "more training data" and v.recommended is None
    assert v.scale_deficit == pytest.approx(1 - np.sqrt(1 - 0.36))
    assert v.scale_deficit_ci == pytest.approx((1 - np.sqrt(0.8), 1 - np.sqrt(0.5)))


def test_a_failed_check_wins_over_everything():
    res = _result()
    res.arrhenius.e1 = 0.5
    sel = _selection({"rfe": _cmp("rfe", "better", 0.3, (0.2, 0.4))}, _lc("levelled"))
    assert make_verdict(res, sel).level == "unreliable"
