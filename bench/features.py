"""Benchmark: species-resolved structure functions on a Kob-Andersen frame.

Compares, in one run and on the same frame,
  (a) a straightforward baseline: freud neighbour list + numpy (radial by broadcasting every
      bond against the r grid; angular by looping over particles and their neighbour pairs),
  (b) :class:`adapters.structure.StructureFunctions` with ``kernel="numpy"``,
  (c) the same with ``kernel="numba"`` on 1 and on 2 threads (thread pool over chunks, nogil
      kernels: what ``n_threads`` does), and
  (c') the numba kernels driven by one ``parallel=True`` numba function (``prange`` over the
      same chunks) on 2 threads: the alternative to the thread pool, for comparison,
and prints particles/s (radial, angular, all; wall clock and per CPU-second), the ratio to (a),
the peak memory and the largest relative difference from (a).

Then a small box (``--small-n``, default 1000 particles: the classic Kob-Andersen system, box
9.41 < twice the default cutoff 5.43), where every periodic image within the cutoff counts: all
166 features of every particle by (b) and (c) (explicit images), beside the naive alternative
(r), the same numba kernel on the system replicated 2x2x2 (a box above twice the cutoff, the
usual path) with the N original particles as queries; rates per particle of the small box, the
ratio to the same variant on the large frame above, and the largest relative difference from (r).

Usage::

    python bench/features.py [--n 4000] [--density 1.2] [--seed 0] [--skip-baseline] [--small-n 1000]

BLAS threads are pinned to 1 (set before numpy is imported) unless the environment sets them.
Numba: the JIT compile time is measured in a subprocess with an empty cache directory (a fresh
temporary ``NUMBA_CACHE_DIR`` unless the environment sets one) and printed; this process then
loads the compiled kernels from that cache while warming up on a small frame, so compile and load
times are not in the timings (code loaded from numba's cache is also the code users run in
every session after the first).
"""

from __future__ import annotations

import os
import sys

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")
if "NUMBA_CACHE_DIR" not in os.environ and "--_compile-only" not in sys.argv:
    import atexit  # noqa: E402
    import shutil  # noqa: E402
    import tempfile  # noqa: E402

    _CACHE = tempfile.mkdtemp(prefix="glass-diag-bench-numba-")
    os.environ["NUMBA_CACHE_DIR"] = _CACHE
    atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)

import argparse  # noqa: E402
import gc  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters import structure  # noqa: E402
from adapters.structure import StructureConfig, StructureFunctions  # noqa: E402

REL_FLOOR = 1e-6  # |a - b| / max(|b|, REL_FLOOR): values below 1e-6 count as zero

try:
    import numba

    from adapters._structure_numba import chunk_features as _chunk_features
except ImportError:  # the numba columns are left out
    numba = None

if numba is not None:
    @numba.njit(parallel=True, cache=True, nogil=True, fastmath=False, error_model="numpy")
    def _prange_all(gptr, qall, pall, out, cap, pts, cell_of, cell_coord, nc, L, inv_mi, stencil,
                    o_all, st_all, ps, rq2, errs, ns,
                    rc_r2, rad_n, rad_uniform, rad_r, rad_order, rad_r0, rad_h, rad_W, rad_cw,
                    rad_mlo, rad_next, rad_L,
                    rc_a2, c2, slot_x, slot_y, slot_col, e_kind, e_dst, e_a, e_b, e_val, e_nrow,
                    e_row, q_kind, q_dst, q_a, q_b, q_val, q_nrow, q_row, t_e, t_q):
        """(c'): every chunk ``qall[gptr[g]:gptr[g+1]]`` with numba's threads."""
        for g in numba.prange(gptr.size - 1):
            a = gptr[g]
            b = gptr[g + 1]
            _chunk_features(qall[a:b], pall[a:b], out, cap, pts, cell_of, cell_coord, nc, L, inv_mi,
                            stencil, o_all, st_all, ps, rq2, errs[g], ns,
                            rc_r2, rad_n, rad_uniform, rad_r, rad_order, rad_r0, rad_h, rad_W, rad_cw,
                            rad_mlo, rad_next, rad_L,
                            rc_a2, c2, slot_x, slot_y, slot_col, e_kind, e_dst, e_a, e_b, e_val,
                            e_nrow, e_row, q_kind, q_dst, q_a, q_b, q_val, q_nrow, q_row, t_e, t_q)


