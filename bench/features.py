"""Benchmark: species-resolved structure functions on a Kob-Andersen frame.

Compares, in one run and on the same frame,
  (a) a straightforward baseline: freud neighbour list + numpy (radial by broadcasting every
      bond against the r grid; angular by looping over particles and their neighbour pairs), and
  (b) glass-diag's :class:`adapters.structure.StructureFunctions`,
and prints particles/s (radial, angular, all), the ratio, peak memory and the largest relative
difference between the two.

Usage::

    python bench/features.py [--n 4000] [--density 1.2] [--threads 2] [--seed 0]

BLAS threads are pinned to 1 (set before numpy is imported) unless the environment sets them.
"""

from __future__ import annotations

import os

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters.structure import StructureConfig, StructureFunctions  # noqa: E402

REL_FLOOR = 1e-6  # |a - b| / max(|b|, REL_FLOOR): values below 1e-6 count as zero


# ----------------------------------------------------------------------------- the frame
def ka_frame(n: int, density: float, seed: int, relax_steps: int):
    """Kob-Andersen 80:20 frame: uniform random positions, then a few steepest-descent steps of a
    harmonic repulsion at the KA diameters (s_AA=1, s_AB=0.8, s_BB=0.88) to remove overlaps."""
    import freud

    rng = np.random.default_rng(seed)
    L = (n / density) ** (1.0 / 3.0)
    n_a = int(round(0.8 * n))
    types = np.zeros(n, dtype=np.int64)
    types[n_a:] = 1
    types = rng.permutation(types)
    pts = rng.uniform(-L / 2, L / 2, size=(n, 3))
    box = freud.box.Box.cube(L)
    sig = np.array([[1.0, 0.8], [0.8, 0.88]])
    for _ in range(relax_steps):
        nl = freud.locality.AABBQuery(box, pts.astype(np.float32)).query(
            pts.astype(np.float32), {"r_max": 1.0, "exclude_ii": True}).toNeighborList()
        i = np.asarray(nl.query_point_indices)
        j = np.asarray(nl.point_indices)
        v = pts[j] - pts[i]
        v -= L * np.rint(v / L)
        d = np.sqrt(np.einsum("ij,ij->i", v, v))
        s = sig[types[i], types[j]]
        ov = np.clip(s - d, 0.0, None)
        f = (ov / np.maximum(d, 1e-9))[:, None] * v  # pushes j away from i
        disp = np.zeros_like(pts)
        np.add.at(disp, j, 0.25 * f)
        step = np.linalg.norm(disp, axis=1, keepdims=True)
        disp *= np.minimum(1.0, 0.1 / np.maximum(step, 1e-12))  # at most 0.1 per step
        pts += disp
        pts -= L * np.floor(pts / L + 0.5)
    return (L, L, L), pts, types


