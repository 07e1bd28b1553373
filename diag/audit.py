"""The audit: train the softness SVM, infer barriers, evaluate the variance criterion.

``audit(dataset, options) -> AuditResult`` runs METHOD section 4 end to end and returns
plain result objects; nothing here prints. The building blocks (:func:`make_split`,
:func:`fit_softness`, :func:`infer_barriers`) are reused by the feature-selection
diagnostics, which evaluate many candidate feature sets on the same split.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .arrhenius import ArrheniusResult, LogisticFit, fit_arrhenius, fit_logistic, softness_grid
from .criterion import CriterionResult, TruthResult, inferred_energy, truth_comparison, variance_criterion
from .dataset import Dataset
from .errors import DataError, InsufficientDataError, UsageError

SOFTNESS_UNITS = "standardised feature space: S = (w.z + b)/|w|, z = (x - mean)/std; S > 0 on the rearranging side"

#: rows of features whose softness is computed at a time (a multiple of the SVM's own
#: internal chunk, so the streamed S is bitwise the one-shot S); 65536 x 166 float32 = 43 MB
SOFTNESS_BLOCK_ROWS = 1 << 16

#: largest held-out natural population the feature-selection diagnostics use whole; above
#: it they run on a seeded subsample of whole groups (docs/memory.md)
SELECTION_MAX_NATURAL = 200_000

#: fewest held-out groups per temperature in that subsample (all when there are fewer): the
#: group-robust CIs and the nested inner / outer comparison need groups, not only samples
SELECTION_MIN_GROUPS = 10


@dataclass
class AuditOptions:
    """Every choice the audit depends on; all of it is recorded in the result.

    Attributes
    ----------
    C : float
        SVM inverse regularisation (the hinge loss is summed over training samples).
    train_temperature : float or None
        Default: the dataset's recorded ``train_temperature`` convention, else the
        highest temperature (where rearrangements are most frequent).
    train_per_class : int or None
        Training samples per class; default: as many as the smaller class allows.
    test_fraction : float
        Fraction of the groups at the training temperature held out. At the other
        temperatures every sample is held out (none is used for training).
    grid_points : int
        Softness grid size for the Arrhenius fits (before the regime cut).
    grid_quantiles : tuple of float
        The grid spans these quantiles of the held-out softness at the training temperature.
    p_max : float
        Arrhenius regime: ``P(R|S,T) <= p_max`` at every temperature.
    linearity_alpha : float
        Significance level of the statistical linearity test of each ``log P`` vs ``1/T``
        line (a chi-square with the propagated uncertainty of each ``log P``).
    r2_min, resid_tol : float
        The fixed-threshold check kept for reference: R^2 >= r2_min, or every residual
        <= resid_tol in log P.
    n_draws : int
        Monte Carlo draws for the confidence intervals.
    n_boot : int
        Group-bootstrap replicates for the accuracy CI.
    ci_level : float
    svm_tol : float
        Relative tolerance of the SVM solver.
    seed : int
        Seeds the split, the training subsample and every Monte Carlo draw.
    """

    C: float = 1.0
    train_temperature: float | None = None
    train_per_class: int | None = None
    test_fraction: float = 0.5
    grid_points: int = 25
    grid_quantiles: tuple[float, float] = (0.005, 0.995)
    p_max: float = 0.5
    linearity_alpha: float = 0.01
    r2_min: float = 0.95
    resid_tol: float = 0.02
    n_draws: int = 400
    n_boot: int = 1000
    ci_level: float = 0.95
    svm_tol: float = 1e-6
    seed: int = 0

    def validate(self) -> "AuditOptions":
        if not (self.C > 0 and np.isfinite(self.C)):
            raise UsageError(f"C must be a positive number, got {self.C}")
        if not 0 < self.test_fraction < 1:
            raise UsageError(f"test fraction must be in (0, 1), got {self.test_fraction}")
        if self.train_per_class is not None and self.train_per_class < 2:
            raise UsageError(f"train-per-class must be >= 2, got {self.train_per_class}")
        if not 0 < self.p_max < 1:
            raise UsageError(f"p_max must be in (0, 1), got {self.p_max}")
        if not 0 < self.linearity_alpha < 1:
            raise UsageError(f"linearity alpha must be in (0, 1), got {self.linearity_alpha}")
        if self.grid_points < 2:
            raise UsageError(f"grid points must be >= 2, got {self.grid_points}")
        if self.seed < 0:
            raise UsageError(f"seed must be >= 0, got {self.seed}")
        return self


@dataclass
class Split:
    """Which samples train the SVM and which are held out.

    Attributes
    ----------
    train : ndarray of int, shape (2 * n_per_class,)
        Balanced training sample (soft against hard, ``Dataset.role``) at the training
        temperature, drawn from the training groups.
    test : ndarray of int
        The held-out **natural population** (``Dataset.natural == 1``): every natural sample
        of the held-out groups at the training temperature and every natural sample at the
        other temperatures; never shares a group with the training split. P(R|S,T), the
        Arrhenius fits and the criterion are measured on it.
    train_temperature : float
    n_per_class : int
    test_roles : ndarray of int
        Held-out training-role samples (soft or hard) at the training temperature, in the
        held-out groups: the classifier's accuracy is measured on them (soft against hard,
        the task it was trained on).
    """

    train: np.ndarray
    test: np.ndarray
    train_temperature: float
    n_per_class: int
    test_roles: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))


def _child_rngs(seed: int, n: int) -> list[np.random.Generator]:
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(n)]


def resolve_train_temperature(ds: Dataset, requested: float | None) -> float:
    """The training temperature (rule in :func:`train_temperature_rule`)."""
    return train_temperature_rule(ds, requested)[0]


def train_temperature_rule(ds: Dataset, requested: float | None) -> tuple[float, str]:
    """The training temperature and why it was chosen.

    Requested, else recorded in the dataset's conventions; else, when the training set is
    not the whole natural population (trajectories: some samples are neither soft nor
    hard), the temperature with the largest balanced training set (the most
    ``min(n_soft, n_hard)``; ties to the lower temperature), since soft particles are rare
    at low T and hard ones at high T; else (toy data) the highest temperature.
    """
    temps = ds.temperatures
    t = requested
    rule = "requested (--train-temperature)"
    if t is None:
        t = ds.conventions.get("train_temperature")
        rule = "recorded in the dataset"
    if t is None:
        if (ds.role < 0).any():
            best, best_n = None, -1
            for x in temps:  # increasing: ties go to the lower temperature
                m = ds.temperature == x
                n = min(int((ds.role[m] == 1).sum()), int((ds.role[m] == 0).sum()))
                if n > best_n:
                    best, best_n = float(x), n
            return best, f"largest balanced training set ({best_n} soft and hard samples per class in the file)"
        return float(temps.max()), "highest temperature (training set = natural population)"
    match = temps[np.isclose(temps, float(t), rtol=1e-9, atol=1e-12)]
    if match.size == 0:
        raise UsageError(
            f"training temperature {float(t):g} is not in the dataset (temperatures: "
            + ", ".join(f"{x:g}" for x in temps)
            + ")",
            ds.path,
        )
    return float(match[0]), rule


def make_split(ds: Dataset, options: AuditOptions) -> Split:
    """Split groups into training and held-out, and draw the balanced training sample.

    Raises
    ------
    DataError
        A group spans several temperatures.
    InsufficientDataError
        Too few groups, one class only, or fewer samples than requested.
    """
    T_train = resolve_train_temperature(ds, options.train_temperature)
    rng_split, rng_sub = _child_rngs(options.seed, 2)[:2]
    # each group must sit at one temperature: groups are frames or trajectories
    _, ginv = np.unique(ds.group, return_inverse=True)
    tmin = np.full(ginv.max() + 1, np.inf)
    tmax = np.full(ginv.max() + 1, -np.inf)
    np.minimum.at(tmin, ginv, ds.temperature)
    np.maximum.at(tmax, ginv, ds.temperature)
    if (tmin != tmax).any():
        raise DataError("some groups (frames) contain samples at more than one temperature", ds.path)
    at_train = np.isclose(ds.temperature, T_train, rtol=1e-9, atol=1e-12)
    groups_train_T = np.unique(ds.group[at_train])
    if groups_train_T.size < 2:
        raise InsufficientDataError(
            f"only one group at the training temperature {T_train:g}: cannot hold out whole groups", ds.path
        )
    perm = rng_split.permutation(groups_train_T)
    n_test = int(np.clip(round(options.test_fraction * perm.size), 1, perm.size - 1))
    test_groups = perm[:n_test]
    in_test_group = np.isin(ds.group, test_groups)
    has_role = ds.role >= 0
    train_pool = np.flatnonzero(at_train & ~in_test_group & has_role)
    test = np.flatnonzero((ds.natural == 1) & (~at_train | in_test_group))
    test_roles = np.flatnonzero(at_train & in_test_group & has_role)
    pos = train_pool[ds.role[train_pool] == 1]
    neg = train_pool[ds.role[train_pool] == 0]
    avail = min(pos.size, neg.size)
    if avail == 0:
        which = "soft / rearranging (R=1)" if pos.size == 0 else "hard / non-rearranging (R=0)"
        raise InsufficientDataError(
            f"no {which} samples in the training split at T={T_train:g}: one class only "
            "(choose another --train-temperature, or other label thresholds)", ds.path
        )
    n = options.train_per_class if options.train_per_class is not None else avail
    if n > avail:
        raise InsufficientDataError(
            f"requested {n} training samples per class at T={T_train:g} but the training split "
            f"({1 - options.test_fraction:.0%} of the groups) has only {pos.size} rearranging and "
            f"{neg.size} non-rearranging samples",
            ds.path,
        )
    train = np.sort(np.concatenate([rng_sub.choice(pos, n, replace=False), rng_sub.choice(neg, n, replace=False)]))
    return Split(train=train, test=test, train_temperature=T_train, n_per_class=int(n), test_roles=test_roles)


@dataclass
class ClassifierResult:
    """The softness SVM and its held-out performance.

    ``accuracy`` is the balanced accuracy (mean of the per-class recalls) on the
    held-out samples at the training temperature; its CI is a group bootstrap.
    """

    C: float
    n_train_per_class: int
    train_temperature: float
    accuracy: float
    accuracy_ci: tuple[float, float]
    n_test: int
    converged: bool
    n_iter: int
    objective: float
    tol: float
    coef: np.ndarray = field(repr=False)
    intercept: float = 0.0
    w_norm: float = 1.0
    train_temperature_rule: str = ""


@dataclass
class Inference:
    """Everything inferred from the held-out softness."""

    logistic: list[LogisticFit]
    arrhenius: ArrheniusResult | None
    criterion: CriterionResult
    truth: TruthResult | None
    warnings: list[str]


def balanced_accuracy(
    pred: np.ndarray, R: np.ndarray, groups: np.ndarray, n_boot: int, ci_level: float, rng: np.random.Generator
) -> tuple[float, tuple[float, float]]:
    """Balanced accuracy and a group-bootstrap CI (groups resampled with replacement)."""
    _, inv = np.unique(groups, return_inverse=True)
    n_g = int(inv.max()) + 1
    correct = pred == R
    # per group: (correct positives, positives, correct negatives, negatives)
    counts = np.zeros((n_g, 4))
    np.add.at(counts, (inv, 0), correct & (R == 1))
    np.add.at(counts, (inv, 1), R == 1)
    np.add.at(counts, (inv, 2), correct & (R == 0))
    np.add.at(counts, (inv, 3), R == 0)

    def bacc(c):
        with np.errstate(invalid="ignore", divide="ignore"):
            return 0.5 * (c[..., 0] / c[..., 1] + c[..., 2] / c[..., 3])

    point = float(bacc(counts.sum(0)))
    w = rng.multinomial(n_g, np.full(n_g, 1.0 / n_g), size=n_boot)  # (B, n_g) resampling weights
    boot = bacc(w @ counts)
    boot = boot[np.isfinite(boot)]
    q = [(1 - ci_level) / 2 * 100, (1 + ci_level) / 2 * 100]
    lo, hi = np.percentile(boot, q) if boot.size else (np.nan, np.nan)
    return point, (float(lo), float(hi))


def fit_softness(ds: Dataset, split: Split, options: AuditOptions, columns: np.ndarray | None = None):
    """Fit the softness SVM on the training split.

    Returns
    -------
    svm : diag.svm.SoftnessSVM
        The fitted estimator (convergence in ``converged_``).
    messages : list of str
        Warnings raised during the fit, passed on to the report.
    """
    from .svm import SoftnessSVM

    X = ds.features[split.train] if columns is None else ds.features[np.ix_(split.train, columns)]
    svm = SoftnessSVM(C=options.C, tol=options.svm_tol)
    with warnings.catch_warnings(record=True) as caught:
        # captured so that they reach the report's warnings instead of stderr noise
        warnings.simplefilter("always")
        svm.fit(X, ds.role[split.train])
    return svm, [f"{w.category.__name__}: {w.message}" for w in caught]


def streamed_softness(svm, features, rows: np.ndarray, block_rows: int = SOFTNESS_BLOCK_ROWS) -> np.ndarray:
    """Softness of some rows, computed a block of rows at a time.

    Only one block of features is in memory at a time (read from the file when ``features``
    is a :class:`diag.dataset.FeatureStore`); each block goes through the estimator's own
    :meth:`~diag.svm.SoftnessSVM.softness`, so there is one definition of S.

    Parameters
    ----------
    svm : diag.svm.SoftnessSVM
        Fitted.
    features : ndarray or FeatureStore, shape (n_samples, n_features)
    rows : ndarray of int, shape (m,)
    block_rows : int
        Rows per block; keep it a multiple of the SVM's chunk (16384) for results bitwise
        equal to ``svm.softness(features[rows])``.

    Returns
    -------
    ndarray, shape (m,), float64
    """
    rows = np.asarray(rows)
    out = np.empty(rows.size)
    for a in range(0, rows.size, block_rows):
        out[a : a + block_rows] = svm.softness(features[rows[a : a + block_rows]])
    return out


def _softness_task(shared, rows: np.ndarray) -> np.ndarray:
    """A task of :func:`distributed_softness`: the softness of some rows (read by the worker)."""
    svm, features = shared
    return streamed_softness(svm, features, rows)


#: rows per task when the softness of a file-backed natural population is distributed
SOFTNESS_TASK_ROWS = 16 * SOFTNESS_BLOCK_ROWS


def distributed_softness(svm, features, rows: np.ndarray, scheduler=None) -> np.ndarray:
    """:func:`streamed_softness`, with the row blocks spread over a scheduler's workers.

    Only features backed by the dataset file (:class:`diag.dataset.FeatureStore`, which
    pickles as its path: the workers read their rows themselves, so the file must be
    visible to them) are distributed; in-memory features and a serial scheduler use
    :func:`streamed_softness` here. The result is the same either way (same blocks, same
    estimator).
    """
    from .dataset import FeatureStore

    rows = np.asarray(rows)
    if scheduler is None or not scheduler.parallel or not isinstance(features, FeatureStore) \
            or rows.size <= SOFTNESS_TASK_ROWS:
        return streamed_softness(svm, features, rows)
    tasks = [rows[a : a + SOFTNESS_TASK_ROWS] for a in range(0, rows.size, SOFTNESS_TASK_ROWS)]
    parts = scheduler.map(_softness_task, tasks, shared=(svm, features), key=("softness", id(svm)))
    return np.concatenate(parts)


def _logistic_task(job):
    """A task of the per-temperature logistic fits: the fit, or the InsufficientDataError's message."""
    S, R, t, g = job
    try:
        return fit_logistic(S, R, t, g)
    except InsufficientDataError as exc:
        return exc.message


