"""Softness SVM: standardised linear SVM with the true hinge loss.

The estimator :class:`SoftnessSVM` and the lower-level :func:`fit_hinge` minimise

    P(w, b) = 0.5 ||w||^2 + sum_i u_i max(0, 1 - y_i (w . z_i + b)),   u_i = C s_i,

the libsvm ``SVC(kernel="linear")`` objective (true hinge, unregularised intercept, summed
loss), on standardised features ``z``. The solver works in the primal (after Chapelle,
2007): Newton's method with exact line search on a Huber-smoothed hinge whose quadratic
band ``|t| <= h`` (``t = 1 - y f``) shrinks by continuation, and an exact finishing step:
the true hinge problem restricted to the samples near the margin (the others frozen on
their side) is solved in memory and certified on all samples with one pass.

Convergence is certified by the duality gap of the true hinge problem (an upper bound on
``P - min P``), never by the smoothed objective. Passes over the data run chunk by chunk
in the data's dtype (float32 products for float32 data) during the Newton steps; the
gradient, the certificate and the reported objective are accumulated in float64, and the
final certificate comes from a float64 pass. See ``docs/svm.md``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.linalg
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_array, column_or_1d
from sklearn.utils.validation import check_is_fitted

from diag.errors import DataError, FitError, InsufficientDataError

__all__ = ["HingeResult", "SoftnessSVM", "fit_hinge", "standardize"]

# Rows per block in chunked passes: a 4096 x 166 float64 block (5.4 MB) stays in cache
# while it is used twice, and 4096-term float32 partial sums lose only ~1e-6 relative.
_CHUNK = 4096
# Rows gathered at once for Gram-matrix / gradient updates (bounds temporary memory).
_GATHER = 16384
# Cold fits with at least this many samples start from a fit on a random subsample.
_SUBSAMPLE_MIN_N = 150_000
# A column subset no wider than this fraction of Z is copied (a contiguous copy costs
# about two passes and makes every later pass proportionally cheaper).
_COPY_FRACTION = 0.75
# Smallest smoothing width; below it the Huber Hessian is too ill-conditioned to help.
_H_MIN = 1e-13
# Smallest factor by which h shrinks between stages on generic data (larger jumps make
# each stage need more Newton steps than they save).
_H_FACTOR_MIN = 0.1
# Bands up to this size use the augmented (band-row) Newton system, which stays
# accurate when h is tiny; larger bands use the (k+1)^2 normal equations.
_AUG_MAX = 400


class SVMInputError(DataError, ValueError):
    """Invalid input to the SVM (also a ``ValueError``, as scikit-learn expects)."""


class SVMOneClassError(InsufficientDataError, ValueError):
    """Only one class has positive total weight: no separating hyperplane is defined."""


@dataclass
class HingeResult:
    """Solution of the standardised hinge-loss SVM returned by :func:`fit_hinge`.

    Attributes
    ----------
    coef : ndarray, shape (k,)
        Weights ``w`` on the (selected) standardised columns.
    intercept : float
        Unregularised intercept ``b``.
    n_iter : int
        Newton and exact-finish steps on the full data (each costs one pass over ``Z``).
    converged : bool
        True when the relative duality gap ``gap / objective`` is at most ``tol``.
    objective : float
        True hinge primal objective ``0.5 ||w||^2 + C sum_i s_i max(0, 1 - y_i f_i)``.
    gap : float
        Duality gap of the true hinge problem at the returned point (absolute), an upper
        bound on ``objective - min objective``.
    n_passes : int
        Passes over the full ``Z`` (matrix-vector products), including verification.
    """

    coef: np.ndarray
    intercept: float
    n_iter: int
    converged: bool
    objective: float
    gap: float = np.inf
    n_passes: int = 0


# --------------------------------------------------------------------------- statistics


def _column_stats(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population standard deviation of the columns of X, float64, one chunked pass.

    Chunk statistics are merged with Chan's formula, so no float64 copy of X is made.
    Constant columns (max == min) get scale 1, as in ``StandardScaler``.

    Parameters
    ----------
    X : ndarray, shape (n, d)

    Returns
    -------
    mean, scale : ndarray, shape (d,), float64
    """
    n, d = X.shape
    mean = np.zeros(d)
    m2 = np.zeros(d)
    lo = np.full(d, np.inf)
    hi = np.full(d, -np.inf)
    count = 0
    buf = np.empty((min(n, _CHUNK), d))
    for s in range(0, n, _CHUNK):
        raw = X[s : s + _CHUNK]
        nc = raw.shape[0]
        xc = buf[:nc]
        xc[...] = raw
        mc = xc.sum(axis=0) / nc
        if not np.all(np.isfinite(mc)):
            raise SVMInputError("X contains NaN or infinite values")
        xc -= mc
        m2c = np.einsum("ij,ij->j", xc, xc)
        delta = mc - mean
        tot = count + nc
        mean += delta * (nc / tot)
        m2 += m2c + delta**2 * (count * nc / tot)
        count = tot
        np.minimum(lo, raw.min(axis=0), out=lo)
        np.maximum(hi, raw.max(axis=0), out=hi)
    scale = np.sqrt(m2 / n)
    scale[(hi == lo) | (scale == 0.0)] = 1.0
    return mean, scale


