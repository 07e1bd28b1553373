"""Is the data enough? Is C sensible? Learning curve and C sweep of the variance criterion.

- :func:`learning_curve`: ``Var(E_inf)``, accuracy and (toy data) the truth slope against
  the training-set size, a few seeded repeats per size, on the audit's held-out data. A
  finite training set loses barrier variance (the hyperplane's direction error costs
  ``Var(E_inf)`` in proportion to ``d / N``), so the curve rises towards its asymptote;
  when it is still rising at the largest size the barriers are biased low and more data
  would help. The rule is :func:`deficit_test` (``docs/selection.md``).
- :func:`c_sweep`: the same numbers on a log grid of C (regularisation relative to the
  data is ``1 / (C n_train)``): too small a C lets correlated extras bias the barriers,
  too large a C at small N fits noise; both lower ``Var(E_inf)``.

Both reuse the audit split and :class:`diag.selection.HeldOut`; nothing here prints.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from .audit import AuditOptions, Split, make_split
from .dataset import Dataset
from .errors import InsufficientDataError
from .selection import (
    Evaluation,
    HeldOut,
    Progress,
    SelectionOptions,
    TrainSet,
    _at,
    _criterion_of,
    _note,
    _num,
    _role,
    _scheduler_of,
    softness_of,
    training_pool,
)


# =========================================================================== learning curve


@dataclass
class LearningCurvePoint:
    n_per_class: int
    repeat: int
    evaluation: Evaluation
    converged: bool = True


@dataclass
class DeficitTest:
    """Is the criterion still rising at the largest training size? Three answers.

    The points at the largest ``len(sizes_used)`` sizes (default four; every repeat) are
    fitted by least squares to ``V(N) = V_inf - a / N`` (the asymptotic law of a direction
    error ``~ d / N``). The remaining deficit at the largest size is ``a / N_max``, reported
    relative to ``V_inf`` with a Student-t CI at ``level`` (``n_points - 2`` dof).

    Attributes
    ----------
    sizes_used : list of int
    v_inf : float
        Extrapolated asymptote.
    deficit, deficit_lower, deficit_upper : float
        ``a / (N_max V_inf)`` and its CI.
    tol : float
        Materiality: a missing fraction above it matters.
    level : float
    dof : int
    answer : str
        ``"rising"`` (the CI lies above ``tol``), ``"levelled"`` (below ``tol``) or
        ``"cannot-tell"`` (it straddles ``tol``, or no dof are left for a CI).
    still_rising : bool
        ``answer == "rising"``.
    n_needed : float or None
        Training samples per class at which the missing fraction would be below ``tol``
        even at the upper end of its CI (``(a + t se) / (tol V_inf)``), when the answer is
        not "levelled"; inf when the extrapolation has no upper end.
    """

    sizes_used: list[int]
    v_inf: float
    deficit: float
    deficit_lower: float
    tol: float
    level: float
    dof: int
    still_rising: bool
    deficit_upper: float = float("nan")
    answer: str = "cannot-tell"
    n_needed: float | None = None

    def to_dict(self) -> dict:
        return {
            "sizes_used": [int(s) for s in self.sizes_used],
            "v_inf": _num(self.v_inf),
            "deficit": _num(self.deficit),
            "deficit_lower": _num(self.deficit_lower),
            "deficit_upper": _num(self.deficit_upper),
            "tol": _num(self.tol),
            "level": _num(self.level),
            "dof": int(self.dof),
            "answer": self.answer,
            "still_rising": bool(self.still_rising),
            "n_needed": _num(self.n_needed),
        }


def deficit_test(n: np.ndarray, v: np.ndarray, tol: float = 0.06, n_tail: int = 4, level: float = 0.90) -> DeficitTest:
    """The three-way rule of the learning curve (see :class:`DeficitTest`).

    Parameters
    ----------
    n : ndarray, shape (m,)
        Training size (per class) of each point.
    v : ndarray, shape (m,)
        Criterion of each point (NaN points are ignored).
    tol : float
        Relative deficit that matters.
    n_tail : int
        Number of largest distinct sizes fitted.
    level : float
        Two-sided confidence level of the CI of the deficit; each end is a one-sided bound
        at ``(1 + level) / 2`` (default 0.90: "rising" and "levelled" are each one-sided
        tests at 5%, as in an equivalence test).
    """
    n = np.asarray(n, dtype=float)
    v = np.asarray(v, dtype=float)
    ok = np.isfinite(v)
    n, v = n[ok], v[ok]
    sizes = np.unique(n)
    if sizes.size < 2:
        raise InsufficientDataError("the learning curve needs usable points at two sizes at least")
    used = sizes[-min(n_tail, sizes.size):]
    m = np.isin(n, used)
    x, y = 1.0 / n[m], v[m]
    dx = x - x.mean()
    sxx = float(dx @ dx)
    slope = float(dx @ (y - y.mean()) / sxx)  # = -a
    v_inf = float(y.mean() - slope * x.mean())
    a = -slope
    dof = int(x.size - 2)
    n_max = float(used[-1])
    scale = abs(v_inf) if v_inf != 0 else 1.0
    deficit = a / n_max / scale
    if dof > 0:
        resid = y - (v_inf + slope * x)
        se_a = float(np.sqrt(resid @ resid / dof / sxx))
        tq = float(stats.t.ppf(0.5 + level / 2, dof))
        lower = (a - tq * se_a) / n_max / scale
        upper = (a + tq * se_a) / n_max / scale
        if lower > tol:
            answer = "rising"
        elif upper < tol:
            answer = "levelled"
        else:
            answer = "cannot-tell"
        a_hi = a + tq * se_a
    else:  # two points, no residual: no CI, no decision
        lower, upper, answer, a_hi = -np.inf, np.inf, "cannot-tell", np.inf
    n_needed = None
    if answer != "levelled":
        n_needed = float(a_hi / (tol * scale)) if np.isfinite(a_hi) and v_inf > 0 else float("inf")
    return DeficitTest(
        sizes_used=[int(s) for s in used], v_inf=v_inf, deficit=float(deficit), deficit_lower=float(lower),
        tol=float(tol), level=float(level), dof=dof, still_rising=answer == "rising",
        deficit_upper=float(upper), answer=answer, n_needed=n_needed,
    )


@dataclass
class LearningCurve:
    """Criterion, accuracy and truth slope against the training size (audit held-out data).

    Attributes
    ----------
    points : list of LearningCurvePoint
    sizes : list of int
        Training samples per class.
    repeats : int
    criterion : str
        "variance" or "logp_variance".
    test : DeficitTest or None
    still_rising : bool
    verdict : str
        One plain-language sentence (written by :mod:`diag.verdict`).
    """

    points: list[LearningCurvePoint]
    sizes: list[int]
    repeats: int
    criterion: str
    test: DeficitTest | None
    still_rising: bool
    verdict: str
    warnings: list[str] = field(default_factory=list)

    @property
    def answer(self) -> str:
        """"rising", "levelled" or "cannot-tell" (:class:`DeficitTest`)."""
        return "cannot-tell" if self.test is None else self.test.answer

    def summary(self) -> list[dict]:
        """Per size: mean and standard deviation over repeats of each quantity."""
        out = []
        for s in self.sizes:
            pts = [p.evaluation for p in self.points if p.n_per_class == s]

            def ms(vals):
                vals = np.array([np.nan if x is None else x for x in vals], dtype=float)
                vals = vals[np.isfinite(vals)]
                if vals.size == 0:
                    return None, None
                return float(vals.mean()), float(vals.std(ddof=1)) if vals.size > 1 else 0.0

            var, var_sd = ms([e.variance if e.valid else None for e in pts])
            lp, lp_sd = ms([e.logp_variance for e in pts])
            acc, acc_sd = ms([e.accuracy for e in pts])
            sl, sl_sd = ms([e.truth_slope for e in pts])
            out.append({
                "n_per_class": int(s), "variance": var, "variance_sd": var_sd, "logp_variance": lp,
                "logp_variance_sd": lp_sd, "accuracy": acc, "accuracy_sd": acc_sd, "truth_slope": sl,
                "truth_slope_sd": sl_sd, "n_repeats": len(pts),
            })
        return out

    def to_dict(self) -> dict:
        return {
            "sizes": [int(s) for s in self.sizes],
            "repeats": int(self.repeats),
            "criterion": self.criterion,
            "rows": [{k: (_num(v) if isinstance(v, float) else v) for k, v in row.items()} for row in self.summary()],
            "points": [{"n_per_class": int(p.n_per_class), "repeat": int(p.repeat), "converged": bool(p.converged),
                        **p.evaluation.to_dict()} for p in self.points],
            "test": None if self.test is None else self.test.to_dict(),
            "still_rising": bool(self.still_rising),
            "answer": self.answer,
            "verdict": self.verdict,
            "warnings": list(self.warnings),
        }


def default_sizes(n_max: int, n_sizes: int = 6, min_size: int = 100) -> list[int]:
    """``n_sizes`` training sizes per class spaced geometrically up to ``n_max``.

    The smallest is ``min(min_size, n_max / 8)`` (at least 10), so the curve always
    spans three doublings or more.
    """
    lo = max(10.0, min(float(min_size), n_max / 8.0))
    if n_max <= lo:
        return [int(n_max)]
    return sorted({int(round(x)) for x in np.geomspace(lo, n_max, n_sizes)})


def _training_pool(ds: Dataset, split: Split) -> tuple[np.ndarray, np.ndarray]:
    return training_pool(ds, split)


def learning_curve(
    ds: Dataset,
    options: AuditOptions | None = None,
    selection_options: SelectionOptions | None = None,
    *,
    split: Split | None = None,
    heldout: HeldOut | None = None,
    progress: Progress | None = None,
    scheduler=None,
) -> LearningCurve:
    """The criterion against the training size, on the audit's held-out data.

    Sizes: ``SelectionOptions.lc_sizes`` or :func:`default_sizes` up to the audit's
    training size; each repeat draws a fresh balanced sample (seeded) of that size from
    the audit's training groups, fits the SVM (audit's C) and evaluates it on the same
    held-out samples. A size that takes every training sample of the rarer class is
    fitted once (its draws would share that whole class, so its repeats would not be
    independent). The answer ("rising", "levelled", "cannot-tell") is :func:`deficit_test`
    over the four largest sizes with ``lc_deficit_tol``.

    The points (size, repeat) are independent tasks run by ``scheduler`` (a
    :class:`diag.parallel.Scheduler`; default ``selection_options.scheduler``, None:
    serially); each draws its training sample from its own seed, so the result does not
    depend on the scheduler.

    Returns
    -------
    LearningCurve
    """
    options = (options or AuditOptions()).validate()
    sel = (selection_options or SelectionOptions()).validate()
    seed = sel.seed_for(options)
    split = split or make_split(ds, options)
    held = heldout or HeldOut(ds, split, options, sel.eval_n_draws, sel.eval_max_per_temperature, sel.eval_n_boot, seed)
    pos, neg = _training_pool(ds, split)
    n_avail = int(min(pos.size, neg.size))
    sizes = sorted({int(s) for s in sel.lc_sizes}) if sel.lc_sizes else default_sizes(
        split.n_per_class, sel.lc_n_sizes, sel.lc_min_size)
    warn: list[str] = []
    too_big = [s for s in sizes if s > n_avail]
    if too_big:
        warn.append(f"learning-curve sizes above the {n_avail} available per class left out: {too_big}")
        sizes = [s for s in sizes if s <= n_avail]
    if not sizes:
        raise InsufficientDataError("no learning-curve size fits in the training groups")
    seqs = np.random.SeedSequence([seed, 0x1C]).spawn(len(sizes) * sel.lc_repeats)
    X = ds.features
    y_train = _role(ds)
    X_held = X[held.rows]
    # a size taking the whole rarer class: repeats would share it, so they are not independent
    n_rep = {s: (1 if s >= min(pos.size, neg.size) else sel.lc_repeats) for s in sizes}
    tasks = []
    for i, s in enumerate(sizes):
        for r in range(n_rep[s]):
            rng = np.random.default_rng(seqs[i * sel.lc_repeats + r])
            idx = np.sort(np.concatenate([rng.choice(pos, s, replace=False), rng.choice(neg, s, replace=False)]))
            tasks.append((int(s), r, X[idx], y_train[idx]))
    # largest first (they take longest), so that no worker is left with a big task at the end
    points: list[LearningCurvePoint] = _scheduler_of(scheduler, sel).map(
        _lc_task, tasks[::-1], shared=(held, X_held, options.C, options.svm_tol),
        done=lambda i, n: _note(progress, "learning curve", i, n),
    )[::-1]
    del tasks
    criterion = _criterion_of([p.evaluation for p in points])
    test = None
    try:
        test = deficit_test(
            np.array([p.n_per_class for p in points]), np.array([p.evaluation.score(criterion) for p in points]),
            tol=sel.lc_deficit_tol,
        )
    except InsufficientDataError as exc:
        warn.append(f"learning curve: {exc.message}")
    lc = LearningCurve(points, sizes, sel.lc_repeats, criterion, test, bool(test is not None and test.still_rising),
                       "", warn)
    from .verdict import describe_learning_curve

    lc.verdict = describe_learning_curve(lc)
    return lc


def _lc_task(shared, task) -> LearningCurvePoint:
    """One learning-curve point: fit on the task's training rows, evaluate on the held-out set."""
    from .svm import fit_hinge

    held, X_held, C, tol = shared
    s, r, X_train, y_train = task
    tr = TrainSet.from_rows(X_train, y_train)
    res = fit_hinge(tr.Z, tr.y, C, tol=tol)
    ev = held.evaluate(softness_of(held.standardised(X_held, tr.mean, tr.scale), res.coef, res.intercept))
    return LearningCurvePoint(int(s), r, ev, bool(res.converged))