def prange_features(cfg, lengths, pts, types, n_threads, chunk_size):
    """(c'): the numba kernels over all chunks in one ``parallel=True`` call (cells engine)."""
    L = structure._as_box(lengths).lengths
    p = np.array(pts, dtype=np.float64)
    p[:, :L.size] -= L * np.floor(p[:, :L.size] / L + 0.5)
    ctx = structure._Context(cfg, L, p, np.asarray(types, dtype=np.int64), "cells")
    run = structure._NumbaRun(structure._numba_module()[0], ctx)
    q = np.arange(len(p), dtype=np.int64)
    groups = ctx.groups(q, chunk_size)
    gptr = np.concatenate(([0], np.cumsum([g.size for g in groups]))).astype(np.int64)
    pall = np.ascontiguousarray(np.concatenate(groups), dtype=np.int64)
    qall = np.ascontiguousarray(q[pall])
    errs = np.full((len(groups), 2), -1, dtype=np.int64)
    out = np.empty((q.size, cfg.n_features), dtype=np.float32)
    cap = int(max(g.size for g in groups)) * run.per_query
    prev = numba.get_num_threads()
    numba.set_num_threads(min(n_threads, numba.config.NUMBA_NUM_THREADS))
    try:
        _prange_all(gptr, qall, pall, out, cap, *run._cell_args(), errs, run.plan.ns, *run.sargs)
    finally:
        numba.set_num_threads(prev)
    assert np.all(errs < 0)
    return out


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


# ----------------------------------------------------------------------------- measuring
def timed(fn, repeat):
    """Best wall-clock and best CPU time (all threads of the process) over ``repeat`` runs."""
    best_wall = best_cpu = float("inf")
    res = None
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        res = fn()
        best_wall = min(best_wall, time.perf_counter() - w)
        best_cpu = min(best_cpu, time.process_time() - c)
    return res, best_wall, best_cpu


def _status_kb(key):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def peak_mb(fn):
    """Peak extra memory of one call: the resident-set high-water mark above the resident set at
    the start (Linux: /proc/self/clear_refs resets the mark), which counts every allocation
    (numpy, numba's runtime, freud); elsewhere the numpy allocations traced by tracemalloc."""
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed heap pages back first
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        start = _status_kb("VmRSS")
        fn()
        return (_status_kb("VmHWM") - start) / 1024.0, "RSS"
    except OSError:
        tracemalloc.start()
        try:
            fn()
            return tracemalloc.get_traced_memory()[1] / 2**20, "traced"
        finally:
            tracemalloc.stop()


def rel_diff(a, b):
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), REL_FLOOR))) if a.size else 0.0


def warm_frame():
    """A small low-density frame that the default cutoffs fit (to compile / load the kernels)."""
    return ka_frame(300, 0.18, 1, 0)


def compile_kernels(chunk_size):
    """Run every numba code path of the benchmark once on the small frame; returns seconds."""
    lengths, pts, types = warm_frame()
    cfg = StructureConfig.kob_andersen()
    t = time.perf_counter()
    StructureFunctions(cfg, chunk_size=chunk_size, kernel="numba").compute(lengths, pts, types)
    prange_features(cfg, lengths, pts, types, 2, chunk_size)
    return time.perf_counter() - t


