"""Planted barriers on the user's own features: can the diagnostics see a bias on this data?

:func:`planted_copy` builds a semi-synthetic copy of a dataset: the real feature matrix, the
same temperatures, groups and sample sizes, and a **known** barrier that is a sparse linear
combination of a few standardised real features,

    E = E0 + s * (z_P . c) / sd(z_P . c)          (c: random signs, P: random features)

with labels drawn from the toy law ``P(R=1|E,T) = 1 / (1 + exp(E/T))`` (METHOD section 3).
``E0`` and ``s`` are fitted so that the event rate at every temperature matches the
dataset's natural rate (``P(R)`` of its natural population), with a weak pull of ``s``
towards ``sqrt(10) T_train`` (the toy's barrier spread) where the rates cannot fix it.
Every sample of the copy is natural and its training role is its label (one population, as
in the toy model); the training size is the real audit's.

:func:`planted_audit` runs the same audit (same options, same diagnostics) on the copy and
returns the recovered slope of the barriers, the verdict's answer and whether the planted
features survive selection, i.e. whether the diagnostics can see a bias at all with the
user's own feature correlations and sample size. Everything is seeded and recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np
from scipy.optimize import least_squares
from scipy.special import expit, logit

from .audit import AuditOptions, audit, make_split
from .dataset import Dataset
from .errors import InsufficientDataError, UsageError

#: truth-slope bands used to score a verdict (docs/validation.md): the full set's barriers
#: are "right" at or above RIGHT_SLOPE, "biased" below BIASED_SLOPE; in between: grey zone
RIGHT_SLOPE = 0.95
BIASED_SLOPE = 0.90


@dataclass
class PlantedOptions:
    """How the barrier is planted.

    Attributes
    ----------
    n_planted : int or None
        Features carrying the barrier; default ``max(2, round(sqrt(d)))`` (capped at d).
    barrier_std : float or None
        ``s``, the spread of the planted barrier; default: fitted with ``E0`` to the
        natural rates (module docstring).
    features : list of str or None
        Plant on these features instead of a random draw.
    seed : int
        Seeds the choice of features, the signs and the labels.
    """

    n_planted: int | None = None
    barrier_std: float | None = None
    features: list[str] | None = None
    seed: int = 0


@dataclass
class PlantedCopy:
    """The semi-synthetic dataset and what was planted in it."""

    dataset: Dataset
    features: list[str]
    coefficients: list[float]  # on the standardised features, scaled so that sd(E) = barrier_std
    offset: float
    barrier_std: float
    rates_target: dict[float, float]  # natural event rate of the real dataset per temperature
    rates_planted: dict[float, float]  # event rate of the planted labels
    seed: int


def score(slope: float | None, level: str | None) -> str:
    """How a verdict fares against the known barriers of the full feature set.

    Returns
    -------
    str
        "hit" (biased, said biased-low), "miss" (biased, not said), "false-alarm" (right,
        said biased-low), "pass" (right, not said), "grey" (slope between the bands, or no
        slope).
    """
    if slope is None or not np.isfinite(slope):
        return "grey"
    alarm = level == "biased-low"
    if slope < BIASED_SLOPE:
        return "hit" if alarm else "miss"
    if slope >= RIGHT_SLOPE:
        return "false-alarm" if alarm else "pass"
    return "grey"


def natural_rates(ds: Dataset) -> dict[float, float]:
    """Fraction rearranging (R = 1) of the natural population at each temperature."""
    nat = ds.natural == 1 if getattr(ds, "natural", None) is not None else np.ones(ds.n_samples, bool)
    out = {}
    for t in ds.temperatures:
        m = nat & (ds.temperature == t)
        if m.any():
            out[float(t)] = float(ds.label[m].mean())
    return out


def _fit_offset_and_spread(u: np.ndarray, T: np.ndarray, rates: dict[float, float], s0: float,
                           fixed_std: float | None) -> tuple[float, float]:
    """``E0, s`` such that the mean of ``expit(-(E0 + s u)/T)`` matches the rates at each T."""
    temps = np.array(sorted(rates))
    target = logit(np.clip([rates[t] for t in temps], 1e-6, 1 - 1e-6))
    idx = [np.flatnonzero(np.isclose(T, t, rtol=1e-9, atol=1e-12)) for t in temps]
    # a subsample per temperature keeps the fit cheap on large datasets (seeded by position)
    idx = [i[:: max(1, i.size // 20_000)] for i in idx]

    def rate_logits(e0, s):
        return np.array([logit(np.clip(expit(-(e0 + s * u[i]) / t).mean(), 1e-12, 1 - 1e-12))
                         for i, t in zip(idx, temps)])

    if fixed_std is not None:
        res = least_squares(lambda p: rate_logits(p[0], fixed_std) - target, x0=[0.0])
        return float(res.x[0]), float(fixed_std)

    def resid(p):
        e0, log_s = p
        r = rate_logits(e0, np.exp(log_s)) - target
        return np.append(r, 0.1 * (log_s - np.log(s0)))  # weak pull where the rates cannot fix s

    res = least_squares(resid, x0=[0.0, np.log(s0)], bounds=([-np.inf, np.log(s0 / 20)], [np.inf, np.log(s0 * 20)]))
    return float(res.x[0]), float(np.exp(res.x[1]))


def planted_copy(ds: Dataset, options: PlantedOptions | None = None, train_temperature: float | None = None,
                 rates: dict[float, float] | None = None) -> PlantedCopy:
    """A copy of ``ds`` with a planted sparse linear barrier and toy-law labels.

    Parameters
    ----------
    ds : Dataset
    options : PlantedOptions
    train_temperature : float, optional
        Sets the default spread ``sqrt(10) T_train``; default the highest temperature.
    rates : dict, optional
        Event rate per temperature to match; default :func:`natural_rates` of ``ds``.

    Returns
    -------
    PlantedCopy

    Raises
    ------
    UsageError
        Unknown planted feature names.
    InsufficientDataError
        No feature varies, or a temperature has no samples.
    """
    opt = options or PlantedOptions()
    rng = np.random.default_rng(np.random.SeedSequence([opt.seed, 0x91A7]))
    X = ds.features
    sd = X.std(axis=0, dtype=np.float64)
    usable = np.flatnonzero(sd > 0)
    if usable.size == 0:
        raise InsufficientDataError("no feature varies: nothing to plant a barrier on", ds.path)
    if opt.features is not None:
        unknown = [n for n in opt.features if n not in ds.feature_names]
        if unknown:
            raise UsageError(f"planted features not in the dataset: {', '.join(unknown[:5])}", ds.path)
        cols = np.array([ds.feature_names.index(n) for n in opt.features])
    else:
        k = opt.n_planted or max(2, int(round(np.sqrt(usable.size))))
        k = int(min(k, usable.size))
        cols = np.sort(rng.choice(usable, k, replace=False))
    signs = rng.choice([-1.0, 1.0], cols.size)
    Z = (X[:, cols].astype(np.float64) - X[:, cols].mean(axis=0, dtype=np.float64)) / sd[cols]
    u = Z @ signs
    u /= u.std()
    T = ds.temperature
    rates = natural_rates(ds) if rates is None else {float(t): float(r) for t, r in rates.items()}
    T_train = float(ds.temperatures.max() if train_temperature is None else train_temperature)
    e0, s = _fit_offset_and_spread(u, T, rates, np.sqrt(10.0) * T_train, opt.barrier_std)
    E = e0 + s * u
    R = (rng.random(ds.n_samples) < expit(-E / T)).astype(np.int8)
    coef = (signs * s / (Z @ signs).std()).tolist()
    copy = Dataset(
        features=X, label=R, temperature=T, group=ds.group, feature_names=list(ds.feature_names),
        feature_families=list(ds.feature_families), feature_params=[dict(p) for p in ds.feature_params],
        energy=E, species=ds.species, particle=ds.particle,
        conventions={**ds.conventions, "planted": {
            "law": "P(R=1|E,T) = 1/(1+exp(E/T)); E = offset + sum_k c_k z_k, z standardised over all samples",
            "features": [ds.feature_names[j] for j in cols], "coefficients": coef, "offset": e0,
            "barrier_std": s, "seed": opt.seed}},
        provenance={"generator": "glass-diag planted", "source": ds.path, "seed": opt.seed},
        path=ds.path,
    )
    planted_rates = {float(t): float(R[np.isclose(T, t)].mean()) for t in ds.temperatures}
    return PlantedCopy(copy, [ds.feature_names[j] for j in cols], coef, e0, s, rates, planted_rates, opt.seed)


@dataclass
class PlantedResult:
    """What the audit finds on a planted copy of the user's dataset.

    Attributes
    ----------
    copy : PlantedCopy
        What was planted (the dataset itself is not serialised).
    n_per_class : int
        Training samples per class (the real audit's, or fewer when the copy has fewer).
    truth_slope, truth_slope_ci : float, (float, float) or None
        Recovered slope of ``E_inf`` against the planted barrier with all features
        (1 is right, below 1 biased low).
    accuracy : float
    verdict_level : str
    verdict_remedy : str or None
    scale_deficit, scale_deficit_ci : float, (float, float) or None
        The verdict's estimate of how much too narrow the barriers are.
    recommended : list of str or None
    recommended_slope : float or None
        Truth slope of the chosen set on the untouched groups (when RFE ran).
    planted_kept : float or None
        Fraction of the planted features in the set RFE chose (None without RFE).
    answers : dict
        Each diagnostic's answer (``diag.verdict.Evidence``).
    outcome : str
        :func:`score` of the verdict against the truth.
    audit : AuditResult or None
        The full audit of the copy (not serialised).
    """

    copy: PlantedCopy
    n_per_class: int
    truth_slope: float | None
    truth_slope_ci: tuple[float, float] | None
    accuracy: float
    verdict_level: str
    verdict_remedy: str | None
    scale_deficit: float | None
    scale_deficit_ci: tuple[float, float] | None
    recommended: list[str] | None
    recommended_slope: float | None
    planted_kept: float | None
    answers: dict[str, str]
    outcome: str
    audit: Any = field(default=None, repr=False)

    def to_dict(self) -> dict:
        from .selection import _num, _pair

        c = self.copy
        return {
            "seed": int(c.seed),
            "features": list(c.features),
            "coefficients": [_num(x) for x in c.coefficients],
            "offset": _num(c.offset),
            "barrier_std": _num(c.barrier_std),
            "rates_target": {f"{t:g}": _num(r) for t, r in c.rates_target.items()},
            "rates_planted": {f"{t:g}": _num(r) for t, r in c.rates_planted.items()},
            "law": c.dataset.conventions["planted"]["law"],
            "n_per_class": int(self.n_per_class),
            "truth_slope": _num(self.truth_slope),
            "truth_slope_ci": _pair(self.truth_slope_ci),
            "accuracy": _num(self.accuracy),
            "verdict_level": self.verdict_level,
            "verdict_remedy": self.verdict_remedy,
            "scale_deficit": _num(self.scale_deficit),
            "scale_deficit_ci": _pair(self.scale_deficit_ci),
            "recommended": self.recommended,
            "recommended_slope": _num(self.recommended_slope),
            "planted_kept": _num(self.planted_kept),
            "answers": dict(self.answers),
            "outcome": self.outcome,
            "bands": {"right_slope": RIGHT_SLOPE, "biased_slope": BIASED_SLOPE},
        }


def planted_audit(
    ds: Dataset,
    options: AuditOptions | None = None,
    selection_options=None,
    seed: int = 0,
    planted_options: PlantedOptions | None = None,
    progress: Callable[..., None] | None = None,
) -> PlantedResult:
    """Run the audit on a planted copy of ``ds`` (module docstring).

    Parameters
    ----------
    ds : Dataset
        The user's dataset (one population, as audited).
    options : AuditOptions
        The user's audit options; the training size is the real audit's (fewer if the copy's
        training groups hold fewer events).
    selection_options : diag.selection.SelectionOptions, optional
        The diagnostics to run (as in the real audit).
    seed : int
        Seeds the planting (overrides ``planted_options.seed``).
    planted_options : PlantedOptions, optional

    Returns
    -------
    PlantedResult
    """
    options = (options or AuditOptions()).validate()
    popt = replace(planted_options or PlantedOptions(), seed=int(seed))
    real_split = make_split(ds, options)
    pc = planted_copy(ds, popt, train_temperature=real_split.train_temperature)
    cds = pc.dataset
    # the real audit's training size, when the planted events allow it
    at = np.isclose(cds.temperature, real_split.train_temperature, rtol=1e-9, atol=1e-12)
    held = np.isin(cds.group, np.unique(ds.group[real_split.test]))
    pool = at & ~held
    avail = int(min((cds.label[pool] == 1).sum(), (cds.label[pool] == 0).sum()))
    n = int(min(real_split.n_per_class, avail))
    if n < 2:
        raise InsufficientDataError("the planted copy has fewer than 2 events per class in the training groups", ds.path)
    popts = replace(options, train_per_class=n, train_temperature=real_split.train_temperature)
    res = audit(cds, popts, progress=progress, selection_options=selection_options)
    v = res.verdict
    slope = None if res.truth is None else float(res.truth.slope)
    slope_ci = None if res.truth is None else res.truth.slope_ci
    sel = res.selection
    planted_kept = rec_slope = None
    if sel is not None and sel.rfe is not None:
        chosen = set(sel.rfe.recommended)
        planted_kept = float(np.mean([f in chosen for f in pc.features]))
        cmp = sel.untouched.get("rfe")
        if cmp is not None and cmp.candidate_eval is not None:
            rec_slope = cmp.candidate_eval.truth_slope
    return PlantedResult(
        copy=pc, n_per_class=n, truth_slope=slope, truth_slope_ci=None if slope_ci is None else tuple(slope_ci),
        accuracy=float(res.classifier.accuracy), verdict_level=v.level, verdict_remedy=v.remedy,
        scale_deficit=v.scale_deficit, scale_deficit_ci=v.scale_deficit_ci, recommended=v.recommended,
        recommended_slope=rec_slope, planted_kept=planted_kept,
        answers={e.diagnostic: e.answer for e in v.evidence}, outcome=score(slope, v.level), audit=res,
    )


__all__ = ["PlantedOptions", "PlantedCopy", "PlantedResult", "planted_copy", "planted_audit", "natural_rates",
           "score", "RIGHT_SLOPE", "BIASED_SLOPE"]