def selection_sample(
    ds: Dataset, split: Split, options: AuditOptions, cap: int = SELECTION_MAX_NATURAL
) -> tuple[Dataset, dict]:
    """The samples the feature-selection diagnostics run on, and how they were drawn.

    Up to ``cap`` held-out natural samples the diagnostics use the dataset itself (when its
    features are lazy: every held-out group and the training roles, loaded into memory).
    Above it they use a seeded subsample of whole groups (frames) of the held-out natural
    population (``docs/memory.md``): at each temperature the groups are
    taken in a random order (seed: ``options.seed``) until that temperature's share of
    ``cap`` is reached, and at least :data:`SELECTION_MIN_GROUPS` of them (so with large
    frames the subsample can exceed ``cap``). Every training-role sample at the training
    temperature is kept, so the subsample's split has the same groups and, when every group
    at the training temperature holds a training sample, the same training set as the audit;
    samples kept only for their role are marked outside the natural population.

    Parameters
    ----------
    ds : Dataset
    split : Split
        The audit's split.
    options : AuditOptions
    cap : int
        Largest held-out natural population used whole.

    Returns
    -------
    sample : Dataset
        In memory.
    info : dict
        ``subsampled``, ``cap``, ``seed``, ``how``, ``n_natural_heldout`` (whole), and for a
        subsample ``n_natural`` / ``n_groups`` per temperature, ``n_samples`` and
        ``same_training_set``.
    """
    te = split.test
    info: dict[str, Any] = {"subsampled": bool(te.size > cap), "cap": int(cap), "n_natural_heldout": int(te.size)}
    if te.size <= cap and not ds.lazy:
        return ds, info
    rng = np.random.default_rng(np.random.SeedSequence([options.seed, 0x5E1EC7]))
    T, g = ds.temperature[te], ds.group[te]
    keep, per_t = [], []
    for t in np.unique(T):
        m = T == t
        ug, counts = np.unique(g[m], return_counts=True)
        perm = rng.permutation(ug.size)
        quota = cap * m.sum() / te.size
        k = max(min(SELECTION_MIN_GROUPS, ug.size), int(np.searchsorted(np.cumsum(counts[perm]), quota, side="right")))
        k = k if info["subsampled"] else ug.size  # lazy features under the cap: every group, in memory
        keep.append(ug[perm[:k]])
        per_t.append({"temperature": float(t), "n_groups": int(k), "n_groups_all": int(ug.size),
                      "n_natural": int(counts[perm[:k]].sum()), "n_natural_all": int(m.sum())})
    keep_groups = np.sort(np.concatenate(keep))
    chosen = np.isin(ds.group, keep_groups)
    at_train = np.isclose(ds.temperature, split.train_temperature, rtol=1e-9, atol=1e-12)
    rows = np.flatnonzero(chosen | (at_train & (ds.role >= 0)))
    sub = ds.subset(rows).in_memory()
    sub.natural = (sub.natural.astype(bool) & chosen[rows]).astype(np.int8)
    if not info["subsampled"]:
        return sub, info  # the same samples as the dataset's, in memory: nothing more to record
    sub_split = make_split(sub, options)
    info.update(
        seed=int(options.seed),
        how="whole groups of the held-out natural population, drawn without replacement in a seeded random "
        "order per temperature up to that temperature's share of the cap (at least "
        f"{SELECTION_MIN_GROUPS} groups); every "
        "training-role sample at the training temperature kept",
        min_groups=int(SELECTION_MIN_GROUPS),
        n_samples=int(rows.size),
        n_natural=int(sub_split.test.size),
        per_temperature=per_t,
        same_training_set=bool(np.array_equal(rows[sub_split.train], split.train)),
    )
    return sub, info


