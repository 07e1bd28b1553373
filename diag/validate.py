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


def _practitioner_linear(arr) -> np.ndarray:
    """The practitioner's linearity check of each log P vs 1/T line: R^2 >= r2_min or tiny residuals.

    This is the "usual check" METHOD section 2 says still passes at small N; the audit's own
    statistical test (``ArrheniusResult.linear``) is stricter and may flag the convex bend
    that a spread of barriers at equal softness gives.
    """
    return (arr.r2 >= arr.r2_min) | (arr.max_resid <= arr.resid_tol)


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
            f"R^2 check passed at {int(_practitioner_linear(small.arrhenius).sum())}/{small.arrhenius.linear.size}",
            f"slope < 0.8, accuracy > {bayes - 0.04:.3f}, the usual R^2 linearity check passes everywhere",
            small.truth.slope < 0.8 and small.classifier.accuracy > bayes - 0.04
            and bool(_practitioner_linear(small.arrhenius).all()),
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


# =========================================================================== calibration


@dataclass
class Scenario:
    """One calibration scenario: a dataset recipe and the audit run on it.

    ``kind`` is what the scenario is designed to be ("control": the full set's barriers
    are right; "biased"); each audit is nevertheless scored against its own truth slope
    (:func:`diag.planted.score`), never against the design.
    """

    name: str
    kind: str
    description: str
    make: Callable[[int], object]  # seed -> Dataset
    C: float = 1.0
    train_per_class: int | None = None


@dataclass
class CalibrationRun:
    """One audit of the calibration suite and how its verdict fares."""

    scenario: str
    kind: str
    seed: int
    truth_slope: float | None
    level: str
    remedy: str | None
    scale_deficit: float | None
    answers: dict
    outcome: str
    seconds: float
    planted_kept: float | None = None


@dataclass
class CalibrationResult:
    """False-alarm and miss rates of the verdict over the calibration suite.

    Attributes
    ----------
    runs : list of CalibrationRun
    false_alarms, n_right : int
        Verdicts "biased-low" among the audits whose full set is right (truth slope >=
        ``RIGHT_SLOPE``).
    misses, n_biased : int
        Verdicts other than "biased-low" among the audits whose full set is biased (truth
        slope < ``BIASED_SLOPE``).
    n_grey : int
        Audits between the bands (not scored).
    full : bool
    """

    runs: list[CalibrationRun]
    false_alarms: int
    n_right: int
    misses: int
    n_biased: int
    n_grey: int
    full: bool

    @property
    def false_alarm_rate(self) -> float | None:
        return self.false_alarms / self.n_right if self.n_right else None

    @property
    def miss_rate(self) -> float | None:
        return self.misses / self.n_biased if self.n_biased else None

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return {
            "full": self.full, "false_alarms": self.false_alarms, "n_right": self.n_right, "misses": self.misses,
            "n_biased": self.n_biased, "n_grey": self.n_grey, "false_alarm_rate": self.false_alarm_rate,
            "miss_rate": self.miss_rate, "runs": [asdict(r) for r in self.runs],
        }


#: per-temperature samples of the toy scenarios (six temperatures, 500 per group)
CAL_PER_TEMPERATURE = 30_000
#: seeds of the full suite (the fast part uses the first only)
CAL_SEEDS = (0, 1, 2, 3, 4)


def _toy(**kw):
    def make(seed: int):
        from toymodel import ToyModel

        return ToyModel(**kw).to_dataset(per_temperature=CAL_PER_TEMPERATURE, seed=1000 + seed)

    return make


def default_dump() -> str:
    """The real trajectory of the calibration: the highest-temperature ``ka_N1000_T*.dump`` of
    ``tests/data/lammps`` in the source tree (LAMMPS, Kob-Andersen N = 1000; see its README).

    Raises
    ------
    DataError
        No such file (an installed package without the source tree's test data).
    """
    import glob
    import os

    from .errors import DataError

    folder = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "data", "lammps")
    found = sorted(glob.glob(os.path.join(folder, "ka_N1000_T*.dump")))
    if not found:
        raise DataError("no ka_N1000_T*.dump trajectory: the planted-barrier calibration needs the source tree's "
                        "test data", folder)
    return found[-1]