def standardize(
    X: np.ndarray, *, dtype: type | np.dtype = np.float32
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Standardise the columns of X to zero mean and unit variance.

    Statistics are accumulated in float64 chunk by chunk; the output is written chunk by
    chunk, so the only large allocation is the output itself.

    Parameters
    ----------
    X : array_like, shape (n, d)
    dtype : numpy dtype, default float32
        dtype of the returned standardised matrix.

    Returns
    -------
    Z : ndarray, shape (n, d), ``dtype``
        ``(X - mean) / scale``.
    mean : ndarray, shape (d,), float64
    scale : ndarray, shape (d,), float64
        Population standard deviation; 1 for constant columns.
    """
    X = _as_2d_float(X)
    mean, scale = _column_stats(X)
    Z = np.empty(X.shape, dtype=dtype)
    inv = 1.0 / scale
    buf = np.empty((min(X.shape[0], _CHUNK), X.shape[1]))
    for s in range(0, X.shape[0], _CHUNK):
        raw = X[s : s + _CHUNK]
        zc = buf[: raw.shape[0]]
        zc[...] = raw
        zc -= mean
        zc *= inv
        Z[s : s + _CHUNK] = zc
    return Z, mean, scale


def _as_2d_float(X) -> np.ndarray:
    """X as a 2-D, finite float32/float64 array; float input is not copied."""
    try:
        return check_array(X, dtype=[np.float64, np.float32], accept_sparse=False)
    except ValueError as err:
        raise SVMInputError(str(err)) from err


def _as_labels(y, n: int) -> np.ndarray:
    """Labels R in {0, 1}, shape (n,)."""
    try:
        y = column_or_1d(y)
    except ValueError as err:
        raise SVMInputError(str(err)) from err
    if y.shape[0] != n:
        raise SVMInputError(f"X has {n} rows but y has {y.shape[0]} entries")
    if not np.all((y == 0) | (y == 1)):
        raise SVMInputError("Unknown label type: y must hold the labels R in {0, 1}")
    return y


# --------------------------------------------------------------------------- data access


class _Design:
    """Row-chunked access to a standardised design matrix (n, k), float32 or float64.

    Parameters
    ----------
    Z : ndarray, shape (n, D)
    columns : ndarray of int, shape (k,), optional
        Column subset; narrow subsets are copied once, wide ones are read in place by
        zero-padding the weight vector.
    """

    def __init__(self, Z: np.ndarray, columns: np.ndarray | None = None):
        D = Z.shape[1]
        if columns is not None:
            if np.array_equal(columns, np.arange(D)):
                columns = None
            elif len(columns) <= _COPY_FRACTION * D:
                Z = np.take(Z, columns, axis=1)  # contiguous copy; np.take is ~4x faster than Z[:, cols]
                columns = None
        if not Z.flags.c_contiguous:
            Z = np.ascontiguousarray(Z)
        self.Z = Z
        self.cols = columns
        self.n = Z.shape[0]
        self.k = Z.shape[1] if columns is None else len(columns)
        self.passes = 0

    def _full(self, w: np.ndarray, dtype) -> np.ndarray:
        if self.cols is None:
            return np.asarray(w, dtype=dtype)
        wf = np.zeros(self.Z.shape[1], dtype=dtype)
        wf[self.cols] = w
        return wf

    def matvec(self, w: np.ndarray) -> np.ndarray:
        """Z w in the data's dtype, returned as float64, shape (n,)."""
        self.passes += 1
        return (self.Z @ self._full(w, self.Z.dtype)).astype(np.float64, copy=False)

    def pass_exact(self, w: np.ndarray, b: float, V) -> tuple[np.ndarray, list[np.ndarray]]:
        """Margins ``o = Z w + b`` and products ``Z^T v`` in float64 arithmetic, in one pass.

        Parameters
        ----------
        w : ndarray, shape (k,)
        b : float
        V : sequence of m ndarrays of shape (n,), or a callable
            ``V(o_chunk, start, stop) -> sequence of m arrays of shape (stop - start,)``;
            the callable form lets the weights depend on the margins just computed.

        Returns
        -------
        o : ndarray, shape (n,)
        ZtV : list of m ndarrays of shape (k,)
        """
        self.passes += 1
        wf = self._full(w, np.float64)
        Z = self.Z
        o = np.empty(self.n)
        acc = None
        step = self.n if Z.dtype == np.float64 else _CHUNK  # float64 data needs no conversion
        buf = None if Z.dtype == np.float64 else np.empty((min(_CHUNK, self.n), Z.shape[1]))
        for s in range(0, self.n, step):
            e = min(s + step, self.n)
            if buf is None:
                blk = Z[s:e]
            else:
                blk = buf[: e - s]
                blk[...] = Z[s:e]
            o[s:e] = blk @ wf
            o[s:e] += b
            vs = V(o[s:e], s, e) if callable(V) else [v[s:e] for v in V]
            parts = [blk.T @ v for v in vs]  # separate gemv calls beat one (k, 2) gemm
            acc = parts if acc is None else [a + p for a, p in zip(acc, parts)]
        if self.cols is not None:
            acc = [a[self.cols] for a in acc]
        return o, acc

    def rows(self, idx: np.ndarray) -> np.ndarray:
        """Rows ``idx`` of the (column-selected) design, float64, shape (len(idx), k)."""
        R = self.Z[idx]
        if self.cols is not None:
            R = R[:, self.cols]
        return R.astype(np.float64, copy=False)


# --------------------------------------------------------------------------- line search


def _line_search(t: np.ndarray, dlt: np.ndarray, u: np.ndarray, h: float, c0: float, c1: float):
    """Exact minimiser of the Huber objective along a direction.

    phi'(a) = c0 + a c1 - sum_i u_i dlt_i L'_h(t_i - a dlt_i) is nondecreasing and
    piecewise linear; its breakpoints are where a sample enters or leaves the band
    ``|t| <= h``. The root is bracketed by doubling from a = 1, then found exactly by
    sorting the breakpoints that fall inside the bracket.

    Parameters
    ----------
    t : ndarray, shape (n,)
        ``1 - y f`` at the current point.
    dlt : ndarray, shape (n,)
        Rate of decrease of ``t`` along the direction (``t(a) = t - a dlt``).
    u : ndarray, shape (n,)
        Per-sample loss weights ``C s_i``.
    h : float
        Half-width of the smoothing band.
    c0, c1 : float
        phi'(a) terms from the regulariser and the frozen samples: ``c0 = w . dw``
        minus the frozen linear terms, ``c1 = ||dw||^2``.

    Returns
    -------
    a : float
        The step.
    exact : bool
        True if no sample changed region in (0, a]: the step then lands on the exact
        minimiser of the current quadratic piece.
    """
    ud = u * dlt
    inv2h = 0.5 / h

    def dphi(a: float) -> float:
        lp = np.clip((t - a * dlt + h) * inv2h, 0.0, 1.0)
        return c0 + a * c1 - float(np.dot(ud, lp))

    lo, hi = 0.0, 1.0
    while dphi(hi) < 0.0:
        lo, hi = hi, 2.0 * hi
        if hi > 1e12:  # objective unbounded along this ray: cannot happen with two classes
            return lo, False
    s_lo = t - lo * dlt
    s_hi = t - hi * dlt
    r_lo = (s_lo > h).astype(np.int8) - (s_lo < -h)
    r_hi = (s_hi > h).astype(np.int8) - (s_hi < -h)
    inL = r_lo == 1
    inB = r_lo == 0
    # phi'(a) = A0 + a A1 on the first segment of the bracket
    A0 = c0 - float(ud[inL].sum()) - float(np.dot(ud[inB], t[inB] + h)) * inv2h
    A1 = c1 + float(np.dot(ud[inB], dlt[inB])) * inv2h
    cross = np.flatnonzero(r_lo != r_hi)
    if cross.size == 0:
        a = -A0 / A1 if A1 > 0 else hi
        return float(min(max(a, lo), hi)), lo == 0.0
    tc, dc, uc, rl, rh = t[cross], dlt[cross], ud[cross], r_lo[cross], r_hi[cross]
    slope = uc * dc * inv2h  # what a band member adds to A1
    icpt = uc * (tc + h) * inv2h  # and subtracts from A0
    # Region changes inside the bracket (L: t > h, B: band, R: t < -h). Moving with a,
    # t decreases when dlt > 0 (L -> B at (t - h)/dlt, B -> R at (t + h)/dlt) and
    # increases when dlt < 0 (R -> B at (t + h)/dlt, B -> L at (t - h)/dlt).
    events = (
        ((dc > 0) & (rl == 1), -h, uc - icpt, slope),  # L -> B
        ((dc > 0) & (rh == -1), h, icpt, -slope),  # B -> R
        ((dc < 0) & (rl == -1), h, -icpt, slope),  # R -> B
        ((dc < 0) & (rh == 1), -h, icpt - uc, -slope),  # B -> L
    )
    ev_a = [(tc[m] + shift) / dc[m] for m, shift, _, _ in events]
    ev_0 = [d0[m] for m, _, d0, _ in events]
    ev_1 = [d1[m] for m, _, _, d1 in events]
    ea = np.concatenate(ev_a)
    order = np.argsort(ea, kind="stable")
    ea = np.clip(ea[order], lo, hi)
    a0 = A0 + np.concatenate(([0.0], np.cumsum(np.concatenate(ev_0)[order])))
    a1 = A1 + np.concatenate(([0.0], np.cumsum(np.concatenate(ev_1)[order])))
    # phi' at the right end of each segment j (segment j ends at ea[j], last ends at hi)
    ends = np.concatenate((ea, [hi]))
    vals = a0 + ends * a1
    j = int(np.argmax(vals >= 0.0)) if np.any(vals >= 0.0) else len(vals) - 1
    start = lo if j == 0 else ends[j - 1]
    a = -a0[j] / a1[j] if a1[j] > 0 else start
    a = float(min(max(a, start), ends[j]))
    return a, (j == 0 and lo == 0.0)


# --------------------------------------------------------------------------- Newton engine


@dataclass
class _Cert:
    """True-hinge primal value, duality gap and the gap's smoothing part at one point."""

    P: float
    gap: float
    smooth: float


@dataclass
class _Frozen:
    """Samples left out of a working set, frozen at alpha = u (loss side) or 0.

    Only their sums enter the restricted problem: G = sum u y z, Gp = sum u [y>0] z (k,),
    cy = sum u y, ca = sum u. All zero for the full problem.
    """

    G: np.ndarray
    Gp: np.ndarray
    cy: float = 0.0
    ca: float = 0.0


@dataclass
class _Sol:
    """Internal solution: primal point, certifying dual point and certificate."""

    w: np.ndarray
    b: float
    alpha: np.ndarray
    cert: _Cert
    converged: bool
    n_iter: int


class _HuberNewton:
    """Newton's method on the Huber-smoothed hinge at a fixed band half-width h.

    Minimises ``0.5||w||^2 + sum_i u_i L_h(t_i) + (frozen terms)`` with ``t = 1 - y (Z w + b)``,
    ``L_h(t) = t`` for t > h, ``(t + h)^2 / 4h`` for |t| <= h, 0 below. State kept between
    steps (all float64): margins ``o = Z w + b`` (n,), the Huber dual point
    ``alpha = u L_h'(t)`` (n,), ``G = Z^T (alpha y)`` and ``Gp = Z^T (alpha [y>0])`` (k,),
    both including the frozen sums. G and Gp are updated from the rows whose alpha
    changed, so a Newton step costs one pass over Z (the direction's margins) plus a
    gather of the band rows.
    """

    def __init__(self, X: _Design, y: np.ndarray, u: np.ndarray, w: np.ndarray, b: float,
                 h: float, frozen: _Frozen):
        self.X, self.y, self.u, self.F = X, y, u, frozen
        self.pos = (y > 0).astype(np.float64)
        self.k = X.k
        self.w = np.array(w, dtype=np.float64)
        self.b = float(b)
        self.h = h
        self.n_iter = 0
        # one exact pass: margins, the Huber dual point they imply, and G, Gp
        self.alpha = np.empty(X.n)

        def weights(o: np.ndarray, s: int, e: int) -> np.ndarray:
            a = self.u[s:e] * np.clip((h - y[s:e] * o + 1.0) * (0.5 / h), 0.0, 1.0)
            self.alpha[s:e] = a
            return a * y[s:e], a * self.pos[s:e]

        self.o, (g, gp) = X.pass_exact(self.w, self.b, weights)
        self.t = 1.0 - y * self.o
        self.G = frozen.G + g
        self.Gp = frozen.Gp + gp
        if not np.all(np.isfinite(self.o)):
            raise SVMInputError("Z (or the initial coefficients) contains NaN or infinite values")
        self._build_hessian()

    # -- dual point and gradient --------------------------------------------------------

    def _huber_alpha(self, t: np.ndarray) -> np.ndarray:
        return self.u * np.clip((t + self.h) * (0.5 / self.h), 0.0, 1.0)

    def _sum_alpha_y(self, alpha: np.ndarray) -> float:
        return self.F.cy + float(np.dot(alpha, self.y))

    def _exact_gradient(self) -> None:
        """Recompute o, t, G, Gp with one exact float64 pass (removes incremental drift)."""
        self.o, (g, gp) = self.X.pass_exact(self.w, self.b, (self.alpha * self.y, self.alpha * self.pos))
        self.t = 1.0 - self.y * self.o
        self.G = self.F.G + g
        self.Gp = self.F.Gp + gp

    def _update_alpha(self, alpha_new: np.ndarray) -> None:
        """Move G, Gp to a new alpha using only the rows whose alpha changed."""
        changed = np.flatnonzero(alpha_new != self.alpha)
        if changed.size > self.X.n // 3:  # gathering that many rows costs more than a pass
            self.alpha = alpha_new
            _, (g, gp) = self.X.pass_exact(self.w, self.b, (alpha_new * self.y, alpha_new * self.pos))
            self.G = self.F.G + g
            self.Gp = self.F.Gp + gp
            return
        da = alpha_new[changed] - self.alpha[changed]
        for s in range(0, changed.size, _GATHER):
            idx = changed[s : s + _GATHER]
            R = self.X.rows(idx)
            self.G += R.T @ (da[s : s + _GATHER] * self.y[idx])
            self.Gp += R.T @ (da[s : s + _GATHER] * self.pos[idx])
        self.alpha = alpha_new

    def _build_hessian(self) -> None:
        """Keep the band rows (small band) or form the (k+1)^2 Hessian (large band)."""
        band = np.flatnonzero((np.abs(self.t) <= self.h) & (self.u > 0))
        self.band = band
        self.D = self.u[band] * (0.5 / self.h)
        k = self.k
        if band.size <= max(2 * (k + 1), _AUG_MAX):
            self.B = self.X.rows(band) if band.size else np.zeros((0, k))
            self.H = None
            return
        self.B = None
        H = np.zeros((k + 1, k + 1))
        for s in range(0, band.size, _GATHER):
            sq = np.sqrt(self.D[s : s + _GATHER])
            Bs = np.empty((sq.size, k + 1))
            Bs[:, :k] = self.X.rows(band[s : s + _GATHER])
            Bs[:, :k] *= sq[:, None]
            Bs[:, k] = sq
            H += Bs.T @ Bs  # numpy dispatches A.T @ A to syrk
        H[np.arange(k), np.arange(k)] += 1.0
        self.H = H

    def _direction(self) -> tuple[np.ndarray, float]:
        """Newton direction (dw, db), shape (k+1,), and the decrement -g.d."""
        k = self.k
        g = np.concatenate((self.w - self.G, [-self._sum_alpha_y(self.alpha)]))
        if self.H is not None:
            try:
                d = -scipy.linalg.cho_solve(scipy.linalg.cho_factor(self.H), g)
            except np.linalg.LinAlgError:
                d = -_psd_solve(self.H, g)
        else:
            # augmented form [[P0, Bt^T], [Bt, -D^-1]] stays well conditioned as h -> 0
            m = self.band.size
            K = np.zeros((k + 1 + m, k + 1 + m))
            K[np.arange(k), np.arange(k)] = 1.0
            if m == 0:  # no band: the intercept direction is flat, regularise it slightly
                K[k, k] = 1e-12 * (1.0 + float(self.u.sum()))
            K[k + 1 :, :k] = self.B
            K[k + 1 :, k] = 1.0
            K[: k + 1, k + 1 :] = K[k + 1 :, : k + 1].T
            K[np.arange(k + 1, k + 1 + m), np.arange(k + 1, k + 1 + m)] = -1.0 / self.D
            d = _sym_solve(K, np.concatenate((-g, np.zeros(m))))[: k + 1]
        return d, -float(np.dot(g, d))

    # -- certificate --------------------------------------------------------------------

    def cert_at(self, w, b, t, alpha, G, Gp, band=None) -> _Cert:
        """Duality gap of the true hinge problem with the dual point alpha, made feasible.

        gap = 0.5 ||w - Z^T(alpha' y)||^2 + sum_i [u_i max(0, t_i) - alpha'_i t_i] >= P - P*,
        where alpha' rescales one class so that sum_i alpha'_i y_i = 0 (the dual
        constraint of the free intercept). Valid for any 0 <= alpha <= u.
        """
        F = self.F
        hinge = self.u * np.maximum(t, 0.0)
        P = 0.5 * float(np.dot(w, w)) + float(hinge.sum()) + F.ca - float(np.dot(w, F.G)) - b * F.cy
        at = alpha * t
        Sp = float(np.dot(alpha, self.pos))
        Sn = float(alpha.sum()) - Sp
        r = F.cy + Sp - Sn
        wa, corr = G, 0.0
        if r > 0:
            if r > Sp:
                return _Cert(P, np.inf, 0.0)
            c = r / Sp
            wa = G - c * (Gp - F.Gp)
            corr = c * float(np.dot(at, self.pos))
        elif r < 0:
            if -r > Sn:
                return _Cert(P, np.inf, 0.0)
            c = -r / Sn
            wa = G + c * ((Gp - F.Gp) - (G - F.G))
            corr = c * float(at.sum() - np.dot(at, self.pos))
        terms = hinge - at
        gap = 0.5 * float(np.sum((w - wa) ** 2)) + float(terms.sum()) + corr
        smooth = float(terms[band].sum()) if band is not None else 0.0
        return _Cert(P, max(gap, 0.0), smooth)

    def certificate(self) -> _Cert:
        return self.cert_at(self.w, self.b, self.t, self.alpha, self.G, self.Gp, self.band)

    def verify(self, w, b, alpha) -> tuple[_Cert, np.ndarray]:
        """Certificate recomputed from one exact float64 pass; also returns o = Z w + b."""
        o, (g, gp) = self.X.pass_exact(w, b, (alpha * self.y, alpha * self.pos))
        t = 1.0 - self.y * o
        return self.cert_at(w, b, t, alpha, self.F.G + g, self.F.Gp + gp), o

    # -- steps ----------------------------------------------------------------------------

    def newton_step(self) -> tuple[bool, bool]:
        """One Newton step with exact line search.

        Returns (exact, moved): exact when the step stayed on one quadratic piece, so the
        new point is the exact minimiser of the smoothed objective.
        """
        d, dec = self._direction()
        self.n_iter += 1
        if not dec > 0.0:
            return True, False
        dw, db = d[:-1], float(d[-1])
        dz = self.X.matvec(dw)
        dlt = self.y * (dz + db)
        c0 = float(self.w @ dw - dw @ self.F.G) - db * self.F.cy
        a, exact = _line_search(self.t, dlt, self.u, self.h, c0, float(dw @ dw))
        if not a > 0.0:
            return True, False
        self.w += a * dw
        self.b += a * db
        self.o += a * (dz + db)
        self.t = 1.0 - self.y * self.o
        self._update_alpha(self._huber_alpha(self.t))
        self._build_hessian()
        return exact and abs(a - 1.0) < 1e-9, True

    def set_h(self, h: float) -> None:
        self.h = h
        self._update_alpha(self._huber_alpha(self.t))
        self._build_hessian()

    def accept(self, w, b, o) -> None:
        """Jump to (w, b) with known margins o."""
        self.w, self.b, self.o = np.array(w, dtype=np.float64), float(b), o
        self.t = 1.0 - self.y * o
        self._update_alpha(self._huber_alpha(self.t))
        self._build_hessian()

    def kkt_step(self):
        """Exact true-hinge solution if the band points are exactly the margin points.

        Solves  w - A^T a = G_L,  -y_M . a = Gb_L,  A w + y_M b = 1  (A = y_M z_M, M the
        band), where G_L, Gb_L collect the samples beyond the band (alpha = u). Costs one
        pass. Returns (w, b, o, alpha, cert).
        """
        M, k = self.band, self.k
        m = M.size
        B, yM, pM = self.B, self.y[M], self.pos[M]
        aM = self.alpha[M]
        GL = self.G - B.T @ (aM * yM)
        GpL = self.Gp - B.T @ (aM * pM)
        GbL = self._sum_alpha_y(self.alpha) - float(np.dot(aM, yM))
        K = np.zeros((k + 1 + m, k + 1 + m))
        K[np.arange(k), np.arange(k)] = 1.0
        K[k + 1 :, :k] = -B * yM[:, None]
        K[k + 1 :, k] = -yM
        K[: k + 1, k + 1 :] = K[k + 1 :, : k + 1].T
        sol = _sym_solve(K, np.concatenate((GL, [GbL], -np.ones(m))))
        self.n_iter += 1
        if not np.all(np.isfinite(sol)):
            return None
        w2, b2 = sol[:k], float(sol[k])
        a2 = np.clip(sol[k + 1 :], 0.0, self.u[M])
        o2 = self.o + self.X.matvec(w2 - self.w) + (b2 - self.b)
        alpha2 = self.alpha.copy()
        alpha2[M] = a2
        cert = self.cert_at(w2, b2, 1.0 - self.y * o2, alpha2, GL + B.T @ (a2 * yM), GpL + B.T @ (a2 * pM))
        return w2, b2, o2, alpha2, cert


def _sym_solve(K: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Solve a symmetric (possibly indefinite or singular) system; min-norm if singular."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", scipy.linalg.LinAlgWarning)
            return scipy.linalg.solve(K, rhs, assume_a="sym", check_finite=False)
    except (np.linalg.LinAlgError, scipy.linalg.LinAlgWarning, ValueError):
        return scipy.linalg.lstsq(K, rhs, check_finite=False)[0]


def _psd_solve(H: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Pseudo-inverse solve of a symmetric positive semi-definite system."""
    ev, V = np.linalg.eigh(H)
    keep = ev > ev.max() * 1e-14
    return V[:, keep] @ ((V[:, keep].T @ g) / ev[keep])


# --------------------------------------------------------------------------- driver

# Largest working set solved in memory by the exact finishing step (float64 rows).
_WS_MAX = 20_000
# Iteration cap of in-memory working-set solves (cheap; not counted in n_iter).
_WS_MAX_ITER = 100


def _solve(X: _Design, y: np.ndarray, u: np.ndarray, w0: np.ndarray, b0: float, h0: float,
           tol: float, max_iter: int, frozen: _Frozen | None = None, warm: bool = False,
           floor: float = -np.inf) -> _Sol:
    """Continuation driver.

    Newton steps at fixed h until the optimisation error is small next to the smoothing
    error; then an exact finishing step (working-set solve of the true hinge on the
    samples near the margin, or the KKT system of the band); then h shrinks. Stops when
    the duality gap, recomputed with an exact pass, is at most tol times the objective.
    """
    if frozen is None:
        frozen = _Frozen(np.zeros(X.k), np.zeros(X.k))
    S = _HuberNewton(X, y, u, w0, b0, h0, frozen)
    S.max_iter = max_iter
    if warm:
        # Near an optimum the samples off the margin keep their side: try the exact
        # working-set finish on the samples nearest the margin before any smoothing
        # moves the point away (h shrinks so that the working set holds the band).
        h_run = S.h
        size = min(_WS_MAX // 2, max(4 * (X.k + 1), X.n // 8))
        if X.n > 4 * size:
            at = np.where(u > 0, np.abs(S.t), np.inf)
            S.set_h(min(h_run, max(0.5 * float(np.partition(at, size)[size]), _H_MIN)))
        c0 = S.certificate()
        sol = _finish(S, c0, tol, c0.P - c0.gap, size=size)
        if sol is not None:
            return sol
        S.set_h(h_run)
    cert = S.certificate()
    # Any 0 <= alpha <= u is a dual point: keep the best primal point and the best dual
    # point seen; their difference bounds the suboptimality of the primal point.
    P_best, w_best, b_best = np.inf, S.w, S.b
    D_best, a_best = -np.inf, S.alpha
    last_exact = stalled = False
    resyncs = 0
    prev_stage = None  # (h, smoothing gap) at the end of the previous stage
    while True:
        if cert.P < P_best:
            P_best, w_best, b_best = cert.P, S.w.copy(), S.b
        if cert.P - cert.gap > D_best:
            D_best, a_best = cert.P - cert.gap, S.alpha  # S.alpha is replaced, never mutated
        if cert.P < floor:
            # Below a lower bound of the full problem: the frozen samples of this working
            # set are on the wrong side, so its solution cannot certify. Give up early.
            return _Sol(S.w.copy(), S.b, a_best, cert, False, S.n_iter)
        if cert.P - D_best <= tol * cert.P:
            vc, _ = S.verify(S.w, S.b, a_best)
            if vc.gap <= tol * vc.P or resyncs >= 2:
                return _Sol(S.w.copy(), S.b, a_best, vc, vc.gap <= tol * vc.P, S.n_iter)
            resyncs += 1  # incremental state drifted (float32 passes): resynchronise
            D_best = -np.inf
            S._exact_gradient()
            cert = S.certificate()
            continue
        if S.n_iter >= max_iter:
            break
        if last_exact or stalled or cert.gap - cert.smooth <= 0.1 * cert.smooth:
            # Stage done: the smoothing, not the optimisation, limits the gap.
            sol = _finish(S, cert, tol, D_best)
            if sol is not None:
                return sol
            cert = S.certificate()
            last_exact = stalled = False
            if cert.gap <= tol * cert.P:
                continue
            if S.h <= _H_MIN:
                break  # rounding, not smoothing, limits the Huber solution now
            # The smoothing gap scales like h^p: p = 2 when the band thins out with h
            # (generic data), p = 1 when many samples sit exactly on the margin (ties, or
            # w = 0); p is measured from the previous stage and h jumps to the target.
            p = 2.0
            if prev_stage is not None and cert.smooth > 0 and prev_stage[1] > 0:
                p = np.log(prev_stage[1] / cert.smooth) / np.log(prev_stage[0] / S.h)
                p = float(np.clip(p, 1.0, 2.0))
            prev_stage = (S.h, cert.smooth)
            f = (0.1 * tol * cert.P / cert.smooth) ** (1.0 / p) if cert.smooth > 0 and cert.P > 0 else 0.01
            S.set_h(max(S.h * float(np.clip(f, _H_FACTOR_MIN if p > 1.5 else 0.01, 0.3)), _H_MIN))
            cert = S.certificate()
            continue
        last_exact, moved = S.newton_step()
        stalled = not moved
        cert = S.certificate()
    vc, _ = S.verify(w_best, b_best, a_best)  # exact objective and gap of the returned point
    return _Sol(np.array(w_best), float(b_best), a_best, vc, vc.gap <= tol * vc.P, S.n_iter)


def _finish(S: _HuberNewton, cert: _Cert, tol: float, lower: float,
            size: int | None = None) -> _Sol | None:
    """Exact finishing step at the end of a continuation stage.

    Working set W = samples with |t| <= delta (delta >= 2h, at least 4(k+1) samples);
    the others are frozen at alpha = u (t > delta) or 0 (t < -delta) and the restricted
    true-hinge problem on W is solved in memory to 0.2 tol (recursively, same method).
    One exact pass then certifies the candidate on all samples; on failure the candidate
    is kept if it lowers the objective and delta doubles (at most three tries). Small
    problems, where W would not be much smaller than the data, use the KKT step instead.
    Returns a converged solution or None.
    """
    X, y, u, k = S.X, S.y, S.u, S.k
    cap = min(_WS_MAX, X.n // 4)
    delta = 2.0 * S.h
    if size is not None and X.n > 4 * size:  # working set of about `size` samples
        at = np.where(u > 0, np.abs(S.t), np.inf)
        delta = max(S.h, float(np.partition(at, size)[size]))
    for _ in range(3):
        if S.n_iter >= S.max_iter:
            return None
        at = np.abs(S.t)
        live = u > 0
        W = np.flatnonzero((at <= delta) & live)
        m_min = 4 * (k + 1)
        if W.size < m_min and live.sum() > m_min:
            delta = float(np.partition(np.where(live, at, np.inf), m_min)[m_min])
            W = np.flatnonzero((at <= delta) & live)
        if W.size > cap:
            break
        L = (S.t > delta) & live
        yW, uW = y[W], u[W]
        cy = S.F.cy + float(np.dot(u[L], y[L]))
        if not (uW[yW < 0].sum() > cy and uW[yW > 0].sum() > -cy):
            # the frozen side's class imbalance cannot be balanced inside W: the
            # restricted problem would be unbounded in b (its dual infeasible)
            break
        RW = X.rows(W)
        aW = S.alpha[W]
        F = _Frozen(
            G=S.G - RW.T @ (aW * yW),  # S.G holds sum alpha y z; alpha = u beyond the band
            Gp=S.Gp - RW.T @ (aW * S.pos[W]),
            cy=cy,
            ca=S.F.ca + float(u[L].sum()),
        )
        # margin: the bound comes from incrementally updated (slightly drifting) state
        sub = _solve(_Design(RW), yW, uW, S.w, S.b, S.h, 0.2 * tol, _WS_MAX_ITER, F,
                     floor=lower - 1e-6 * abs(lower))
        alpha = np.where(L, u, 0.0)
        alpha[W] = sub.alpha
        S.n_iter += 1
        vc, o = S.verify(sub.w, sub.b, alpha)
        if vc.gap <= tol * vc.P:
            return _Sol(sub.w, sub.b, alpha, vc, True, S.n_iter)
        if not vc.P < cert.P:
            return None
        S.accept(sub.w, sub.b, o)
        cert = S.certificate()
        delta *= 2.0
    else:
        return None
    if S.B is not None and S.n_iter < S.max_iter:
        out = S.kkt_step()
        if out is None:
            return None
        w2, b2, o2, alpha2, c2 = out
        if c2.gap <= tol * c2.P:
            vc, _ = S.verify(w2, b2, alpha2)
            if vc.gap <= tol * vc.P:
                return _Sol(w2, b2, alpha2, vc, True, S.n_iter)
        if c2.P < cert.P:
            S.accept(w2, b2, o2)
    return None


def fit_hinge(
    Z: np.ndarray,
    y: np.ndarray,
    C: float,
    *,
    sample_weight: np.ndarray | None = None,
    columns: np.ndarray | None = None,
    coef_init: np.ndarray | None = None,
    intercept_init: float | None = None,
    tol: float = 1e-6,
    max_iter: int = 200,
) -> HingeResult:
    """Minimise the true hinge-loss linear SVM objective on already standardised features.

    ``0.5 ||w||^2 + C sum_i s_i max(0, 1 - y_i (w . z_i + b))`` with ``y = 2 R - 1``.

    Parameters
    ----------
    Z : ndarray, shape (n, d), float32 or float64
        Standardised features. Read in place if C-contiguous (otherwise copied once);
        float32 keeps the Newton passes in float32, certificates are float64.
    y : array_like, shape (n,)
        Labels R in {0, 1} (or booleans).
    C : float
        Loss weight (summed-loss convention of libsvm / scikit-learn).
    sample_weight : array_like, shape (n,), optional
        Non-negative weights ``s_i`` (default 1).
    columns : array_like of int, shape (k,), optional
        Use only these columns of Z (distinct indices). Subsets of at most 75 % of the
        columns are copied once (faster passes); wider ones are read in place.
    coef_init : array_like, shape (k,), optional
        Warm start weights (k = len(columns) or d). The fit first tries an exact finish
        on the samples nearest the margin, which certifies in one step when the start is
        near the optimum (e.g. the previous fit of a feature-elimination run).
    intercept_init : float, optional
        Warm start intercept (default 0 when ``coef_init`` is given).
    tol : float
        Convergence when the duality gap is at most ``tol`` times the objective, i.e. the
        objective is certified within ``tol`` (relative) of the optimum.
    max_iter : int
        Maximum number of Newton / finishing steps on the full data.

    Returns
    -------
    HingeResult
        ``converged`` is True when the duality gap certifies ``objective`` within ``tol``;
        this function never warns (:class:`SoftnessSVM` does).
    """
    Z = np.asarray(Z)
    if Z.ndim != 2 or Z.dtype not in (np.float32, np.float64):
        raise SVMInputError("Z must be a 2-D float32 or float64 array")
    n, D = Z.shape
    if columns is not None:
        columns = np.asarray(columns, dtype=np.intp).ravel()
        if columns.size == 0 or columns.min() < -D or columns.max() >= D:
            raise SVMInputError(f"columns must be valid column indices of Z (d = {D})")
        columns = np.where(columns < 0, columns + D, columns)
        if np.unique(columns).size != columns.size:
            raise SVMInputError("columns must not repeat")
    y = _as_labels(y, n)
    ys = np.where(y == 1, 1.0, -1.0)
    if not (np.isfinite(C) and C > 0):
        raise SVMInputError(f"C must be positive and finite, got {C}")
    if sample_weight is None:
        u = np.full(n, float(C))
    else:
        s = np.asarray(sample_weight, dtype=np.float64).ravel()
        if s.shape[0] != n or not np.all(np.isfinite(s)) or np.any(s < 0):
            raise SVMInputError("sample_weight must be finite, non-negative and of length n")
        u = float(C) * s
    if not (u[ys > 0].sum() > 0 and u[ys < 0].sum() > 0):
        raise SVMOneClassError("only one class has samples with positive weight; both classes are needed")
    if not (tol > 0):
        raise SVMInputError(f"tol must be positive, got {tol}")
    X = _Design(Z, columns)
    k = X.k
    max_iter = int(max_iter)

    if coef_init is not None:
        w0 = np.asarray(coef_init, dtype=np.float64).ravel()
        if w0.shape != (k,):
            raise SVMInputError(f"coef_init must have length {k}, got {w0.shape}")
        b0 = 0.0 if intercept_init is None else float(intercept_init)
        h0 = 0.03
    elif n >= _SUBSAMPLE_MIN_N and max_iter > 0:
        w0, b0 = _subsample_start(X, ys, u, max_iter)
        h0 = 0.03
    else:
        w0, b0, h0 = np.zeros(k), 0.0, 1.0
    sol = _solve(X, ys, u, w0, b0, h0, float(tol), max_iter, warm=coef_init is not None)
    return HingeResult(sol.w.copy(), float(sol.b), int(sol.n_iter), bool(sol.converged),
                       float(sol.cert.P), float(sol.cert.gap), X.passes)


def _subsample_start(X: _Design, ys: np.ndarray, u: np.ndarray, max_iter: int):
    """Cold-start point for large n: the solution on a random subsample with C scaled up.

    The minimiser of the subsampled problem (loss weights multiplied by n / n_sub)
    estimates the full one to O(n_sub^-1/2); it costs a few passes over n_sub rows.
    """
    n = X.n
    n_sub = max(30_000, 100 * X.k)
    rng = np.random.default_rng(0x5EED)  # fixed: the fit is a deterministic function of its input
    idx = np.sort(rng.choice(n, size=n_sub, replace=False))
    us, ysub = u[idx], ys[idx]
    if not (us[ysub > 0].sum() > 0 and us[ysub < 0].sum() > 0):
        return np.zeros(X.k), 0.0
    us = us * (u.sum() / us.sum())
    R = np.empty((n_sub, X.k))
    for s in range(0, n_sub, _GATHER):
        R[s : s + _GATHER] = X.rows(idx[s : s + _GATHER])
    sol = _solve(_Design(R), ysub, us, np.zeros(X.k), 0.0, 1.0, 1e-4, max_iter)
    return sol.w, sol.b


# --------------------------------------------------------------------------- estimator


class SoftnessSVM(ClassifierMixin, BaseEstimator):
    """Linear SVM on standardised features, true hinge loss, unregularised intercept.

    Minimises ``0.5 ||w||^2 + C * sum_i sample_weight_i * max(0, 1 - y_i (w . z_i + b))``
    with ``z = (x - mean_) / scale_`` and ``y = 2 R - 1``: the objective of
    ``sklearn.svm.SVC(kernel="linear", C=C)`` on the standardised data.

    Parameters
    ----------
    C : float
        Inverse regularisation strength (libsvm / sklearn convention: the loss is summed).
    tol : float
        Relative duality-gap tolerance: the returned objective is certified to be within
        ``tol`` (relative) of the optimum of the problem on the standardised data.
    max_iter : int
        Maximum number of Newton / finishing steps on the full data.
    warm_start : bool
        Start from the previous ``coef_`` / ``intercept_`` when refitting data with the
        same number of features.

    Attributes
    ----------
    mean_, scale_ : ndarray, shape (n_features,)
        Standardisation (population std; 1 for constant features).
    coef_ : ndarray, shape (n_features,)
        Weights in standardised space.
    intercept_ : float
    classes_ : ndarray, [0, 1]
    n_features_in_ : int
    n_iter_ : int
        Newton / finishing steps on the full data (each one pass over the data).
    converged_ : bool
    objective_ : float
        True hinge primal objective at the solution.
    duality_gap_ : float
        Certified bound on ``objective_ - min objective``.

    Notes
    -----
    ``fit`` standardises X into a working copy of X's own float dtype (float32 stays
    float32: 664 MB for 1e6 x 166; integers become float64), so pass float32 for large
    data. The mean and scale are unweighted (``sample_weight`` enters the loss only) and
    accumulated in float64. The solver and its convergence certificate are described in
    :func:`fit_hinge` and ``docs/svm.md``. A fit that stops at ``max_iter`` without the
    certificate sets ``converged_ = False`` and emits a ``ConvergenceWarning``.
    """

    def __init__(self, C: float = 1.0, tol: float = 1e-6, max_iter: int = 200, warm_start: bool = False):
        self.C = C
        self.tol = tol
        self.max_iter = max_iter
        self.warm_start = warm_start

    def fit(self, X, y, sample_weight=None) -> "SoftnessSVM":
        """Standardise X and solve the hinge-loss SVM.

        Parameters
        ----------
        X : array_like, shape (n_samples, n_features)
            Raw features (float32 is kept as float32).
        y : array_like, shape (n_samples,)
            Labels R in {0, 1}.
        sample_weight : array_like, shape (n_samples,), optional
            Non-negative per-sample loss weights (default 1).

        Returns
        -------
        self
        """
        X = _as_2d_float(X)
        y = _as_labels(y, X.shape[0])
        init = None
        if self.warm_start and hasattr(self, "coef_") and self.coef_.shape == (X.shape[1],):
            init = (self.coef_, self.intercept_)
        Z, mean, scale = standardize(X, dtype=X.dtype)
        res = fit_hinge(
            Z, y.astype(np.int8), self.C, sample_weight=sample_weight,
            coef_init=None if init is None else init[0],
            intercept_init=None if init is None else init[1],
            tol=self.tol, max_iter=self.max_iter,
        )
        del Z
        self.mean_, self.scale_ = mean, scale
        self.coef_ = res.coef
        self.intercept_ = float(res.intercept)
        self.classes_ = np.array([0, 1])
        self.n_features_in_ = X.shape[1]
        self.n_iter_ = int(res.n_iter)
        self.converged_ = bool(res.converged)
        self.objective_ = float(res.objective)
        self.duality_gap_ = float(res.gap)
        if not res.converged:
            warnings.warn(
                f"SoftnessSVM did not converge in {self.max_iter} iterations "
                f"(duality gap {res.gap:.3g}, objective {res.objective:.6g}); "
                "increase max_iter or tol.",
                ConvergenceWarning,
                stacklevel=2,
            )
        return self

    def __sklearn_tags__(self):  # scikit-learn >= 1.6: labels are R in {0, 1} only
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        return tags

    def decision_function(self, X) -> np.ndarray:
        """Signed score ``w . z + b`` with ``z = (x - mean_) / scale_``.

        Parameters
        ----------
        X : array_like, shape (n_samples, n_features)

        Returns
        -------
        ndarray, shape (n_samples,), float64
        """
        check_is_fitted(self, "coef_")
        X = _as_2d_float(X)
        if X.shape[1] != self.n_features_in_:
            raise SVMInputError(f"X has {X.shape[1]} features, the SVM was fitted on {self.n_features_in_}")
        out = np.empty(X.shape[0])
        for s in range(0, X.shape[0], _GATHER):  # chunked: no full float64 copy of X
            zc = (np.asarray(X[s : s + _GATHER], dtype=np.float64) - self.mean_) / self.scale_
            out[s : s + _GATHER] = zc @ self.coef_
        return out + self.intercept_

    def softness(self, X) -> np.ndarray:
        """Signed distance to the hyperplane in standardised units, > 0 on the rearranging side.

        Parameters
        ----------
        X : array, shape (n_samples, n_features)

        Returns
        -------
        ndarray, shape (n_samples,)
        """
        norm = float(np.linalg.norm(self.coef_))
        if norm == 0.0:
            raise FitError("the fitted weights are all zero: the hyperplane (hence S) is undefined")
        return self.decision_function(X) / norm

    def predict(self, X) -> np.ndarray:
        """Predicted labels R in {0, 1} (1 where the score is positive), shape (n_samples,)."""
        return (self.decision_function(X) > 0).astype(int)
