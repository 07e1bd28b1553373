"""Terminal rendering of audit results with rich. Reads result objects; computes nothing new."""

from __future__ import annotations

import numpy as np
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text


def _fmt(x: float | None, nd: int = 3) -> str:
    if x is None:
        return "n/a"
    return f"{x:.{nd}g}" if abs(x) >= 1e4 or (abs(x) < 1e-3 and x != 0) else f"{x:.{nd}f}"


def _ci(ci, nd: int = 3) -> str:
    return "n/a" if ci is None else f"[{_fmt(ci[0], nd)}, {_fmt(ci[1], nd)}]"


def dataset_panel(result) -> Panel:
    d = result.dataset
    t = Table.grid(padding=(0, 2))
    t.add_column(style="bold")
    t.add_column()
    t.add_row("file", str(d.get("path") or "(in memory)"))
    t.add_row("samples", f"{d['n_samples']:,} in {d['n_groups']:,} groups, {d['n_features']} features")
    pop = getattr(result, "population", None) or {}
    if pop.get("species") is not None or pop.get("pooled"):
        who = f"species {pop['species']}" if not pop.get("pooled") else f"{pop.get('n_species')} species pooled"
        t.add_row("centres", who)
    t.add_row("temperatures", ", ".join(f"{p['temperature']:g}" for p in d["per_temperature"]))
    counts = Table(box=None, padding=(0, 1), show_edge=False)
    for col in ("T", "natural", "R = 1", "P(R)", "soft", "hard"):
        counts.add_column(col, justify="right")
    for p in d["per_temperature"]:
        pr = p.get("p_rearranging")
        counts.add_row(
            f"{p['temperature']:g}", f"{p.get('n_natural', p['n_samples']):,}",
            f"{p.get('n_natural_rearranging', p['n_rearranging']):,}", "n/a" if pr is None else f"{pr:.4f}",
            f"{p.get('n_soft', 0):,}", f"{p.get('n_hard', 0):,}",
        )
    t.add_row("populations", counts)
    prov = d.get("provenance") or {}
    if prov:
        t.add_row("generator", f"{prov.get('generator', '?')} {prov.get('version', '')}, seed {prov.get('seed', '?')}")
    conv = d.get("conventions") or {}
    dyn = conv.get("dynamics")
    if isinstance(dyn, dict):
        t.add_row("labels", Text(_labels_line(dyn)))
    for key in sorted(conv):
        val = conv[key]
        if isinstance(val, (dict, list)):
            continue
        t.add_row(key, str(val))
    return Panel(t, title="Dataset", title_align="left")


def _labels_line(dc: dict) -> str:
    """One line for the rearrangement labels: windows in frames and time, thresholds, hard rule."""
    def frames(key_f, key_t):
        # a list: the value differs between files (one per file, in order)
        f, tm = dc.get(key_f), dc.get(key_t)
        fs = "/".join(map(str, f)) if isinstance(f, list) else str(f)
        if isinstance(tm, list):
            ts = "/".join("?" if x is None else f"{x:g}" for x in tm)
            return f"{fs} frames ({ts} time units, per file)"
        return f"{fs} frames" + ("" if tm is None else f" ({tm:g} time units)")

    side = "[t - P, t + P]" if dc.get("hard_side", "before") == "both" else "[t - P, t]"
    nat = dc.get("natural_fraction", 1.0)
    return (
        f"t_R = {frames('window_frames', 'window_time')}; R = 1 and soft: p_hop > {dc.get('p_c'):g}; "
        f"hard: p_hop < {dc.get('p_hard'):g} over {side}, P = {frames('persistence_frames', 'persistence_time')}; "
        f"every {dc.get('every_frames')} frames"
        + ("" if nat in (None, 1, 1.0) else f"; natural population subsampled to {nat:g}")
    )


def classifier_panel(result) -> Panel:
    c = result.classifier
    t = Table.grid(padding=(0, 2))
    t.add_column(style="bold")
    t.add_column()
    t.add_row("model", f"linear SVM, true hinge loss, C = {c.C:g}, standardised features")
    rule = getattr(c, "train_temperature_rule", "")
    t.add_row("training", f"{c.n_train_per_class:,} per class at T = {c.train_temperature:g} (balanced; T: {rule})"
              if rule else f"{c.n_train_per_class:,} per class at T = {c.train_temperature:g} (balanced)")
    t.add_row(
        "accuracy",
        f"{c.accuracy:.4f} {_ci(c.accuracy_ci, 4)} (balanced, soft vs hard, {c.n_test:,} held-out samples at "
        f"T = {c.train_temperature:g})",
    )
    conv = "[green]converged[/]" if c.converged else "[red]NOT converged[/]"
    t.add_row("solver", f"{conv} in {c.n_iter} iterations, objective {c.objective:.6g}")
    t.add_row("softness", result.softness_units)
    t.add_row("|w|", f"{c.w_norm:.4g}")
    return Panel(t, title="Classifier", title_align="left")