# =========================================================================== C sweep


@dataclass
class CSweepPoint:
    C: float
    C_n_train: float
    evaluation: Evaluation
    converged: bool = True


@dataclass
class CSweep:
    """The criterion and the accuracy on a log grid of C (audit split and training set).

    Attributes
    ----------
    points : list of CSweepPoint, by increasing C
    criterion : str
    best_C : float or None
        C with the largest criterion.
    audit_C : float
    flag : bool
        The best C is better than the audit's. With an untouched comparison
        (:meth:`set_untouched`, what :func:`diag.selection.run_selection` does): its answer
        is "better". Without: the audit's C gives a criterion below the lower CI bound of
        the best C's on the same held-out data (optimistic: the best is chosen there).
    at_edge : bool
        The best C is the smallest or the largest of the grid (extend the grid).
    verdict : str
        One sentence (written by :mod:`diag.verdict`).
    untouched : diag.nested.PairedComparison or None
        The best C against the audit's C on groups the choice did not see.
    """

    points: list[CSweepPoint]
    criterion: str
    best_C: float | None
    audit_C: float
    n_train: int
    flag: bool
    at_edge: bool
    verdict: str
    untouched: object = None

    @property
    def answer(self) -> str:
        """"better", "no-better" or "cannot-tell" (untouched comparison; else from ``flag``)."""
        if self.untouched is not None:
            return self.untouched.answer
        return "better" if self.flag else "cannot-tell"

    def set_untouched(self, cmp) -> None:
        """Attach the untouched comparison of the best C with the audit's; it decides ``flag``."""
        from .verdict import describe_c_sweep

        self.untouched = cmp
        self.flag = cmp.answer == "better"
        self.verdict = describe_c_sweep(self)

    def to_dict(self) -> dict:
        return {
            "points": [{"C": _num(p.C), "C_n_train": _num(p.C_n_train), "converged": bool(p.converged),
                        **p.evaluation.to_dict()} for p in self.points],
            "criterion": self.criterion,
            "best_C": _num(self.best_C),
            "audit_C": _num(self.audit_C),
            "n_train": int(self.n_train),
            "flag": bool(self.flag),
            "answer": self.answer,
            "at_edge": bool(self.at_edge),
            "verdict": self.verdict,
        }