def infer_barriers(
    S: np.ndarray,
    R: np.ndarray,
    T: np.ndarray,
    groups: np.ndarray,
    train_temperature: float,
    options: AuditOptions,
    energy: np.ndarray | None = None,
    scheduler=None,
) -> Inference:
    """METHOD steps 2-5 from held-out softness.

    Parameters
    ----------
    S, R, T, groups : ndarray, shape (n,)
        Softness, labels, temperatures and group ids of the held-out samples.
    train_temperature : float
        Reference temperature of the variance criterion.
    energy : ndarray, shape (n,), optional
        True barriers (toy data): enables the truth comparison.
    scheduler : diag.parallel.Scheduler, optional
        Where the per-temperature logistic fits run (one task per temperature); the
        result does not depend on it.

    Returns
    -------
    Inference
    """
    warn: list[str] = []
    fits: list[LogisticFit] = []
    rngs = _child_rngs(options.seed + 1, 2)
    seed_arr, seed_var = (int(r.integers(2**31)) for r in rngs)
    temps = np.unique(T)
    jobs = [(S[T == t], R[T == t], t, groups[T == t]) for t in temps]
    if scheduler is not None and scheduler.parallel and len(jobs) > 1:
        results = scheduler.map(_logistic_task, jobs, key="logistic")
    else:
        results = [_logistic_task(j) for j in jobs]
    for t, res in zip(temps, results):
        if isinstance(res, str):
            warn.append(f"{res}; temperature T={t:g} left out of the Arrhenius fit")
        else:
            fits.append(res)
    at_ref = np.isclose(T, train_temperature, rtol=1e-9, atol=1e-12)
    fit_ref = next((f for f in fits if np.isclose(f.temperature, train_temperature)), None)
    if fit_ref is None:
        raise InsufficientDataError(
            f"P(R|S) cannot be fitted at the training temperature {train_temperature:g} (one class only)"
        )
    arr = None
    if len(fits) < 2:
        warn.append(
            "only one usable temperature: no Arrhenius fit is possible, so no barriers and no Var(E_inf); "
            "the log-P proxy and the accuracy are still reported"
        )
    else:
        grid = softness_grid(S[at_ref], options.grid_points, options.grid_quantiles)
        try:
            arr = fit_arrhenius(
                fits, grid, p_max=options.p_max, r2_min=options.r2_min, resid_tol=options.resid_tol, n_draws=options.n_draws,
                ci_level=options.ci_level, seed=seed_arr, alpha=options.linearity_alpha,
            )
        except InsufficientDataError as exc:
            warn.append(str(exc))
    if arr is not None:
        n_bad = int((~arr.linear).sum())
        if n_bad:
            n_cvx = int(arr.convex_deviation.sum())
            warn.append(
                f"log P vs 1/T deviates significantly from a line (chi-square p < {arr.alpha:g}) at {n_bad} of "
                f"{arr.linear.size} grid points in the Arrhenius regime"
                + (f" ({n_cvx} of them bend upward in 1/T: a spread of barriers at equal softness)" if n_cvx else "")
            )
        elif arr.temperatures.size < 3:
            warn.append("two temperatures: the linearity of log P in 1/T cannot be tested")
        if arr.in_regime.sum() < 3:
            warn.append(f"only {int(arr.in_regime.sum())} softness grid points lie in the Arrhenius regime")
        if arr.e1 >= 0:
            warn.append("DeltaE(S) does not decrease with softness (e1 >= 0): softness does not order barriers")
    crit = variance_criterion(
        S[at_ref], fit_ref, arr, ci_level=options.ci_level, n_draws=options.n_draws, seed=seed_var,
        reference=f"held-out samples at the training temperature T={train_temperature:g}",
    )
    truth = None
    if energy is not None and arr is not None:
        truth = truth_comparison(inferred_energy(S[at_ref], arr.e0, arr.e1), energy[at_ref], arr)
    return Inference(logistic=fits, arrhenius=arr, criterion=crit, truth=truth, warnings=warn)


