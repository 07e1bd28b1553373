"""Feature-set diagnostics on the toy model (METHOD sections 2 and 4, "Known limits")."""

import json

import numpy as np
import pytest
from scipy.special import expit

from diag.audit import AuditOptions, audit, make_split
from diag.dataset import Dataset
from diag.selection import (
    SelectionOptions,
    TrainSet,
    _fold_run,
    choose_peak,
    coarsen_transform,
    coarsening_candidates,
    compare_feature_sets,
    eliminate,
    elimination_order,
    family_candidates,
    grid_lines,
    grouped_folds,
    rfe,
    run_selection,
)
from toymodel import ToyModel

# moderate N and small C: the regime where correlated extras bias the barriers (METHOD 4)
EXTRAS_OPTIONS = AuditOptions(C=1e-3, train_per_class=1000, seed=0)


def _check_rfe_finds_energy_coordinates(ds, extras):
    energy = [f"x{k}" for k in range(1, 11)]
    r = rfe(ds, EXTRAS_OPTIONS, SelectionOptions(n_folds=3))
    # the extras go first, then the energy coordinates
    assert set(r.order[:10]) == set(extras)
    p = r.peak
    assert p.n_kept == 10 and p.argmax == 10
    assert r.recommended == energy
    assert all(r.stability[n] == 1.0 for n in energy)
    assert all(r.stability[n] == 0.0 for n in extras)
    v = {s.n_kept: s.evaluation.variance for s in r.steps}
    acc = {s.n_kept: s.evaluation.accuracy for s in r.steps}
    assert v[10] > v[11] and v[10] > 3 * v[9]
    assert v[10] > 1.2 * v[20]  # removing the extras restores barrier variance ...
    assert abs(acc[10] - acc[20]) < 0.01  # ... while the accuracy barely moves
    assert p.drop_smaller > 0.5 and p.runs_drop_smaller == p.n_runs == 4
    assert p.gain_vs_full > 0.2 and abs(p.accuracy_gain_vs_full) < 0.01
    assert p.run_agreement == 1.0
    # the truth agrees: the recommended set gives the least biased barriers
    slope = {s.n_kept: s.evaluation.truth_slope for s in r.steps}
    assert slope[10] == max(slope.values()) and slope[10] > 0.9
    return r


def test_rfe_removes_cubes_first_and_peaks_at_the_energy_coordinates(toy_cube):
    cubes = [f"x{k}^3" for k in range(1, 11)]
    r = _check_rfe_finds_energy_coordinates(toy_cube, cubes)
    assert r.peak.sharp  # the cubes cost so much that no other size is within the CI


def test_rfe_removes_triple_products_first_and_peaks_at_the_energy_coordinates():
    model = ToyModel(n_noise=0, extra="triple")
    ds = model.to_dataset(per_temperature=50_000, seed=21)
    extras = [n for n in model.feature_names if "*" in n]
    _check_rfe_finds_energy_coordinates(ds, extras)


def test_warm_started_elimination_matches_cold_refits(toy_cube):
    ds = toy_cube.select_features([f"x{k}" for k in range(1, 7)] + [f"x{k}^3" for k in range(1, 7)])
    split = make_split(ds, AuditOptions(C=1e-2, train_per_class=500, seed=3))
    tr = TrainSet.from_rows(ds.features[split.train], ds.label[split.train])
    warm = eliminate(tr.Z, tr.y, 1e-2, tol=1e-10)
    cold = eliminate(tr.Z, tr.y, 1e-2, tol=1e-10, warm_start=False)
    assert elimination_order(warm) == elimination_order(cold)
    for a, b in zip(warm, cold):
        np.testing.assert_array_equal(a.kept, b.kept)
        np.testing.assert_allclose(a.coef, b.coef, atol=1e-4)
    # several at a time with n_remove: sizes and bookkeeping
    multi = eliminate(tr.Z, tr.y, 1e-2, tol=1e-8, n_remove=lambda n: 3 if n > 6 else 1, stop_at=2)
    assert [s.kept.size for s in multi] == [12, 9, 6, 5, 4, 3, 2]
    assert all(s.removed.size == 3 for s in multi[1:3])
    assert sorted(elimination_order(multi)) == list(range(12))


