"""Benchmark: recursive feature elimination, glass-diag beside scikit-learn, in one run.

    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python bench/rfe.py            # everything (~5-8 min)
    python bench/rfe.py --quick                                              # smaller, ~1 min

Data: the toy model with 40 energy coordinates (a_k = sqrt(10/40), Var(E) = 10), 86
pure-noise coordinates and the 40 cubes of the energy coordinates: 166 features, the
"1e5 x 166" scale of a real radial + angular feature set, with the right answer (40)
far below the full set, as with real structure functions.

[1] Same standardised data, n = --sk-n, C = --sk-C, one feature removed per step
    166 -> 1: ``sklearn.feature_selection.RFE(SVC(kernel="linear"))`` (libsvm: the same
    objective as ours, true hinge with an unregularised intercept; sklearn clones it at
    every step, so no warm start) against ``diag.selection.eliminate`` (warm-started
    ``diag.svm.fit_hinge``). Times, ratio, and how far the elimination orders agree.
    ``LinearSVC(loss="hinge", dual=True)`` is not used as the reference: liblinear
    penalises the intercept, a different objective, so its order may differ for that
    reason alone.
[2] Ours on the full problem, n = --n training samples (balanced, T = 1) x 166:
    elimination only, then ``diag.selection.rfe`` with its cheap per-step evaluation
    (no folds, and the defaults with 3 grouped folds).
[3] Fold runs that remove several features per step far from the peak against one
    per step, on the same fold: the sets (and criterion) in the peak window must agree.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402


def _load() -> str:
    try:
        return "load average %.2f %.2f %.2f" % os.getloadavg()
    except OSError:  # pragma: no cover
        return "load average n/a"


def _order_agreement(a: list[int], b: list[int]) -> dict:
    """How far two elimination orders (first eliminated first) agree."""
    d = len(a)
    first = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), d)
    same_sets = sum(set(a[i:]) == set(b[i:]) for i in range(d))  # surviving sets at sizes d-i
    pa = np.empty(d, int)
    pb = np.empty(d, int)
    pa[a] = np.arange(d)
    pb[b] = np.arange(d)
    rho = float(np.corrcoef(pa, pb)[0, 1])
    tail = next((k for k in range(d, 0, -1) if a[d - k:] == b[d - k:]), 0)
    return {"identical": a == b, "first_difference": first, "same_sets": same_sets, "spearman": rho,
            "same_last": tail}


def _print_agreement(ag: dict, d: int) -> None:
    print(f"    elimination orders identical: {'yes' if ag['identical'] else 'no'}")
    if not ag["identical"]:
        print(f"      first difference at elimination step {ag['first_difference'] + 1} of {d}")
        print(f"      identical surviving sets at {ag['same_sets']} of {d} sizes")
        print(f"      the last {ag['same_last']} features (the top of the ranking) in identical order")
        print(f"      Spearman correlation of the elimination steps: {ag['spearman']:.4f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000, help="training samples of the full problem [2]")
    ap.add_argument("--C", type=float, default=1.0, help="C of the full problem [2] (audit default 1)")
    ap.add_argument("--sk-n", type=int, default=4000, help="training samples of the comparison [1]")
    ap.add_argument("--sk-C", type=float, default=0.01, help="C of the comparison [1]")
    ap.add_argument("--tol", type=float, default=None, help="our refit tolerance (default SelectionOptions.rfe_tol)")
    ap.add_argument("--quick", action="store_true", help="n = 20000, sk-n = 2000: a fast smoke run")
    ap.add_argument("--skip", default="", help="comma list of parts to skip: 1,2,3")
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.sk_n = 20_000, 2000
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}

    from sklearn import __version__ as skv
    from sklearn.feature_selection import RFE
    from sklearn.svm import SVC

    from diag.audit import AuditOptions, make_split
    from diag.selection import SelectionOptions, TrainSet, _fold_run, eliminate, elimination_order, grouped_folds, rfe
    from diag.svm import standardize
    from toymodel import ToyModel

    tol = args.tol if args.tol is not None else SelectionOptions().rfe_tol
    n_e, n_noise = 40, 86
    model = ToyModel(n_energy=n_e, n_noise=n_noise, extra="cube", coef=float(np.sqrt(10 / n_e)))
    d = len(model.feature_names)
    print(f"glass-diag bench/rfe.py: python {platform.python_version()}, numpy {np.__version__}, scikit-learn {skv}")
    print(f"  {os.cpu_count()} cores (shared), OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}, {_load()}")
    print(f"  data: toy model, {n_e} energy coordinates + {n_noise} noise coordinates + {n_e} cubes = {d} features, "
          f"T_train = 1")
    print()

    if "1" not in skip:
        s = model.sample(args.sk_n, 1.0, np.random.default_rng(1))
        Z, _, _ = standardize(s.X, dtype=np.float64)
        y = s.label
        print(f"[1] same data: n = {args.sk_n} ({int(y.sum())} R=1), {d} standardised features, C = {args.sk_C:g}, "
              f"one feature per step {d} -> 1")
        t = time.perf_counter()
        sk = RFE(SVC(kernel="linear", C=args.sk_C, tol=1e-5), n_features_to_select=1, step=1).fit(Z, y)
        t_sk = time.perf_counter() - t
        sk_order = [int(j) for j in np.argsort(-sk.ranking_, kind="stable")]
        print(f"    sklearn RFE(SVC(kernel='linear', tol=1e-5)), cold refits: {t_sk:8.2f} s")
        res = {}
        for label, tl in (("default", tol), ("tight", 1e-9)):
            t = time.perf_counter()
            path = eliminate(Z, y, args.sk_C, tol=tl)
            res[label] = (time.perf_counter() - t, elimination_order(path), sum(p.n_iter for p in path))
            print(f"    glass-diag eliminate, warm fit_hinge tol={tl:g}:       {res[label][0]:8.2f} s  "
                  f"(ratio {t_sk / res[label][0]:.0f}x, {res[label][2]} solver steps)")
        print("    sklearn vs ours (tol 1e-9):")
        _print_agreement(_order_agreement(sk_order, res["tight"][1]), d)
        print(f"    ours tol {tol:g} vs ours tol 1e-9:")
        _print_agreement(_order_agreement(res["default"][1], res["tight"][1]), d)
        print()

    ds = None
    if not ({"2", "3"} <= skip):
        t = time.perf_counter()
        per_t = 2 * args.n  # half of the groups at T = 1 are held out
        ds = model.to_dataset(per_temperature=per_t, seed=7)
        opts = AuditOptions(C=args.C, seed=0)
        split = make_split(ds, opts)
        print(f"    (drew {ds.n_samples:,} x {d} toy samples in {time.perf_counter() - t:.1f} s)")
    if "2" not in skip:
        tr = TrainSet.from_rows(ds.features[split.train], ds.label[split.train])
        n_tr = tr.Z.shape[0]
        print(f"[2] full problem: n = {n_tr:,} training samples ({split.n_per_class:,} per class) x {d}, C = {args.C:g}")
        t = time.perf_counter()
        path = eliminate(tr.Z, tr.y, args.C, tol=tol)
        t_el = time.perf_counter() - t
        n_bad = sum(not p.converged for p in path)
        print(f"    elimination {d} -> 1 (true hinge, warm fit_hinge tol={tol:g}): {t_el:7.1f} s, {len(path)} fits, "
              f"{sum(p.n_iter for p in path)} solver steps, {n_bad} not converged")
        del tr
        for label, sel in (("rfe(), per-step evaluation, no folds", SelectionOptions(n_folds=0)),
                           ("rfe(), defaults (3 grouped folds)", SelectionOptions())):
            t = time.perf_counter()
            r = rfe(ds, opts, sel, split=split)
            print(f"    {label:40s} {time.perf_counter() - t:7.1f} s  (k* = {r.peak.n_kept}, "
                  f"window {r.peak.window[0]}-{r.peak.window[1]})")
        print(f"      evaluation per step: held-out logistic fits on <= {SelectionOptions().eval_max_per_temperature:,} "
              f"samples per temperature, {SelectionOptions().eval_n_draws} draws")
        print()
    if "3" not in skip:
        sel = SelectionOptions()
        r_k = rfe(ds, opts, SelectionOptions(n_folds=0), split=split).peak.n_kept if "2" in skip else r.peak.n_kept
        lo_w, hi_w = max(1, r_k - sel.fold_window), min(d, r_k + sel.fold_window)
        fs = grouped_folds(ds, split, sel.n_folds, sel.seed_for(opts))[0]
        print(f"[3] fold 0, window {lo_w}-{hi_w}: several features per step above {2 * hi_w} vs one per step")
        runs = []
        for frac in (0.0, sel.fold_coarse_fraction):
            t = time.perf_counter()
            runs.append(_fold_run(ds, fs, opts, SelectionOptions(fold_coarse_fraction=frac), 1, 0, lo_w, hi_w, "variance"))
            print(f"    fraction {frac:4.2f} per step: {time.perf_counter() - t:6.1f} s")
        same = runs[0].kept == runs[1].kept
        dv = max(abs(runs[0].values[k] - runs[1].values[k]) / abs(runs[0].values[k]) for k in runs[0].values)
        print(f"    identical sets at every size of the window: {'yes' if same else 'NO'}; "
              f"largest relative difference of Var(E_inf): {dv:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
