"""A plain verdict: how far can the barriers be trusted, and why. The sentences of the diagnostics.

Built from an :class:`diag.audit.AuditResult` (and its feature-selection diagnostics when
they ran). Only facts the audit measured enter; the truth, when the dataset has it, is
reported beside the verdict but never used to reach it, so the verdict on toy data is a
fair test of the verdict on real data.

Every diagnostic gives one of three typed answers (:class:`Evidence`): the learning curve
"rising" / "levelled" / "cannot-tell" (:class:`diag.checks.DeficitTest`); each choice (RFE
size, coarsening, family, C) "better" / "no-better" / "cannot-tell" against its baseline on
held-out groups the choice never saw (:class:`diag.nested.PairedComparison`). The verdict
carries them through:

- ``unreliable``: the analysis itself fails a check;
- ``biased-low``: some diagnostic shows the barriers too narrow (a choice "better" on
  untouched groups, or the learning curve "rising"); the size of the bias comes only from
  that measurement, with its CI; a feature set is recommended only when it is "better";
- ``cannot-tell``: no diagnostic shows a bias, but at least one cannot tell with this data
  (the verdict says which, and how much more data would decide it);
- ``trustworthy``: every diagnostic that ran answers "levelled" / "no-better";
- ``no-barriers``: no Arrhenius fit.

This module and :mod:`diag.report` are the only places that write English sentences.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: a grid with more than this fraction of non-linear log P vs 1/T lines is not Arrhenius
MAX_NONLINEAR_FRACTION = 0.2

LEVELS = ("trustworthy", "biased-low", "cannot-tell", "unreliable", "no-barriers")

#: what each choice is called in sentences
_CHOICE = {"rfe": "RFE", "coarsening": "grid coarsening", "families": "feature family", "c_sweep": "C sweep"}


@dataclass
class Evidence:
    """One diagnostic's typed answer, as the verdict uses it.

    Attributes
    ----------
    diagnostic : str
        "learning_curve", "rfe", "coarsening", "families" or "c_sweep".
    answer : str
        "rising" / "levelled" / "cannot-tell" (learning curve) or "better" / "no-better" /
        "cannot-tell" (the choices).
    candidate : str or None
        The chosen candidate (choices only).
    scale_gain, scale_gain_ci : float, (float, float) or None
        Choices: barrier-scale gain of the candidate over the baseline on untouched groups.
    deficit, deficit_ci : float, (float, float) or None
        How much too narrow the audited barriers are (scale, not variance) by this
        diagnostic: ``1 - 1/(1 + gain)`` for a choice, ``1 - sqrt(1 - missing)`` for the
        learning curve.
    data_factor : float or None
        Choices, "cannot-tell": about how many times the held-out data would decide.
    n_needed : float or None
        Learning curve, not "levelled": training samples per class at which the missing
        variance would be below its tolerance even at the upper end of its CI.
    """

    diagnostic: str
    answer: str
    candidate: str | None = None
    scale_gain: float | None = None
    scale_gain_ci: tuple[float, float] | None = None
    deficit: float | None = None
    deficit_ci: tuple[float, float] | None = None
    data_factor: float | None = None
    n_needed: float | None = None

    @property
    def shows_bias(self) -> bool:
        return self.answer in ("better", "rising")


@dataclass
class Verdict:
    """The audit's conclusion.

    Attributes
    ----------
    level : str
        One of :data:`LEVELS` (module docstring).
    headline : str
        One sentence.
    reasons : list of str
        The measured facts behind it.
    recommended : list of str or None
        The recommended feature set: only when RFE's set beats all features on untouched
        groups.
    scale_deficit : float or None
        How much too narrow the audited barriers are (fraction of the barrier scale), from
        the diagnostic that shows the bias (the untouched comparison, else the learning curve).
    scale_deficit_ci : (float, float) or None
    remedy : str or None
        The candidate that fixes it: "RFE recommended", "grid x2", "radial only", "C = 0.05",
        or "more training data".
    evidence : list of Evidence
        Every diagnostic's answer.
    truth : str or None
        On data with known barriers, what the truth says (not used for the verdict).
    """

    level: str
    headline: str
    reasons: list[str] = field(default_factory=list)
    recommended: list[str] | None = None
    scale_deficit: float | None = None
    truth: str | None = None
    scale_deficit_ci: tuple[float, float] | None = None
    remedy: str | None = None
    evidence: list[Evidence] = field(default_factory=list)


# =========================================================================== helpers


def _crit(criterion: str) -> str:
    return "Var(E_inf)" if criterion == "variance" else "Var(log P)"


def _ci_pct(ci) -> str:
    return "" if ci is None else f" [{ci[0]:+.1%}, {ci[1]:+.1%}]"


def _factor_text(f: float | None) -> str:
    if f is None:
        return ""
    if not np.isfinite(f):
        return "; far more held-out data would be needed to decide (the gain sits on the margin)"
    return f"; about {f:.0f} times the held-out data would decide it"


def _n_text(n: float | None) -> str:
    if n is None:
        return ""
    if not np.isfinite(n):
        return "; the learning curve cannot say how much more training data would be enough"
    return f"; by the learning curve, about {n:,.0f} training samples per class would be enough"


def evidence_of_comparison(cmp) -> Evidence:
    """The :class:`Evidence` of a :class:`diag.nested.PairedComparison`."""
    return Evidence(
        diagnostic=cmp.diagnostic, answer=cmp.answer, candidate=cmp.candidate, scale_gain=cmp.scale_gain,
        scale_gain_ci=cmp.scale_gain_ci, deficit=cmp.baseline_deficit, deficit_ci=cmp.baseline_deficit_ci,
        data_factor=cmp.data_factor,
    )


def evidence_of_learning_curve(lc) -> Evidence:
    """The :class:`Evidence` of a :class:`diag.checks.LearningCurve`."""
    t = lc.test
    if t is None:
        return Evidence("learning_curve", "cannot-tell")

    def scale(missing: float) -> float:
        return float(1.0 - np.sqrt(max(1.0 - min(missing, 1.0), 0.0)))

    ci = None
    if np.isfinite(t.deficit_lower) and np.isfinite(t.deficit_upper):
        ci = (scale(t.deficit_lower), scale(t.deficit_upper))
    return Evidence("learning_curve", t.answer, deficit=scale(t.deficit), deficit_ci=ci, n_needed=t.n_needed)


def collect_evidence(selection) -> list[Evidence]:
    """Every diagnostic's answer, in the order the verdict reads them."""
    out: list[Evidence] = []
    if selection is None:
        return out
    for key in ("rfe", "coarsening", "families", "c_sweep"):
        cmp = selection.untouched.get(key) if getattr(selection, "untouched", None) else None
        if cmp is not None:
            out.append(evidence_of_comparison(cmp))
    lc = getattr(selection, "learning_curve", None)
    if lc is not None:
        out.append(evidence_of_learning_curve(lc))
    return out