def test_fold_runs_removing_several_features_far_from_the_peak_give_the_same_sets_near_it():
    """fold_coarse_fraction > 0 must not change the sets (or criterion) in the window."""
    ds = ToyModel(n_noise=20, extra="cube").to_dataset(per_temperature=20_000, seed=22)  # 40 features
    split = make_split(ds, EXTRAS_OPTIONS)
    fs = grouped_folds(ds, split, 3, seed=0)[0]
    runs = [
        _fold_run(ds, fs, EXTRAS_OPTIONS, SelectionOptions(fold_coarse_fraction=f), 1, 0, 8, 12, "variance")
        for f in (0.0, 0.25)
    ]
    # 40 -> 30 -> 24 in two steps, then one at a time: 17 fits instead of 33
    assert len(runs[1].order) == len(runs[0].order) == 40 - 8
    assert runs[0].kept == runs[1].kept
    for k in range(8, 13):
        assert runs[0].values[k] == pytest.approx(runs[1].values[k], rel=2e-3)
    assert max(runs[1].values, key=runs[1].values.get) == 10


def test_grouped_folds_keep_groups_whole(toy_default):
    split = make_split(toy_default, AuditOptions(seed=0))
    folds = grouped_folds(toy_default, split, 3, seed=5)
    at1 = toy_default.temperature == 1.0
    held = [np.unique(toy_default.group[np.intersect1d(f.test, np.flatnonzero(at1))]) for f in folds]
    assert sum(h.size for h in held) == np.unique(toy_default.group[at1]).size  # a partition of the groups
    for f in folds:
        assert not np.intersect1d(toy_default.group[f.train], toy_default.group[f.test]).size
        assert toy_default.label[f.train].sum() * 2 == f.train.size  # balanced


# ----------------------------------------------------------------------------- the peak rule


def test_peak_rule_smallest_size_within_tolerance_of_the_run_averaged_maximum():
    sizes = [1, 2, 3, 4, 5, 6]
    ci = np.array([[0, 1], [1, 3], [6, 12], [8, 12], [8, 12], [8, 12]], float)
    # 4, 5 and 6 differ by < 1 %: the smallest of them is recommended; 3 is 10 % lower,
    # inside the (marginal) CI of the peak, but not recommended
    V = np.array([[0.5, 2.0, 9.0, 9.95, 10.0, 9.97]])
    p = choose_peak(sizes, V, ci, accuracy=np.array([0.6, 0.7, 0.80, 0.81, 0.81, 0.81]), tol=0.01)
    assert p.n_kept == 4 and p.argmax == 5
    assert p.within_ci == [3, 4, 5, 6] and not p.sharp
    assert p.drop_smaller == pytest.approx((9.95 - 9.0) / 9.95)
    assert p.accuracy_drop_smaller == pytest.approx(0.01)
    assert p.gain_vs_full == pytest.approx(9.95 / 9.97 - 1)
    # tol = 0 is the argmax
    assert choose_peak(sizes, V, ci, tol=0.0).n_kept == 5


def test_peak_rule_averages_runs_over_the_sizes_every_run_evaluated():
    sizes = [8, 9, 10, 11, 12, 13]
    nan = np.nan
    V = np.array(
        [
            [1.0, 2.0, 9.0, 9.3, 8.0, 7.0],  # audit split alone would pick 11
            [nan, 2.0, 9.5, 8.5, 7.5, nan],
            [nan, 2.1, 9.8, 8.7, 7.9, nan],
        ]
    )
    ci = np.tile([8.0, 10.0], (6, 1))
    p = choose_peak(sizes, V, ci, tol=0.0)
    assert p.window == (9, 12)
    assert p.n_kept == 10 and p.n_runs == 3
    assert p.run_agreement == pytest.approx(2 / 3)
    assert p.runs_drop_smaller == 3 and p.runs_drop_larger == 2
    assert not p.at_edge
    # a peak on the window's edge (not the curve's) is flagged
    V2 = V.copy()
    V2[:, 1] = [9.9, 9.9, 9.9]
    assert choose_peak(sizes, V2, ci, tol=0.0).at_edge


