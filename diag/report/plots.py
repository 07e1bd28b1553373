"""PNG figures of the paper's panels (matplotlib, an optional extra: ``glass-diag[plots]``).

Every figure is drawn from the JSON document of the audit (:func:`diag.report.json.audit_to_dict`),
so a saved report can be re-plotted without recomputing anything.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from scipy.special import log_expit

from ..atomic import atomic_output
from ..errors import UsageError

MISSING_MATPLOTLIB = "figures need matplotlib, which is not installed: pip install 'glass-diag[plots]'"


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise UsageError(MISSING_MATPLOTLIB) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    with atomic_output(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    return path


def _temperature_colors(plt, temps):
    cmap = plt.get_cmap("coolwarm")
    lo, hi = min(temps), max(temps)
    return {t: cmap(0.0 if hi == lo else (t - lo) / (hi - lo)) for t in temps}


def plot_logp_vs_softness(doc: dict, plt):
    """log P(R|S) against S per temperature: logistic fits (lines) and binned data (points)."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    temps = [f["temperature"] for f in doc["logistic"]]
    colors = _temperature_colors(plt, temps)
    binned = {b["temperature"]: b for b in doc.get("curves", {}).get("binned", [])}
    for f in doc["logistic"]:
        t = f["temperature"]
        b = binned.get(t)
        if b and b["S"]:
            ax.plot(b["S"], np.log(b["p"]), "o", ms=3, color=colors[t], alpha=0.7)
        lo_hi = (min(b["S"]), max(b["S"])) if b and b["S"] else (-3, 3)
        s = np.linspace(*lo_hi, 100)
        ax.plot(s, log_expit(f["alpha"] + f["beta"] * s), "-", color=colors[t], label=f"T = {t:g}")
    arr = doc.get("arrhenius")
    if arr:
        ax.axhline(np.log(arr["p_max"]), color="gray", ls=":", lw=1, label=f"P = {arr['p_max']:g}")
    ax.set_xlabel("softness S")
    ax.set_ylabel("log P(R | S, T)")
    ax.legend(fontsize=7)
    ax.set_title("P(R|S,T): logistic fits and binned data")
    return fig


def plot_arrhenius_lines(doc: dict, plt, max_lines: int = 6):
    """log P against 1/T at fixed S, with the Arrhenius fits."""
    arr = doc["arrhenius"]
    fig, ax = plt.subplots(figsize=(5.5, 4))
    temps = np.array(arr["temperatures"])
    u = 1.0 / temps
    grid = np.array(arr["grid"])
    pick = np.unique(np.linspace(0, grid.size - 1, min(max_lines, grid.size)).round().astype(int))
    cmap = plt.get_cmap("viridis")
    fits = {f["temperature"]: f for f in doc["logistic"]}
    uu = np.linspace(u.min(), u.max(), 50)
    for n, j in enumerate(pick):
        s = grid[j]
        y = [log_expit(fits[t]["alpha"] + fits[t]["beta"] * s) for t in temps]
        c = cmap(n / max(len(pick) - 1, 1))
        ax.plot(u, y, "o", color=c)
        ax.plot(uu, arr["sigma"][j] - arr["delta_e"][j] * uu, "-", color=c, label=f"S = {s:+.2f}")
    ax.set_xlabel("1 / T")
    ax.set_ylabel("log P(R | S, T)")
    ax.legend(fontsize=7)
    ax.set_title("Arrhenius fits at fixed softness")
    return fig


def plot_barriers(doc: dict, plt):
    """DeltaE(S) and Sigma(S) with confidence bands, and the line e0 + e1 S."""
    arr = doc["arrhenius"]
    g = np.array(arr["grid"])
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.6))
    de, de_ci = np.array(arr["delta_e"]), np.array(arr["delta_e_ci"])
    a1.fill_between(g, de_ci[:, 0], de_ci[:, 1], alpha=0.3, label=f"{arr['ci_level']:.0%} CI")
    a1.plot(g, de, "o", ms=3, label="DeltaE(S)")
    a1.plot(g, arr["e0"] + arr["e1"] * g, "k--", lw=1, label=f"{arr['e0']:.2f} {arr['e1']:+.2f} S")
    a1.set_xlabel("softness S")
    a1.set_ylabel("DeltaE(S)")
    a1.legend(fontsize=7)
    sg, sg_ci = np.array(arr["sigma"]), np.array(arr["sigma_ci"])
    a2.fill_between(g, sg_ci[:, 0], sg_ci[:, 1], alpha=0.3)
    a2.plot(g, sg, "o", ms=3)
    a2.set_xlabel("softness S")
    a2.set_ylabel("Sigma(S)")
    fig.suptitle("Barriers and entropic intercepts")
    return fig


