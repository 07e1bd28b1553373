"""Inferred barriers, the variance criterion, the log-P proxy and the comparison with truth.

The law of total variance, ``Var(E) = Var(E[E|S]) + E[Var(E|S)]``, means any imperfect
softness loses barrier variance: among candidate feature sets the one whose inferred
barriers ``E_inf = e0 + e1 S`` vary most across particles is closest to the truth
(METHOD section 2). ``Var(log P(R|S,T))`` at one temperature is a cheaper proxy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import log_expit

from .arrhenius import ArrheniusResult, LogisticFit

#: at most this many reference samples enter the Monte Carlo propagation (the variance of
#: S itself is estimated on all of them; its sampling error is negligible next to e1's)
_MAX_PROPAGATION_SAMPLES = 20_000


def inferred_energy(S: np.ndarray, e0: float, e1: float) -> np.ndarray:
    """Barrier of each sample from its softness, ``E_inf = e0 + e1 S``; shape of ``S``."""
    return e0 + e1 * np.asarray(S, dtype=np.float64)


@dataclass
class CriterionResult:
    """The variance criterion and its proxy.

    Attributes
    ----------
    variance : float or None
        ``Var(E_inf)`` over the reference samples; None without an Arrhenius fit.
    variance_ci : tuple of float or None
    logp_variance : float
        ``Var(log P(R|S, T_ref))`` over the reference samples.
    logp_variance_ci : tuple of float
    reference : str
        Which samples the variances are taken over.
    n_reference : int
    """

    variance: float | None
    variance_ci: tuple[float, float] | None
    logp_variance: float
    logp_variance_ci: tuple[float, float]
    reference: str
    n_reference: int


def variance_criterion(
    S_ref: np.ndarray,
    fit_ref: LogisticFit,
    arrhenius: ArrheniusResult | None,
    ci_level: float = 0.95,
    n_draws: int = 400,
    seed: int = 0,
    reference: str = "held-out samples at the training temperature",
) -> CriterionResult:
    """``Var(E_inf)`` and ``Var(log P)`` over a reference sample, with Monte Carlo CIs.

    Parameters
    ----------
    S_ref : ndarray, shape (n,)
        Softness of the reference samples.
    fit_ref : LogisticFit
        ``P(R|S)`` at the reference temperature (for the log-P proxy).
    arrhenius : ArrheniusResult or None
        Provides ``e1`` and its draws; None when no Arrhenius fit was possible.

    Returns
    -------
    CriterionResult
    """
    S_ref = np.asarray(S_ref, dtype=np.float64)
    var_s = float(S_ref.var())
    q = [(1 - ci_level) / 2 * 100, (1 + ci_level) / 2 * 100]
    variance = variance_ci = None
    if arrhenius is not None:
        # Var(e0 + e1 S) = e1^2 Var(S): exact, so the draws of e1 carry the uncertainty
        variance = arrhenius.e1**2 * var_s
        lo, hi = np.percentile(arrhenius.draws_e1**2 * var_s, q)
        variance_ci = (float(lo), float(hi))
    logp_var = float(np.var(fit_ref.log_p(S_ref)))
    rng = np.random.default_rng(seed)
    sub = S_ref
    if S_ref.size > _MAX_PROPAGATION_SAMPLES:
        sub = rng.choice(S_ref, _MAX_PROPAGATION_SAMPLES, replace=False)
    th = rng.multivariate_normal(fit_ref.params, fit_ref.cov, size=n_draws, method="eigh")
    lp = log_expit(th[:, :1] + th[:, 1:] * sub[None, :])
    lo, hi = np.percentile(lp.var(axis=1), q)
    return CriterionResult(
        variance=None if variance is None else float(variance),
        variance_ci=variance_ci,
        logp_variance=logp_var,
        logp_variance_ci=(float(lo), float(hi)),
        reference=reference,
        n_reference=int(S_ref.size),
    )


@dataclass
class TruthResult:
    """Least-squares line ``E_inf = intercept + slope * E_true`` (toy data only).

    slope 1 with small scatter is success; slope < 1 is underestimation. ``slope_ci``
    propagates the uncertainty of ``e1`` (the slope is exactly proportional to it for
    a fixed softness); it is None when no draws are given.
    """

    slope: float
    intercept: float
    r2: float
    n: int
    slope_ci: tuple[float, float] | None = None


def truth_comparison(
    E_inf: np.ndarray, E_true: np.ndarray, arrhenius: ArrheniusResult | None = None
) -> TruthResult:
    """Regress the inferred barriers on the true ones.

    Parameters
    ----------
    E_inf, E_true : ndarray, shape (n,)
    arrhenius : ArrheniusResult, optional
        Gives the draws of ``e1`` for the CI of the slope.

    Returns
    -------
    TruthResult
    """
    x = np.asarray(E_true, dtype=np.float64)
    y = np.asarray(E_inf, dtype=np.float64)
    dx = x - x.mean()
    slope = float(dx @ (y - y.mean()) / (dx @ dx))
    intercept = float(y.mean() - slope * x.mean())
    r = np.corrcoef(x, y)[0, 1]
    slope_ci = None
    if arrhenius is not None and arrhenius.e1 != 0:
        q = [(1 - arrhenius.ci_level) / 2 * 100, (1 + arrhenius.ci_level) / 2 * 100]
        lo, hi = np.percentile(slope * arrhenius.draws_e1 / arrhenius.e1, q)
        slope_ci = (float(lo), float(hi))
    return TruthResult(slope=slope, intercept=intercept, r2=float(r * r), n=int(x.size), slope_ci=slope_ci)


__all__ = ["inferred_energy", "CriterionResult", "variance_criterion", "TruthResult", "truth_comparison"]