# =========================================================================== diagnostic sentences


def describe_learning_curve(lc) -> str:
    """One sentence for a :class:`diag.checks.LearningCurve`."""
    crit = _crit(lc.criterion)
    t = lc.test
    n_max = lc.sizes[-1] if lc.sizes else 0
    if t is None:
        return f"learning curve: too few usable sizes to tell whether {crit} has converged"
    ci = (f"[{t.deficit_lower:.1%}, {t.deficit_upper:.1%}]" if np.isfinite(t.deficit_lower)
          and np.isfinite(t.deficit_upper) else "no CI (too few points)")
    if t.answer == "rising":
        return (
            f"learning curve: {crit} is still rising at {n_max:,} per class (about {t.deficit:.0%} of its "
            f"extrapolated value still missing, {ci}, more than the {t.tol:.0%} that matters): the barriers are "
            "biased low; more training data would help" + _n_text(t.n_needed)
        )
    if t.answer == "levelled":
        return (
            f"learning curve: {crit} has levelled off at {n_max:,} per class (missing {t.deficit:.1%} of its "
            f"extrapolated value, {ci}, below the {t.tol:.0%} that matters): the training set is large enough"
        )
    return (
        f"learning curve: cannot tell whether {crit} has levelled off at {n_max:,} per class (missing "
        f"{t.deficit:.0%} of its extrapolated value, {ci}, which straddles the {t.tol:.0%} that matters)"
        + _n_text(t.n_needed)
    )