def plot_truth(doc: dict, plt):
    """Inferred against true barriers (toy data)."""
    ts = doc["curves"]["truth_sample"]
    tr = doc["truth"]
    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    x, y = np.array(ts["E_true"]), np.array(ts["E_inf"])
    ax.plot(x, y, ".", ms=2, alpha=0.5)
    xx = np.linspace(x.min(), x.max(), 2)
    ax.plot(xx, xx, "k:", lw=1, label="E_inf = E_true")
    ax.plot(xx, tr["intercept"] + tr["slope"] * xx, "r-", lw=1.5, label=f"slope {tr['slope']:.3f}")
    ax.set_xlabel("true barrier E")
    ax.set_ylabel("inferred barrier E_inf")
    ax.legend(fontsize=8)
    ax.set_title("Inferred vs true barriers")
    return fig


def plot_rfe(doc: dict, plt):
    """RFE: Var(E_inf) and accuracy against the number of features kept."""
    rows = doc["selection"]["rfe"]
    k = np.array([r["n_kept"] for r in rows])
    var = np.array([np.nan if r["variance"] is None else r["variance"] for r in rows])
    ci = np.array([[np.nan, np.nan] if r.get("variance_ci") is None else r["variance_ci"] for r in rows])
    acc = np.array([np.nan if r.get("accuracy") is None else r["accuracy"] for r in rows])
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.fill_between(k, ci[:, 0], ci[:, 1], alpha=0.25, color="C0")
    ax.plot(k, var, "o-", ms=3, color="C0", label="Var(E_inf)")
    ax.set_xlabel("features kept")
    ax.set_ylabel("Var(E_inf)", color="C0")
    rec = doc["selection"].get("recommended")
    if rec:
        ax.axvline(len(rec), color="k", ls=":", lw=1, label=f"recommended: {len(rec)}")
    ax2 = ax.twinx()
    ax2.plot(k, acc, "s-", ms=3, color="C1", label="accuracy")
    ax2.set_ylabel("held-out balanced accuracy", color="C1")
    ax.legend(loc="lower right", fontsize=7)
    ax.set_title("Recursive feature elimination")
    return fig


def plot_learning_curve(doc: dict, plt):
    """Var(E_inf), accuracy and (toy) the truth slope against the training size."""
    lc = doc["learning_curve"]
    rows = lc["rows"] if isinstance(lc, dict) and "rows" in lc else lc
    n = np.array([r["n_per_class"] for r in rows], dtype=float)

    def col(key):
        return np.array([np.nan if r.get(key) is None else r[key] for r in rows], dtype=float)

    panels = [("variance", "Var(E_inf)", "C0"), ("accuracy", "held-out balanced accuracy", "C1")]
    if np.isfinite(col("truth_slope")).any():
        panels.append(("truth_slope", "truth slope (1 is right)", "C3"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6))
    for ax, (key, label, color) in zip(axes, panels):
        ax.semilogx(n, col(key), "o-", color=color)
        ax.set_xlabel("training samples per class")
        ax.set_ylabel(label)
    fig.suptitle("Learning curve")
    fig.tight_layout()
    return fig


def write_figures(doc: dict, folder: str | os.PathLike) -> list[Path]:
    """Write every figure the report supports into ``folder``; returns the files written.

    Raises
    ------
    UsageError
        matplotlib is missing, or ``folder`` is a file.
    """
    plt = _pyplot()
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UsageError("the plots path exists and is not a folder", str(folder))
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [("logp_vs_softness.png", plot_logp_vs_softness)]
    if doc.get("arrhenius"):
        jobs += [("arrhenius_lines.png", plot_arrhenius_lines), ("barriers.png", plot_barriers)]
    if doc.get("truth") and doc.get("curves", {}).get("truth_sample"):
        jobs.append(("truth.png", plot_truth))
    if (doc.get("selection") or {}).get("rfe"):
        jobs.append(("rfe.png", plot_rfe))
    if doc.get("learning_curve"):
        jobs.append(("learning_curve.png", plot_learning_curve))
    written = []
    for name, fn in jobs:
        fig = fn(doc, plt)
        try:
            written.append(_save(fig, folder / name))
        finally:
            plt.close(fig)
    return written