@dataclass
class AuditResult:
    """Everything the audit found; renderers turn it into text, JSON and figures."""

    dataset: dict
    options: AuditOptions
    classifier: ClassifierResult
    feature_names: list[str]
    logistic: list[LogisticFit]
    arrhenius: ArrheniusResult | None
    criterion: CriterionResult
    truth: TruthResult | None
    warnings: list[str]
    softness_units: str = SOFTNESS_UNITS
    population: dict = field(default_factory=dict)  # {"species": name or None, "pooled": bool}
    curves: dict = field(default_factory=dict)
    selection: Any = None  # diag.selection.SelectionResult when the diagnostics ran
    verdict: Any = None  # diag.verdict.Verdict
    extras: dict = field(default_factory=dict)


def binned_probability(S: np.ndarray, R: np.ndarray, edges: np.ndarray, min_count: int = 20) -> dict:
    """Empirical P(R|S) in softness bins, for plots beside the logistic fits.

    Returns
    -------
    dict with ``S`` (bin centres), ``p`` (fraction rearranging), ``n`` (counts) for bins
    holding at least ``min_count`` samples and at least one rearrangement.
    """
    idx = np.digitize(S, edges) - 1
    ok = (idx >= 0) & (idx < edges.size - 1)
    n = np.bincount(idx[ok], minlength=edges.size - 1)
    k = np.bincount(idx[ok], weights=R[ok], minlength=edges.size - 1)
    keep = (n >= min_count) & (k > 0)
    centres = 0.5 * (edges[1:] + edges[:-1])
    return {"S": centres[keep].tolist(), "p": (k[keep] / n[keep]).tolist(), "n": n[keep].astype(int).tolist()}


