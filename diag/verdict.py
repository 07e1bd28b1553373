"""A plain verdict: how far can the barriers be trusted, and why.

Built from an :class:`diag.audit.AuditResult` (and its feature-selection diagnostics when
they ran). Only facts the audit measured enter; the truth, when the dataset has it, is
reported beside the verdict but never used to reach it, so the verdict on toy data is a
fair test of the verdict on real data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: a grid with more than this fraction of non-linear log P vs 1/T lines is not Arrhenius
MAX_NONLINEAR_FRACTION = 0.2


@dataclass
class Verdict:
    """The audit's conclusion.

    Attributes
    ----------
    level : str
        ``"trustworthy"``, ``"biased-low"`` (barriers likely underestimated),
        ``"unreliable"`` (the analysis itself failed a check) or ``"no-barriers"``.
    headline : str
        One sentence.
    reasons : list of str
        The measured facts behind it.
    recommended : list of str or None
        The recommended feature set, when feature selection ran.
    scale_deficit : float or None
        Estimated fraction by which the barrier scale is underestimated with all
        features, ``1 - sqrt(Var_all / Var_recommended)``, when selection ran.
    truth : str or None
        On data with known barriers, what the truth says (not used for the verdict).
    """

    level: str
    headline: str
    reasons: list[str] = field(default_factory=list)
    recommended: list[str] | None = None
    scale_deficit: float | None = None
    truth: str | None = None


def _final_rows(selection) -> tuple[object | None, object | None]:
    final = getattr(selection, "final", None)
    if final is None:
        return None, None
    rows = {r.name: r for r in final.rows}
    return rows.get("all features"), rows.get("RFE recommended")


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
    bias: list[str] = []
    good: list[str] = []
    recommended = None
    deficit = None
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
    frac_bad = float(np.mean(~arr.linear)) if arr.linear.size else 1.0
    if frac_bad > MAX_NONLINEAR_FRACTION:
        problems.append(f"log P is not linear in 1/T at {frac_bad:.0%} of the softness grid: not Arrhenius")
    if arr.e1 >= 0:
        problems.append("DeltaE(S) does not decrease with softness")
    if arr.in_regime.sum() < 3:
        problems.append(f"only {int(arr.in_regime.sum())} softness grid points lie in the Arrhenius regime")
    if not problems:
        good.append(
            f"Arrhenius fits are linear at {int(arr.linear.sum())}/{arr.linear.size} softness grid points; "
            f"DeltaE(S) = {arr.e0:.2f} {arr.e1:+.2f} S"
        )

    if selection is not None:
        if selection.rfe is not None:
            recommended = list(selection.rfe.recommended)
        all_row, rec_row = _final_rows(selection)
        if (
            all_row is not None and rec_row is not None and all_row.evaluation is not None
            and rec_row.evaluation is not None and rec_row.evaluation.variance and all_row.evaluation.variance
            and recommended is not None and len(recommended) < result.dataset["n_features"]
        ):
            va, vr = all_row.evaluation.variance, rec_row.evaluation.variance
            ci_r = rec_row.evaluation.variance_ci
            deficit = float(1 - np.sqrt(va / vr)) if vr > va else 0.0
            if ci_r is not None and ci_r[0] is not None and va < ci_r[0]:
                bias.append(
                    f"the {len(recommended)} recommended features give Var(E_inf) = {vr:.3g} "
                    f"[{ci_r[0]:.3g}, {ci_r[1]:.3g}] against {va:.3g} with all {result.dataset['n_features']}: "
                    f"the full set's barriers are too narrow, their scale low by about {deficit:.0%}"
                )
            else:
                good.append(
                    f"Var(E_inf) with all features ({va:.3g}) is within the CI of the recommended set's ({vr:.3g})"
                )
        lc = getattr(selection, "learning_curve", None)
        if lc is not None and lc.still_rising:
            bias.append("Var(E_inf) is still rising with the training size: more data would raise the barriers")
        elif lc is not None:
            good.append("Var(E_inf) has levelled off with the training size")
        cs = getattr(selection, "c_sweep", None)
        if cs is not None and cs.flag:
            bias.append(f"the chosen C = {clf.C:g} gives a lower Var(E_inf) than the best C of the sweep")

    if problems:
        level = "unreliable"
        headline = "The softness analysis itself fails a check; do not read barriers from it."
        reasons = problems + bias
    elif bias:
        level = "biased-low"
        if recommended is not None and deficit:
            headline = (
                f"Barriers from all features are likely biased low (scale about {deficit:.0%} too small); "
                f"use the {len(recommended)} recommended features."
            )
        else:
            headline = "Barriers are likely biased low; see the reasons."
        reasons = bias + good
    else:
        level = "trustworthy"
        headline = (
            "No sign of bias: the barriers can be read with their confidence intervals."
            if selection is not None
            else "The analysis passes its checks (feature selection did not run: bias not assessed)."
        )
        reasons = good
    return Verdict(level, headline, reasons, recommended, deficit, truth)
