"""Feature-set diagnostics: which feature set brings the inferred barriers closest to the truth?

The variance criterion (``docs/method.md`` section 4) ranks feature sets without knowing
the true barriers: the set whose inferred barriers ``E_inf`` vary most across particles
is closest to the truth. This module applies it to

- **recursive feature elimination** (RFE): on standardised features, fit the hinge-loss
  SVM, drop the feature with the smallest ``|w_j|``, refit (warm started), down to one
  feature; the variance is tracked at every size and the size ``k*`` where it peaks is
  recommended. Grouped cross-validation folds repeat the elimination to measure how often
  each feature survives at ``k*``;
- **basis coarsening**: features on a grid (radial functions over ``r`` per species,
  angular ones over ``xi`` per pair and ``(lambda, zeta)``) are merged ``k`` adjacent
  grid functions at a time (summed);
- **family comparison**: radial only, angular only, single species or pairs;
- any named candidates through :func:`compare_feature_sets`.

Every candidate goes through the same split and the same pipeline as the audit
(:func:`diag.audit.make_split`, :func:`diag.audit.infer_barriers`). Learning curve and C
sweep live in :mod:`diag.checks`; :func:`run_selection` runs everything. The rules (peak,
plateau, stability, cheap evaluation) are documented in ``docs/selection.md``. Nothing
here prints.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .audit import AuditOptions, Split, balanced_accuracy, infer_barriers, make_split
from .dataset import Dataset
from .errors import InsufficientDataError, UsageError

Progress = Callable[[str, int, int], None]

#: default grid axis of each feature family (features whose params lack it are not on a grid)
GRID_AXES = {"radial": "r", "angular": "xi"}
#: params that name a species or a species pair (for the species-subset candidates)
SPECIES_KEYS = ("species", "pair")
#: compact the working copy of Z when the active columns fall to this fraction of its width
#: (the SVM copies narrower column subsets on every call otherwise; see diag/svm.py)
_COMPACT_FRACTION = 0.75


# =========================================================================== options


@dataclass
class SelectionOptions:
    """What the feature-set diagnostics run, and how cheaply they evaluate each candidate.

    Attributes
    ----------
    rfe : bool
        Run recursive feature elimination.
    rfe_tol : float
        Relative duality-gap tolerance of the SVM refits during RFE (the audit uses
        ``AuditOptions.svm_tol``). 1e-5 fixes the weights to about 1e-3 relative, far
        below the gaps between ``|w_j|`` that decide the ranking outside near-ties of
        negligible weights (``docs/selection.md``).
    peak_tol : float
        The recommended size is the smallest whose run-averaged criterion is within this
        fraction of the run-averaged maximum (0: the argmax); see :func:`choose_peak`.
    n_folds : int
        Grouped cross-validation folds (whole groups at the training temperature) over
        which RFE is repeated for the ranking stability and the run-averaged curve;
        0 or 1: the audit split only.
    fold_window : int
        Fold runs evaluate the sizes within this distance of the audit split's peak.
    fold_coarse_fraction : float
        Fold runs remove this fraction of the remaining features per step (at least one)
        while more than twice the window's largest size remain, then one at a time; 0
        removes one at a time everywhere. The main RFE curve always removes one feature
        per step.
    coarsen : bool
        Compare grid coarsenings k = 1..coarsen_max (skipped without grid features).
    coarsen_max : int
    families : bool
        Compare whole families and species subsets (skipped with a single family).
    learning_curve : bool
    lc_sizes : tuple of int or None
        Training samples per class; default ``lc_n_sizes`` sizes spaced geometrically
        from ``lc_min_size`` to the audit's training size.
    lc_n_sizes, lc_min_size, lc_repeats : int
    lc_deficit_tol : float
        Materiality of the learning curve: the fraction of the extrapolated variance still
        missing at the largest training size that matters (default 0.06, about 3% of the
        barrier scale). "Rising" when the CI of the missing fraction lies above it,
        "levelled" when below, "cannot tell" otherwise (:func:`diag.checks.deficit_test`).
    c_sweep : bool
    c_grid : tuple of float or None
        C values; default ``C = c / n_train`` for ``c`` in ``c_grid_relative`` plus the
        audit's C (the regularisation relative to the data is ``1 / (C n_train)``).
    c_grid_relative : tuple of float
    eval_n_draws : int or None
        Monte Carlo draws of each candidate's CIs (None: the audit's ``n_draws``).
    eval_max_per_temperature : int or None
        Held-out samples per temperature (whole groups, seeded, the same for every
        candidate) entering the logistic fits; None: all of them (as the audit). The
        accuracy always uses every held-out sample at the training temperature.
    eval_n_boot : int
        Group-bootstrap replicates of each candidate's accuracy CI.
    seed : int or None
        Seeds the folds, subsamples and draws; default: the audit's seed.
    nested : bool
        Choose on part of the held-out groups and compare the choices with their baselines
        on the rest, untouched by every choice (:mod:`diag.nested`). False: choose and
        compare on the same held-out data (a "better" then counts only as "cannot tell").
    outer_fraction : float
        Fraction of each temperature's held-out groups kept untouched (default 0.5).
    min_scale_gain : float
        Materiality of every comparison: a chosen candidate is "better" only when the
        lower CI bound of its barrier-scale gain ``sqrt(Var_c / Var_b) - 1`` exceeds it,
        "no better" when the upper bound is below it (default 0.03).
    scheduler : diag.parallel.Scheduler or None
        Where the independent fits and evaluations run (None: serially, in this process).
        Every task is seeded by itself, so the results do not depend on it
        (``docs/scale.md``); it is not part of the report.
    """

    rfe: bool = True
    rfe_tol: float = 1e-5
    peak_tol: float = 0.01
    n_folds: int = 3
    fold_window: int = 2
    fold_coarse_fraction: float = 0.1
    coarsen: bool = True
    coarsen_max: int = 4
    families: bool = True
    learning_curve: bool = True
    lc_sizes: tuple[int, ...] | None = None
    lc_n_sizes: int = 6
    lc_min_size: int = 100
    lc_repeats: int = 3
    lc_deficit_tol: float = 0.06
    c_sweep: bool = True
    c_grid: tuple[float, ...] | None = None
    c_grid_relative: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0, 1e3, 1e4, 1e5)
    eval_n_draws: int | None = 100
    eval_max_per_temperature: int | None = 10_000
    eval_n_boot: int = 200
    seed: int | None = None
    nested: bool = True
    outer_fraction: float = 0.5
    min_scale_gain: float = 0.03
    scheduler: Any = field(default=None, repr=False, compare=False)

    def validate(self) -> "SelectionOptions":
        if not self.rfe_tol > 0:
            raise UsageError(f"rfe_tol must be positive, got {self.rfe_tol}")
        if not 0 <= self.peak_tol < 1:
            raise UsageError(f"peak_tol must be in [0, 1), got {self.peak_tol}")
        if self.n_folds < 0:
            raise UsageError(f"n_folds must be >= 0, got {self.n_folds}")
        if self.fold_window < 1:
            raise UsageError(f"fold_window must be >= 1, got {self.fold_window}")
        if not 0 <= self.fold_coarse_fraction < 1:
            raise UsageError(f"fold_coarse_fraction must be in [0, 1), got {self.fold_coarse_fraction}")
        if self.coarsen_max < 1:
            raise UsageError(f"coarsen_max must be >= 1, got {self.coarsen_max}")
        if self.lc_repeats < 1 or self.lc_n_sizes < 2 or self.lc_min_size < 2:
            raise UsageError("learning curve: need repeats >= 1, at least 2 sizes and sizes >= 2")
        if self.lc_sizes is not None and (len(self.lc_sizes) < 2 or min(self.lc_sizes) < 2):
            raise UsageError("learning-curve sizes: at least two sizes, each >= 2 per class")
        if self.c_grid is not None and (len(self.c_grid) < 1 or not all(c > 0 and np.isfinite(c) for c in self.c_grid)):
            raise UsageError("the C grid must hold positive finite values")
        if not 0 < self.outer_fraction < 1:
            raise UsageError(f"outer_fraction must be in (0, 1), got {self.outer_fraction}")
        if not 0 <= self.min_scale_gain < 1:
            raise UsageError(f"min_scale_gain must be in [0, 1), got {self.min_scale_gain}")
        if not 0 < self.lc_deficit_tol < 1:
            raise UsageError(f"lc_deficit_tol must be in (0, 1), got {self.lc_deficit_tol}")
        if self.eval_n_draws is not None and self.eval_n_draws < 10:
            raise UsageError(f"eval_n_draws must be >= 10, got {self.eval_n_draws}")
        if self.eval_max_per_temperature is not None and self.eval_max_per_temperature < 100:
            raise UsageError(f"eval_max_per_temperature must be >= 100, got {self.eval_max_per_temperature}")
        return self

    def seed_for(self, audit_options: AuditOptions) -> int:
        return int(audit_options.seed if self.seed is None else self.seed)


# =========================================================================== helpers


def _num(x) -> float | None:
    """A JSON-safe float: None for None, NaN and infinities."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _pair(ci) -> list[float | None] | None:
    return None if ci is None else [_num(ci[0]), _num(ci[1])]