def dataset_summary(ds: Dataset) -> dict:
    """Plain description of a dataset: sizes, temperatures, class balance, conventions."""
    temps = ds.temperatures
    per_t = []
    for t in temps:
        m = ds.temperature == t
        nat = m & (ds.natural == 1)
        n_nat = int(nat.sum())
        n_r = int(ds.label[nat].sum())
        per_t.append(
            {
                "temperature": float(t),
                "n_samples": int(m.sum()),
                "n_rearranging": int(ds.label[m].sum()),
                "n_groups": int(np.unique(ds.group[m]).size),
                "n_natural": n_nat,
                "n_natural_rearranging": n_r,
                "p_rearranging": n_r / n_nat if n_nat else None,
                "n_soft": int((m & (ds.role == 1)).sum()),
                "n_hard": int((m & (ds.role == 0)).sum()),
            }
        )
    return {
        "path": ds.path,
        "schema_version": ds.schema_version,
        "training_only": ds.training_only,
        "n_samples": ds.n_samples,
        "n_features": ds.n_features,
        "n_groups": int(np.unique(ds.group).size),
        "temperatures": [float(t) for t in temps],
        "per_temperature": per_t,
        "has_energy": ds.energy is not None,
        "conventions": ds.conventions,
        "provenance": ds.provenance,
    }