def c_grid(n_train: int, audit_C: float, relative=(0.1, 1.0, 10.0, 100.0, 1e3, 1e4, 1e5)) -> list[float]:
    """``C = c / n_train`` for each ``c`` of ``relative``, plus the audit's C, sorted."""
    vals = {float(f"{c / n_train:.3g}") for c in relative}
    vals.add(float(audit_C))
    return sorted(vals)


def c_sweep(
    ds: Dataset,
    options: AuditOptions | None = None,
    selection_options: SelectionOptions | None = None,
    *,
    split: Split | None = None,
    heldout: HeldOut | None = None,
    progress: Progress | None = None,
    scheduler=None,
) -> CSweep:
    """Fit the audit's training set at every C of the grid and evaluate each on the held-out data.

    The C values are independent tasks run by ``scheduler`` (default
    ``selection_options.scheduler``; None: serially).

    Returns
    -------
    CSweep
    """
    options = (options or AuditOptions()).validate()
    sel = (selection_options or SelectionOptions()).validate()
    seed = sel.seed_for(options)
    split = split or make_split(ds, options)
    held = heldout or HeldOut(ds, split, options, sel.eval_n_draws, sel.eval_max_per_temperature, sel.eval_n_boot, seed)
    n_train = int(split.train.size)
    grid = sorted({float(c) for c in sel.c_grid}) if sel.c_grid else c_grid(n_train, options.C, sel.c_grid_relative)
    tr = TrainSet.from_rows(ds.features[split.train], _role(ds)[split.train])
    Zh = held.standardised(ds.features[held.rows], tr.mean, tr.scale)
    # largest C first (the slowest fits), results back in grid order
    points: list[CSweepPoint] = _scheduler_of(scheduler, sel).map(
        _cs_task, grid[::-1], shared=(tr.Z, tr.y, Zh, held, options.svm_tol, n_train),
        done=lambda i, n: _note(progress, "C sweep", i, n),
    )[::-1]
    criterion = _criterion_of([p.evaluation for p in points])
    vals = np.array([p.evaluation.score(criterion) for p in points])
    best = audit_pt = None
    flag = at_edge = False
    if np.isfinite(vals).any():
        j = int(np.nanargmax(vals))
        best = points[j]
        at_edge = len(points) > 2 and j in (0, len(points) - 1)
        audit_pt = next((p for p in points if np.isclose(p.C, options.C, rtol=1e-9)), None)
        ci = best.evaluation.score_ci(criterion)
        if audit_pt is not None and audit_pt is not best and ci is not None:
            v = audit_pt.evaluation.score(criterion)
            flag = bool(not np.isfinite(v) or v < ci[0])
    out = CSweep(points, criterion, None if best is None else best.C, float(options.C), n_train, flag, at_edge, "")
    from .verdict import describe_c_sweep

    out.verdict = describe_c_sweep(out)
    return out


def _cs_task(shared, C: float) -> CSweepPoint:
    """One C of the sweep: fit the audit's training set, evaluate on the held-out set."""
    from .svm import fit_hinge

    Z, y, Zh, held, tol, n_train = shared
    res = fit_hinge(Z, y, C, tol=tol, max_iter=500)
    ev = held.evaluate(softness_of(Zh, res.coef, res.intercept))
    return CSweepPoint(C, C * n_train, ev, bool(res.converged))


__all__ = [
    "LearningCurvePoint", "LearningCurve", "DeficitTest", "deficit_test", "default_sizes", "learning_curve",
    "CSweepPoint", "CSweep", "c_grid", "c_sweep",
]