def describe_c_sweep(cs) -> str:
    """One sentence for a :class:`diag.checks.CSweep` (with its untouched comparison when present)."""
    crit = _crit(cs.criterion)
    if cs.best_C is None:
        return f"C sweep: no C gives a usable {crit}"
    best = next(p for p in cs.points if p.C == cs.best_C)
    msg = f"C sweep: C = {cs.best_C:.3g} (C n_train = {best.C_n_train:.3g}) gives the largest {crit}"
    u = cs.untouched
    if u is not None:
        if u.same:
            msg += f"; it is the audit's C = {cs.audit_C:.3g}"
        elif u.answer == "better":
            msg += (f"; on untouched groups its barriers are {u.scale_gain:+.0%}{_ci_pct(u.scale_gain_ci)} wider than "
                    f"with the audit's C = {cs.audit_C:.3g}: use C = {cs.best_C:.3g}")
        elif u.answer == "no-better":
            msg += (f"; on untouched groups it is no better than the audit's C = {cs.audit_C:.3g} "
                    f"({u.scale_gain:+.1%}{_ci_pct(u.scale_gain_ci)} in barrier scale)")
        else:
            gain = "n/a" if u.scale_gain is None else f"{u.scale_gain:+.1%}"
            few = ""
            if u.note == "few-outer-groups":
                from .nested import MIN_OUTER_GROUPS

                few = f"; {u.n_outer_groups} groups are too few for a trustworthy CI (at least {MIN_OUTER_GROUPS})"
            msg += (f"; on untouched groups cannot tell whether it beats the audit's C = {cs.audit_C:.3g} "
                    f"({gain}{_ci_pct(u.scale_gain_ci)} in barrier scale, margin {u.margin:.0%}){few}"
                    + _factor_text(u.data_factor))
    elif cs.flag:
        msg += f"; the audit's C = {cs.audit_C:.3g} gives less (outside the CI, same held-out data)"
    if cs.at_edge:
        msg += "; the maximum is at the edge of the grid: extend the grid"
    return msg


def describe_comparison(cmp, d: int | None = None) -> str:
    """One sentence for a :class:`diag.nested.PairedComparison`."""
    what = _CHOICE.get(cmp.diagnostic, cmp.diagnostic)
    if cmp.diagnostic == "rfe":
        k = len(cmp.candidate_features or [])
        chosen = f"the {k} features RFE chose"
        base = f"all {d} features" if d else "all features"
        give, are = "give", "are"
    else:
        chosen = f"'{cmp.candidate}'"
        base = f"'{cmp.baseline}'"
        give, are = "gives", "is"
    where = f"on {cmp.n_outer_groups} held-out groups no choice saw"
    if cmp.same:
        return f"{what}: the choice is {base} itself; nothing to compare"
    if cmp.scale_gain is None:
        return f"{what}: {chosen} cannot be compared with {base} (no Arrhenius fit for one of them)"
    gain = f"{cmp.scale_gain:+.1%}{_ci_pct(cmp.scale_gain_ci)}"
    if cmp.answer == "better":
        return (f"{what}: {where}, {chosen} {give} barriers {gain} wider than {base}: the barriers of {base} "
                f"are about {cmp.baseline_deficit:.0%} too narrow")
    if cmp.answer == "no-better":
        return (f"{what}: no evidence that {chosen} {are} better than {base}: {gain} in barrier scale {where} "
                f"(below the {cmp.margin:.0%} that matters)")
    if cmp.note == "few-outer-groups":
        from .nested import MIN_OUTER_GROUPS

        return (f"{what}: cannot tell whether {chosen} {are} better than {base}: {gain} in barrier scale {where}, "
                f"too few groups for a trustworthy CI (at least {MIN_OUTER_GROUPS} are needed)")
    extra = " (chosen and compared on the same data: not nested)" if cmp.note == "not-nested" else ""
    return (f"{what}: cannot tell whether {chosen} {are} better than {base}: {gain} in barrier scale {where}, "
            f"straddling the {cmp.margin:.0%} that matters{extra}" + _factor_text(cmp.data_factor))