# ----------------------------------------------------------------------------- baseline
class Baseline:
    """Straightforward freud + numpy implementation (same definitions and cutoffs)."""

    def __init__(self, cfg: StructureConfig):
        self.cfg = cfg

    def _nlist(self, lengths, pts, rc):
        import freud

        L = np.asarray(lengths, dtype=np.float64)
        box = freud.box.Box(*L)
        p32 = pts.astype(np.float32)
        nl = freud.locality.AABBQuery(box, p32).query(
            p32, {"r_max": rc * (1 + 1e-4), "exclude_ii": True}).toNeighborList()
        i = np.asarray(nl.query_point_indices, dtype=np.int64)
        j = np.asarray(nl.point_indices, dtype=np.int64)
        v = pts[j] - pts[i]  # float64 geometry from the float64 positions
        v -= L * np.rint(v / L)
        d = np.sqrt(np.einsum("ij,ij->i", v, v))
        keep = d < rc
        return i[keep], j[keep], v[keep], d[keep]

    def radial(self, lengths, pts, types):
        cfg = self.cfg
        n = len(pts)
        r = np.asarray(cfg.radial_r)
        L2 = 2.0 * cfg.radial_width**2
        i, j, _, d = self._nlist(lengths, pts, cfg.radial_cutoff)
        out = np.zeros((n, len(cfg.species) * r.size))
        for s in range(len(cfg.species)):
            sel = types[j] == s
            ii, dd = i[sel], d[sel]
            for a in range(0, dd.size, 20000):  # bonds are sorted by particle: segment sums
                E = np.exp(-((dd[a:a + 20000, None] - r[None, :]) ** 2) / L2)
                seg = ii[a:a + 20000]
                st = np.flatnonzero(np.r_[True, seg[1:] != seg[:-1]])
                out[seg[st], s * r.size:(s + 1) * r.size] += np.add.reduceat(E, st, axis=0)
        return out

    def angular(self, lengths, pts, types):
        cfg = self.cfg
        n = len(pts)
        trip = np.asarray(cfg.angular, dtype=np.float64)
        xi, lam, zeta = trip[:, 0], trip[:, 1], trip[:, 2]
        pairs = [(cfg.species.index(x), cfg.species.index(y)) for x, y in cfg.pairs]
        i, j, v, d = self._nlist(lengths, pts, cfg.angular_cutoff)
        starts = np.searchsorted(i, np.arange(n + 1))
        out = np.zeros((n, len(pairs) * len(trip)))
        for p in range(n):
            a, b = starts[p], starts[p + 1]
            if b - a < 2:
                continue
            vv, dd, tt = v[a:b], d[a:b], types[j[a:b]]
            jj, kk = np.triu_indices(b - a, 1)
            cos = np.einsum("ij,ij->i", vv[jj], vv[kk]) / (dd[jj] * dd[kk])
            rjk2 = np.einsum("ij,ij->i", vv[kk] - vv[jj], vv[kk] - vv[jj])
            s2 = dd[jj] ** 2 + dd[kk] ** 2 + rjk2
            terms = np.exp(-s2[:, None] / xi[None, :] ** 2) * (1.0 + lam[None, :] * cos[:, None]) ** zeta[None, :]
            tj, tk = tt[jj], tt[kk]
            for q, (x, y) in enumerate(pairs):
                m = ((tj == x) & (tk == y)) | ((tj == y) & (tk == x))
                out[p, q * len(trip):(q + 1) * len(trip)] = terms[m].sum(axis=0)
        return out

    def all(self, lengths, pts, types):
        return np.hstack([self.radial(lengths, pts, types), self.angular(lengths, pts, types)])


# ----------------------------------------------------------------------------- timing
def timed(fn, repeat):
    best_wall = best_cpu = float("inf")
    res = None
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        res = fn()
        best_wall = min(best_wall, time.perf_counter() - w)
        best_cpu = min(best_cpu, time.process_time() - c)
    return res, best_wall, best_cpu