# ----------------------------------------------------------------------------- main
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4000, help="particles (default 4000)")
    ap.add_argument("--density", type=float, default=1.2, help="number density (default 1.2)")
    ap.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    ap.add_argument("--relax-steps", type=int, default=30, help="overlap-removal steps (default 30)")
    ap.add_argument("--threads", type=int, default=2, help="threads of (b), and the multi-thread runs of (c) (default 2)")
    ap.add_argument("--chunk-size", type=int, default=256, help="query particles per chunk of (b), (c)")
    ap.add_argument("--repeat", type=int, default=3, help="timing repeats of (b), (c), best kept (default 3)")
    ap.add_argument("--tolerance", type=float, default=None, help="truncation tolerance (default: the config default)")
    ap.add_argument("--skip-baseline", action="store_true", help="leave out (a)")
    ap.add_argument("--small-n", type=int, default=1000,
                    help="particles of the small-box frame (default 1000; 0 leaves it out)")
    ap.add_argument("--_compile-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args._compile_only:
        print(f"{compile_kernels(args.chunk_size):.3f}")
        return 0

    kw = {} if args.tolerance is None else {"tolerance": args.tolerance}
    cfg = StructureConfig.kob_andersen() if not kw else StructureConfig(**kw)
    cfg_r = StructureConfig(radial_r=cfg.radial_r, radial_width=cfg.radial_width, angular=(),
                            tolerance=cfg.tolerance)
    cfg_a = StructureConfig(radial_r=(), angular=cfg.angular, tolerance=cfg.tolerance)
    families = (("radial", cfg_r), ("angular", cfg_a), ("all", cfg))
    load0 = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    lengths, pts, types = ka_frame(args.n, args.density, args.seed, args.relax_steps)
    n = args.n
    th = args.threads

    have_numba = numba is not None and structure._numba_module()[0] is not None
    jit_line = "numba: not installed, (c) and (c') left out"
    if have_numba:
        res = subprocess.run([sys.executable, __file__, "--_compile-only", "--chunk-size", str(args.chunk_size)],
                             capture_output=True, text=True, env=os.environ.copy())
        if res.returncode != 0:
            sys.stderr.write(res.stderr)
            raise SystemExit("numba compile subprocess failed")
        t_compile = float(res.stdout.strip().splitlines()[-1])
        t_load = compile_kernels(args.chunk_size)  # loads from the cache just written
        jit_line = (f"numba {numba.__version__}: JIT compile {t_compile:.1f} s (subprocess, empty cache: "
                    f"{os.environ['NUMBA_CACHE_DIR']}), load from cache {t_load:.1f} s; both excluded from the timings")

    print(f"frame: N={n} ({int(np.sum(types == 0))} A + {int(np.sum(types == 1))} B), 3D, density "
          f"{args.density}, box {lengths[0]:.3f}, random + {args.relax_steps} overlap-removal steps, "
          f"seed {args.seed}")
    print(f"features: {cfg.n_features} ({cfg.n_radial} radial, {cfg.n_angular} angular); cutoffs "
          f"radial {cfg.radial_cutoff:.3f}, angular {cfg.angular_cutoff:.3f} (tolerance {cfg.tolerance:g})")
    print(f"machine: {os.cpu_count()} cores, load average {load0[0]:.2f} / {load0[1]:.2f} / {load0[2]:.2f} "
          f"(1 / 5 / 15 min) at start; BLAS threads {os.environ.get('OPENBLAS_NUM_THREADS')}; "
          f"chunk {args.chunk_size}")
    print(jit_line)

    # ---------------------------------------------------------------- the variants
    def ours(kernel, threads):
        def make(c):
            sf = StructureFunctions(c, chunk_size=args.chunk_size, n_threads=threads, kernel=kernel)
            return lambda: sf.compute(lengths, pts, types).features.astype(np.float64)
        return make

    def pr(threads):
        return lambda c: (lambda: prange_features(c, lengths, pts, types, threads, args.chunk_size).astype(np.float64))

    variants = []  # (key, header, threads, factory, repeat)
    base = Baseline(cfg)
    if not args.skip_baseline:
        variants.append(("a", "(a) freud+numpy", 1, None, 1))  # timed per family below
    variants.append(("b", "(b) numpy kernel", th, ours("numpy", th), args.repeat))
    if have_numba:
        variants.append(("c1", "(c) numba", 1, ours("numba", 1), args.repeat))
        variants.append(("c2", "(c) numba", th, ours("numba", th), args.repeat))
        variants.append(("cp", "(c') numba prange", th, pr(th), args.repeat))

    rows: dict = {}
    results: dict = {}
    mem: dict = {}
    for key, _, threads, factory, repeat in variants:
        for name, c in families:
            if key == "a":
                if name == "all":  # radial + angular (timed separately above)
                    wr, cr = rows[("a", "radial")]
                    wa, ca = rows[("a", "angular")]
                    rows[(key, name)] = (wr + wa, cr + ca)
                    results[(key, name)] = np.hstack([results[("a", "radial")], results[("a", "angular")]])
                    continue
                fn = {"radial": base.radial, "angular": base.angular}[name]
                res_, w, cpu = timed(lambda fn=fn: fn(lengths, pts, types), 1)
            else:
                f = factory(c)
                f()  # warm-up (threads, caches)
                res_, w, cpu = timed(f, repeat)
            rows[(key, name)] = (w, cpu)
            results[(key, name)] = res_
        if key == "a":
            mem[key] = peak_mb(lambda: base.all(lengths, pts, types))
        else:
            mem[key] = peak_mb(factory(cfg))
    load1 = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3

    # ---------------------------------------------------------------- the table
    keys = [v[0] for v in variants]
    W0, W = 27, 18
    print()
    print(f"{'':{W0}s}" + "".join(f"{h:>{W}s}" for _, h, _, _, _ in variants))
    print(f"{'threads':{W0}s}" + "".join(f"{t:>{W}d}" for _, _, t, _, _ in variants))
    print("-" * (W0 + W * len(variants)))

    def cell(key, name, which):
        t = rows[(key, name)][which]
        s = f"{n / t:,.0f}"
        if "a" in keys and key != "a":
            s += f" ({rows[('a', name)][which] / t:.1f}x)"
        return f"{s:>{W}s}"

    for name, _ in families:
        print(f"{name + ' particles/s (wall)':{W0}s}" + "".join(cell(k, name, 0) for k in keys))
        print(f"{name + ' particles/cpu-s':{W0}s}" + "".join(cell(k, name, 1) for k in keys))
    kinds = {m[1] for m in mem.values()}
    print(f"{'peak memory (MB, ' + '/'.join(sorted(kinds)) + ')':{W0}s}"
          + "".join(f"{mem[k][0]:>{W}.0f}" for k in keys))
    ok = True
    if "a" in keys:
        for name, _ in families:
            cells = []
            for k in keys:
                if k == "a":
                    cells.append(f"{'-':>{W}s}")
                    continue
                d = rel_diff(results[(k, name)], results[("a", name)])
                ok &= d <= 1e-5
                cells.append(f"{d:>{W}.2e}")
            print(f"{'max rel. diff vs (a) ' + name:{W0}s}" + "".join(cells))
        print(f"(relative difference |x - a| / max(|a|, {REL_FLOOR:g}); all <= 1e-5: {'OK' if ok else 'FAIL'})")
    if args.small_n > 0:
        ok &= small_box(args, cfg, rows, have_numba)
    print(f"load average {load1[0]:.2f} / {load1[1]:.2f} / {load1[2]:.2f} (1 / 5 / 15 min) at the end")
    return 0 if ok else 1


def small_box(args, cfg, rows, have_numba) -> bool:
    """The small-box section (see the module docstring); returns whether all agree with (r)."""
    lengths, pts, types = ka_frame(args.small_n, args.density, args.seed, args.relax_steps)
    n = args.small_n
    L = lengths[0]
    th = args.threads
    geom = structure._as_box(lengths)
    t = time.perf_counter()
    P, _, _ = structure._periodic_images(geom, np.asarray(pts, dtype=np.float64), cfg.cutoff)
    t_img = time.perf_counter() - t
    print()
    print(f"small box: N={n}, box {L:.3f} (cutoff {cfg.cutoff:.3f} > half the box), all 166 features; "
          f"{len(P) / n:.1f} image points per particle, built in {1e3 * t_img:.0f} ms")
    big_pts = np.concatenate([pts + L * np.asarray(s, dtype=float) for s in np.ndindex(2, 2, 2)])
    big_types = np.tile(types, 8)
    big = (2 * L, 2 * L, 2 * L)
    q = np.arange(n)

    def ours(kernel, threads):
        sf = StructureFunctions(cfg, chunk_size=args.chunk_size, n_threads=threads, kernel=kernel)
        return lambda: sf.compute(lengths, pts, types).features.astype(np.float64)

    def replicated(threads):
        sf = StructureFunctions(cfg, chunk_size=args.chunk_size, n_threads=threads, kernel="numba")
        return lambda: sf.compute(big, big_pts, big_types, q).features.astype(np.float64)

    variants = [("b", "(b) numpy kernel", th, ours("numpy", th))]
    if have_numba:
        variants += [("c1", "(c) numba", 1, ours("numba", 1)), ("c2", "(c) numba", th, ours("numba", th)),
                     ("r1", "(r) 2x2x2, numba", 1, replicated(1))]
    res, tim = {}, {}
    for key, _, _, f in variants:
        f()  # warm-up
        res[key], w, c = timed(f, args.repeat)
        tim[key] = (w, c)
    W0, W = 27, 18
    print(f"{'':{W0}s}" + "".join(f"{h:>{W}s}" for _, h, _, _ in variants))
    print(f"{'threads':{W0}s}" + "".join(f"{t:>{W}d}" for _, _, t, _ in variants))
    print("-" * (W0 + W * len(variants)))
    for which, label in ((0, "(wall)"), (1, "/cpu-s")):
        print(f"{'all particles' + ('/s ' if which == 0 else '') + label:{W0}s}"
              + "".join(f"{n / tim[k][which]:>{W},.0f}" for k, _, _, _ in variants))
        cells = []
        for k, _, _, _ in variants:
            big_rate = rows.get((k, "all"))
            cells.append(f"{(n / tim[k][which]) / (args.n / big_rate[which]):>{W}.2f}" if big_rate else f"{'-':>{W}s}")
        print(f"{'  x the large-frame rate':{W0}s}" + "".join(cells))
    ok = True
    if "r1" in res:
        cells = []
        for k, _, _, _ in variants:
            d = rel_diff(res[k], res["r1"])
            ok &= d <= 1e-5
            cells.append(f"{d:>{W}.2e}")
        print(f"{'max rel. diff vs (r)':{W0}s}" + "".join(cells))
    return ok


if __name__ == "__main__":
    sys.exit(main())