def _note(progress: Progress | None, stage: str, done: int, total: int) -> None:
    if progress is not None:
        progress(stage, int(done), int(total))


def _at(T: np.ndarray, t: float) -> np.ndarray:
    return np.isclose(T, t, rtol=1e-9, atol=1e-12)


def _role(ds: Dataset) -> np.ndarray:
    """Training labels: ``Dataset.role`` (1 soft, 0 hard, -1 neither); ``label`` without roles."""
    role = getattr(ds, "role", None)
    return ds.label if role is None else role


def training_pool(ds: Dataset, split: Split, exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Soft and hard samples at the training temperature outside every held-out group.

    Parameters
    ----------
    exclude : ndarray of bool, shape (n_samples,), optional
        Samples that may not be used either (the untouched outer groups).

    Returns
    -------
    pos, neg : ndarray of int
    """
    held = np.asarray(split.test)
    roles = getattr(split, "test_roles", None)
    if isinstance(roles, np.ndarray) and roles.size:
        held = np.union1d(held, roles)
    y = _role(ds)
    ok = _at(ds.temperature, split.train_temperature) & ~np.isin(ds.group, np.unique(ds.group[held]))
    if exclude is not None:
        ok &= ~exclude
    pool = np.flatnonzero(ok)
    return pool[y[pool] == 1], pool[y[pool] == 0]


# =========================================================================== evaluation


@dataclass
class Evaluation:
    """The audit's numbers for one fitted softness, on the held-out samples of one split.

    Attributes
    ----------
    variance, variance_ci : float, (float, float) or None
        ``Var(E_inf)`` at the training temperature; None without an Arrhenius fit.
    logp_variance, logp_variance_ci : float, (float, float) or None
        The ``Var(log P(R|S,T_train))`` proxy.
    accuracy, accuracy_ci : float, (float, float)
        Balanced accuracy of ``S > 0`` on every held-out sample at the training temperature.
    truth_slope : float or None
        Slope of ``E_inf`` against the true barrier (toy data).
    e1 : float or None
        ``DeltaE(S) = e0 + e1 S``; ``e1 >= 0`` means the softness does not order barriers.
    valid : bool
        A variance exists and ``e1 < 0``; only valid evaluations can be recommended.
    warnings : list of str
    """

    variance: float | None
    variance_ci: tuple[float, float] | None
    logp_variance: float | None
    logp_variance_ci: tuple[float, float] | None
    accuracy: float
    accuracy_ci: tuple[float, float]
    truth_slope: float | None = None
    e1: float | None = None
    valid: bool = False
    warnings: list[str] = field(default_factory=list)

    def score(self, criterion: str) -> float:
        """The criterion value used for ranking (NaN when unusable)."""
        if criterion == "variance":
            return float(self.variance) if self.valid and self.variance is not None else np.nan
        return float(self.logp_variance) if self.logp_variance is not None else np.nan

    def score_ci(self, criterion: str):
        return self.variance_ci if criterion == "variance" else self.logp_variance_ci

    def to_dict(self) -> dict:
        return {
            "variance": _num(self.variance),
            "variance_ci": _pair(self.variance_ci),
            "logp_variance": _num(self.logp_variance),
            "logp_variance_ci": _pair(self.logp_variance_ci),
            "accuracy": _num(self.accuracy),
            "accuracy_ci": _pair(self.accuracy_ci),
            "truth_slope": _num(self.truth_slope),
            "e1": _num(self.e1),
            "valid": bool(self.valid),
        }


class HeldOut:
    """The held-out side of one split, prepared once and shared by every candidate.

    The logistic fits use at most ``max_per_temperature`` samples per temperature (whole
    groups drawn with a fixed seed, so every candidate sees the same samples and the
    comparisons between candidates are paired); the accuracy uses every held-out sample
    at the training temperature. All draws (Monte Carlo, bootstrap) reuse the same seeds
    for every candidate (common random numbers).

    Parameters
    ----------
    ds : Dataset
    split : Split
    options : AuditOptions
    n_draws : int or None
        Monte Carlo draws (None: ``options.n_draws``).
    max_per_temperature : int or None
    n_boot : int or None
        Bootstrap replicates of the accuracy CI (None: ``options.n_boot``).
    seed : int
    """

    def __init__(
        self,
        ds: Dataset,
        split: Split,
        options: AuditOptions,
        n_draws: int | None = None,
        max_per_temperature: int | None = None,
        n_boot: int | None = None,
        seed: int = 0,
    ):
        self.split = split
        self.options = replace(options, n_draws=int(n_draws or options.n_draws))
        self.n_boot = int(n_boot or options.n_boot)
        self.T_train = float(split.train_temperature)
        te = np.asarray(split.test)
        T = ds.temperature[te]
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0x4E1D]))
        if max_per_temperature is None:
            inf = te
        else:
            keep = []
            for t in np.unique(T):
                idx = te[T == t]
                if idx.size <= max_per_temperature:
                    keep.append(idx)
                    continue
                g = ds.group[idx]
                ug, counts = np.unique(g, return_counts=True)
                perm = rng.permutation(ug.size)
                n_take = int(np.searchsorted(np.cumsum(counts[perm]), max_per_temperature) + 1)
                keep.append(idx[np.isin(g, ug[perm[:n_take]])])
            inf = np.sort(np.concatenate(keep))
        # accuracy: soft against hard in the held-out groups (schema 2, ``Split.test_roles``),
        # else every held-out sample at the training temperature with its label
        roles = getattr(split, "test_roles", None)
        if isinstance(roles, np.ndarray) and roles.size:
            acc = np.asarray(roles)
            y_acc = _role(ds)[acc]
        else:
            acc = te[_at(T, self.T_train)]
            y_acc = ds.label[acc]
        self.rows = np.union1d(inf, acc)
        self.pos_inf = np.searchsorted(self.rows, inf)
        self.pos_acc = np.searchsorted(self.rows, acc)
        self.R_inf, self.T_inf, self.G_inf = ds.label[inf], ds.temperature[inf], ds.group[inf]
        self.E_inf = None if ds.energy is None else ds.energy[inf]
        self.R_acc, self.G_acc = y_acc, ds.group[acc]
        self.n_inf, self.n_acc = int(inf.size), int(acc.size)
        self._acc_seed = int(np.random.SeedSequence([seed, 0xACC]).generate_state(1)[0])

    def features(self, ds: Dataset) -> np.ndarray:
        """The held-out rows of a (possibly transformed) dataset, shape (n_rows, d)."""
        return ds.features[self.rows]

    def standardised(self, X_rows: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """``(X - mean) / scale`` of the held-out rows, float32 (for repeated softness)."""
        out = np.empty(X_rows.shape, dtype=np.float32)
        for s in range(0, X_rows.shape[0], 16384):
            out[s : s + 16384] = (np.asarray(X_rows[s : s + 16384], dtype=np.float64) - mean) / scale
        return out

    def evaluate(self, S: np.ndarray) -> Evaluation:
        """Every number of the audit for the softness ``S`` of the held-out rows (``self.rows``)."""
        return self.evaluate_full(S)[0]

    def evaluate_full(self, S: np.ndarray):
        """:meth:`evaluate` and the :class:`diag.audit.Inference` behind it (None when it failed)."""
        S = np.asarray(S, dtype=np.float64)
        pred = (S[self.pos_acc] > 0).astype(np.int8)
        acc, acc_ci = balanced_accuracy(
            pred, self.R_acc, self.G_acc, self.n_boot, self.options.ci_level, np.random.default_rng(self._acc_seed)
        )
        try:
            inf = infer_barriers(
                S[self.pos_inf], self.R_inf, self.T_inf, self.G_inf, self.T_train, self.options, energy=self.E_inf
            )
        except InsufficientDataError as exc:
            return Evaluation(None, None, None, None, acc, acc_ci, warnings=[str(exc)]), None
        crit = inf.criterion
        e1 = None if inf.arrhenius is None else float(inf.arrhenius.e1)
        return Evaluation(
            variance=crit.variance,
            variance_ci=crit.variance_ci,
            logp_variance=crit.logp_variance,
            logp_variance_ci=crit.logp_variance_ci,
            accuracy=acc,
            accuracy_ci=acc_ci,
            truth_slope=None if inf.truth is None else float(inf.truth.slope),
            e1=e1,
            valid=crit.variance is not None and e1 is not None and e1 < 0,
            warnings=list(inf.warnings),
        ), inf


def softness_of(Z_rows: np.ndarray, coef: np.ndarray, intercept: float, columns: np.ndarray | None = None) -> np.ndarray:
    """``S = (w . z + b) / |w|`` on standardised rows; ``columns`` selects the columns of ``w``.

    Returns
    -------
    ndarray, shape (n_rows,), float64
    """
    coef = np.asarray(coef, dtype=np.float64)
    if columns is not None:
        w = np.zeros(Z_rows.shape[1], dtype=Z_rows.dtype)
        w[np.asarray(columns)] = coef
    else:
        w = coef.astype(Z_rows.dtype)
    norm = float(np.linalg.norm(coef))
    if norm == 0.0:
        return np.zeros(Z_rows.shape[0])
    return (np.asarray(Z_rows @ w, dtype=np.float64) + float(intercept)) / norm


@dataclass
class TrainSet:
    """Standardised balanced training sample: ``Z = (X - mean) / scale`` (population std)."""

    Z: np.ndarray
    y: np.ndarray
    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def from_rows(cls, X: np.ndarray, y: np.ndarray) -> "TrainSet":
        from .svm import standardize

        Z, mean, scale = standardize(X)
        return cls(Z, np.asarray(y).astype(np.int8), mean, scale)


def fit_and_evaluate(
    X: np.ndarray, heldout: HeldOut, train_idx: np.ndarray, labels: np.ndarray, C: float, tol: float,
    max_iter: int = 200,
) -> tuple[Evaluation, Any]:
    """Fit the softness SVM on rows ``train_idx`` of X and evaluate it on ``heldout``.

    Returns
    -------
    evaluation : Evaluation
    fit : diag.svm.HingeResult
    """
    from .svm import fit_hinge

    tr = TrainSet.from_rows(X[train_idx], labels[train_idx])
    res = fit_hinge(tr.Z, tr.y, C, tol=tol, max_iter=max_iter)
    Zh = heldout.standardised(X[heldout.rows], tr.mean, tr.scale)
    ev = heldout.evaluate(softness_of(Zh, res.coef, res.intercept))
    if not res.converged:
        ev.warnings.append(f"the SVM did not converge in {res.n_iter} iterations (C = {C:g})")
    return ev, res


# =========================================================================== elimination


@dataclass
class EliminationStep:
    """One fitted size of an elimination path.

    Attributes
    ----------
    kept : ndarray of int
        Column indices (into the original Z) of the features of this fit.
    removed : ndarray of int
        Columns removed to reach this size (empty for the first fit), by increasing |w|.
    coef : ndarray, shape (len(kept),)
        Standardised weights of this fit.
    intercept : float
    converged : bool
    n_iter : int
    """

    kept: np.ndarray
    removed: np.ndarray
    coef: np.ndarray
    intercept: float
    converged: bool
    n_iter: int


def eliminate(
    Z: np.ndarray,
    y: np.ndarray,
    C: float,
    *,
    tol: float = 1e-5,
    max_iter: int = 200,
    warm_start: bool = True,
    n_remove: Callable[[int], int] | None = None,
    stop_at: int = 1,
    visit: Callable[[EliminationStep], None] | None = None,
) -> list[EliminationStep]:
    """Recursive feature elimination on standardised features with the true hinge loss.

    Fit, remove the feature(s) with the smallest ``|w_j|``, refit from the previous
    weights without them (warm start), until ``stop_at`` features remain. Ties in
    ``|w_j|`` go to the lower column index.

    Parameters
    ----------
    Z : ndarray, shape (n, d)
        Standardised training features (float32 or float64).
    y : ndarray, shape (n,)
        Labels R in {0, 1}.
    C : float
    tol, max_iter : float, int
        Passed to :func:`diag.svm.fit_hinge` for every refit.
    warm_start : bool
        False refits every size from scratch (the reference the warm path is tested against).
    n_remove : callable, optional
        ``n_remove(n_active) -> int``: features removed after the fit at ``n_active``
        (default 1; clipped to ``[1, n_active - stop_at]``).
    stop_at : int
        Smallest size fitted.
    visit : callable, optional
        Called with each :class:`EliminationStep` as soon as it is fitted.

    Returns
    -------
    list of EliminationStep, from the full set down to ``stop_at`` features.
    """
    from .svm import fit_hinge

    d = Z.shape[1]
    stop_at = int(max(1, min(stop_at, d)))
    ids = np.arange(d)  # original column of each active feature
    pos = np.arange(d)  # its column in the working copy Zc
    Zc = Z
    coef = intercept = None
    removed = np.zeros(0, dtype=np.intp)
    steps: list[EliminationStep] = []
    while True:
        if pos.size < Zc.shape[1] and pos.size <= _COMPACT_FRACTION * Zc.shape[1]:
            Zc = np.take(Zc, pos, axis=1)  # one contiguous copy instead of one per refit
            pos = np.arange(ids.size)
        res = fit_hinge(
            Zc, y, C,
            columns=None if pos.size == Zc.shape[1] else pos,
            coef_init=coef if warm_start else None,
            intercept_init=intercept if warm_start else None,
            tol=tol, max_iter=max_iter,
        )
        step = EliminationStep(ids.copy(), removed, np.asarray(res.coef, dtype=np.float64), float(res.intercept),
                               bool(res.converged), int(res.n_iter))
        steps.append(step)
        if visit is not None:
            visit(step)
        if ids.size <= stop_at:
            return steps
        r = 1 if n_remove is None else int(n_remove(ids.size))
        r = max(1, min(r, ids.size - stop_at))
        drop = np.argsort(np.abs(step.coef), kind="stable")[:r]
        mask = np.ones(ids.size, dtype=bool)
        mask[drop] = False
        removed = ids[drop]
        coef, intercept = step.coef[mask], step.intercept
        ids, pos = ids[mask], pos[mask]


def elimination_order(steps: Sequence[EliminationStep]) -> list[int]:
    """Columns in the order they were removed, the survivor last (sklearn's ranking reversed)."""
    order = [int(j) for s in steps[1:] for j in s.removed]
    survivors = steps[-1].kept[np.argsort(-np.abs(steps[-1].coef), kind="stable")]
    return order + [int(j) for j in survivors[::-1]]


# =========================================================================== RFE


@dataclass
class RFEStep:
    """One size of the RFE curve (audit split).

    ``removed`` are the features eliminated to reach this size (empty at the full set).
    """

    n_kept: int
    kept: list[str]
    removed: list[str]
    coef: np.ndarray = field(repr=False)
    converged: bool = True
    evaluation: Evaluation | None = None

    def to_dict(self) -> dict:
        ev = self.evaluation.to_dict() if self.evaluation is not None else {}
        return {"n_kept": int(self.n_kept), "removed": list(self.removed), **ev}


@dataclass
class PeakInfo:
    """Where the criterion peaks along the RFE curve, and how sharply.

    Attributes
    ----------
    n_kept : int
        ``k*``, the recommended size: the smallest size whose run-averaged criterion is
        within ``tol`` (relative) of the run-averaged maximum (rule in ``docs/selection.md``).
    argmax : int
        The size with the largest run-averaged criterion.
    criterion : str
        "variance" (``Var(E_inf)``) or "logp_variance" (no Arrhenius fit possible).
    tol : float
    value, ci : float, (float, float)
        The audit split's criterion at ``k*`` and its CI.
    n_runs : int
        Runs averaged: the audit split and the grouped folds.
    run_agreement : float
        Fraction of runs whose own curve, by the same rule, gives ``k*``.
    within_ci : list of int
        Sizes whose audit-split value lies inside the CI of the audit split's value at
        ``k*``: "statistically indistinguishable" in the marginal sense. Conservative:
        every size is evaluated on the same held-out data, so differences between sizes
        are much more precise than these CIs.
    drop_smaller, drop_larger : float or None
        Relative drop of the run-averaged criterion from ``k*`` to the next smaller /
        larger size (audit split alone outside the window).
    runs_drop_smaller, runs_drop_larger : int
        Runs in which the criterion is lower at that size than at ``k*``.
    accuracy_drop_smaller : float or None
        Audit-split accuracy at ``k*`` minus at the next smaller size.
    gain_vs_full, accuracy_gain_vs_full : float or None
        From the full set to ``k*`` on the audit split: relative change of the criterion
        and absolute change of the accuracy (the accuracy curve is typically far flatter).
    window : (int, int)
        Sizes evaluated by every run.
    at_edge : bool
        ``k*`` at the edge of the window but not at the edge of the curve.
    sharp : bool
        No other size within the CI of the peak.
    """

    n_kept: int
    argmax: int
    criterion: str
    tol: float
    value: float | None
    ci: tuple[float, float] | None
    n_runs: int
    run_agreement: float
    within_ci: list[int]
    drop_smaller: float | None
    drop_larger: float | None
    runs_drop_smaller: int
    runs_drop_larger: int
    accuracy_drop_smaller: float | None
    gain_vs_full: float | None
    accuracy_gain_vs_full: float | None
    window: tuple[int, int]
    at_edge: bool
    sharp: bool

    def to_dict(self) -> dict:
        return {
            "n_kept": int(self.n_kept),
            "argmax": int(self.argmax),
            "criterion": self.criterion,
            "tol": _num(self.tol),
            "value": _num(self.value),
            "ci": _pair(self.ci),
            "n_runs": int(self.n_runs),
            "run_agreement": _num(self.run_agreement),
            "within_ci": [int(k) for k in self.within_ci],
            "drop_smaller": _num(self.drop_smaller),
            "drop_larger": _num(self.drop_larger),
            "runs_drop_smaller": int(self.runs_drop_smaller),
            "runs_drop_larger": int(self.runs_drop_larger),
            "accuracy_drop_smaller": _num(self.accuracy_drop_smaller),
            "gain_vs_full": _num(self.gain_vs_full),
            "accuracy_gain_vs_full": _num(self.accuracy_gain_vs_full),
            "window": [int(self.window[0]), int(self.window[1])],
            "at_edge": bool(self.at_edge),
            "sharp": bool(self.sharp),
        }


def _smallest_near_max(values: np.ndarray, tol: float) -> int:
    """Index of the first (smallest size) entry within ``tol`` (relative) of the max."""
    m = np.nanmax(values)
    thr = m - tol * abs(m)
    return int(np.flatnonzero(values >= thr)[0])


def choose_peak(
    sizes: Sequence[int],
    values: np.ndarray,
    ci: np.ndarray,
    accuracy: np.ndarray | None = None,
    criterion: str = "variance",
    tol: float = 0.01,
) -> PeakInfo:
    """The recommended size along an RFE curve (rule in ``docs/selection.md``).

    The criterion is averaged over the runs on the sizes every run evaluated (the
    window); ``k*`` is the smallest size whose average is within ``tol`` (relative) of
    the largest average. ``tol = 0`` gives the argmax.

    Parameters
    ----------
    sizes : sequence of int, length K
        Feature-set sizes (any order).
    values : ndarray, shape (R, K)
        Criterion of each run at each size; row 0 is the audit split; NaN where a run
        did not evaluate a size or the evaluation is invalid.
    ci : ndarray, shape (K, 2)
        CI of row 0 (NaN where unknown).
    accuracy : ndarray, shape (K,), optional
        Accuracy of row 0.
    criterion : str
    tol : float

    Returns
    -------
    PeakInfo

    Raises
    ------
    InsufficientDataError
        No size has a usable criterion.
    """
    sizes = np.asarray(sizes, dtype=int)
    order = np.argsort(sizes)
    sizes = sizes[order]
    V = np.atleast_2d(np.asarray(values, dtype=float))[:, order]
    ci = np.asarray(ci, dtype=float).reshape(-1, 2)[order]
    acc = None if accuracy is None else np.asarray(accuracy, dtype=float)[order]
    if not np.isfinite(V[0]).any():
        raise InsufficientDataError("no feature-set size has a usable criterion: no peak can be chosen")
    runs = [r for r in range(V.shape[0]) if r == 0 or np.isfinite(V[r]).any()]
    V = V[runs]
    common = np.isfinite(V).all(axis=0)
    if common.sum() == 0:  # no size evaluated by every run: the audit split alone
        V = V[:1]
        common = np.isfinite(V[0])
    idx = np.flatnonzero(common)
    mean = V[:, idx].mean(axis=0)
    j = int(idx[_smallest_near_max(mean, tol)])
    j_arg = int(idx[int(np.argmax(mean))])
    k = int(sizes[j])
    lo_w, hi_w = int(sizes[idx[0]]), int(sizes[idx[-1]])
    agree = float(np.mean([sizes[idx[_smallest_near_max(V[r, idx], tol)]] == k for r in range(V.shape[0])]))
    finite0 = np.isfinite(V[0])
    v0 = V[0, j]
    lo = ci[j, 0]
    within = [int(s) for s, v in zip(sizes, V[0]) if np.isfinite(v) and np.isfinite(lo) and v >= lo]
    if k not in within:
        within = sorted(within + [k])

    def drop(jj):
        if not 0 <= jj < sizes.size:
            return None, 0
        if common[jj]:
            d = V[:, j] - V[:, jj]
            return float(d.mean() / abs(V[:, j].mean())), int((d > 0).sum())
        if finite0[jj]:
            return float((v0 - V[0, jj]) / abs(v0)), int(V[0, jj] < v0)
        return None, 0

    ds_, ns_ = drop(j - 1)
    dl_, nl_ = drop(j + 1)
    at_edge = bool((k == lo_w and lo_w > sizes[finite0].min()) or (k == hi_w and hi_w < sizes[finite0].max()))

    def acc_at(jj):
        return None if acc is None or not 0 <= jj < sizes.size or not np.isfinite(acc[jj]) else float(acc[jj])

    a_k, a_s, a_full = acc_at(j), acc_at(j - 1), acc_at(sizes.size - 1)
    v_full = V[0, -1]
    return PeakInfo(
        n_kept=k,
        argmax=int(sizes[j_arg]),
        criterion=criterion,
        tol=float(tol),
        value=float(v0),
        ci=None if not np.isfinite(ci[j]).all() else (float(ci[j, 0]), float(ci[j, 1])),
        n_runs=int(V.shape[0]),
        run_agreement=agree,
        within_ci=within,
        drop_smaller=ds_,
        drop_larger=dl_,
        runs_drop_smaller=ns_,
        runs_drop_larger=nl_,
        accuracy_drop_smaller=None if a_k is None or a_s is None else a_k - a_s,
        gain_vs_full=None if not np.isfinite(v_full) or v_full == 0 else float((v0 - v_full) / abs(v_full)),
        accuracy_gain_vs_full=None if a_k is None or a_full is None else a_k - a_full,
        window=(lo_w, hi_w),
        at_edge=at_edge,
        sharp=within == [k],
    )


@dataclass
class FoldRun:
    """RFE repeated on one grouped cross-validation fold (evaluated in the peak window only)."""

    fold: int
    n_per_class: int
    values: dict[int, float]  # size -> criterion (NaN if invalid)
    kept: dict[int, list[str]]  # size -> features kept
    order: list[str]  # elimination order as far as the run went


@dataclass
class RFEResult:
    """Recursive feature elimination on the audit split, its peak and its stability."""

    steps: list[RFEStep]
    order: list[str]
    criterion: str
    peak: PeakInfo
    recommended: list[str]
    stability: dict[str, float]
    folds: list[FoldRun]
    C: float
    n_per_class: int
    tol: float
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def step(self, n_kept: int) -> RFEStep:
        return next(s for s in self.steps if s.n_kept == n_kept)

    def to_frame(self):
        """The curve as a pandas DataFrame (one row per size)."""
        import pandas as pd

        return pd.DataFrame([{**s.to_dict(), "removed": ", ".join(s.removed)} for s in self.steps])


def grouped_folds(ds: Dataset, split: Split, n_folds: int, seed: int, exclude: np.ndarray | None = None) -> list[Split]:
    """Grouped K-fold splits at the training temperature, other temperatures as in ``split``.

    The groups at the training temperature (outside ``exclude``) are shuffled (seeded) and
    dealt into ``n_folds`` folds; fold ``f`` holds out its groups (and every natural sample
    at the other temperatures outside ``exclude``, as the audit does) and draws a balanced
    soft/hard training sample of ``min(split.n_per_class, available)`` per class from the
    other folds.

    Parameters
    ----------
    exclude : ndarray of bool, shape (n_samples,), optional
        Samples no fold may use (the untouched outer groups of :func:`diag.nested.nested_split`).
    """
    T_train = split.train_temperature
    at_train = _at(ds.temperature, T_train)
    usable = np.ones(ds.n_samples, dtype=bool) if exclude is None else ~np.asarray(exclude, dtype=bool)
    natural = getattr(ds, "natural", None)
    nat = np.ones(ds.n_samples, dtype=bool) if natural is None else natural == 1
    y = _role(ds)
    groups = np.unique(ds.group[at_train & usable])
    if groups.size < n_folds:
        raise InsufficientDataError(f"{groups.size} groups at T={T_train:g}: too few for {n_folds} grouped folds")
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence([seed, 0xF01D]).spawn(n_folds + 1)]
    perm = rngs[0].permutation(groups)
    parts = np.array_split(perm, n_folds)
    out = []
    for f, part in enumerate(parts):
        in_fold = np.isin(ds.group, part)
        pool = np.flatnonzero(at_train & ~in_fold & usable & (y >= 0))
        test = np.flatnonzero((~at_train | in_fold) & usable & nat)
        test_roles = np.flatnonzero(at_train & in_fold & usable & (y >= 0))
        pos, neg = pool[y[pool] == 1], pool[y[pool] == 0]
        n = int(min(split.n_per_class, pos.size, neg.size))
        if n < 2:
            raise InsufficientDataError(f"fold {f}: fewer than 2 training samples of one class at T={T_train:g}")
        rng = rngs[f + 1]
        train = np.sort(np.concatenate([rng.choice(pos, n, replace=False), rng.choice(neg, n, replace=False)]))
        fs = Split(train=train, test=test, train_temperature=T_train, n_per_class=n)
        if hasattr(fs, "test_roles"):
            fs.test_roles = test_roles
        out.append(fs)
    return out


def _criterion_of(evals: Sequence[Evaluation]) -> str:
    return "variance" if any(e.valid for e in evals) else "logp_variance"


def rfe(
    ds: Dataset,
    options: AuditOptions | None = None,
    selection_options: SelectionOptions | None = None,
    *,
    split: Split | None = None,
    progress: Progress | None = None,
    scheduler=None,
    exclude: np.ndarray | None = None,
) -> RFEResult:
    """Recursive feature elimination tracked by the variance criterion.

    The audit split's training set is standardised once; the SVM is refitted warm at
    every size (one feature removed per step) and every size is evaluated (cheaply,
    ``SelectionOptions.eval_*``). The peak ``k*`` is chosen by :func:`choose_peak` over
    the audit split and ``n_folds`` grouped folds; the recommended set is the ``k*``
    features that survive at size ``k*`` in the most runs (ties: the audit split's ranking).

    The evaluations of the sizes and the fold runs are independent tasks run by
    ``scheduler`` (a :class:`diag.parallel.Scheduler`; default ``selection_options.scheduler``,
    None: serially); the elimination path itself is sequential (warm starts).

    ``exclude`` (boolean mask of samples) keeps the untouched outer groups of a nested
    split out of the fold runs; ``split`` is then the inner split.

    Returns
    -------
    RFEResult
    """
    options = (options or AuditOptions()).validate()
    sel = (selection_options or SelectionOptions()).validate()
    seed = sel.seed_for(options)
    t0 = time.perf_counter()
    split = split or make_split(ds, options)
    names = list(ds.feature_names)
    d = len(names)
    warn: list[str] = []

    held = HeldOut(ds, split, options, sel.eval_n_draws, sel.eval_max_per_temperature, sel.eval_n_boot, seed)
    tr = TrainSet.from_rows(ds.features[split.train], _role(ds)[split.train])
    Zh = held.standardised(ds.features[held.rows], tr.mean, tr.scale)
    sched = _scheduler_of(scheduler, sel)

    path = eliminate(tr.Z, tr.y, options.C, tol=sel.rfe_tol)
    step_evals = sched.map(_evaluate_step, [(st.coef, st.intercept, st.kept) for st in path], shared=(held, Zh),
                           done=lambda i, n: _note(progress, "rfe", i, n))
    steps = [
        RFEStep(int(st.kept.size), [names[i] for i in st.kept], [names[i] for i in st.removed], st.coef,
                st.converged, ev)
        for st, ev in zip(path, step_evals)
    ]
    order = [names[i] for i in elimination_order(path)]
    del Zh, step_evals
    n_bad = sum(not s.converged for s in steps)
    if n_bad:
        warn.append(f"RFE: the SVM did not converge at {n_bad} of {len(steps)} sizes (results approximate)")
    evals = [s.evaluation for s in steps]
    criterion = _criterion_of(evals)
    if criterion != "variance":
        warn.append("RFE: no size has a usable Arrhenius fit; sizes are ranked by the Var(log P) proxy instead")
    sizes = [s.n_kept for s in steps]
    main_vals = np.array([e.score(criterion) for e in evals])
    if not np.isfinite(main_vals).any():
        raise InsufficientDataError("RFE: no feature-set size gives a usable criterion")
    asc = np.argsort(sizes)
    fin = asc[np.isfinite(main_vals[asc])]
    k_rule = sizes[fin[_smallest_near_max(main_vals[fin], sel.peak_tol)]]
    k_arg = sizes[int(np.nanargmax(main_vals))]

    # ---- grouped folds: same elimination, evaluated in a window around the peak
    folds: list[FoldRun] = []
    if sel.n_folds >= 2 and d > 1:
        lo_w = max(1, min(k_rule, k_arg) - sel.fold_window)
        hi_w = min(d, max(k_rule, k_arg) + sel.fold_window)
        try:
            fsplits = grouped_folds(ds, split, sel.n_folds, seed, exclude=exclude)
        except InsufficientDataError as exc:
            warn.append(f"ranking stability skipped: {exc.message}")
            fsplits = []
        folds = sched.map(_fold_task, [(f, fs, seed + 1 + f) for f, fs in enumerate(fsplits)],
                          shared=(ds, options, sel, lo_w, hi_w, criterion),
                          done=lambda i, n: _note(progress, "rfe folds", i, n))

    # ---- the peak
    V = np.full((1 + len(folds), len(sizes)), np.nan)
    V[0] = main_vals
    for r, fr in enumerate(folds, start=1):
        for c, k in enumerate(sizes):
            V[r, c] = fr.values.get(k, np.nan)
    ci = np.array([e.score_ci(criterion) or (np.nan, np.nan) for e in evals], dtype=float)
    acc = np.array([e.accuracy for e in evals])
    peak = choose_peak(sizes, V, ci, acc, criterion, sel.peak_tol)
    k = peak.n_kept
    if peak.at_edge:
        warn.append(
            f"RFE: the run-averaged peak (k = {k}) is at the edge of the stability window "
            f"{peak.window[0]}-{peak.window[1]}; increase fold_window"
        )

    # ---- stability and the recommended set
    main_kept = next(s.kept for s in steps if s.n_kept == k)
    sets = [main_kept] + [fr.kept[k] for fr in folds if k in fr.kept]
    counts = {n: sum(n in s for s in sets) for n in names}
    stability = {n: counts[n] / len(sets) for n in names}
    rank = {n: i for i, n in enumerate(order)}  # later eliminated = more important
    recommended = sorted(names, key=lambda n: (-counts[n], -rank[n]))[:k]
    recommended = [n for n in names if n in set(recommended)]  # dataset order
    seconds = time.perf_counter() - t0
    return RFEResult(
        steps=steps, order=order, criterion=criterion, peak=peak, recommended=recommended,
        stability=dict(sorted(stability.items(), key=lambda kv: (-kv[1], -rank[kv[0]]))), folds=folds,
        C=float(options.C), n_per_class=int(split.n_per_class), tol=float(sel.rfe_tol), warnings=warn,
        seconds=seconds,
    )


def _scheduler_of(scheduler, sel: SelectionOptions):
    from .parallel import as_scheduler

    return as_scheduler(scheduler if scheduler is not None else sel.scheduler)


# tasks: module-level functions of (shared, task), so that local processes and dask workers
# can run them; each is deterministic given its arguments (no generator shared between tasks)


def _evaluate_step(shared, task) -> Evaluation:
    """One RFE size: the audit's numbers for the hyperplane fitted on columns ``kept``."""
    held, Zh = shared
    coef, intercept, kept = task
    return held.evaluate(softness_of(Zh, coef, intercept, kept))


def _fold_task(shared, task) -> FoldRun:
    ds, options, sel, lo_w, hi_w, criterion = shared
    f, fs, seed = task
    return _fold_run(ds, fs, options, sel, seed, f, lo_w, hi_w, criterion)


def _fold_run(ds, fs: Split, options, sel: SelectionOptions, seed: int, f: int, lo_w: int, hi_w: int,
              criterion: str) -> FoldRun:
    names = ds.feature_names
    held = HeldOut(ds, fs, options, sel.eval_n_draws, sel.eval_max_per_temperature, sel.eval_n_boot, seed)
    tr = TrainSet.from_rows(ds.features[fs.train], _role(ds)[fs.train])
    Zh = held.standardised(ds.features[held.rows], tr.mean, tr.scale)
    values: dict[int, float] = {}
    kept: dict[int, list[str]] = {}
    frac = sel.fold_coarse_fraction

    def n_remove(n: int) -> int:
        # several at a time only far from the window: above twice its largest size
        if frac <= 0 or n <= 2 * hi_w:
            return 1
        return int(min(max(1, math.floor(frac * n)), n - 2 * hi_w))

    def visit(st: EliminationStep) -> None:
        k = int(st.kept.size)
        if lo_w <= k <= hi_w:
            ev = held.evaluate(softness_of(Zh, st.coef, st.intercept, st.kept))
            values[k] = ev.score(criterion)
            kept[k] = [names[i] for i in st.kept]

    path = eliminate(tr.Z, tr.y, options.C, tol=sel.rfe_tol, n_remove=n_remove, stop_at=lo_w, visit=visit)
    order = [names[i] for s in path[1:] for i in s.removed]
    return FoldRun(fold=f, n_per_class=fs.n_per_class, values=values, kept=kept, order=order)


# =========================================================================== comparisons


@dataclass
class CandidateRow:
    """One candidate feature set through the audit pipeline (same split as every other)."""

    name: str
    n_features: int
    features: list[str]
    evaluation: Evaluation | None
    converged: bool = True
    rank: int | None = None
    within_ci_of_best: bool = False
    error: str | None = None

    def to_dict(self) -> dict:
        ev = self.evaluation.to_dict() if self.evaluation is not None else {}
        return {
            "name": self.name,
            "n_features": int(self.n_features),
            "rank": self.rank,
            "within_ci_of_best": bool(self.within_ci_of_best),
            "converged": bool(self.converged),
            "error": self.error,
            **ev,
        }


@dataclass
class FeatureSetComparison:
    """Candidates ranked by the criterion (largest first); rows without a value last."""

    rows: list[CandidateRow]
    criterion: str
    n_per_class: int
    C: float

    @property
    def best(self) -> CandidateRow | None:
        return self.rows[0] if self.rows and self.rows[0].rank == 1 else None

    def row(self, name: str) -> CandidateRow:
        return next(r for r in self.rows if r.name == name)

    def to_frame(self):
        """The table as a pandas DataFrame (one row per candidate, in rank order)."""
        import pandas as pd

        return pd.DataFrame([r.to_dict() for r in self.rows])

    def to_dict(self) -> list[dict]:
        return [r.to_dict() for r in self.rows]


Candidate = Sequence[str] | Callable[[Dataset], Dataset]


def compare_feature_sets(
    ds: Dataset,
    candidates: Mapping[str, Candidate],
    options: AuditOptions | None = None,
    selection_options: SelectionOptions | None = None,
    *,
    split: Split | None = None,
    heldout: HeldOut | None = None,
    exact: bool = False,
    progress: Progress | None = None,
    stage: str = "compare",
    scheduler=None,
) -> FeatureSetComparison:
    """Run named candidate feature sets through the same pipeline and rank them.

    Parameters
    ----------
    ds : Dataset
    candidates : mapping name -> list of feature names, or callable ``Dataset -> Dataset``
        A callable (a transform such as :func:`coarsen_transform`) must keep the samples
        (same rows, labels, groups); it may change the features freely.
    options : AuditOptions
        C, split, CIs, seed: the same for every candidate.
    selection_options : SelectionOptions, optional
        ``eval_*`` settings of the evaluation.
    split : Split, optional
        Default :func:`diag.audit.make_split` (the audit's split).
    exact : bool
        Evaluate exactly as :func:`diag.audit.audit` does (every held-out sample, the
        audit's ``n_draws`` and ``n_boot``, its ``svm_tol``) instead of the cheap settings.
    scheduler : diag.parallel.Scheduler, optional
        Runs the candidates as independent tasks (default ``selection_options.scheduler``;
        None: serially). A transform candidate must then be picklable (module-level, or a
        closure cloudpickle can carry, as :func:`coarsen_transform` returns).

    Returns
    -------
    FeatureSetComparison
        Rows ranked by ``Var(E_inf)`` (or the log-P proxy when no candidate has an
        Arrhenius fit); ``within_ci_of_best`` marks rows whose value lies inside the CI
        of the best.
    """
    options = (options or AuditOptions()).validate()
    sel = (selection_options or SelectionOptions()).validate()
    seed = sel.seed_for(options)
    split = split or make_split(ds, options)
    if heldout is None:
        if exact:
            heldout = HeldOut(ds, split, options, None, None, None, seed)
        else:
            heldout = HeldOut(ds, split, options, sel.eval_n_draws, sel.eval_max_per_temperature, sel.eval_n_boot, seed)
    tol = options.svm_tol
    items = list(candidates.items())
    rows: list[CandidateRow] = _scheduler_of(scheduler, sel).map(
        _candidate_task, items, shared=(ds, heldout, split.train, options.C, tol),
        done=lambda i, n: _note(progress, stage, i, n),
    )
    evals = [r.evaluation for r in rows if r.evaluation is not None]
    criterion = _criterion_of(evals) if evals else "variance"
    return _rank(rows, criterion, split.n_per_class, options.C)


def _candidate_task(shared, item) -> CandidateRow:
    """One candidate feature set through the audit pipeline (a task of :func:`compare_feature_sets`)."""
    ds, heldout, train, C, tol = shared
    name, cand = item
    try:
        if callable(cand):
            cds = cand(ds)
            if cds.n_samples != ds.n_samples or not np.array_equal(cds.label, ds.label):
                raise UsageError(f"candidate '{name}': the transform changed the samples")
        else:
            cds = ds.select_features(list(cand))
        ev, res = fit_and_evaluate(cds.features, heldout, train, _role(cds), C, tol)
        return CandidateRow(name, cds.n_features, list(cds.feature_names), ev, bool(res.converged))
    except (InsufficientDataError, ValueError) as exc:
        return CandidateRow(name, 0, [], None, False, error=str(exc))


def _rank(rows: list[CandidateRow], criterion: str, n_per_class: int, C: float) -> FeatureSetComparison:
    def key(r):
        v = r.evaluation.score(criterion) if r.evaluation is not None else np.nan
        return (0, -v) if np.isfinite(v) else (1, 0.0)

    ranked = sorted(rows, key=key)  # stable: ties keep the candidates' order
    best = None
    for i, r in enumerate(ranked):
        v = r.evaluation.score(criterion) if r.evaluation is not None else np.nan
        if not np.isfinite(v):
            continue
        r.rank = i + 1
        if best is None:
            best = r
            r.within_ci_of_best = True
            continue
        ci = best.evaluation.score_ci(criterion)
        r.within_ci_of_best = bool(ci is not None and v >= ci[0])
    return FeatureSetComparison(ranked, criterion, int(n_per_class), float(C))


# --------------------------------------------------------------------------- grids


@dataclass
class GridLine:
    """Features of one family on one grid line, in grid order (e.g. G_A(r) over r)."""

    family: str
    axis: str
    key: tuple  # the other params, as sorted (name, value) pairs
    columns: list[int]
    values: list[float]


def _freeze(v):
    if isinstance(v, list):
        return tuple(_freeze(x) for x in v)
    if isinstance(v, dict):
        return tuple(sorted((k, _freeze(x)) for k, x in v.items()))
    return v


def grid_lines(ds: Dataset, axes: Mapping[str, str] | None = None) -> list[GridLine]:
    """The grid lines of a dataset's features.

    A feature is on a grid when its params hold the family's grid axis (``GRID_AXES``:
    ``r`` for radial, ``xi`` for angular; other families: ``r`` or ``xi`` if present)
    as a number. Features of one family whose other params are all equal (species,
    pair, lambda, zeta, width, ...) form one line, sorted by the axis value. Lines with
    fewer than two features are dropped.
    """
    axes = dict(GRID_AXES if axes is None else axes)
    lines: dict[tuple, GridLine] = {}
    for j, (fam, params) in enumerate(zip(ds.feature_families, ds.feature_params)):
        params = params or {}
        axis = axes.get(fam)
        if axis is None:
            axis = next((a for a in ("r", "xi") if a in params), None)
        if axis is None or axis not in params:
            continue
        try:
            val = float(params[axis])
        except (TypeError, ValueError):
            continue
        key = tuple(sorted((k, _freeze(v)) for k, v in params.items() if k != axis))
        line = lines.setdefault((fam, axis, key), GridLine(fam, axis, key, [], []))
        line.columns.append(j)
        line.values.append(val)
    out = []
    for line in lines.values():
        if len(line.columns) < 2:
            continue
        o = np.argsort(line.values, kind="stable")
        out.append(GridLine(line.family, line.axis, line.key, [line.columns[i] for i in o], [line.values[i] for i in o]))
    return out


def coarsen_transform(k: int, axes: Mapping[str, str] | None = None) -> Callable[[Dataset], Dataset]:
    """A transform that sums each run of ``k`` adjacent grid functions into one feature.

    Along every grid line (:func:`grid_lines`) the features are taken in grid order in
    consecutive chunks of ``k`` (the last chunk may be shorter) and summed; the merged
    feature keeps the family and the line's params, with the axis set to the mean of the
    merged values and ``<axis>_range`` / ``merged`` recording what was merged. Features
    not on a grid line are kept unchanged. ``k = 1`` returns the dataset unchanged.
    """
    if k < 1:
        raise UsageError(f"coarsening factor must be >= 1, got {k}")

    def transform(ds: Dataset) -> Dataset:
        if k == 1:
            return ds
        lines = grid_lines(ds, axes)
        on_grid = {j for ln in lines for j in ln.columns}
        cols: list[np.ndarray] = []
        names, fams, params = [], [], []
        first_of = {ln.columns[0]: ln for ln in lines}
        for j in range(ds.n_features):
            if j not in on_grid:
                cols.append(ds.features[:, j])
                names.append(ds.feature_names[j])
                fams.append(ds.feature_families[j])
                params.append(dict(ds.feature_params[j]))
                continue
            ln = first_of.get(j)
            if ln is None:
                continue  # emitted with its line
            for s in range(0, len(ln.columns), k):
                chunk = ln.columns[s : s + k]
                vals = ln.values[s : s + k]
                cols.append(ds.features[:, chunk].sum(axis=1, dtype=np.float64).astype(np.float32))
                cn = [ds.feature_names[c] for c in chunk]
                names.append(cn[0] if len(cn) == 1 else f"{cn[0]}+..+{cn[-1]}" if len(cn) > 2 else f"{cn[0]}+{cn[1]}")
                fams.append(ln.family)
                p = {kk: v for kk, v in ds.feature_params[chunk[0]].items() if kk != ln.axis}
                p[ln.axis] = float(np.mean(vals))
                p[f"{ln.axis}_range"] = [float(vals[0]), float(vals[-1])]
                p["merged"] = cn
                params.append(p)
        return Dataset(
            features=np.column_stack(cols) if cols else np.zeros((ds.n_samples, 0), np.float32),
            label=ds.label, temperature=ds.temperature, group=ds.group, feature_names=names,
            feature_families=fams, feature_params=params, energy=ds.energy, p_hop=ds.p_hop,
            species=ds.species, particle=ds.particle,
            **{k: getattr(ds, k) for k in ("role", "natural") if getattr(ds, k, None) is not None},
            conventions={**ds.conventions, "coarsening": {"factor": int(k), "rule": "sum of k adjacent grid functions"}},
            provenance=dict(ds.provenance), path=ds.path,
        )

    transform.__name__ = f"coarsen_{k}"
    return transform


def coarsening_candidates(ds: Dataset, max_factor: int = 4, axes: Mapping[str, str] | None = None) -> dict[str, Callable]:
    """``{"grid x1": identity, "grid x2": coarsen_transform(2), ...}``; empty without grid lines.

    Factors larger than the longest grid line are left out.
    """
    lines = grid_lines(ds, axes)
    if not lines:
        return {}
    longest = max(len(ln.columns) for ln in lines)
    return {f"grid x{k}": coarsen_transform(k, axes) for k in range(1, max_factor + 1) if k == 1 or k <= longest}


def family_candidates(ds: Dataset) -> dict[str, list[str]]:
    """Whole families and species subsets: ``all``, ``<family> only``, ``<family> <key>=<v> only``.

    Species subsets come from the ``species`` (radial) or ``pair`` (angular) params of a
    family with at least two values. Empty when there is a single family and no subsets.
    """
    names = ds.feature_names
    fams = list(dict.fromkeys(ds.feature_families))
    out: dict[str, list[str]] = {}
    if len(fams) > 1:
        for f in fams:
            out[f"{f} only"] = [n for n, g in zip(names, ds.feature_families) if g == f]
    for f in fams:
        members = [j for j, g in enumerate(ds.feature_families) if g == f]
        for key in SPECIES_KEYS:
            vals = list(dict.fromkeys(str(ds.feature_params[j].get(key)) for j in members if key in ds.feature_params[j]))
            if len(vals) < 2:
                continue
            for v in vals:
                out[f"{f} {key}={v} only"] = [names[j] for j in members if str(ds.feature_params[j].get(key)) == v]
    if out:
        out = {"all features": list(names), **out}
    return out


# =========================================================================== everything


@dataclass
class SelectionResult:
    """Every feature-set diagnostic of one dataset (see :func:`run_selection`).

    Attributes
    ----------
    untouched : dict of str -> diag.nested.PairedComparison
        For each diagnostic that chose something ("rfe", "coarsening", "families",
        "c_sweep"): the choice against its baseline on the untouched outer groups. The
        verdict reads only these (and the learning curve).
    nested : dict
        How the held-out groups were shared: ``enabled``, ``fraction``, sample and group
        counts of the inner and outer parts, ``reason`` when nesting was impossible.
    final : FeatureSetComparison or None
        All features and the RFE recommended set on the outer groups (the rows of
        ``untouched["rfe"]``, for display).
    """

    options: SelectionOptions
    audit_options: AuditOptions
    rfe: RFEResult | None
    final: FeatureSetComparison | None
    coarsening: FeatureSetComparison | None
    families: FeatureSetComparison | None
    learning_curve: Any  # diag.checks.LearningCurve
    c_sweep: Any  # diag.checks.CSweep
    recommendations: list[str]
    warnings: list[str]
    notes: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    untouched: dict = field(default_factory=dict)
    nested: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """Plain JSON-serialisable types only (no NaN); deterministic (no timings)."""
        sel: dict[str, Any] = {
            "rfe": [], "recommended": [], "peak": None, "stability": {}, "coarsening": [], "families": [],
            "final": [], "order": [], "criterion": None,
            "untouched": {k: v.to_dict() for k, v in self.untouched.items()},
            "nested": dict(self.nested),
            "min_scale_gain": _num(self.options.min_scale_gain),
        }
        if self.rfe is not None:
            sel.update(
                rfe=[s.to_dict() for s in self.rfe.steps],
                recommended=list(self.rfe.recommended),
                peak=self.rfe.peak.to_dict(),
                stability={k: _num(v) for k, v in self.rfe.stability.items()},
                order=list(self.rfe.order),
                criterion=self.rfe.criterion,
                n_folds=len(self.rfe.folds),
                C=_num(self.rfe.C),
                n_per_class=int(self.rfe.n_per_class),
            )
        if self.final is not None:
            sel["final"] = self.final.to_dict()
        if self.coarsening is not None:
            sel["coarsening"] = self.coarsening.to_dict()
        if self.families is not None:
            sel["families"] = self.families.to_dict()
        return {
            "selection": sel,
            "learning_curve": self.learning_curve.to_dict() if self.learning_curve is not None else None,
            "c_sweep": self.c_sweep.to_dict() if self.c_sweep is not None else None,
            "recommendations": list(self.recommendations),
            "warnings": list(self.warnings),
            "notes": list(self.notes),
        }


def run_selection(
    ds: Dataset,
    audit_options: AuditOptions | None = None,
    selection_options: SelectionOptions | None = None,
    progress: Progress | None = None,
    scheduler=None,
) -> SelectionResult:
    """Run every feature-set diagnostic; choose on inner groups, compare on untouched ones.

    The audit split's held-out groups are dealt into an inner and an outer part
    (:func:`diag.nested.nested_split`). RFE (with its grouped folds), coarsening, families
    and the C sweep choose on the training groups and the inner part only; each choice is
    then compared with its baseline (all features, ``grid x1``, the audit's C) on the outer
    part (:func:`diag.nested.compare_untouched`). The learning curve chooses nothing and uses
    every held-out sample.

    Parameters
    ----------
    ds : Dataset
    audit_options : AuditOptions
        The audit's options (C, split, seed, CIs): every diagnostic uses the same split.
    selection_options : SelectionOptions
    progress : callable, optional
        ``progress(stage, done, total)``; stages "rfe", "rfe folds", "final",
        "coarsening", "families", "learning curve", "C sweep".
    scheduler : diag.parallel.Scheduler, optional
        Where the independent tasks of every diagnostic run (default
        ``selection_options.scheduler``; None: serially). The result does not depend on it.

    Returns
    -------
    SelectionResult
    """
    from . import checks
    from .nested import compare_untouched, nested_split

    options = (audit_options or AuditOptions()).validate()
    sel = (selection_options or SelectionOptions()).validate()
    seed = sel.seed_for(options)
    sched = _scheduler_of(scheduler, sel)
    split = make_split(ds, options)
    held = HeldOut(ds, split, options, sel.eval_n_draws, sel.eval_max_per_temperature, sel.eval_n_boot, seed)
    warn: list[str] = []
    notes: list[str] = []
    secs: dict[str, float] = {}

    def timed(name, fn):
        t = time.perf_counter()
        out = fn()
        secs[name] = time.perf_counter() - t
        return out

    nest = None
    nested_info: dict[str, Any] = {"enabled": False, "fraction": _num(sel.outer_fraction), "reason": None}
    if sel.nested:
        try:
            nest = nested_split(ds, split, sel.outer_fraction, seed)
        except InsufficientDataError as exc:
            nested_info["reason"] = exc.message
            notes.append(f"comparisons not nested: {exc.message}")
    else:
        nested_info["reason"] = "switched off"
    if nest is not None:
        inner, outer, exclude = nest.inner, nest.outer, nest.excluded(ds)
        held_inner = HeldOut(ds, inner, options, sel.eval_n_draws, sel.eval_max_per_temperature, sel.eval_n_boot, seed)
        nested_info.update(
            enabled=True,
            n_inner=int(inner.test.size), n_outer=int(outer.test.size),
            n_inner_groups=int(np.unique(ds.group[inner.test]).size),
            n_outer_groups=int(np.unique(ds.group[outer.test]).size),
        )
    else:
        inner, outer, exclude, held_inner = split, split, None, held

    def untouched(diagnostic, baseline, candidate, same=False):
        cmp = compare_untouched(ds, outer, baseline, candidate, options, diagnostic=diagnostic,
                                margin=sel.min_scale_gain, seed=seed, same=same)
        if nest is None and cmp.answer == "better":
            cmp.answer, cmp.note = "cannot-tell", "not-nested"
        return cmp

    rfe_res = final = coarse = fams = lc = cs = None
    unt: dict[str, Any] = {}
    C = float(options.C)
    if sel.rfe and ds.n_features > 1:
        rfe_res = timed("rfe", lambda: rfe(ds, options, sel, split=inner, progress=progress, scheduler=sched,
                                           exclude=exclude))
        warn.extend(rfe_res.warnings)
        unt["rfe"] = timed("final", lambda: untouched(
            "rfe", ("all features", None, C), ("RFE recommended", list(rfe_res.recommended), C),
            same=len(rfe_res.recommended) == ds.n_features))
        _note(progress, "final", 1, 1)
        u = unt["rfe"]
        final = _rank([
            CandidateRow("all features", ds.n_features, list(ds.feature_names), u.baseline_eval),
            CandidateRow("RFE recommended", len(rfe_res.recommended), list(rfe_res.recommended), u.candidate_eval),
        ], _criterion_of([u.baseline_eval, u.candidate_eval]), split.n_per_class, C)
    elif sel.rfe:
        notes.append("RFE skipped: the dataset has a single feature")
    if sel.coarsen:
        cands = coarsening_candidates(ds, sel.coarsen_max)
        if cands:
            coarse = timed("coarsening", lambda: compare_feature_sets(
                ds, cands, options, sel, split=inner, heldout=held_inner, progress=progress, stage="coarsening",
                scheduler=sched))
            if coarse.best is not None:
                unt["coarsening"] = untouched("coarsening", ("grid x1", None, C),
                                              (coarse.best.name, cands[coarse.best.name], C),
                                              same=coarse.best.name == "grid x1")
        else:
            notes.append("coarsening skipped: no feature carries a grid parameter (r or xi)")
    if sel.families:
        cands = family_candidates(ds)
        if cands:
            fams = timed("families", lambda: compare_feature_sets(
                ds, cands, options, sel, split=inner, heldout=held_inner, progress=progress, stage="families",
                scheduler=sched))
            if fams.best is not None:
                unt["families"] = untouched("families", ("all features", None, C),
                                            (fams.best.name, cands[fams.best.name], C),
                                            same=fams.best.name == "all features")
        else:
            notes.append("family comparison skipped: a single feature family without species subsets")
    if sel.learning_curve:
        lc = timed("learning curve", lambda: checks.learning_curve(
            ds, options, sel, split=split, heldout=held, progress=progress, scheduler=sched))
    if sel.c_sweep:
        cs = timed("C sweep", lambda: checks.c_sweep(ds, options, sel, split=inner, heldout=held_inner,
                                                     progress=progress, scheduler=sched))
        if cs.best_C is not None:
            unt["c_sweep"] = untouched("c_sweep", (f"C = {C:.3g}", None, C), (f"C = {cs.best_C:.3g}", None, cs.best_C),
                                       same=bool(np.isclose(cs.best_C, C, rtol=1e-9)))
            cs.set_untouched(unt["c_sweep"])
    result = SelectionResult(
        options=sel, audit_options=options, rfe=rfe_res, final=final, coarsening=coarse, families=fams,
        learning_curve=lc, c_sweep=cs, recommendations=[], warnings=[], notes=notes,
        seconds=secs, untouched=unt, nested=nested_info,
    )
    from .verdict import selection_messages

    recs, flags = selection_messages(result)
    result.recommendations = recs
    result.warnings = list(dict.fromkeys(warn + flags))
    return result


def size_ranges(sizes: Sequence[int]) -> str:
    """Compact text for a set of sizes: ``[3, 4, 5, 9]`` -> ``"3-5, 9"``."""
    out: list[str] = []
    for k in sorted(set(int(x) for x in sizes)):
        if out and out[-1][1] == k - 1:
            out[-1][1] = k
        else:
            out.append([k, k])
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in out)


__all__ = [
    "SelectionOptions", "SelectionResult", "run_selection",
    "Evaluation", "HeldOut", "TrainSet", "softness_of", "fit_and_evaluate",
    "EliminationStep", "eliminate", "elimination_order",
    "RFEStep", "RFEResult", "PeakInfo", "FoldRun", "choose_peak", "grouped_folds", "rfe",
    "CandidateRow", "FeatureSetComparison", "compare_feature_sets",
    "GridLine", "grid_lines", "coarsen_transform", "coarsening_candidates", "family_candidates",
    "GRID_AXES", "size_ranges", "training_pool",
]