def structure_matrix(path: str | None = None, max_frames: int | None = 111, every_feature: int = 4):
    """A real structure-function matrix: the A centres of a LAMMPS Kob-Andersen dump.

    Parameters
    ----------
    path : str, optional
        Trajectory file; default :func:`default_dump`.
    max_frames : int, optional
        Frames read (default the first 111; None: all).
    every_feature : int
        Keep every k-th of the 166 default features (radial and angular alike; 42 for k = 4),
        so that an audit with RFE stays cheap.

    Returns
    -------
    features : ndarray, shape (n_centres, d), float32
    frame : ndarray, shape (n_centres,), int
    names, families : list of str
    params : list of dict
    """
    import os

    from adapters.readers import open_trajectory
    from adapters.structure import StructureConfig, StructureFunctions

    if path is None:
        path = default_dump()
    tr = open_trajectory(path)
    cfg = StructureConfig(species=tuple(tr.species))
    sf = StructureFunctions(cfg)
    q = np.flatnonzero(tr.types == 0)
    rows, frames = [], []
    for k, fr in enumerate(tr):
        if max_frames is not None and k >= max_frames:
            break
        sf.compute(fr.box.freud_params(), fr.positions, tr.types, query_indices=q)
        rows.append(sf.features.copy())
        frames.append(np.full(q.size, k))
    tr.close()
    cols = np.arange(0, len(cfg.feature_names()), every_feature)
    names = [cfg.feature_names()[j] for j in cols]
    fams = [cfg.feature_families()[j] for j in cols]
    params = [cfg.feature_params()[j] for j in cols]
    return np.vstack(rows)[:, cols], np.concatenate(frames), names, fams, params


def real_matrix_dataset(matrix, temperatures=(0.5, 0.6, 0.7, 0.8, 0.9, 1.0), rates=None, copies: int = 1):
    """A dataset on a real structure-function matrix, frames dealt round-robin to temperatures.

    The labels are placeholders (the planted copy redraws them); ``rates`` (per temperature)
    are stored as the natural rates to match. With ``copies > 1`` every temperature gets
    the whole matrix (each copy its own groups), for larger samples.
    """
    from .dataset import Dataset

    X, frame, names, fams, params = matrix
    temps = np.asarray(temperatures, dtype=float)
    if copies > 1:
        Xs, Ts, Gs = [], [], []
        for i, t in enumerate(temps):
            Xs.append(X)
            Ts.append(np.full(X.shape[0], t))
            Gs.append(i * 10**6 + frame)
        X, T, G = np.vstack(Xs), np.concatenate(Ts), np.concatenate(Gs)
    else:
        T = temps[frame % temps.size]
        G = frame
    if rates is None:
        rates = {float(t): 0.5 for t in temps}
    # placeholder labels at the requested rates (deterministic), so that natural_rates() reads them back
    R = np.zeros(X.shape[0], dtype=np.int8)
    for t in temps:
        idx = np.flatnonzero(np.isclose(T, t))
        R[idx[: int(round(rates[float(t)] * idx.size))]] = 1
    return Dataset(X, R, T, G, list(names), list(fams), [dict(p) for p in params],
                   conventions={"train_temperature": float(temps.max())},
                   provenance={"generator": "glass-diag calibration", "source": "LAMMPS Kob-Andersen dump"})


def scenarios(real_matrix=None) -> list[Scenario]:
    """The calibration scenarios (docs/validation.md)."""
    out = [
        Scenario("plain", "control", "10 energy + 4 noise inputs, all data (~7,500 per class), C = 1",
                 _toy()),
        Scenario("many-noise", "control", "10 energy + 20 noise inputs, all data, C = 1", _toy(n_noise=20)),
        Scenario("unequal", "control", "unequal coefficients 2, 2, 1.5, 1.5, 1, 1, 0.5, 0.5, 0.25, 0.25 + 4 noise",
                 _toy(coef=[2, 2, 1.5, 1.5, 1, 1, 0.5, 0.5, 0.25, 0.25])),
        Scenario("cubes-large-C", "control", "(x, x^3), all data, C = 1: harmless extras", _toy(n_noise=0, extra="cube")),
        Scenario("cubes-small-C", "biased", "(x, x^3) + 4 noise, C = 1e-3, 1000 per class (the demo)",
                 _toy(extra="cube"), C=1e-3, train_per_class=1000),
        Scenario("triples-small-C", "biased", "(x, x_k x_k+1 x_k+2), C = 1e-3, 1000 per class",
                 _toy(n_noise=0, extra="triple"), C=1e-3, train_per_class=1000),
        Scenario("small-N", "biased", "10 energy + 4 noise, 150 per class, C = 1", _toy(), train_per_class=150),
        Scenario("cubes-small-N", "biased", "(x, x^3), 250 per class, C = 1", _toy(n_noise=0, extra="cube"),
                 train_per_class=250),
    ]
    return out


