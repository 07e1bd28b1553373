"""Selection that does not grade its own homework: nested splits and untouched comparisons.

Every feature-set diagnostic *chooses* something (an RFE size, a coarsening, a family, a
C) by the largest ``Var(E_inf)`` among many noisy candidates. Comparing the winner with the
full set on the same held-out data inflates its advantage (the maximum of many noisy
estimates). Here the audit's held-out groups are dealt, per temperature, into an **inner**
part, on which the diagnostics choose, and an **outer** part that no choice ever sees; the
chosen candidate and its baseline are then fitted on the same training sample and compared
on the outer groups only (:func:`compare_untouched`).

The comparison is paired: both logistic fits ``P(R|S,T)`` are made on the same outer
samples, so their parameters are correlated. Their joint covariance (cluster-robust
sandwich, clustered by group, 4 x 4 per temperature) is propagated by Monte Carlo to the
ratio of the two barrier scales ``sqrt(Var_c / Var_b)``. The answer is three-way against
a materiality margin ``m`` (``SelectionOptions.min_scale_gain``):

- ``"better"``: the lower CI bound of the scale gain exceeds ``m``;
- ``"no-better"``: the upper CI bound is below ``m``;
- ``"cannot-tell"``: the CI straddles ``m``; ``data_factor`` then estimates how many times
  more held-out data would decide it (CI half-widths scale as ``1/sqrt(n)``).

Nothing here prints or writes sentences; ``docs/selection.md`` documents the rules.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Callable, Sequence

import numpy as np
from scipy.special import expit, log_expit

from .audit import AuditOptions, Split, infer_barriers
from .dataset import Dataset
from .errors import InsufficientDataError

#: Monte Carlo draws of the paired comparison (cheap: a few small matrix products)
N_PAIRED_DRAWS = 4000
#: largest reported data factor of a "cannot tell" (beyond it: "far more data")
MAX_DATA_FACTOR = 100.0
#: fewest untouched groups for a decided answer: the cluster-robust (sandwich) covariance behind
#: the paired CI is biased low with few clusters, so with fewer groups the CI is not trusted
MIN_OUTER_GROUPS = 10

ANSWERS = ("better", "no-better", "cannot-tell")


def _at(T: np.ndarray, t: float) -> np.ndarray:
    return np.isclose(T, t, rtol=1e-9, atol=1e-12)


def _subset_split(split: Split, keep_test: np.ndarray, keep_groups: np.ndarray, group: np.ndarray) -> Split:
    """``split`` with its held-out arrays restricted to the samples of ``keep_groups``.

    Every index array of the split other than ``train`` (``test``, and ``test_roles`` or any
    field the lead adds) is filtered by group, so the result stays consistent whatever the
    Split carries.
    """
    out = replace(split, test=keep_test)
    for f in fields(split):
        if f.name in ("train", "test"):
            continue
        v = getattr(split, f.name)
        if isinstance(v, np.ndarray) and v.ndim == 1 and v.dtype.kind in "iu" and f.name.startswith("test"):
            setattr(out, f.name, v[np.isin(group[v], keep_groups)])
    return out


@dataclass
class NestedSplit:
    """The audit split's held-out groups dealt into a selection part and an untouched part.

    Attributes
    ----------
    inner : Split
        Same training sample; held out: the inner groups (every choice is made on them).
    outer : Split
        Same training sample; held out: the outer groups (only the final comparisons).
    outer_groups : ndarray of int
        Group ids of the outer part (at every temperature).
    fraction : float
        Fraction of the held-out groups of each temperature in the outer part.
    """

    inner: Split
    outer: Split
    outer_groups: np.ndarray
    fraction: float

    def excluded(self, ds: Dataset) -> np.ndarray:
        """Boolean mask of the samples no choice may see (the outer groups)."""
        return np.isin(ds.group, self.outer_groups)


def nested_split(ds: Dataset, split: Split, fraction: float = 0.5, seed: int = 0) -> NestedSplit:
    """Deal the held-out groups of ``split``, temperature by temperature, into inner and outer.

    Parameters
    ----------
    ds : Dataset
    split : Split
        The audit split (:func:`diag.audit.make_split`).
    fraction : float
        Fraction of each temperature's held-out groups put in the outer part (rounded, at
        least one group and at least one left for the inner part).
    seed : int

    Raises
    ------
    InsufficientDataError
        A temperature has fewer than two held-out groups: it cannot be shared.
    """
    test = np.asarray(split.test)
    held_idx = test
    roles = getattr(split, "test_roles", None)
    if isinstance(roles, np.ndarray) and roles.size:
        held_idx = np.union1d(test, roles)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x0E7]))
    outer_groups = []
    for t in np.unique(ds.temperature[held_idx]):
        g = np.unique(ds.group[held_idx[_at(ds.temperature[held_idx], t)]])
        if g.size < 2:
            raise InsufficientDataError(
                f"only {g.size} held-out group at T={t:g}: cannot keep untouched groups for the comparisons"
            )
        n_out = int(np.clip(round(fraction * g.size), 1, g.size - 1))
        outer_groups.append(rng.permutation(g)[:n_out])
    og = np.sort(np.concatenate(outer_groups))
    in_outer = np.isin(ds.group[test], og)
    all_groups = np.unique(ds.group[held_idx])
    inner = _subset_split(split, test[~in_outer], np.setdiff1d(all_groups, og), ds.group)
    outer = _subset_split(split, test[in_outer], og, ds.group)
    return NestedSplit(inner, outer, og, float(fraction))


# =========================================================================== paired comparison


@dataclass
class PairedComparison:
    """A chosen candidate against its baseline on groups untouched by the choice.

    Attributes
    ----------
    diagnostic : str
        Which choice: "rfe", "coarsening", "families" or "c_sweep".
    baseline, candidate : str
        Names (e.g. "all features" and "RFE recommended"; "C = 0.001" and "C = 0.05").
    baseline_eval, candidate_eval : diag.selection.Evaluation or None
        The audit's numbers for each on the outer groups (every outer sample, the audit's
        Monte Carlo draws).
    scale_gain : float or None
        ``sqrt(Var_candidate / Var_baseline) - 1``: how much wider the candidate's barriers
        are. ``1 - 1 / (1 + scale_gain)`` is how much too narrow the baseline's are.
    scale_gain_ci : (float, float) or None
        Paired Monte Carlo CI at ``ci_level`` (joint cluster-robust covariance of both
        candidates' logistic fits).
    margin : float
        Materiality: gains below it do not count as better.
    answer : str
        "better", "no-better" or "cannot-tell" (module docstring).
    same : bool
        The choice is the baseline itself (nothing to compare; answer "no-better").
    data_factor : float or None
        For "cannot-tell": about how many times the outer data would decide it (capped at
        ``MAX_DATA_FACTOR``; inf when the gain sits on the margin).
    n_outer, n_outer_groups : int
        Outer samples (all temperatures) and groups.
    criterion : str
        "variance" (``Var(E_inf)``), or "logp_variance" when an Arrhenius fit is missing
        (then the gain is ``sqrt`` of the ratio of ``Var(log P)`` and its CI is None).
    ci_level : float
    note : str or None
        Machine-readable reason when no CI could be computed ("no-arrhenius-baseline",
        "no-arrhenius-candidate", "e1-not-negative").
    """

    diagnostic: str
    baseline: str
    candidate: str
    baseline_eval: Any
    candidate_eval: Any
    scale_gain: float | None
    scale_gain_ci: tuple[float, float] | None
    margin: float
    answer: str
    same: bool
    data_factor: float | None
    n_outer: int
    n_outer_groups: int
    criterion: str
    ci_level: float
    candidate_features: list[str] | None = None
    note: str | None = None

    @property
    def baseline_deficit(self) -> float | None:
        """How much too narrow the baseline's barriers are: ``1 - 1/(1 + scale_gain)``."""
        return None if self.scale_gain is None else 1.0 - 1.0 / (1.0 + self.scale_gain)

    @property
    def baseline_deficit_ci(self) -> tuple[float, float] | None:
        if self.scale_gain_ci is None:
            return None
        lo, hi = self.scale_gain_ci
        return (1.0 - 1.0 / (1.0 + lo), 1.0 - 1.0 / (1.0 + hi))

    def to_dict(self) -> dict:
        from .selection import _num, _pair

        return {
            "diagnostic": self.diagnostic,
            "baseline": self.baseline,
            "candidate": self.candidate,
            "baseline_eval": None if self.baseline_eval is None else self.baseline_eval.to_dict(),
            "candidate_eval": None if self.candidate_eval is None else self.candidate_eval.to_dict(),
            "candidate_features": self.candidate_features,
            "scale_gain": _num(self.scale_gain),
            "scale_gain_ci": _pair(self.scale_gain_ci),
            "baseline_deficit": _num(self.baseline_deficit),
            "baseline_deficit_ci": _pair(self.baseline_deficit_ci),
            "margin": _num(self.margin),
            "answer": self.answer,
            "same": bool(self.same),
            "data_factor": _num(self.data_factor) if self.data_factor is None or np.isfinite(self.data_factor) else None,
            "data_factor_infinite": bool(self.data_factor is not None and not np.isfinite(self.data_factor)),
            "n_outer": int(self.n_outer),
            "n_outer_groups": int(self.n_outer_groups),
            "criterion": self.criterion,
            "ci_level": _num(self.ci_level),
            "note": self.note,
        }


def three_way(lo: float, hi: float, margin: float) -> str:
    """The three-way answer of a CI ``[lo, hi]`` of a gain against a materiality margin."""
    if lo > margin:
        return "better"
    if hi < margin:
        return "no-better"
    return "cannot-tell"


def data_factor(point: float, lo: float, hi: float, margin: float) -> float:
    """About how many times the data would shrink the CI enough to decide (``1/sqrt(n)`` law)."""
    half = 0.5 * (hi - lo)
    dist = abs(point - margin)
    if dist <= 0:
        return float("inf")
    f = (half / dist) ** 2
    return float(min(max(f, 1.0), MAX_DATA_FACTOR)) if f <= MAX_DATA_FACTOR else float("inf")


def _joint_cov(S_a, S_b, R, groups, fa, fb) -> np.ndarray:
    """Cluster-robust joint covariance (4 x 4) of two logistic fits on the same samples."""
    R = np.asarray(R, dtype=np.float64)
    blocks, scores = [], []
    for S, f in ((S_a, fa), (S_b, fb)):
        X = np.column_stack([np.ones_like(S), S])
        p = expit(f.alpha + f.beta * S)
        A = (X * (p * (1 - p))[:, None]).T @ X
        blocks.append(np.linalg.pinv(A))
        scores.append(X * (R - p)[:, None])
    Ainv = np.zeros((4, 4))
    Ainv[:2, :2], Ainv[2:, 2:] = blocks
    sc = np.hstack(scores)
    _, inv = np.unique(groups, return_inverse=True)
    n_g = int(inv.max()) + 1
    G = np.zeros((n_g, 4))
    np.add.at(G, inv, sc)
    corr = n_g / (n_g - 1) if n_g > 1 else 1.0
    return corr * Ainv @ (G.T @ G) @ Ainv


def _e1_draws(grid_in: np.ndarray, u: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """``e1`` of ``DeltaE(S) = e0 + e1 S`` for each draw of the logistic parameters.

    draws : (D, K, 2) alpha, beta per temperature (sorted as ``u``).
    """
    logp = log_expit(draws[:, None, :, 0] + draws[:, None, :, 1] * grid_in[None, :, None])  # (D, G, K)
    du = u - u.mean()
    slope = (logp - logp.mean(-1, keepdims=True)) @ du / (du @ du)  # (D, G)
    de = -slope
    dg = grid_in - grid_in.mean()
    return (de - de.mean(-1, keepdims=True)) @ dg / (dg @ dg)  # (D,)


def paired_gain(
    S_a: np.ndarray, S_b: np.ndarray, R: np.ndarray, T: np.ndarray, groups: np.ndarray, T_ref: float,
    inf_a, inf_b, ci_level: float = 0.95, n_draws: int = N_PAIRED_DRAWS, seed: int = 0,
) -> tuple[float, tuple[float, float]]:
    """Scale gain ``sqrt(Var_b / Var_a) - 1`` of softness b over a, with its paired CI.

    Parameters
    ----------
    S_a, S_b, R, T, groups : ndarray, shape (n,)
        Softness of both candidates, labels, temperatures and groups of the same samples.
    T_ref : float
        Temperature of the variance criterion.
    inf_a, inf_b : diag.audit.Inference
        Their inference (with an Arrhenius fit each).

    Returns
    -------
    gain : float
    ci : (float, float)
    """
    arr_a, arr_b = inf_a.arrhenius, inf_b.arrhenius
    fa = {round(f.temperature, 12): f for f in inf_a.logistic}
    fb = {round(f.temperature, 12): f for f in inf_b.logistic}
    temps = sorted(set(fa) & set(fb) & {round(float(t), 12) for t in arr_a.temperatures}
                   & {round(float(t), 12) for t in arr_b.temperatures})
    rng = np.random.default_rng(seed)
    D = int(n_draws)
    da = np.empty((D, len(temps), 2))
    db = np.empty((D, len(temps), 2))
    for k, t in enumerate(temps):
        m = _at(T, t)
        cov = _joint_cov(S_a[m], S_b[m], R[m], groups[m], fa[t], fb[t])
        mean = np.array([fa[t].alpha, fa[t].beta, fb[t].alpha, fb[t].beta])
        d = rng.multivariate_normal(mean, cov, size=D, method="eigh")
        da[:, k], db[:, k] = d[:, :2], d[:, 2:]
    u = 1.0 / np.array(temps)
    e1a = _e1_draws(arr_a.grid_in_regime, u, da)
    e1b = _e1_draws(arr_b.grid_in_regime, u, db)
    ref = _at(T, T_ref)
    sd_a, sd_b = float(np.std(S_a[ref])), float(np.std(S_b[ref]))
    gain = abs(arr_b.e1) * sd_b / (abs(arr_a.e1) * sd_a) - 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.abs(e1b) * sd_b / (np.abs(e1a) * sd_a) - 1.0
    g = g[np.isfinite(g)]
    q = [(1 - ci_level) / 2 * 100, (1 + ci_level) / 2 * 100]
    lo, hi = np.percentile(g, q)
    return float(gain), (float(lo), float(hi))


def compare_untouched(
    ds: Dataset,
    outer: Split,
    baseline: tuple[str, Any, float],
    candidate: tuple[str, Any, float],
    options: AuditOptions,
    *,
    diagnostic: str,
    margin: float,
    seed: int = 0,
    same: bool = False,
    train_labels: np.ndarray | None = None,
) -> PairedComparison:
    """Fit a baseline and a chosen candidate on the training sample; compare them on ``outer``.

    Parameters
    ----------
    ds : Dataset
    outer : Split
        The untouched part (:attr:`NestedSplit.outer`).
    baseline, candidate : (name, features, C)
        ``features`` is a list of feature names, a transform ``Dataset -> Dataset`` (as in
        :func:`diag.selection.compare_feature_sets`) or None for every feature.
    options : AuditOptions
        CIs, draws, SVM tolerance.
    diagnostic : str
    margin : float
        Materiality of the scale gain.
    same : bool
        The candidate is the baseline (answer "no-better", gain 0).

    Returns
    -------
    PairedComparison
    """
    from .selection import HeldOut, TrainSet, _role, softness_of
    from .svm import fit_hinge

    held = HeldOut(ds, outer, options, None, None, None, seed)
    roles = _role(ds) if train_labels is None else train_labels
    out = []
    for name, feats, C in (baseline, candidate):
        if feats is None:
            cds = ds
        elif callable(feats):
            cds = feats(ds)
        else:
            cds = ds.select_features(list(feats))
        tr = TrainSet.from_rows(cds.features[outer.train], roles[outer.train])
        res = fit_hinge(tr.Z, tr.y, C, tol=options.svm_tol, max_iter=500)
        S = softness_of(held.standardised(cds.features[held.rows], tr.mean, tr.scale), res.coef, res.intercept)
        ev, inf = held.evaluate_full(S)
        if not res.converged:
            ev.warnings.append(f"the SVM did not converge in {res.n_iter} iterations (C = {C:g})")
        out.append((S, ev, inf, list(cds.feature_names)))
    (S_a, ev_a, inf_a, _), (S_b, ev_b, inf_b, feats_b) = out
    n_outer = int(held.n_inf)
    n_groups = int(np.unique(held.G_inf).size)
    kw = dict(diagnostic=diagnostic, baseline=baseline[0], candidate=candidate[0], baseline_eval=ev_a,
              candidate_eval=ev_b, margin=float(margin), n_outer=n_outer, n_outer_groups=n_groups,
              ci_level=float(options.ci_level), candidate_features=feats_b)
    if same:
        return PairedComparison(scale_gain=0.0, scale_gain_ci=(0.0, 0.0), answer="no-better", same=True,
                                data_factor=None, criterion="variance", **kw)
    ok_a = inf_a is not None and inf_a.arrhenius is not None and inf_a.arrhenius.e1 < 0
    ok_b = inf_b is not None and inf_b.arrhenius is not None and inf_b.arrhenius.e1 < 0
    if not (ok_a and ok_b):
        note = "no-arrhenius-baseline" if not ok_a else "no-arrhenius-candidate"
        gain = None
        if ev_a.logp_variance and ev_b.logp_variance:
            gain = float(np.sqrt(ev_b.logp_variance / ev_a.logp_variance) - 1.0)
        return PairedComparison(scale_gain=gain, scale_gain_ci=None, answer="cannot-tell", same=False,
                                data_factor=None, criterion="logp_variance", note=note, **kw)
    R, T, G = held.R_inf, held.T_inf, held.G_inf
    Sa, Sb = S_a[held.pos_inf], S_b[held.pos_inf]
    gain, (lo, hi) = paired_gain(Sa, Sb, R, T, G, held.T_train, inf_a, inf_b, options.ci_level,
                                 seed=int(np.random.SeedSequence([seed, 0xBA1D]).generate_state(1)[0]))
    ans = three_way(lo, hi, margin)
    if n_groups < MIN_OUTER_GROUPS and ans != "cannot-tell":
        # a CI from a handful of clusters understates the uncertainty: decide nothing on it
        return PairedComparison(scale_gain=gain, scale_gain_ci=(lo, hi), answer="cannot-tell", same=False,
                                data_factor=None, criterion="variance", note="few-outer-groups", **kw)
    factor = data_factor(gain, lo, hi, margin) if ans == "cannot-tell" else None
    return PairedComparison(scale_gain=gain, scale_gain_ci=(lo, hi), answer=ans, same=False,
                            data_factor=factor, criterion="variance", **kw)


__all__ = [
    "NestedSplit", "nested_split", "PairedComparison", "compare_untouched", "paired_gain", "three_way",
    "data_factor", "ANSWERS",
]