def peak_mb(fn):
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def rel_diff(a, b):
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), REL_FLOOR))) if a.size else 0.0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4000, help="particles (default 4000)")
    ap.add_argument("--density", type=float, default=1.2, help="number density (default 1.2)")
    ap.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    ap.add_argument("--relax-steps", type=int, default=30, help="overlap-removal steps (default 30)")
    ap.add_argument("--threads", type=int, default=2, help="worker threads of (b) (default 2)")
    ap.add_argument("--chunk-size", type=int, default=256, help="query particles per chunk of (b)")
    ap.add_argument("--repeat", type=int, default=3, help="timing repeats of (b), best kept (default 3)")
    ap.add_argument("--skip-baseline", action="store_true", help="time (b) only")
    args = ap.parse_args(argv)

    cfg = StructureConfig.kob_andersen()
    cfg_r = StructureConfig(radial_r=cfg.radial_r, radial_width=cfg.radial_width, angular=(),
                            tolerance=cfg.tolerance)
    cfg_a = StructureConfig(radial_r=(), angular=cfg.angular, tolerance=cfg.tolerance)
    lengths, pts, types = ka_frame(args.n, args.density, args.seed, args.relax_steps)
    n = args.n
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"frame: N={n} ({int(np.sum(types == 0))} A + {int(np.sum(types == 1))} B), 3D, density "
          f"{args.density}, box {lengths[0]:.3f}, random + {args.relax_steps} overlap-removal steps, "
          f"seed {args.seed}")
    print(f"features: {cfg.n_features} ({cfg.n_radial} radial, {cfg.n_angular} angular); cutoffs "
          f"radial {cfg.radial_cutoff:.3f}, angular {cfg.angular_cutoff:.3f} (tolerance {cfg.tolerance:g})")
    print(f"machine: {os.cpu_count()} cores, load average {load:.2f} at start; BLAS threads "
          f"{os.environ.get('OPENBLAS_NUM_THREADS')}; (b) threads {args.threads}, chunk {args.chunk_size}")

    def ours(c):
        sf = StructureFunctions(c, chunk_size=args.chunk_size, n_threads=args.threads)
        return lambda: sf.compute(lengths, pts, types).features.astype(np.float64)

    ours(cfg)()  # warm-up (imports, caches)
    rows = {}
    res_b = {}
    for name, c in (("radial", cfg_r), ("angular", cfg_a), ("all", cfg)):
        res_b[name], w, cpu = timed(ours(c), args.repeat)
        rows.setdefault(name, {})["b"] = (w, cpu)
    mem_b = peak_mb(ours(cfg))

    if not args.skip_baseline:
        base = Baseline(cfg)
        res_a = {}
        res_a["radial"], w_r, c_r = timed(lambda: base.radial(lengths, pts, types), 1)
        res_a["angular"], w_a, c_a = timed(lambda: base.angular(lengths, pts, types), 1)
        rows["radial"]["a"] = (w_r, c_r)
        rows["angular"]["a"] = (w_a, c_a)
        rows["all"]["a"] = (w_r + w_a, c_r + c_a)
        res_a["all"] = np.hstack([res_a["radial"], res_a["angular"]])
        mem_a = peak_mb(lambda: base.all(lengths, pts, types))

    def rate(t):
        return f"{n / t:>10,.0f}"

    print()
    hdr = f"{'':26s}{'(a) freud+numpy':>18s}{'(b) glass-diag':>18s}{'ratio b/a':>11s}"
    print(hdr)
    print("-" * len(hdr))
    for name in ("radial", "angular", "all"):
        wb, cb = rows[name]["b"]
        if "a" in rows[name]:
            wa, ca = rows[name]["a"]
            print(f"{name + ' particles/s (wall)':26s}{rate(wa):>18s}{rate(wb):>18s}{wa / wb:>10.1f}x")
            print(f"{name + ' particles/cpu-s':26s}{rate(ca):>18s}{rate(cb):>18s}{ca / cb:>10.1f}x")
        else:
            print(f"{name + ' particles/s (wall)':26s}{'-':>18s}{rate(wb):>18s}")
            print(f"{name + ' particles/cpu-s':26s}{'-':>18s}{rate(cb):>18s}")
    if not args.skip_baseline:
        print(f"{'peak memory (MB, traced)':26s}{mem_a:>18.0f}{mem_b:>18.0f}")
        diffs = {k: rel_diff(res_b[k], res_a[k]) for k in ("radial", "angular", "all")}
        worst = diffs["all"]
        print(f"max relative difference (b vs a, floor {REL_FLOOR:g}): radial {diffs['radial']:.2e}, "
              f"angular {diffs['angular']:.2e}, all {worst:.2e}  -> {'OK' if worst <= 1e-5 else 'FAIL'} (<= 1e-5)")
        return 0 if worst <= 1e-5 else 1
    print(f"{'peak memory (MB, traced)':26s}{'-':>18s}{mem_b:>18.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