def test_peak_rule_ignores_invalid_sizes_and_refuses_an_empty_curve():
    from diag.errors import InsufficientDataError

    p = choose_peak([1, 2, 3], np.array([[np.nan, 5.0, np.nan]]), np.full((3, 2), np.nan))
    assert p.n_kept == 2 and p.ci is None
    with pytest.raises(InsufficientDataError):
        choose_peak([1, 2], np.array([[np.nan, np.nan]]), np.full((2, 2), np.nan))


# ----------------------------------------------------------------------------- comparisons


def test_compare_feature_sets_identical_candidates_give_identical_rows_equal_to_the_audit(toy_cube):
    ds = toy_cube.select_features([f"x{k}" for k in range(1, 11)] + ["x1^3", "x2^3"])
    cands = {"list": list(ds.feature_names), "same list": list(ds.feature_names), "identity": lambda d: d}
    cmp = compare_feature_sets(ds, cands, EXTRAS_OPTIONS, exact=True)
    a, b, c = (cmp.row(n).evaluation.to_dict() for n in cands)
    assert a == b == c
    assert [r.rank for r in cmp.rows] == [1, 2, 3] and all(r.within_ci_of_best for r in cmp.rows)
    ref = audit(ds, EXTRAS_OPTIONS)  # exact=True is the audit's own pipeline
    assert a["variance"] == pytest.approx(ref.criterion.variance, rel=1e-5)
    assert a["logp_variance"] == pytest.approx(ref.criterion.logp_variance, rel=1e-5)
    assert a["accuracy"] == pytest.approx(ref.classifier.accuracy, abs=1e-12)
    assert a["truth_slope"] == pytest.approx(ref.truth.slope, rel=1e-5)
    df = cmp.to_frame()
    assert list(df["name"]) == [r.name for r in cmp.rows]


