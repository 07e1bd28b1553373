"""Benchmark: the same jobs on 1 and 2 workers, side by side (diag.parallel).

    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python bench/scale.py            # ~3-4 min
    python bench/scale.py --quick                                              # smaller, ~1.5 min

[1] Feature extraction (``adapters.build.build_dataset``): two generated Kob-Andersen-sized
    trajectories (H5MD, ``--n`` particles, ``--frames`` frames each, the default 166
    structure functions); the tasks are the labelled frames. Throughput in labelled
    particle-frames per second.
[2] An audit sweep (``diag.checks.learning_curve`` and ``diag.checks.c_sweep``) on the
    (x, x^3) toy dataset (24 features) at ``--train-per-class``; the tasks are the
    (size, repeat) points and the C values. Throughput in fits (+ evaluations) per second.
[0] The ceiling: a pure-Python loop, the same on every column; the ratio of the columns is
    the parallelism the machine gives at that moment (shared cores: often less than 2).
[3] What the workers are sent: the audit's shared data scattered from this process
    against every worker reading the dataset file itself (dask), and local processes
    (arrays memory-mapped by joblib).

Columns: ``serial`` (1 worker: this process), ``processes:2`` (two local processes, joblib
loky), ``dask 2x1`` (a ``distributed.LocalCluster`` of 2 worker processes with 1 thread
each, when dask is installed). Pools are warmed up first (their start-up is printed
separately); every parallel result is checked equal to the serial one. On a 2-core
machine the speed-up is capped at 2.
"""

from __future__ import annotations

import os

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import diag.parallel as P  # noqa: E402
from diag.parallel import Scheduler  # noqa: E402


def _warm(_):
    """Imports, and the numba kernels of the structure functions loaded (about 1 s per process)."""
    import adapters.build  # noqa: F401
    import diag.checks  # noqa: F401
    from adapters.structure import StructureConfig, StructureFunctions

    rng = np.random.default_rng(0)
    L = 12.0
    StructureFunctions(StructureConfig.kob_andersen()).compute(
        (L, L, L), rng.uniform(-L / 2, L / 2, (1700, 3)), (rng.random(1700) < 0.2).astype(np.int64),
        query_indices=np.arange(50))
    return os.getpid()


def _read_rows(path, _):
    """A worker reads the dataset from the (shared) filesystem."""
    from diag.dataset import read_dataset

    return read_dataset(path).n_samples


def _shape_of(shared, _):
    return shared.n_samples


def _spin(n):
    """Pure-Python CPU work: what the machine gives each worker right now."""
    s = 0
    for i in range(n):
        s += i * i
    return s