def _rfe_facts(r, d: int) -> list[str]:
    """What the RFE curve itself shows (peak, sharpness, stability): facts, not decisions."""
    p = r.peak
    crit = _crit(p.criterion)
    out = []
    k = p.n_kept
    if k == d:
        out.append(f"RFE: {crit} is largest with all {d} features (on the selection groups)")
    else:
        removed = [n for n in r.order if n not in set(r.recommended)]
        shown = ", ".join(removed[:8]) + (", ..." if len(removed) > 8 else "")
        out.append(f"RFE: {crit} peaks at {k} of {d} features on the selection groups (dropping {shown})")
    if p.gain_vs_full is not None and p.accuracy_gain_vs_full is not None and abs(p.gain_vs_full) >= max(p.tol, 1e-3):
        out.append(
            f"RFE: from {d} to {k} features {crit} changes by {p.gain_vs_full:+.0%} while the accuracy changes "
            f"by {p.accuracy_gain_vs_full:+.3f}: the accuracy cannot choose the feature set"
        )
    if not p.sharp:
        out.append(
            f"RFE: sizes {_size_ranges(p.within_ci)} lie within the CI of the peak; {k} was chosen by "
            f"{p.run_agreement:.0%} of {p.n_runs} runs"
        )
    if r.folds:
        unstable = [(n, v) for n, v in r.stability.items() if n in r.recommended and v < 1.0]
        if unstable:
            shown = ", ".join(f"{n} ({v:.0%})" for n, v in sorted(unstable, key=lambda t: t[1])[:5])
            out.append(f"RFE: across {len(r.folds) + 1} runs, some chosen features do not always survive at {k}: {shown}")
    return out


def _size_ranges(sizes) -> str:
    from .selection import size_ranges

    return size_ranges(sizes)


def selection_messages(selection) -> tuple[list[str], list[str]]:
    """The sentences of a :class:`diag.selection.SelectionResult`.

    Returns
    -------
    recommendations : list of str
        Every diagnostic's sentence, in report order.
    flags : list of str
        The sentences of the diagnostics that show a bias (they also go to the warnings).
    """
    recs: list[str] = []
    flags: list[str] = []
    d = None
    if selection.rfe is not None:
        d = max(s.n_kept for s in selection.rfe.steps)
        recs.extend(_rfe_facts(selection.rfe, d))
    for key in ("rfe", "coarsening", "families"):
        cmp = selection.untouched.get(key)
        if cmp is None:
            continue
        s = describe_comparison(cmp, d)
        recs.append(s)
        if cmp.answer == "better":
            flags.append(s)
    if selection.learning_curve is not None:
        recs.append(selection.learning_curve.verdict)
        if selection.learning_curve.answer == "rising":
            flags.append(selection.learning_curve.verdict)
    if selection.c_sweep is not None:
        recs.append(selection.c_sweep.verdict)
        if selection.c_sweep.flag:
            flags.append(selection.c_sweep.verdict)
    return recs, flags


# =========================================================================== the verdict


