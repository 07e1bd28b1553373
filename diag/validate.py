"""Validation of an installation against the paper's claims on the toy model.

``run_validation()`` returns one :class:`Check` per claim of METHOD section 4 ("Known
limits"), each with the value measured, the range expected and whether it passed. The
CLI's ``diag validate`` prints them as a table. Everything is seeded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass
class Check:
    """One claim checked on the toy model."""

    name: str
    claim: str
    measured: str
    expected: str
    passed: bool


def _bayes_check(seed: int) -> list[Check]:
    from toymodel import ToyModel

    m = ToyModel()
    b = m.bayes_accuracy(1.0)
    s = m.sample(200_000, 1.0, np.random.default_rng(seed))
    pred = s.energy < 0
    mc = 0.5 * (pred[s.label == 1].mean() + (~pred)[s.label == 0].mean())
    return [
        Check(
            "bayes-ceiling",
            "best possible accuracy at T = 1 is about 0.843",
            f"{b:.4f} (quadrature), {mc:.4f} (Monte Carlo)",
            "0.843 +- 0.001; Monte Carlo within 0.005",
            abs(b - 0.843) < 1e-3 and abs(mc - b) < 5e-3,
        )
    ]


def _size_checks(seed: int) -> list[Check]:
    from toymodel import ToyModel

    from .audit import AuditOptions, audit

    m = ToyModel()
    bayes = m.bayes_accuracy(1.0)
    ds = m.to_dataset(per_temperature=50_000, seed=seed)
    big = audit(ds, AuditOptions(train_per_class=10_000, seed=seed))
    small = audit(ds, AuditOptions(train_per_class=100, seed=seed))
    return [
        Check(
            "large-N",
            "10^4 per class: barriers right, accuracy at the ceiling",
            f"slope {big.truth.slope:.3f}, accuracy {big.classifier.accuracy:.3f}",
            f"slope 0.97-1.08, accuracy {bayes:.3f} +- 0.01",
            0.97 <= big.truth.slope <= 1.08 and abs(big.classifier.accuracy - bayes) < 0.01,
        ),
        Check(
            "small-N",
            "100 per class: barriers biased low, accuracy a little below, checks pass",
            f"slope {small.truth.slope:.3f}, accuracy {small.classifier.accuracy:.3f}, "
            f"linear {int(small.arrhenius.linear.sum())}/{small.arrhenius.linear.size}",
            f"slope < 0.8, accuracy > {bayes - 0.04:.3f}, all linear",
            small.truth.slope < 0.8 and small.classifier.accuracy > bayes - 0.04 and bool(small.arrhenius.linear.all()),
        ),
    ]


def _cube_checks(seed: int) -> list[Check]:
    from toymodel import ToyModel

    from .audit import AuditOptions, audit

    ds = ToyModel(n_noise=0, extra="cube").to_dataset(per_temperature=50_000, seed=seed)
    opts = AuditOptions(train_per_class=1000, C=1e-3, seed=seed)
    cubes = audit(ds, opts)
    plain = audit(ds.select_features([f"x{k}" for k in range(1, 11)]), opts)
    return [
        Check(
            "correlated-extras",
            "(x, x^3), small C: barriers biased low at equal accuracy; Var(E_inf) sees it",
            f"slope {cubes.truth.slope:.3f} vs {plain.truth.slope:.3f} plain; accuracy "
            f"{cubes.classifier.accuracy:.3f} vs {plain.classifier.accuracy:.3f}; Var {cubes.criterion.variance:.2f} "
            f"vs {plain.criterion.variance:.2f}",
            "slope < 0.8 vs > 0.9; accuracy within 0.015; Var lower",
            cubes.truth.slope < 0.8
            and plain.truth.slope > 0.9
            and abs(cubes.classifier.accuracy - plain.classifier.accuracy) < 0.015
            and cubes.criterion.variance < plain.criterion.variance,
        )
    ]


def _offset_checks(seed: int) -> list[Check]:
    from toymodel import ToyModel

    from .audit import AuditOptions, audit

    ds = ToyModel(coef=0.5, offset=5.0).to_dataset(per_temperature=200_000, seed=seed)
    r = audit(ds, AuditOptions(seed=seed))
    lo, hi = r.truth.slope_ci
    return [
        Check(
            "positive-barriers",
            "E0 = 5 (all barriers positive, classes subsampled): barriers right",
            f"slope {r.truth.slope:.3f} [{lo:.3f}, {hi:.3f}]",
            "CI overlaps 0.97-1.08",
            lo < 1.08 and hi > 0.97,
        )
    ]


def _selection_check(seed: int) -> list[Check]:
    from toymodel import ToyModel

    from .audit import AuditOptions
    from .selection import SelectionOptions, run_selection

    model = ToyModel(n_noise=0, extra="cube")
    ds = model.to_dataset(per_temperature=50_000, seed=seed)
    sel = run_selection(
        ds, AuditOptions(train_per_class=1000, C=1e-3, seed=seed),
        SelectionOptions(coarsen=False, families=False, learning_curve=False, c_sweep=False, n_folds=0),
    )
    steps = {s.n_kept: s.evaluation for s in sel.rfe.steps}
    acc_span = abs(steps[10].accuracy - steps[20].accuracy)
    return [
        Check(
            "rfe-recommends-truth",
            "(x, x^3), small C: RFE drops the cubes first, Var(E_inf) peaks at the 10 energy coordinates",
            f"recommended {len(sel.rfe.recommended)} features "
            f"({'the energy coordinates' if sel.rfe.recommended == model.energy_features else 'others'}); "
            f"Var {steps[20].variance:.2f} -> {steps[10].variance:.2f}, accuracy moves {acc_span:.3f}",
            "exactly x1..x10; accuracy nearly flat (< 0.015)",
            sel.rfe.recommended == model.energy_features and acc_span < 0.015,
        )
    ]


CHECKS: dict[str, Callable[[int], list[Check]]] = {
    "bayes": _bayes_check,
    "sizes": _size_checks,
    "extras": _cube_checks,
    "offset": _offset_checks,
    "selection": _selection_check,
}


def run_validation(seed: int = 0, progress: Callable[[str], None] | None = None) -> list[Check]:
    """Run every validation check on the toy model.

    Parameters
    ----------
    seed : int
        Seeds every dataset and fit.
    progress : callable, optional
        Called with the name of each group of checks as it starts.

    Returns
    -------
    list of Check
    """
    out: list[Check] = []
    for name, fn in CHECKS.items():
        if progress:
            progress(name)
        out.extend(fn(seed))
    return out