def trajectories(folder: Path, n: int, frames: int) -> list[str]:
    from tests.adapters.writers import make_synthetic, write_h5md

    side = round(n ** (1 / 3))
    paths = []
    for i, T in enumerate((0.45, 0.5)):
        rng = np.random.default_rng(i)
        hops = {int(p): (int(t0), rng.normal(0, 0.6, 3)) for p, t0 in zip(
            rng.choice(side**3, side**3 // 20, replace=False), rng.integers(12, frames - 6, side**3 // 20))}
        syn = make_synthetic(n_side=side, n_frames=frames, hops=hops, noise=0.06, spacing=0.94, drift=None,
                             temperature=T, seed=i)
        p = folder / f"traj{i}.h5"
        write_h5md(p, syn)
        paths.append(str(p))
    return paths


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller problems")
    ap.add_argument("--n", type=int, default=None, help="particles per trajectory (default 2744; quick 1728)")
    ap.add_argument("--frames", type=int, default=None, help="frames per trajectory (default 81; quick 59)")
    ap.add_argument("--train-per-class", type=int, default=None, help="audit sweep training size (default 4000)")
    ap.add_argument("--no-dask", action="store_true", help="skip the dask column")
    args = ap.parse_args()
    n = args.n or (1728 if args.quick else 2744)
    frames = args.frames or (59 if args.quick else 81)
    tpc = args.train_per_class or (2000 if args.quick else 4000)

    from adapters.build import build_dataset
    from diag.audit import AuditOptions, make_split
    from diag.checks import c_sweep, learning_curve
    from diag.selection import HeldOut, SelectionOptions
    from toymodel import ToyModel

    P.START_SECONDS = 0.0  # measure the workers, not the small-job rule
    cols: dict[str, Scheduler] = {"serial": Scheduler.serial()}
    starts: dict[str, float] = {}
    _warm(0)
    local = Scheduler.from_spec("processes:2")
    _, starts["processes:2"] = timed(lambda: local.map(_warm, range(2)))
    cols["processes:2"] = local
    cluster = None
    if not args.no_dask and P.dask_available():
        from distributed import LocalCluster

        t = time.perf_counter()
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                               silence_logs=50)
        dsk = Scheduler.from_spec(cluster.scheduler_address)
        dsk.map(_warm, range(2))
        starts["dask 2x1"] = time.perf_counter() - t
        cols["dask 2x1"] = dsk

    print(f"glass-diag scale benchmark: {P.usable_cores()} usable cores, OPENBLAS_NUM_THREADS="
          f"{os.environ.get('OPENBLAS_NUM_THREADS')}; start-up: "
          + ", ".join(f"{k} {v:.1f} s" for k, v in starts.items()))
    rows: list[tuple[str, dict[str, str]]] = []

    # ------------------------------------------------------------------ [0] the ceiling
    spin_n = 4_000_000
    thr = {}
    for name, s in cols.items():
        _, dt = timed(lambda: s.map(_spin, [spin_n] * 6))
        thr[name] = f"{6 / dt:.2f}"
    rows += [("[0] ceiling: pure-Python loops (other load on the machine shows here)", {}),
             ("    loops / s", thr)]

    # ------------------------------------------------------------------ [1] features
    with tempfile.TemporaryDirectory(prefix="glass-diag-scale-") as tmp:
        paths = trajectories(Path(tmp), n, frames)
        ref = None
        thr, wall, same = {}, {}, {}
        for name, s in cols.items():
            ds, dt = timed(lambda: build_dataset(paths, scheduler=s))
            n_frames = len(set(ds.group.tolist()))
            thr[name] = f"{ds.n_samples / dt:,.0f}"
            wall[name] = f"{dt:.1f}"
            if ref is None:
                ref = ds
                same[name] = "-"
            else:
                rel = np.max(np.abs(ds.features - ref.features) / np.maximum(np.abs(ref.features), 1e-6))
                same[name] = "yes" if rel <= 1e-6 and np.array_equal(ds.group, ref.group) else f"NO ({rel:.1e})"
        title = f"[1] features: 2 files x {n} particles x {frames} frames, {n_frames} labelled frames, " \
                f"{ref.n_samples} samples x {ref.n_features}"
        rows += [(title, {}), ("    particle-frames / s", thr), ("    wall s", wall), ("    equal to serial", same)]

        # -------------------------------------------------------------- [2] audit sweep
        ds = ToyModel(extra="cube").to_dataset(per_temperature=50_000, seed=1)
        opts = AuditOptions(C=1e-3, train_per_class=tpc, seed=0).validate()
        sel = SelectionOptions(seed=0)
        split = make_split(ds, opts)
        held = HeldOut(ds, split, opts, sel.eval_n_draws, sel.eval_max_per_temperature, sel.eval_n_boot, 0)
        ref = None
        thr, wall, same = {}, {}, {}
        for name, s in cols.items():
            def sweep():
                lc = learning_curve(ds, opts, sel, split=split, heldout=held, scheduler=s)
                cs = c_sweep(ds, opts, sel, split=split, heldout=held, scheduler=s)
                return lc, cs

            (lc, cs), dt = timed(sweep)
            n_fits = len(lc.points) + len(cs.points)
            doc = json.dumps([lc.to_dict(), cs.to_dict()], sort_keys=True)
            thr[name] = f"{n_fits / dt:.2f}"
            wall[name] = f"{dt:.1f}"
            same[name] = "-" if ref is None else ("yes (JSON)" if doc == ref else "NO")
            ref = ref or doc
        rows += [(f"[2] learning curve + C sweep: toy 300k x 24, {tpc} per class, {n_fits} fits", {}),
                 ("    fits / s", thr), ("    wall s", wall), ("    equal to serial", same)]

        # -------------------------------------------------------------- [3] data to the workers
        path = Path(tmp) / "toy.h5"
        ds.write(path)
        mb = ds.features.nbytes / 2**20
        notes = []
        _, t_mm = timed(lambda: local.map(_shape_of, range(2), shared=ds))
        notes.append(f"    local processes, dataset as arrays ({mb:.0f} MB features, memory-mapped): {t_mm:.2f} s")
        _, t_rd = timed(lambda: local.map(_read_rows, range(2), shared=str(path)))
        notes.append(f"    local processes, each worker reads the file: {t_rd:.2f} s")
        if "dask 2x1" in cols:
            d = cols["dask 2x1"]
            _, t_sc = timed(lambda: d.map(_shape_of, range(2), shared=ds))
            notes.append(f"    dask, dataset scattered to both workers: {t_sc:.2f} s")
            _, t_rd = timed(lambda: d.map(_read_rows, range(2), shared=str(path)))
            notes.append(f"    dask, each worker reads the file (shared filesystem): {t_rd:.2f} s")

    names = list(cols)
    w0 = max(len(r[0]) for r in rows if r[1]) + 2
    print()
    print(" " * w0 + "".join(f"{c:>14}" for c in names))
    for label, vals in rows:
        if not vals:
            print(label)
            continue
        print(f"{label:<{w0}}" + "".join(f"{vals.get(c, ''):>14}" for c in names))
    print("[3] sending the audit's dataset to 2 workers (one map of 2 trivial tasks)")
    for line in notes:
        print(line)
    for s in cols.values():
        s.close()
    if cluster is not None:
        cluster.close()


if __name__ == "__main__":
    main()