def make_verdict(result, selection=None) -> Verdict:
    """Judge the barriers of an audit.

    Parameters
    ----------
    result : diag.audit.AuditResult
    selection : diag.selection.SelectionResult, optional

    Returns
    -------
    Verdict
    """
    clf, arr = result.classifier, result.arrhenius
    problems: list[str] = []
    good: list[str] = []
    truth = None
    if result.truth is not None:
        t = result.truth
        truth = f"known barriers: E_inf = {t.intercept:.2f} + {t.slope:.3f} E_true (slope 1 is right)"

    if not clf.converged:
        problems.append("the SVM solver did not converge")
    if arr is None:
        return Verdict(
            "no-barriers",
            "No barriers could be inferred (no Arrhenius fit); only the classifier and the log-P proxy are reported.",
            problems + [w for w in result.warnings if "Arrhenius" in w or "temperature" in w][:2],
            truth=truth,
        )
    # a significant deviation convex in 1/T is what a spread of barriers at fixed softness gives
    # (an incomplete softness, which biases barriers low); any other deviation breaks the Arrhenius form
    frac_bad = float(np.mean(arr.other_deviation)) if arr.linear.size else 1.0
    frac_convex = float(np.mean(arr.convex_deviation)) if arr.linear.size else 0.0
    if frac_bad > MAX_NONLINEAR_FRACTION:
        problems.append(
            f"log P deviates significantly from a line in 1/T at {frac_bad:.0%} of the softness grid: not Arrhenius"
        )
    elif frac_convex > MAX_NONLINEAR_FRACTION:
        good.append(
            f"log P bends upward in 1/T at {frac_convex:.0%} of the softness grid (significant): particles of equal "
            "softness have a spread of barriers, the signature of a softness that misses part of the barrier"
        )
    if arr.e1 >= 0:
        problems.append("DeltaE(S) does not decrease with softness")
    if arr.in_regime.sum() < 3:
        problems.append(f"only {int(arr.in_regime.sum())} softness grid points lie in the Arrhenius regime")
    if not problems:
        good.append(
            f"log P is consistent with a line in 1/T at {int(arr.linear.sum())}/{arr.linear.size} softness grid "
            f"points; DeltaE(S) = {arr.e0:.2f} {arr.e1:+.2f} S"
        )

    evidence = collect_evidence(selection)
    sentences: dict[str, str] = {}
    d = result.dataset["n_features"]
    if selection is not None:
        for key, cmp in selection.untouched.items():
            sentences[key] = describe_comparison(cmp, d) if key != "c_sweep" else selection.c_sweep.verdict
        if selection.learning_curve is not None:
            sentences["learning_curve"] = selection.learning_curve.verdict
    biased = [e for e in evidence if e.shows_bias]
    unsure = [e for e in evidence if e.answer == "cannot-tell"]
    fine = [e for e in evidence if e not in biased and e not in unsure]

    recommended = None
    rfe_ev = next((e for e in evidence if e.diagnostic == "rfe"), None)
    if rfe_ev is not None and rfe_ev.answer == "better" and selection.rfe is not None:
        recommended = list(selection.rfe.recommended)

    deficit = deficit_ci = remedy = None
    if biased:
        # the size of the bias: the untouched comparison of RFE first, else the largest
        # measured one; the learning curve only when no choice shows a bias
        choices = [e for e in biased if e.diagnostic != "learning_curve"]
        if choices:
            lead = rfe_ev if rfe_ev in choices else max(choices, key=lambda e: e.scale_gain or 0.0)
            remedy = lead.candidate
        else:
            lead = biased[0]
            remedy = "more training data"
        deficit, deficit_ci = lead.deficit, lead.deficit_ci

    def say(es):
        return [sentences[e.diagnostic] for e in es if e.diagnostic in sentences]

    if problems:
        level = "unreliable"
        headline = "The softness analysis itself fails a check; do not read barriers from it."
        reasons = problems + say(biased)
    elif biased:
        level = "biased-low"
        ci = "" if deficit_ci is None else f", CI {deficit_ci[0]:.0%} to {deficit_ci[1]:.0%}"
        scale = "" if deficit is None else f" (scale about {deficit:.0%} too small{ci})"
        if recommended is not None:
            headline = (f"Barriers from all features are biased low{scale}: on held-out groups no choice saw, the "
                        f"{len(recommended)} recommended features give wider barriers; use them.")
        elif remedy == "more training data":
            headline = f"Barriers are biased low{scale}: Var(E_inf) is still rising with the training size; " \
                       "more training data would raise them."
        else:
            headline = f"Barriers are biased low{scale}: on held-out groups no choice saw, '{remedy}' gives wider " \
                       "barriers; use it."
        reasons = say(biased) + say(unsure) + say(fine) + good
    elif unsure:
        level = "cannot-tell"
        names = ", ".join(_CHOICE.get(e.diagnostic, "learning curve") for e in unsure)
        headline = (f"Cannot tell whether the barriers are biased with this data ({names}: the uncertainty is too "
                    "large to decide); no diagnostic shows a bias.")
        reasons = say(unsure) + say(fine) + good
    else:
        level = "trustworthy"
        headline = (
            "No sign of bias: every diagnostic finds the barriers as wide as its alternatives; read them with their "
            "confidence intervals."
            if selection is not None
            else "The analysis passes its checks (feature selection did not run: bias not assessed)."
        )
        reasons = say(fine) + good
    return Verdict(level, headline, reasons, recommended, deficit, truth, deficit_ci, remedy, evidence)


__all__ = [
    "Verdict", "Evidence", "make_verdict", "collect_evidence", "describe_learning_curve", "describe_c_sweep",
    "describe_comparison", "selection_messages", "LEVELS",
]