def block_toy(per_temperature=20_000, seed=0, n_r=24, block=3, noise=1.0, species=("A", "B")):
    """Fine-grid 'radial' features whose barrier depends on coarse-grained sums.

    Per species, ``n_r`` grid functions on r = 0.1, 0.2, ...; consecutive blocks of
    ``block`` functions share a latent ``u_b ~ N(0,1)`` plus independent noise, and the
    barrier is a sum over blocks of ``a_b`` times the block sum, ``a_b`` alternating in
    sign (Var(E) = 10). Summing exactly ``block`` adjacent functions is the right basis:
    the fine grid needs ``block`` times more weights (noisier at finite N), and any
    misaligned merge mixes blocks of opposite sign.
    """
    temps = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
    B = (n_r // block) * len(species)
    a = np.array([(-1.0) ** b for b in range(B)]) * np.sqrt(10.0 / (B * (block**2 + block * noise**2)))
    X, E, R, T, G = [], [], [], [], []
    for i, (t, ss) in enumerate(zip(temps, np.random.SeedSequence(seed).spawn(len(temps)))):
        rng = np.random.default_rng(ss)
        u = rng.standard_normal((per_temperature, B))
        x = np.repeat(u, block, axis=1) + noise * rng.standard_normal((per_temperature, B * block))
        e = x.reshape(per_temperature, B, block).sum(-1) @ a
        X.append(x.astype(np.float32))
        E.append(e)
        R.append((rng.random(per_temperature) < expit(-e / t)).astype(np.int8))
        T.append(np.full(per_temperature, t))
        G.append(i * 10**6 + np.arange(per_temperature) // 500)
    names, params = [], []
    for sp in species:
        for j in range(n_r):
            names.append(f"G_{sp}(r={0.1 * (j + 1):.1f})")
            params.append({"r": round(0.1 * (j + 1), 10), "species": sp, "width": 0.1})
    return Dataset(np.vstack(X), np.concatenate(R), np.concatenate(T), np.concatenate(G), names,
                   ["radial"] * len(names), params, energy=np.concatenate(E), conventions={"train_temperature": 1.0})


def test_coarsening_criterion_picks_the_basis_of_the_barrier():
    ds = block_toy()
    cands = coarsening_candidates(ds, 4)
    assert list(cands) == ["grid x1", "grid x2", "grid x3", "grid x4"]
    cmp = compare_feature_sets(ds, cands, AuditOptions(C=1.0, train_per_class=300, seed=0))
    assert cmp.best.name == "grid x3" and cmp.best.n_features == 16
    ev = {r.name: r.evaluation for r in cmp.rows}
    assert ev["grid x3"].variance > 1.5 * ev["grid x1"].variance  # fewer weights, less finite-N loss
    assert not cmp.row("grid x1").within_ci_of_best
    # the truth agrees with the criterion's ranking
    slopes = [r.evaluation.truth_slope or 0.0 for r in cmp.rows]
    assert slopes[0] == max(slopes)


def test_coarsen_transform_sums_adjacent_grid_functions_per_line():
    rng = np.random.default_rng(0)
    names, fams, params = [], [], []
    for sp in ("A", "B"):
        for r in (0.3, 0.1, 0.2, 0.5, 0.4):  # unsorted on purpose
            names.append(f"G_{sp}({r})"); fams.append("radial"); params.append({"r": r, "species": sp})
    for pair in ("AA", "AB"):
        for xi in (1.0, 2.0, 3.0):
            names.append(f"Psi_{pair}({xi})"); fams.append("angular")
            params.append({"xi": xi, "lambda": 1, "zeta": 2, "pair": pair})
    names.append("other"); fams.append("misc"); params.append({})
    n = 50
    ds = Dataset(rng.standard_normal((n, len(names))), np.arange(n) % 2, np.ones(n), np.arange(n) // 5, names, fams, params)
    lines = grid_lines(ds)
    assert len(lines) == 4
    ra = next(ln for ln in lines if ln.family == "radial" and ("species", "A") in ln.key)
    assert ra.values == [0.1, 0.2, 0.3, 0.4, 0.5]
    out = coarsen_transform(2)(ds)
    # radial: 5 points -> 3 (two pairs and the last alone); angular: 3 -> 2; 'other' kept
    assert out.n_features == 2 * 3 + 2 * 2 + 1
    j = out.feature_names.index("G_A(0.1)+G_A(0.2)")
    expect = ds.features[:, names.index("G_A(0.1)")].astype(np.float64) + ds.features[:, names.index("G_A(0.2)")]
    np.testing.assert_allclose(out.features[:, j], expect, rtol=1e-6)
    assert out.feature_params[j]["r"] == pytest.approx(0.15) and out.feature_params[j]["species"] == "A"
    assert out.feature_params[j]["r_range"] == [0.1, 0.2]
    assert "G_A(0.5)" in out.feature_names and "other" in out.feature_names
    np.testing.assert_array_equal(coarsen_transform(1)(ds).features, ds.features)
    out3 = coarsen_transform(3)(ds)
    assert "G_B(0.1)+..+G_B(0.3)" in out3.feature_names and "Psi_AA(1.0)+..+Psi_AA(3.0)" in out3.feature_names
    fam = family_candidates(ds)
    assert {"all features", "radial only", "angular only", "misc only", "radial species=A only",
            "angular pair=AB only"} <= set(fam)
    assert len(fam["radial species=B only"]) == 5


# ----------------------------------------------------------------------------- everything


def test_run_selection_on_the_default_toy_is_fast_complete_and_serialisable(toy_default):
    import time

    from rich.console import Console

    from diag.report.selection import selection_renderables

    calls = []
    t0 = time.perf_counter()
    res = run_selection(toy_default, AuditOptions(seed=0), SelectionOptions(), progress=lambda *a: calls.append(a))
    elapsed = time.perf_counter() - t0
    assert elapsed < 60  # ~10 s on 2 idle cores; generous for shared machines
    assert res.rfe.recommended == ToyModel().energy_features
    assert res.rfe.peak.n_kept == 10 and res.rfe.peak.drop_smaller > 0.5
    assert not res.learning_curve.still_rising and not res.c_sweep.flag
    doc = res.to_dict()
    text = json.dumps(doc, allow_nan=False)
    assert json.loads(text) == doc
    sel = doc["selection"]
    assert {"rfe", "recommended", "peak", "stability", "coarsening", "families"} <= set(sel)
    assert {"learning_curve", "c_sweep", "recommendations", "warnings"} <= set(doc)
    assert [r["n_kept"] for r in sel["rfe"]] == list(range(14, 0, -1))
    assert {"n_kept", "removed", "variance", "variance_ci", "logp_variance", "accuracy"} <= set(sel["rfe"][0])
    assert sel["rfe"][0]["removed"] == [] and len(sel["rfe"][1]["removed"]) == 1
    assert sel["coarsening"] == [] and res.notes  # no grid features in the toy: said so
    stages = {c[0] for c in calls}
    assert {"rfe", "rfe folds", "final", "families", "learning curve", "C sweep"} <= stages
    assert all(0 < d <= t for _, d, t in calls)
    console = Console(width=80, record=True, color_system=None)
    for r in selection_renderables(res):
        console.print(r)
    out = console.export_text()
    assert max(len(line) for line in out.splitlines()) <= 80
    for title in ("Recursive feature elimination", "Recommended feature set", "Learning curve", "C sweep"):
        assert title in out


def test_run_selection_is_deterministic_and_respects_switches():
    ds = ToyModel(n_energy=6, n_noise=2).to_dataset(per_temperature=8_000, seed=4)
    sel = SelectionOptions(n_folds=2, lc_sizes=(200, 400, 800), lc_repeats=2, c_grid=(0.01, 1.0), families=False)
    a = run_selection(ds, AuditOptions(seed=2), sel).to_dict()
    b = run_selection(ds, AuditOptions(seed=2), sel).to_dict()
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    assert [p["C"] for p in a["c_sweep"]["points"]] == [0.01, 1.0]
    assert a["learning_curve"]["sizes"] == [200, 400, 800]
    off = run_selection(ds, AuditOptions(seed=2), SelectionOptions(
        rfe=False, coarsen=False, families=False, learning_curve=False, c_sweep=False)).to_dict()
    assert off["selection"]["rfe"] == [] and off["selection"]["peak"] is None
    assert off["learning_curve"] is None and off["c_sweep"] is None and off["recommendations"] == []


# ----------------------------------------------------------------------------- nested selection


def test_nested_split_keeps_outer_groups_away_from_every_choice(toy_default):
    from diag.nested import nested_split

    opts = AuditOptions(seed=0)
    split = make_split(toy_default, opts)
    nest = nested_split(toy_default, split, 0.5, seed=3)
    g = toy_default.group
    inner_g, outer_g = set(np.unique(g[nest.inner.test])), set(np.unique(g[nest.outer.test]))
    assert not inner_g & outer_g  # disjoint groups
    assert sorted(np.concatenate([nest.inner.test, nest.outer.test]).tolist()) == sorted(split.test.tolist())
    assert set(outer_g) == set(nest.outer_groups.tolist())
    assert not set(np.unique(g[split.train])) & outer_g  # training never touches the outer groups
    # each temperature's held-out groups are shared about half and half
    for t in toy_default.temperatures:
        n_in = np.unique(g[nest.inner.test][toy_default.temperature[nest.inner.test] == t]).size
        n_out = np.unique(g[nest.outer.test][toy_default.temperature[nest.outer.test] == t]).size
        assert abs(n_in - n_out) <= 1 and n_in > 0 and n_out > 0
    # the RFE folds of a nested run never see an outer sample
    excl = nest.excluded(toy_default)
    for f in grouped_folds(toy_default, nest.inner, 3, seed=1, exclude=excl):
        assert not excl[f.train].any() and not excl[f.test].any()
    # too few groups to share: a typed error
    from diag.errors import InsufficientDataError

    tiny = toy_default.subset(np.isin(g, np.unique(g)[::50]))
    with pytest.raises(InsufficientDataError):
        nested_split(tiny, make_split(tiny, AuditOptions(seed=0, test_fraction=0.5)), 0.5)


def test_three_way_answers_and_data_factor():
    from diag.nested import data_factor, three_way

    assert three_way(0.05, 0.2, 0.03) == "better"
    assert three_way(-0.02, 0.02, 0.03) == "no-better"
    assert three_way(0.0, 0.1, 0.03) == "cannot-tell"
    # CI half-width 0.05 around 0.08, 0.05 from the margin 0.03: one more times the data decides
    assert data_factor(0.08, 0.03 + 1e-12, 0.13, 0.03) == pytest.approx(1.0, rel=1e-6)
    # half-width 0.1, distance 0.05: four times the data (CI shrinks as 1/sqrt(n))
    assert data_factor(0.08, -0.02, 0.18, 0.03) == pytest.approx(4.0)
    assert data_factor(0.03, 0.0, 0.06, 0.03) == float("inf")


def test_untouched_comparison_of_identical_candidates_is_exactly_zero_and_paired(toy_cube):
    """The same feature set twice: gain 0 with a degenerate CI (perfectly paired draws)."""
    from diag.nested import compare_untouched, nested_split

    ds = toy_cube.select_features([f"x{k}" for k in range(1, 11)] + ["x1^3", "x2^3"])
    nest = nested_split(ds, make_split(ds, EXTRAS_OPTIONS), 0.5, seed=0)
    names = list(ds.feature_names)
    cmp = compare_untouched(ds, nest.outer, ("a", names, 1e-3), ("b", names[::-1], 1e-3), EXTRAS_OPTIONS,
                            diagnostic="rfe", margin=0.03)
    assert cmp.scale_gain == pytest.approx(0.0, abs=1e-6)
    assert cmp.scale_gain_ci[0] == pytest.approx(0.0, abs=1e-6) and cmp.scale_gain_ci[1] == pytest.approx(0.0, abs=1e-6)
    assert cmp.answer == "no-better"
    # the baseline's numbers are the audit's on the outer groups alone
    assert cmp.baseline_eval.variance == pytest.approx(cmp.candidate_eval.variance, rel=1e-5)
    assert cmp.n_outer == nest.outer.test.size


def test_untouched_comparison_of_the_cubes_matches_the_truth(toy_cube):
    """Energy coordinates vs (x, x^3) at small C: 'better', and the gain is what the truth says."""
    from diag.nested import compare_untouched, nested_split

    nest = nested_split(toy_cube, make_split(toy_cube, EXTRAS_OPTIONS), 0.5, seed=0)
    energy = [f"x{k}" for k in range(1, 11)]
    cmp = compare_untouched(toy_cube, nest.outer, ("all", None, 1e-3), ("energy", energy, 1e-3), EXTRAS_OPTIONS,
                            diagnostic="rfe", margin=0.03)
    assert cmp.answer == "better" and cmp.scale_gain_ci[0] > 0.1
    lo, hi = cmp.scale_gain_ci
    assert lo < cmp.scale_gain < hi
    # the paired CI is much narrower than the two marginal CIs combined
    va, vb = cmp.baseline_eval, cmp.candidate_eval
    marginal = np.sqrt(vb.variance_ci[1] / va.variance_ci[0]) - np.sqrt(vb.variance_ci[0] / va.variance_ci[1])
    assert hi - lo < 0.8 * marginal
    # the truth: the full set's barriers are too narrow by about the measured deficit
    true_deficit = 1 - va.truth_slope / vb.truth_slope
    assert cmp.baseline_deficit == pytest.approx(true_deficit, abs=0.06)


def test_few_untouched_groups_decide_nothing():
    """A cluster-robust CI from a handful of groups is not trusted: no 'better' or 'no-better'."""
    import numpy as np

    from diag.audit import AuditOptions
    from diag.nested import MIN_OUTER_GROUPS, compare_untouched, nested_split, three_way
    from toymodel import ToyModel

    # three temperatures, blocks of 5000 samples: 4 groups per temperature, 1 or 2 of them untouched
    ds = ToyModel(n_noise=0, extra="cube").to_dataset(temperatures=[0.6, 0.8, 1.0], per_temperature=20000, seed=5,
                                                      block_size=5000)
    opts = AuditOptions(C=1e-3, train_per_class=1000, seed=0)
    from diag.audit import make_split

    split = make_split(ds, opts)
    ns = nested_split(ds, split, 0.5, seed=0)
    energy = [f"x{k}" for k in range(1, 11)]
    cmp = compare_untouched(ds, ns.outer, ("all features", None, opts.C), ("energy only", energy, opts.C), opts,
                            diagnostic="families", margin=0.03, seed=0)
    assert cmp.n_outer_groups < MIN_OUTER_GROUPS
    # the CI alone would call the energy coordinates better (the cubes bias the barriers low) ...
    assert three_way(*cmp.scale_gain_ci, cmp.margin) == "better" and cmp.scale_gain > 0.1
    # ... but from so few groups it is not trusted
    assert cmp.answer == "cannot-tell" and cmp.note == "few-outer-groups"
    assert np.isfinite(cmp.scale_gain)