def audit(
    ds: Dataset,
    options: AuditOptions | None = None,
    progress: Callable[..., None] | None = None,
    selection_options=None,
    population: dict | None = None,
    scheduler=None,
) -> AuditResult:
    """Run the softness analysis properly and measure how far its barriers can be trusted.

    Parameters
    ----------
    ds : Dataset
    options : AuditOptions, optional
    progress : callable, optional
        ``progress(stage)`` as each stage starts, and ``progress(stage, done, total)``
        inside counted stages (for progress displays).
    selection_options : diag.selection.SelectionOptions, optional
        Run the feature-set diagnostics (RFE, coarsening, learning curve, C sweep) on
        the same split; their result is attached as ``selection``.
    population : dict, optional
        Which centre particles ``ds`` holds (from :func:`species_populations`), recorded
        in the result.
    scheduler : diag.parallel.Scheduler, optional
        Where the natural-population stage runs: the softness of a file-backed (lazy)
        dataset in row blocks read by the workers, and the per-temperature logistic fits
        (``docs/scale.md``). The result does not depend on it.

    Returns
    -------
    AuditResult
    """
    options = (options or AuditOptions()).validate()
    note = progress or (lambda stage: None)
    warn: list[str] = []
    if ds.temperatures.size < 2:
        warn.append(f"the dataset has one temperature ({ds.temperatures[0]:g}): no Arrhenius fit is possible")
    if ds.training_only:
        warn.append(
            "schema-1 dataset from trajectories: it holds only the soft and hard particles, so P(R|S,T), the "
            "barriers and Var(E_inf) are measured on the training set, not the natural population, which "
            "inflates P(R) by a temperature-dependent factor; re-run diag features to store the natural population"
        )
    if population is not None and population.get("pooled") and population.get("n_species", 1) > 1:
        warn.append(
            f"{population['n_species']} centre species pooled into one SVM (--species all): the classifier can "
            "partly learn which species a particle is, which is not softness"
        )
    note("split")
    split = make_split(ds, options)
    note("fit SVM")
    svm, fit_messages = fit_softness(ds, split, options)
    warn.extend(m for m in dict.fromkeys(fit_messages) if "ConvergenceWarning" not in m)
    if not svm.converged_:
        warn.append(f"the SVM solver did not converge in {svm.n_iter_} iterations: results are approximate")
    note("softness")
    te = split.test
    # a block at a time: no copy of the held-out features (blocks on the workers, if any)
    S = distributed_softness(svm, ds.features, te, scheduler)
    at_ref = np.isclose(ds.temperature[te], split.train_temperature, rtol=1e-9, atol=1e-12)
    rng_acc = _child_rngs(options.seed + 2, 1)[0]
    tr_ = split.test_roles
    if tr_.size == 0:
        raise InsufficientDataError(
            f"no held-out soft or hard sample at the training temperature {split.train_temperature:g}: "
            "the accuracy cannot be measured", ds.path,
        )
    acc, acc_ci = balanced_accuracy(
        (streamed_softness(svm, ds.features, tr_) > 0).astype(np.int8), ds.role[tr_], ds.group[tr_], options.n_boot,
        options.ci_level, rng_acc,
    )
    clf = ClassifierResult(
        C=options.C,
        n_train_per_class=split.n_per_class,
        train_temperature=split.train_temperature,
        accuracy=acc,
        accuracy_ci=acc_ci,
        n_test=int(tr_.size),
        converged=bool(svm.converged_),
        n_iter=int(svm.n_iter_),
        objective=float(svm.objective_),
        tol=options.svm_tol,
        coef=np.asarray(svm.coef_, dtype=np.float64),
        intercept=float(svm.intercept_),
        w_norm=float(np.linalg.norm(svm.coef_)),
        train_temperature_rule=train_temperature_rule(ds, options.train_temperature)[1],
    )
    note("Arrhenius fits")
    try:
        inf = infer_barriers(
            S, ds.label[te], ds.temperature[te], ds.group[te], split.train_temperature, options,
            energy=None if ds.energy is None else ds.energy[te], scheduler=scheduler,
        )
    except InsufficientDataError as exc:
        if exc.path is not None or ds.path is None:
            raise
        raise InsufficientDataError(exc.message, ds.path) from None
    for w in inf.warnings:
        if w not in warn and not (ds.temperatures.size < 2 and "one usable temperature" in w):
            warn.append(w)
    # data behind the figures: binned P(R|S) per temperature, a seeded subsample of E_inf vs E_true
    T_te, R_te = ds.temperature[te], ds.label[te]
    edges = np.linspace(*np.quantile(S, [0.002, 0.998]), 31)
    curves: dict = {
        "binned": [
            {"temperature": float(t), **binned_probability(S[T_te == t], R_te[T_te == t], edges)}
            for t in np.unique(T_te)
        ]
    }
    if inf.truth is not None and inf.arrhenius is not None:
        rng_plot = _child_rngs(options.seed + 3, 1)[0]
        ref = np.flatnonzero(at_ref)
        pick = np.sort(rng_plot.choice(ref, min(1000, ref.size), replace=False))
        curves["truth_sample"] = {
            "E_true": ds.energy[te][pick].tolist(),
            "E_inf": inferred_energy(S[pick], inf.arrhenius.e0, inf.arrhenius.e1).tolist(),
        }
    selection = None
    if selection_options is not None:
        from .selection import run_selection

        # above SELECTION_MAX_NATURAL held-out natural samples: a recorded, seeded subsample
        sel_ds, sel_info = selection_sample(ds, split, options, SELECTION_MAX_NATURAL)
        selection = run_selection(sel_ds, options, selection_options, progress=progress)
        del sel_ds
        if sel_info["subsampled"]:
            selection.notes.append(
                f"feature-set diagnostics on a seeded subsample of whole groups: {sel_info['n_natural']} of the "
                f"{sel_info['n_natural_heldout']} held-out natural samples (cap {sel_info['cap']}, seed "
                f"{sel_info['seed']}); P(R|S,T), the Arrhenius fits and Var(E_inf) use them all"
            )
        for w in selection.warnings:
            if w not in warn:
                warn.append(w)
    result = AuditResult(
        dataset=dataset_summary(ds),
        options=options,
        classifier=clf,
        feature_names=list(ds.feature_names),
        logistic=inf.logistic,
        arrhenius=inf.arrhenius,
        criterion=inf.criterion,
        truth=inf.truth,
        warnings=warn,
        curves=curves,
        selection=selection,
        population=dict(population or {}),
    )
    if selection_options is not None:
        result.extras["selection_sample"] = sel_info
    from .verdict import make_verdict

    result.verdict = make_verdict(result, selection)
    return result


