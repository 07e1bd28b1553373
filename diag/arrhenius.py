"""P(R|S,T) by logistic regression and Arrhenius fits on a softness grid (METHOD 4.2-4.4).

At each temperature ``T_k`` the probability to rearrange given softness is modelled as
``P(R=1|S,T_k) = expit(alpha_k + beta_k S)`` and fitted by (unpenalised) logistic
regression on natural, held-out samples. On a grid of softness values ``S_j`` inside the
Arrhenius regime (``P <= p_max`` at every temperature: the hard side),
``log P(R|S_j,T_k)`` is fitted against ``1/T_k`` by least squares::

    log P(R|S_j,T) = Sigma(S_j) - DeltaE(S_j) / T

and the barriers are fitted as ``DeltaE(S) = e0 + e1 S``. Confidence intervals come from
propagating the (group-clustered, sandwich) covariance of each logistic fit by Monte
Carlo draws of ``(alpha_k, beta_k)``; all downstream quantities are recomputed per draw.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import stats
from scipy.special import expit, log_expit

from .errors import InsufficientDataError


@dataclass
class LogisticFit:
    """``P(R=1|S) = expit(alpha + beta S)`` at one temperature.

    Attributes
    ----------
    temperature : float
    alpha, beta : float
    cov : ndarray, shape (2, 2)
        Covariance of ``(alpha, beta)``: sandwich estimator clustered by group
        (samples of one frame are correlated), or the inverse Fisher information
        when no groups are given.
    n_samples, n_positive, n_groups : int
    """

    temperature: float
    alpha: float
    beta: float
    cov: np.ndarray
    n_samples: int
    n_positive: int
    n_groups: int

    @property
    def params(self) -> np.ndarray:
        return np.array([self.alpha, self.beta])

    def log_p(self, S: np.ndarray) -> np.ndarray:
        """``log P(R=1|S)``, shape of ``S``."""
        return log_expit(self.alpha + self.beta * np.asarray(S, dtype=np.float64))


def fit_logistic(S: np.ndarray, R: np.ndarray, temperature: float, groups: np.ndarray | None = None) -> LogisticFit:
    """Unpenalised logistic regression of R on S with a cluster-robust covariance.

    Parameters
    ----------
    S : ndarray, shape (n,)
        Softness.
    R : ndarray, shape (n,)
        0/1 labels.
    temperature : float
        Recorded in the result.
    groups : ndarray, shape (n,), optional
        Cluster ids for the sandwich covariance.

    Returns
    -------
    LogisticFit
    """
    from sklearn.linear_model import LogisticRegression

    S = np.asarray(S, dtype=np.float64)
    R = np.asarray(R).astype(np.int64)
    n_pos = int(R.sum())
    if n_pos == 0 or n_pos == R.size:
        raise InsufficientDataError(
            f"at T={temperature:g} all {R.size} held-out samples have label {int(R[0])}: "
            "P(R|S) cannot be fitted"
        )
    # C=inf: no penalty; the tight tolerance matters because the slopes of
    # log P against 1/T amplify small errors in alpha and beta
    lr = LogisticRegression(C=np.inf, tol=1e-10, max_iter=10_000)
    lr.fit(S[:, None], R)
    alpha, beta = float(lr.intercept_[0]), float(lr.coef_[0, 0])
    Xd = np.column_stack([np.ones_like(S), S])
    p = expit(alpha + beta * S)
    A = (Xd * (p * (1 - p))[:, None]).T @ Xd
    A_inv = np.linalg.pinv(A)
    if groups is None:
        cov = A_inv
        n_groups = S.size
    else:
        scores = Xd * (R - p)[:, None]
        _, inv = np.unique(groups, return_inverse=True)
        n_groups = int(inv.max()) + 1
        g_scores = np.zeros((n_groups, 2))
        np.add.at(g_scores, inv, scores)
        B = g_scores.T @ g_scores
        corr = n_groups / (n_groups - 1) if n_groups > 1 else 1.0
        cov = corr * A_inv @ B @ A_inv
    return LogisticFit(float(temperature), alpha, beta, cov, int(S.size), n_pos, n_groups)


@dataclass
class ArrheniusResult:
    """Arrhenius analysis on a softness grid.

    Attributes
    ----------
    temperatures : ndarray, shape (K,)
    logistic : list of LogisticFit, length K
    grid : ndarray, shape (G,)
        All softness grid points considered.
    in_regime : ndarray of bool, shape (G,)
        Grid points with ``P(R|S,T) <= p_max`` at every temperature.
    delta_e, sigma : ndarray, shape (G_in,)
        Barrier and entropy-like intercept at the grid points in the regime.
    delta_e_ci, sigma_ci : ndarray, shape (G_in, 2)
    r2 : ndarray, shape (G_in,)
        Coefficient of determination of each ``log P`` vs ``1/T`` line.
    chi2_p : ndarray, shape (G_in,)
        p-value of the linearity test of each line: the chi-square (K - 2 dof) of the
        weighted least-squares line through ``log P`` against ``1/T`` with the variances of
        ``log P`` propagated from each logistic fit (temperatures are independent samples);
        NaN when K = 2 (a line through two points cannot be tested).
    max_resid : ndarray, shape (G_in,)
        Largest absolute residual of each line, in units of ``log P``.
    linear : ndarray of bool, shape (G_in,)
        The statistical linearity decision: ``chi2_p >= alpha`` (True when K = 2). A line
        is called non-Arrhenius only when its deviation is significant given how
        uncertain each ``log P`` is. ``r2`` stays as information (the practitioner's check).
    linear_r2 : ndarray of bool, shape (G_in,)
        The fixed-threshold check ``r2 >= r2_min`` or every residual <= ``resid_tol``,
        for reference only.
    alpha : float
        Significance level of the linearity test.
    curvature : ndarray, shape (G_in,)
        Coefficient ``c`` of a weighted quadratic ``log P = a + b/T + c/T^2`` (NaN when
        K = 2). ``c > 0`` (log P convex in 1/T) is what a spread of barriers among
        particles of equal softness produces (``log <exp(-E/T)> ~ -<E>/T + Var(E|S)/(2T^2)``):
        a softness that misses part of the barrier.
    e0, e1 : float
        ``DeltaE(S) = e0 + e1 S``.
    e0_ci, e1_ci : tuple of float
    draws_e0, draws_e1 : ndarray, shape (n_draws,)
        Monte Carlo draws, used to propagate uncertainty to derived quantities.
    p_max, r2_min, ci_level : float
    n_draws, seed : int
    """

    temperatures: np.ndarray
    logistic: list[LogisticFit]
    grid: np.ndarray
    in_regime: np.ndarray
    delta_e: np.ndarray
    delta_e_ci: np.ndarray
    sigma: np.ndarray
    sigma_ci: np.ndarray
    r2: np.ndarray
    chi2_p: np.ndarray
    max_resid: np.ndarray
    linear: np.ndarray
    linear_r2: np.ndarray
    e0: float
    e1: float
    e0_ci: tuple[float, float]
    e1_ci: tuple[float, float]
    draws_e0: np.ndarray = field(repr=False)
    draws_e1: np.ndarray = field(repr=False)
    p_max: float = 0.5
    r2_min: float = 0.95
    resid_tol: float = 0.02
    ci_level: float = 0.95
    n_draws: int = 400
    seed: int = 0
    alpha: float = 0.01
    curvature: np.ndarray | None = None

    @property
    def grid_in_regime(self) -> np.ndarray:
        return self.grid[self.in_regime]

    @property
    def convex_deviation(self) -> np.ndarray:
        """Grid points whose significant deviation from a line is convex in 1/T (``c > 0``), shape (G_in,).

        The signature of a spread of barriers at fixed softness (an incomplete softness),
        which biases barriers low; not a failure of the Arrhenius form itself.
        """
        c = np.nan_to_num(np.asarray(self.curvature if self.curvature is not None else np.zeros(self.linear.size)))
        return ~self.linear & (c > 0)

    @property
    def other_deviation(self) -> np.ndarray:
        """Grid points with a significant deviation that is not convex in 1/T, shape (G_in,)."""
        return ~self.linear & ~self.convex_deviation


def softness_grid(S_ref: np.ndarray, n_points: int = 25, quantiles: tuple[float, float] = (0.005, 0.995)) -> np.ndarray:
    """Evenly spaced softness values between two quantiles of a reference sample.

    Returns
    -------
    ndarray, shape (n_points,)
    """
    lo, hi = np.quantile(np.asarray(S_ref, dtype=np.float64), quantiles)
    return np.linspace(lo, hi, n_points)


def _ols_slope_intercept(u: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares lines ``Y[..., k] = a + b u_k`` over the last axis; returns (b, a)."""
    du = u - u.mean()
    b = (Y - Y.mean(-1, keepdims=True)) @ du / (du @ du)
    a = Y.mean(-1) - b * u.mean()
    return b, a


def fit_arrhenius(
    fits: list[LogisticFit],
    grid: np.ndarray,
    p_max: float = 0.5,
    r2_min: float = 0.95,
    resid_tol: float = 0.02,
    n_draws: int = 400,
    ci_level: float = 0.95,
    seed: int = 0,
    alpha: float = 0.01,
) -> ArrheniusResult:
    """Arrhenius fits of ``log P(R|S_j,T)`` against ``1/T`` and the line ``DeltaE(S)``.

    Parameters
    ----------
    fits : list of LogisticFit
        One per temperature; at least two distinct temperatures.
    grid : ndarray, shape (G,)
        Softness values at which to evaluate ``P(R|S,T)``.
    p_max : float
        Only grid points with ``P <= p_max`` at every temperature enter (METHOD 4.3).
    r2_min, resid_tol : float
        The fixed-threshold check kept for reference (``linear_r2``): R^2 >= r2_min or
        largest residual <= resid_tol (in log P).
    alpha : float
        Significance level of the statistical linearity test (``linear``).
    n_draws : int
        Monte Carlo draws of the logistic parameters for the confidence intervals.
    ci_level : float
    seed : int

    Returns
    -------
    ArrheniusResult

    Raises
    ------
    InsufficientDataError
        Fewer than two temperatures, or fewer than two grid points in the regime.
    """
    fits = sorted(fits, key=lambda f: f.temperature)
    temps = np.array([f.temperature for f in fits])
    if np.unique(temps).size < 2:
        raise InsufficientDataError("an Arrhenius fit needs at least two temperatures")
    grid = np.asarray(grid, dtype=np.float64)
    u = 1.0 / temps
    logp = np.stack([f.log_p(grid) for f in fits], axis=-1)  # (G, K)
    in_regime = (logp <= np.log(p_max)).all(axis=-1)
    if in_regime.sum() < 2:
        raise InsufficientDataError(
            f"only {int(in_regime.sum())} softness grid point(s) have P(R|S,T) <= {p_max:g} at every "
            "temperature: no Arrhenius regime to fit"
        )
    g_in = grid[in_regime]
    y = logp[in_regime]  # (G_in, K)
    slope, icpt = _ols_slope_intercept(u, y)
    delta_e, sigma = -slope, icpt
    resid = y - (icpt[:, None] + slope[:, None] * u)
    ss_tot = ((y - y.mean(-1, keepdims=True)) ** 2).sum(-1)
    r2 = 1.0 - (resid**2).sum(-1) / np.where(ss_tot > 0, ss_tot, np.nan)
    # propagated variance of log P at each (grid point, temperature): gradient (1-P) [1, S]
    P = np.exp(y)
    var = np.empty_like(y)
    for k, f in enumerate(fits):
        gvec = (1 - P[:, k])[:, None] * np.column_stack([np.ones_like(g_in), g_in])
        var[:, k] = np.einsum("gi,ij,gj->g", gvec, f.cov, gvec)
    dof = temps.size - 2
    if dof > 0:
        chi2_p = stats.chi2.sf(_wls_chi2(u, y, var), dof)
        linear = chi2_p >= alpha
        curvature = _wls_quadratic(u, y, var)
    else:
        chi2_p = np.full(g_in.size, np.nan)
        linear = np.ones(g_in.size, dtype=bool)
        curvature = np.full(g_in.size, np.nan)
    b1, b0 = _ols_slope_intercept(g_in, delta_e)
    e1, e0 = float(b1), float(b0)

    # Monte Carlo propagation of the logistic covariances
    rng = np.random.default_rng(seed)
    draws = np.stack(
        [rng.multivariate_normal(f.params, f.cov, size=n_draws, method="eigh") for f in fits], axis=1
    )  # (D, K, 2)
    logp_d = log_expit(draws[:, None, :, 0] + draws[:, None, :, 1] * g_in[None, :, None])  # (D, G_in, K)
    slope_d, icpt_d = _ols_slope_intercept(u, logp_d)
    de_d, sig_d = -slope_d, icpt_d  # (D, G_in)
    e1_d, e0_d = _ols_slope_intercept(g_in, de_d)
    q = [(1 - ci_level) / 2 * 100, (1 + ci_level) / 2 * 100]
    return ArrheniusResult(
        temperatures=temps,
        logistic=fits,
        grid=grid,
        in_regime=in_regime,
        delta_e=delta_e,
        delta_e_ci=np.percentile(de_d, q, axis=0).T,
        sigma=sigma,
        sigma_ci=np.percentile(sig_d, q, axis=0).T,
        r2=r2,
        chi2_p=chi2_p,
        max_resid=np.abs(resid).max(-1),
        linear=linear,
        linear_r2=(r2 >= r2_min) | (np.abs(resid).max(-1) <= resid_tol),
        e0=e0,
        e1=e1,
        e0_ci=tuple(float(v) for v in np.percentile(e0_d, q)),
        e1_ci=tuple(float(v) for v in np.percentile(e1_d, q)),
        draws_e0=e0_d,
        draws_e1=e1_d,
        p_max=p_max,
        r2_min=r2_min,
        resid_tol=resid_tol,
        ci_level=ci_level,
        n_draws=n_draws,
        seed=seed,
        alpha=alpha,
        curvature=curvature,
    )


def _wls_chi2(u: np.ndarray, Y: np.ndarray, var: np.ndarray) -> np.ndarray:
    """Minimum chi-square of weighted lines ``Y[g, k] ~ a + b u_k`` with variances ``var[g, k]``.

    Returns
    -------
    ndarray, shape (G,)
        ``min_{a,b} sum_k (Y - a - b u_k)^2 / var``: chi-square with K - 2 degrees of
        freedom when the points lie on a line and the variances are right.
    """
    w = 1.0 / np.maximum(var, np.finfo(float).tiny)
    sw = w.sum(-1)
    ub = (w * u).sum(-1) / sw
    yb = (w * Y).sum(-1) / sw
    du = u[None, :] - ub[:, None]
    b = (w * du * (Y - yb[:, None])).sum(-1) / (w * du * du).sum(-1)
    r = Y - yb[:, None] - b[:, None] * du
    return (w * r * r).sum(-1)


def _wls_quadratic(u: np.ndarray, Y: np.ndarray, var: np.ndarray) -> np.ndarray:
    """Coefficient ``c`` of weighted quadratics ``Y[g, k] ~ a + b u_k + c u_k^2``, shape (G,)."""
    A = np.column_stack([np.ones_like(u), u, u * u])  # (K, 3)
    out = np.full(Y.shape[0], np.nan)
    if u.size < 3:
        return out
    for g in range(Y.shape[0]):
        w = 1.0 / np.sqrt(np.maximum(var[g], np.finfo(float).tiny))
        coef, *_ = np.linalg.lstsq(A * w[:, None], Y[g] * w, rcond=None)
        out[g] = coef[2]
    return out


__all__ = ["LogisticFit", "fit_logistic", "ArrheniusResult", "fit_arrhenius", "softness_grid"]
