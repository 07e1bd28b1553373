"""Terminal rendering of the feature-set diagnostics with rich (reads results; computes nothing).

:func:`selection_renderables` turns a :class:`diag.selection.SelectionResult` into a list
of rich Panels and Tables laid out to read well at 80 columns.
"""

from __future__ import annotations

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ..selection import size_ranges

#: RFE curves longer than this are shown around the peak plus a thinned remainder
MAX_RFE_ROWS = 30


def _fmt(x, nd: int = 3) -> str:
    if x is None:
        return "n/a"
    x = float(x)
    if x != x:
        return "n/a"
    if x != 0 and (abs(x) >= 1e4 or abs(x) < 1e-3):
        return f"{x:.{nd}g}"
    return f"{x:.{nd}g}" if abs(x) >= 100 else f"{x:.{nd}f}"


def _ci(ci, nd: int = 3) -> str:
    return "" if ci is None else f"[{_fmt(ci[0], nd)}, {_fmt(ci[1], nd)}]"


def _short(name: str, width: int = 22) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def _crit_name(criterion: str) -> str:
    return "Var(E_inf)" if criterion == "variance" else "Var(log P)"


def _rfe_rows_to_show(sizes: list[int], peak: int, d: int) -> list[int]:
    if len(sizes) <= MAX_RFE_ROWS:
        return sizes
    keep = {d, 1, *range(max(1, peak - 5), min(d, peak + 5) + 1)}
    step = max(1, d // 12)
    keep.update(range(d, 0, -step))
    return [s for s in sizes if s in keep]


def rfe_panel(result) -> Panel | None:
    r = result.rfe
    if r is None:
        return None
    crit = _crit_name(r.criterion)
    truth = any(s.evaluation is not None and s.evaluation.truth_slope is not None for s in r.steps)
    t = Table(box=None, padding=(0, 1), header_style="bold")
    t.add_column("kept", justify="right")
    t.add_column("removed", overflow="ellipsis", max_width=22, no_wrap=True)
    t.add_column(crit, justify="right")
    t.add_column("95% CI", justify="right")
    t.add_column("acc.", justify="right")
    if truth:
        t.add_column("slope*", justify="right")
    d = max(s.n_kept for s in r.steps)
    k = r.peak.n_kept
    shown = _rfe_rows_to_show([s.n_kept for s in r.steps], k, d)
    prev = None
    for s in r.steps:
        if s.n_kept not in shown:
            continue
        if prev is not None and prev - s.n_kept > 1:
            t.add_row("…", "", "", "", "", *([""] if truth else []))
        prev = s.n_kept
        e = s.evaluation
        val = None if e is None else (e.variance if r.criterion == "variance" else e.logp_variance)
        ci = None if e is None else e.score_ci(r.criterion)
        removed = ", ".join(s.removed) if s.removed else "-"
        row = [str(s.n_kept), Text(_short(removed)), _fmt(val), _ci(ci), _fmt(None if e is None else e.accuracy, 3)]
        if truth:
            row.append(_fmt(None if e is None else e.truth_slope))
        style = "bold green" if s.n_kept == k else ("dim" if e is not None and not e.valid and r.criterion == "variance" else None)
        t.add_row(*row, style=style)
    notes = Text.from_markup(
        f"[dim]Linear SVM (true hinge), C = {r.C:g}, {r.n_per_class:,} per class; one feature removed per step "
        f"(smallest |w_j|), warm-started refits; '{crit}' and accuracy on held-out data"
        + ("; slope* = inferred vs true barrier (toy data)" if truth else "")
        + f"; peak row in green. {r.seconds:.1f} s.[/]"
    )
    return Panel(Group(t, notes), title="Recursive feature elimination", title_align="left")


def recommendation_panel(result) -> Panel | None:
    r = result.rfe
    if r is None:
        return None
    p = r.peak
    crit = _crit_name(p.criterion)
    g = Table.grid(padding=(0, 2))
    g.add_column(style="bold", no_wrap=True)
    g.add_column()
    g.add_row("recommended", Text(f"{len(r.recommended)} features: " + ", ".join(r.recommended)))
    g.add_row("peak", f"k* = {p.n_kept} (argmax {p.argmax}), {crit} = {_fmt(p.value)} {_ci(p.ci)}")
    g.add_row("rule", f"smallest size within {p.tol:.0%} of the maximum of the curve averaged over {p.n_runs} runs")
    sharp = "[green]sharp[/]: no other size within the CI" if p.sharp else (
        "[yellow]broad[/]: sizes " + size_ranges(p.within_ci) + " within the CI of the peak")
    g.add_row("sharpness", Text.from_markup(sharp))
    if p.drop_smaller is not None:
        acc = f", accuracy {-p.accuracy_drop_smaller:+.3f}" if p.accuracy_drop_smaller is not None else ""
        g.add_row(f"k* -> {p.n_kept - 1}", f"{crit} {-p.drop_smaller:+.1%} (lower in {p.runs_drop_smaller}/{p.n_runs} runs){acc}")
    if p.drop_larger is not None:
        g.add_row(f"k* -> {p.n_kept + 1}", f"{crit} {-p.drop_larger:+.1%} (lower in {p.runs_drop_larger}/{p.n_runs} runs)")
    if p.gain_vs_full is not None and p.accuracy_gain_vs_full is not None:
        d = max(s.n_kept for s in r.steps)
        g.add_row(f"{d} -> k*", f"{crit} {p.gain_vs_full:+.1%}, accuracy {p.accuracy_gain_vs_full:+.3f}")
    g.add_row("agreement", f"{p.run_agreement:.0%} of {p.n_runs} runs (audit split + {len(r.folds)} grouped folds) give k*")
    parts = [g]
    unstable = {n: v for n, v in r.stability.items() if (n in r.recommended and v < 1) or (n not in r.recommended and v > 0)}
    if r.folds and unstable:
        t = Table(box=None, padding=(0, 1), header_style="bold", title=f"survival at k* = {p.n_kept} (unstable features)",
                  title_justify="left")
        t.add_column("feature", overflow="ellipsis", max_width=30)
        t.add_column("kept in", justify="right")
        t.add_column("recommended")
        for n, v in list(unstable.items())[:15]:
            t.add_row(Text(n), f"{v:.0%}", "yes" if n in r.recommended else "no")
        parts.append(t)
    elif r.folds:
        parts.append(Text(f"Every feature is kept in all {len(r.folds) + 1} runs or in none: the ranking is stable at k*."))
    if result.final is not None:
        parts.append(comparison_table(result.final, "audit pipeline (exact) on held-out groups no choice saw"))
    return Panel(Group(*parts), title="Recommended feature set", title_align="left")


def comparison_table(cmp, title: str | None = None) -> Table:
    crit = _crit_name(cmp.criterion)
    truth = any(r.evaluation is not None and r.evaluation.truth_slope is not None for r in cmp.rows)
    t = Table(box=None, padding=(0, 1), header_style="bold", title=title, title_justify="left")
    t.add_column("#", justify="right")
    t.add_column("candidate", overflow="ellipsis", max_width=24)
    t.add_column("d", justify="right")
    t.add_column(crit, justify="right")
    t.add_column("95% CI", justify="right")
    t.add_column("acc.", justify="right")
    if truth:
        t.add_column("slope*", justify="right")
    for r in cmp.rows:
        e = r.evaluation
        val = None if e is None else e.score(cmp.criterion)
        row = ["-" if r.rank is None else str(r.rank), Text(r.name), str(r.n_features), _fmt(val),
               _ci(None if e is None else e.score_ci(cmp.criterion)), _fmt(None if e is None else e.accuracy)]
        if truth:
            row.append(_fmt(None if e is None else e.truth_slope))
        style = "bold green" if r.rank == 1 else ("yellow" if r.within_ci_of_best else None)
        t.add_row(*row, style=style)
    return t


def coarsening_panel(result) -> Panel | None:
    c = result.coarsening
    if c is None:
        return None
    note = Text.from_markup("[dim]grid xk: k adjacent grid functions summed along each grid line; "
                            "green: best, yellow: within its CI[/]")
    return Panel(Group(comparison_table(c), note), title="Basis coarsening", title_align="left")


def families_panel(result) -> Panel | None:
    c = result.families
    if c is None:
        return None
    return Panel(comparison_table(c), title="Feature families", title_align="left")


_ANSWER_STYLE = {"better": "red", "rising": "red", "no-better": "green", "levelled": "green", "cannot-tell": "yellow"}


def untouched_panel(result) -> Panel | None:
    """Each choice against its baseline on the untouched outer groups (what the verdict reads)."""
    if not result.untouched:
        return None
    t = Table(box=None, padding=(0, 1), header_style="bold")
    t.add_column("choice")
    t.add_column("chosen", overflow="ellipsis", max_width=18)
    t.add_column("vs", overflow="ellipsis", max_width=12)
    t.add_column("scale gain", justify="right")
    t.add_column("95% CI", justify="right")
    t.add_column("answer")
    names = {"rfe": "RFE", "coarsening": "coarsening", "families": "family", "c_sweep": "C"}
    for key, c in result.untouched.items():
        chosen = f"{len(c.candidate_features or [])} features" if key == "rfe" else c.candidate
        gain = "n/a" if c.scale_gain is None else f"{c.scale_gain:+.1%}"
        ci = "" if c.scale_gain_ci is None else f"[{c.scale_gain_ci[0]:+.1%}, {c.scale_gain_ci[1]:+.1%}]"
        ans = "same" if c.same else c.answer
        t.add_row(names.get(key, key), Text(chosen), Text(c.baseline), gain, ci,
                  Text(ans, style=_ANSWER_STYLE.get(c.answer, "") if not c.same else "dim"))
    nest = result.nested or {}
    if nest.get("enabled"):
        how = (f"chosen on {nest['n_inner_groups']} held-out groups, compared on {nest['n_outer_groups']} others "
               "that no choice saw")
    else:
        how = f"not nested ({nest.get('reason')}): chosen and compared on the same held-out data"
    note = Text.from_markup(
        f"[dim]{how}. Scale gain = sqrt(Var_chosen / Var_baseline) - 1 with a paired CI; better: the CI lies above "
        f"{result.options.min_scale_gain:.0%}, no better: below it, cannot tell: it straddles it.[/]")
    return Panel(Group(t, note), title="Choices tested on untouched groups", title_align="left")


def learning_curve_panel(result) -> Panel | None:
    lc = result.learning_curve
    if lc is None:
        return None
    crit = _crit_name(lc.criterion)
    rows = lc.summary()
    truth = any(r["truth_slope"] is not None for r in rows)
    t = Table(box=None, padding=(0, 1), header_style="bold")
    t.add_column("per class", justify="right")
    t.add_column("runs", justify="right")
    t.add_column(crit, justify="right")
    t.add_column("± sd", justify="right")
    t.add_column("acc.", justify="right")
    if truth:
        t.add_column("slope*", justify="right")
    key = "variance" if lc.criterion == "variance" else "logp_variance"
    for r in rows:
        row = [f"{r['n_per_class']:,}", str(r["n_repeats"]), _fmt(r[key]), _fmt(r[key + "_sd"]), _fmt(r["accuracy"])]
        if truth:
            row.append(_fmt(r["truth_slope"]))
        t.add_row(*row)
    color = _ANSWER_STYLE.get(lc.answer, "")
    parts = [t, Text(lc.verdict, style=color)]
    if lc.test is not None:
        tt = lc.test
        parts.append(Text.from_markup(
            f"[dim]Rule: fit V(N) = V_inf - a/N over N = {', '.join(map(str, tt.sizes_used))}; the missing fraction "
            f"a/(N_max V_inf) = {tt.deficit:.1%}, {tt.level:.0%} CI [{tt.deficit_lower:.1%}, {tt.deficit_upper:.1%}]: "
            f"rising when the CI lies above {tt.tol:.0%}, levelled when below, else cannot tell.[/]"))
    return Panel(Group(*parts), title="Learning curve: is the data enough?", title_align="left")


def c_sweep_panel(result) -> Panel | None:
    cs = result.c_sweep
    if cs is None:
        return None
    crit = _crit_name(cs.criterion)
    truth = any(p.evaluation.truth_slope is not None for p in cs.points)
    t = Table(box=None, padding=(0, 1), header_style="bold")
    t.add_column("C", justify="right")
    t.add_column("C n_train", justify="right")
    t.add_column(crit, justify="right")
    t.add_column("95% CI", justify="right")
    t.add_column("acc.", justify="right")
    if truth:
        t.add_column("slope*", justify="right")
    for p in cs.points:
        e = p.evaluation
        row = [f"{p.C:.3g}", f"{p.C_n_train:.3g}", _fmt(e.score(cs.criterion)), _ci(e.score_ci(cs.criterion)),
               _fmt(e.accuracy)]
        if truth:
            row.append(_fmt(e.truth_slope))
        mark = []
        if p.C == cs.best_C:
            mark.append("bold green")
        if p.C == cs.audit_C:
            mark.append("underline")
        t.add_row(*row, style=" ".join(mark) or None)
    color = _ANSWER_STYLE.get(cs.answer, "")
    return Panel(Group(t, Text(cs.verdict, style=color),
                       Text.from_markup("[dim]green: best C; underlined: the audit's C[/]")),
                 title="C sweep: is C sensible?", title_align="left")


def advice_panel(result) -> Panel | None:
    if not (result.recommendations or result.warnings or result.notes):
        return None
    g = Table.grid(padding=(0, 1))
    g.add_column(no_wrap=True)
    g.add_column()
    for s in result.recommendations:
        g.add_row(Text("•", style="bold"), Text(s, style="yellow" if s in result.warnings else ""))
    for s in result.warnings:
        if s not in result.recommendations:
            g.add_row(Text("!", style="bold yellow"), Text(s, style="yellow"))
    for s in result.notes:
        g.add_row(Text("-", style="dim"), Text(s, style="dim"))
    return Panel(g, title="Feature-set diagnostics: summary", title_align="left")


def selection_renderables(result) -> list:
    """Rich renderables (Panels) of a :class:`diag.selection.SelectionResult`, in reading order.

    RFE curve, recommended set (with peak sharpness, stability and the exact audit of
    the recommended set beside the full set), coarsening, families, learning curve,
    C sweep, and a summary of recommendations and warnings. Diagnostics that did not
    run are left out.
    """
    panels = [
        rfe_panel(result),
        recommendation_panel(result),
        coarsening_panel(result),
        families_panel(result),
        learning_curve_panel(result),
        c_sweep_panel(result),
        untouched_panel(result),
        advice_panel(result),
    ]
    return [p for p in panels if p is not None]


def planted_panel(planted) -> Panel:
    """A :class:`diag.planted.PlantedResult`: can the diagnostics see a bias on this data?"""
    c = planted.copy
    g = Table.grid(padding=(0, 2))
    g.add_column(style="bold", no_wrap=True)
    g.add_column()
    shown = ", ".join(c.features[:6]) + (", ..." if len(c.features) > 6 else "")
    g.add_row("planted", Text(f"E = {c.offset:.2f} + (sparse combination of {len(c.features)} standardised "
                              f"features: {shown}), sd {c.barrier_std:.2f}; seed {c.seed}"))
    rates = ", ".join(f"{t:g}: {c.rates_target[t]:.3g} -> {c.rates_planted.get(t, float('nan')):.3g}"
                      for t in sorted(c.rates_target))
    g.add_row("event rates", Text(f"natural -> planted: {rates}"))
    g.add_row("training", f"{planted.n_per_class:,} per class (as the real audit)")
    sl = "n/a" if planted.truth_slope is None else f"{planted.truth_slope:.3f}"
    g.add_row("recovered slope", f"{sl} with all features (1 is right)"
              + ("" if planted.recommended_slope is None else f"; {planted.recommended_slope:.3f} with the chosen set"))
    g.add_row("verdict", Text(planted.verdict_level + (f" (remedy: {planted.verdict_remedy})" if planted.verdict_remedy else "")))
    g.add_row("answers", Text(", ".join(f"{k}: {v}" for k, v in planted.answers.items())))
    if planted.planted_kept is not None:
        g.add_row("planted kept", f"{planted.planted_kept:.0%} of the planted features survive RFE")
    style = {"hit": "green", "pass": "green", "miss": "red", "false-alarm": "red", "grey": "yellow"}[planted.outcome]
    meaning = {
        "hit": "the barriers are biased and the verdict says so: the diagnostics can see a bias on this data",
        "pass": "the barriers are right and the verdict does not cry wolf",
        "miss": "the barriers are biased but the verdict does not say so: on this data the diagnostics can miss a bias",
        "false-alarm": "the barriers are right but the verdict says biased-low: treat such a verdict with care here",
        "grey": "the recovered slope is between the bands (0.90-0.95): not scored",
    }[planted.outcome]
    g.add_row("outcome", Text(f"{planted.outcome}: {meaning}", style=style))
    return Panel(g, title="Planted barriers on your own features", title_align="left")


def calibration_table(cal) -> Panel:
    """A :class:`diag.validate.CalibrationResult`: per scenario outcomes and the two rates."""
    from collections import defaultdict

    t = Table(box=None, padding=(0, 1), header_style="bold")
    for col in ("scenario", "runs", "slope", "verdicts", "outcomes"):
        t.add_column(col, justify="right" if col in ("runs", "slope") else "left")
    by = defaultdict(list)
    for r in cal.runs:
        by[r.scenario].append(r)
    for name, rs in by.items():
        slopes = [r.truth_slope for r in rs if r.truth_slope is not None]
        sl = f"{min(slopes):.2f}-{max(slopes):.2f}" if slopes else "n/a"
        lv = defaultdict(int)
        oc = defaultdict(int)
        for r in rs:
            lv[r.level] += 1
            oc[r.outcome] += 1
        t.add_row(name, str(len(rs)), sl, ", ".join(f"{k} {v}" for k, v in lv.items()),
                  ", ".join(f"{k} {v}" for k, v in oc.items()))
    fa = "n/a" if cal.false_alarm_rate is None else f"{cal.false_alarm_rate:.1%}"
    mi = "n/a" if cal.miss_rate is None else f"{cal.miss_rate:.1%}"
    summary = Text(f"false alarms {cal.false_alarms}/{cal.n_right} ({fa}); misses {cal.misses}/{cal.n_biased} ({mi}); "
                   f"{cal.n_grey} between the bands (not scored); {len(cal.runs)} audits")
    return Panel(Group(t, summary), title="Verdict calibration" + (" (full)" if cal.full else " (fast part)"),
                 title_align="left")


__all__ = ["selection_renderables", "comparison_table", "untouched_panel", "planted_panel", "calibration_table"]