@dataclass
class Population:
    """The centre particles one audit covers.

    Attributes
    ----------
    dataset : Dataset
        The samples of these centres (all features, conventions unchanged).
    species : str or None
        Species name (None: the dataset records no species, or several are pooled).
    pooled : bool
        Several centre species in one SVM (``--species all``).
    n_species : int
        Number of centre species in ``dataset``.
    """

    dataset: Dataset
    species: str | None
    pooled: bool
    n_species: int

    def describe(self) -> dict:
        return {"species": self.species, "pooled": self.pooled, "n_species": self.n_species}


def species_populations(ds: Dataset, request: list[str] | None = None) -> list[Population]:
    """Split a dataset into the populations to audit, one per centre species.

    Softness is defined per species (METHOD section 5, "Species"): a dataset with several
    centre species is never pooled silently.

    Parameters
    ----------
    ds : Dataset
    request : list of str, optional
        None: every centre species separately (one population when there is one).
        ``["all"]``: all centre species pooled into one population.
        Species names (or ids): those species, each separately.

    Returns
    -------
    list of Population, in species-id order (or request order).

    Raises
    ------
    UsageError
        A requested species is not among the dataset's centres.
    """
    if ds.species is None:
        if request and [r for r in request if r != "all"]:
            raise UsageError("--species: the dataset records no species", ds.path)
        return [Population(ds, None, False, 1)]
    ids = [int(i) for i in np.unique(ds.species)]
    names = [ds.species_name(i) for i in ids]
    if request and list(request) == ["all"]:
        return [Population(ds, names[0] if len(ids) == 1 else None, len(ids) > 1, len(ids))]
    if request:
        if "all" in request:
            raise UsageError("--species all pools every species; do not combine it with species names")
        chosen = []
        for r in request:
            if r in names:
                k = ids[names.index(r)]
            elif r.isdigit() and int(r) in ids:
                k = int(r)
            else:
                raise UsageError(
                    f"--species {r}: not a centre species of the dataset (centres: {', '.join(names)})", ds.path
                )
            if k not in chosen:
                chosen.append(k)
    else:
        chosen = ids
    if len(ids) == 1 and chosen == ids:
        return [Population(ds, names[0], False, 1)]
    return [Population(ds.subset(ds.species == k), ds.species_name(k), False, 1) for k in chosen]