def _score_audit(res) -> tuple[float | None, str]:
    from .planted import score

    slope = None if res.truth is None else float(res.truth.slope)
    return slope, score(slope, res.verdict.level)


def run_calibration(
    full: bool = False,
    seeds: tuple[int, ...] | None = None,
    planted: bool = True,
    progress: Callable[[str], None] | None = None,
    toy: bool = True,
    on_run: Callable[[CalibrationRun], None] | None = None,
    dump: str | None = None,
) -> CalibrationResult:
    """Measure the verdict's false-alarm and miss rates (docs/validation.md).

    Parameters
    ----------
    full : bool
        Every scenario at every seed of :data:`CAL_SEEDS` and two planted-barrier runs on the
        real structure-function matrix at each seed (50 audits); else the fast part: each
        scenario at the first seed and one planted run on 36 frames (9 audits).
    seeds : tuple of int, optional
        Override the seeds.
    planted : bool
        Include the planted-barrier runs on the real matrix.
    progress : callable, optional
        Called with "scenario seed" before each audit.
    toy : bool
        Include the toy scenarios.
    on_run : callable, optional
        Called with each :class:`CalibrationRun` as soon as it is scored (to keep partial
        results of a long run).
    dump : str, optional
        Trajectory of the real matrix (default :func:`default_dump`).

    Returns
    -------
    CalibrationResult
    """
    import time

    from .audit import AuditOptions, audit
    from .selection import SelectionOptions

    seeds = tuple(seeds) if seeds is not None else (CAL_SEEDS if full else CAL_SEEDS[:1])
    runs: list[CalibrationRun] = []
    for sc in scenarios() if toy else []:
        for seed in seeds:
            if progress:
                progress(f"{sc.name} {seed}")
            t0 = time.perf_counter()
            ds = sc.make(seed)
            res = audit(ds, AuditOptions(C=sc.C, train_per_class=sc.train_per_class, seed=seed),
                        selection_options=SelectionOptions(seed=seed))
            slope, outcome = _score_audit(res)
            runs.append(CalibrationRun(sc.name, sc.kind, seed, slope, res.verdict.level, res.verdict.remedy,
                                       res.verdict.scale_deficit, {e.diagnostic: e.answer for e in res.verdict.evidence},
                                       outcome, time.perf_counter() - t0))
            if on_run:
                on_run(runs[-1])
    if planted:
        from .planted import PlantedOptions, planted_audit

        matrix = structure_matrix(dump, max_frames=111 if full else 36)
        variants = (("planted-real", None, 1), ("planted-real-large", None, 6)) if full else (("planted-real", None, 1),)
        for seed in seeds:
            for name, rates, copies in variants:
                if progress:
                    progress(f"{name} {seed}")
                t0 = time.perf_counter()
                ds = real_matrix_dataset(matrix, rates=rates, copies=copies)
                pr = planted_audit(ds, AuditOptions(seed=seed), SelectionOptions(seed=seed), seed=seed,
                                   planted_options=PlantedOptions())
                runs.append(CalibrationRun(name, "planted", seed, pr.truth_slope, pr.verdict_level, pr.verdict_remedy,
                                           pr.scale_deficit, dict(pr.answers), pr.outcome, time.perf_counter() - t0,
                                           pr.planted_kept))
                if on_run:
                    on_run(runs[-1])
    n_right = sum(r.outcome in ("pass", "false-alarm") for r in runs)
    n_biased = sum(r.outcome in ("hit", "miss") for r in runs)
    return CalibrationResult(
        runs=runs, false_alarms=sum(r.outcome == "false-alarm" for r in runs), n_right=n_right,
        misses=sum(r.outcome == "miss" for r in runs), n_biased=n_biased,
        n_grey=sum(r.outcome == "grey" for r in runs), full=bool(full),
    )