def arrhenius_panel(result) -> Panel:
    a = result.arrhenius
    if a is None:
        return Panel(Text("No Arrhenius fit (see warnings)."), title="Arrhenius fits", title_align="left")
    t = Table(box=None, pad_edge=False, header_style="bold")
    for col in ("S", "DeltaE", f"{a.ci_level:.0%} CI", "Sigma", f"{a.ci_level:.0%} CI", "R^2", "chi2 p", "linear"):
        t.add_column(col, justify="right")
    for j, s in enumerate(a.grid_in_regime):
        t.add_row(
            f"{s:+.2f}",
            f"{a.delta_e[j]:.3f}",
            _ci(a.delta_e_ci[j], 2),
            f"{a.sigma[j]:.3f}",
            _ci(a.sigma_ci[j], 2),
            f"{a.r2[j]:.4f}",
            "n/a" if not np.isfinite(a.chi2_p[j]) else f"{a.chi2_p[j]:.3g}",
            "yes" if a.linear[j] else "[red]no[/]",
        )
    lines = Text.from_markup(
        f"DeltaE(S) = e0 + e1 S:  e0 = {a.e0:.3f} {_ci(a.e0_ci)},  e1 = {a.e1:.3f} {_ci(a.e1_ci)}\n"
        f"regime: P(R|S,T) <= {a.p_max:g} at every T = "
        + ", ".join(f"{x:g}" for x in a.temperatures)
        + f"; linear: no significant deviation from a line (chi-square with the propagated uncertainty of "
        f"log P, p >= {a.alpha:g}); R^2 for information"
    )
    return Panel(Group(t, lines), title="Arrhenius fits  log P(R|S,T) = Sigma(S) - DeltaE(S)/T", title_align="left")


def criterion_panel(result) -> Panel:
    cr = result.criterion
    t = Table.grid(padding=(0, 2))
    t.add_column(style="bold")
    t.add_column()
    t.add_row("Var(E_inf)", f"{_fmt(cr.variance)} {_ci(cr.variance_ci)}")
    t.add_row("Var(log P)", f"{_fmt(cr.logp_variance)} {_ci(cr.logp_variance_ci)}  (proxy)")
    t.add_row("over", f"{cr.reference} ({cr.n_reference:,})")
    if result.truth is not None:
        tr = result.truth
        tag = "[green]barriers right[/]" if abs(tr.slope - 1) < 0.1 else "[red]barriers biased[/]"
        t.add_row("truth", f"E_inf = {tr.intercept:.3f} + {tr.slope:.3f} E_true, R^2 = {tr.r2:.3f}  {tag}")
    return Panel(t, title="Variance criterion", title_align="left")


def warnings_panel(result) -> Panel | None:
    if not result.warnings:
        return None
    body = Text("\n".join(f"- {w}" for w in result.warnings))
    return Panel(body, title="Warnings", title_align="left", border_style="yellow")


_LEVEL_STYLE = {"trustworthy": "green", "biased-low": "red", "unreliable": "red", "no-barriers": "yellow",
                "cannot-tell": "yellow"}


def verdict_panel(result) -> Panel | None:
    v = result.verdict
    if v is None:
        return None
    style = _LEVEL_STYLE.get(v.level, "white")
    body = [Text.from_markup(f"[bold {style}]{v.level.upper()}[/]: {v.headline}")]
    if v.reasons:
        body.append(Text("\n".join(f"- {r}" for r in v.reasons)))
    if v.recommended is not None:
        body.append(Text.from_markup(f"[bold]recommended feature set[/] ({len(v.recommended)}): " + ", ".join(v.recommended)))
    if v.truth:
        body.append(Text.from_markup(f"[dim]{v.truth}[/]"))
    return Panel(Group(*body), title="Verdict", title_align="left", border_style=style)


def render_audits(results, console: Console) -> None:
    """Print one report per audited population (species), each under a heading."""
    if len(results) == 1:
        render_audit(results[0], console)
        return
    for r in results:
        console.rule(f"[bold]centre species {r.population.get('species')}[/]")
        render_audit(r, console)


def render_audit(result, console: Console) -> None:
    """Print the audit report to a rich console."""
    for panel in (dataset_panel(result), classifier_panel(result), arrhenius_panel(result), criterion_panel(result)):
        console.print(panel)
    if result.selection is not None:
        from .selection import selection_renderables

        for r in selection_renderables(result.selection):
            console.print(r)
    v = verdict_panel(result)
    if v is not None:
        console.print(v)
    w = warnings_panel(result)
    if w is not None:
        console.print(w)
