"""Benchmark: ``diag features`` end to end beside the structure-function kernel alone, same run.

    python bench/features_e2e.py                      # the five /work/ka_full files, ~5-8 min
    python bench/features_e2e.py --files a.dump b.dump --temperature 0.6 0.65
    python bench/features_e2e.py --schedulers processes serial
    python bench/features_e2e.py --before /tmp/old   # also the sources in /tmp/old (git archive OLD | tar -x -C /tmp/old)

End to end (the user's path): ``python -m diag.cli features FILES -o OUT.h5 --temperature ...
--species A --window 20 --every 20`` run as a fresh process per ``--schedulers`` entry (process
start, imports, loading the numba kernels from their on-disk cache, reading, unwrapping, p_hop,
labels, the 166 default structure functions of every centre particle of every sampled frame,
writing the dataset). Its wall clock is timed from just before the process starts to its exit;
its CPU time is that of the process and every process it waited for (its workers).

The kernel alone: :meth:`adapters.structure.StructureFunctions.compute` in this process, warm
(kernels loaded before timing), one thread, on exactly the frames and query particles of the
written dataset (read back from it; the frames are loaded before timing). Its features are
checked equal, bit for bit, to the dataset's rows, so both sides did the same work. The kernel
is timed after every end-to-end run, and each run is compared with the mean of the kernel passes
just before and after it (the load of a shared machine drifts within minutes).

Printed: particle-frames (= samples of the dataset) per second of wall clock and per CPU-second,
for each end-to-end run and for the kernel, and the ratios kernel rate / end-to-end rate (the
issue's target: <= 1.5). The written datasets are compared byte for byte (``--before``: the
dataset of older sources must be the same file). On a shared machine the wall-clock rates move with the load (printed);
the CPU-second rates move less. Also printed: whether a fresh process loads the numba kernels
from the cache (``NUMBA_DEBUG_CACHE``) and how long that takes.

Inputs: ``--files`` (default ``/work/ka_full/ka_N1000_T*.dump``, else the test bed
``tests/data/lammps/ka_N1000_T*.dump``); temperatures from ``--temperature`` or the file names
(``T0.60``). BLAS threads are pinned to 1 unless the environment sets them.
"""

from __future__ import annotations

import os

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import glob  # noqa: E402
import re  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FULL = "/work/ka_full/ka_N1000_T*.dump"
TESTBED = str(ROOT / "tests" / "data" / "lammps" / "ka_N1000_T*.dump")


def _default_files() -> list[str]:
    for pattern in (FULL, TESTBED):
        files = sorted(glob.glob(pattern))
        if files:
            return files
    raise SystemExit(f"no input files: neither {FULL} nor {TESTBED} exists; give --files")


def _temperature_of(path: str) -> float:
    m = re.search(r"T(\d+(?:\.\d+)?)", os.path.basename(path))
    if m is None:
        raise SystemExit(f"{path}: no temperature in the file name (T0.60); give --temperature")
    return float(m.group(1))


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _label_args(args) -> list[str]:
    out = ["--window", str(args.window), "--every", str(args.every)]
    if args.species:
        out += ["--species", *args.species]
    return out


def _tree_env(tree: str | None) -> dict:
    """The environment that runs glass-diag from ``tree`` (a copy of the sources), or from here."""
    return dict(os.environ) if tree is None else {**os.environ, "PYTHONPATH": tree}


def run_e2e(files, temps, args, scheduler: str, out: str, tree: str | None = None) -> dict:
    """``diag features`` in a fresh process; wall clock and CPU seconds (with its workers)."""
    cmd = [sys.executable, "-m", "diag.cli", "features", *files, "-o", out, "--force", "--quiet",
           "--temperature", *[f"{t:g}" for t in temps], *_label_args(args), "--scheduler", scheduler]
    cpu0 = _children_cpu()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=tree or ROOT, capture_output=True, text=True, env=_tree_env(tree))
    wall = time.perf_counter() - t0
    cpu = _children_cpu() - cpu0
    if proc.returncode != 0:
        raise SystemExit(f"diag features ({scheduler}) failed ({proc.returncode}):\n{proc.stderr}")
    return {"scheduler": scheduler, "wall": wall, "cpu": cpu, "stdout": proc.stdout.strip()}


def load_jobs(files, ds, species_config):
    """The dataset's frames, as ``(box, points, types, query_indices, rows)`` per sampled frame."""
    from adapters.build import GROUP_STRIDE, _engine_box, species_type_map
    from adapters.readers import open_trajectory

    jobs = []
    for fi, path in enumerate(files):
        sel = np.flatnonzero(ds.group // GROUP_STRIDE == fi)
        frames = {}
        for g in np.unique(ds.group[sel]):
            frames[int(g % GROUP_STRIDE)] = sel[ds.group[sel] == g]
        traj = open_trajectory(path)
        try:
            type_map, _ = species_type_map(traj, species_config)
            types = type_map[traj.types]
            index_of = {int(pid): i for i, pid in enumerate(traj.particle_ids)}
            for frame in traj:
                rows = frames.get(frame.index)
                if rows is None:
                    continue
                pts = frame.box.centred(frame.positions)
                if pts.shape[1] == 2:
                    pts = np.column_stack([pts, np.zeros(len(pts))])
                q = np.array([index_of[int(p)] for p in ds.particle[rows]], dtype=np.int64)
                jobs.append((_engine_box(frame.box), pts, types, q, rows))
        finally:
            traj.close()
    return jobs


def time_kernel(engine, jobs, ds=None) -> dict:
    """compute() over every job, warm; optionally check the features against the dataset rows."""
    b, p, t, q, _ = jobs[0]
    engine.compute(b, p, t, query_indices=q[:16])  # load the kernels (not timed)
    c0, t0 = time.process_time(), time.perf_counter()
    feats = []
    for b, p, t, q, _ in jobs:
        feats.append(engine.compute(b, p, t, query_indices=q).features)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    same = None
    if ds is not None:
        same = all(np.array_equal(f, ds.features[rows]) for f, (_, _, _, _, rows) in zip(feats, jobs))
    return {"wall": wall, "cpu": cpu, "same": same}


def numba_cache_check(tree: str | None = None) -> str:
    """Does a fresh process load the kernels from numba's cache? (and how long it takes)"""
    code = (
        "import time, numpy as np\n"
        "t = time.perf_counter()\n"
        "from adapters.structure import StructureFunctions\n"
        "sf = StructureFunctions()\n"
        "rng = np.random.default_rng(0)\n"
        "sf.compute((12.0, 12.0, 12.0), rng.uniform(-6, 6, (1700, 3)), (rng.random(1700) < 0.2).astype(np.int64),"
        " query_indices=np.arange(20))\n"
        "print(sf.kernel_, time.perf_counter() - t)\n"
    )
    env = dict(_tree_env(tree), NUMBA_DEBUG_CACHE="1")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tree or ROOT, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        return f"check failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}"
    lines = proc.stdout.splitlines()
    kernel, seconds = lines[-1].split()
    if kernel != "numba":
        return "numba not in use (numpy kernel)"
    loaded = sum("data loaded" in ln for ln in lines)
    saved = sum("data saved" in ln for ln in lines)
    verdict = "hit" if loaded and not saved else ("miss: compiled and saved" if saved else "no cache")
    return f"{verdict} ({loaded} loaded, {saved} saved); imports + first call {float(seconds):.2f} s"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", nargs="+", default=None, help="trajectory files (default: /work/ka_full, else test bed)")
    ap.add_argument("--temperature", nargs="+", type=float, default=None, help="one per file (default: from names)")
    ap.add_argument("--species", nargs="+", default=["A"], help="centre species (default A)")
    ap.add_argument("--window", type=int, default=20, help="p_hop window in frames (default 20)")
    ap.add_argument("--every", type=int, default=20, help="frames between sampled frames (default 20)")
    ap.add_argument("--schedulers", nargs="+", default=["processes", "serial"],
                    help="--scheduler values to time end to end (default: processes serial; the first is "
                    "the command's default)")
    ap.add_argument("--keep", metavar="DIR", default=None, help="keep the written datasets in DIR")
    ap.add_argument("--before", metavar="TREE", default=None,
                    help="also run 'diag features' (the first --schedulers entry) from this copy of the sources "
                    "(e.g. git archive of an older commit), first; its dataset is compared byte for byte")
    args = ap.parse_args(argv)

    from adapters.cli import config_from_args
    from diag.dataset import read_dataset

    files = [os.path.abspath(f) for f in (args.files or _default_files())]
    temps = args.temperature or [_temperature_of(f) for f in files]
    if len(temps) != len(files):
        raise SystemExit("--temperature: one per file")
    ns = argparse.Namespace(config=None, every=args.every, window=args.window, window_time=None,
                            persistence=None, persistence_time=None, hard_side=None, p_c=None,
                            natural_fraction=None)
    config = config_from_args(ns, species=args.species)
    scfg = config.structure_config()
    print(f"inputs: {len(files)} file(s): {', '.join(os.path.basename(f) for f in files)}")
    print(f"        T = {', '.join(f'{t:g}' for t in temps)}; --species {' '.join(args.species)} "
          f"--window {args.window} --every {args.every}; {scfg.n_features} features")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start")
    print(f"numba cache in a fresh process: {numba_cache_check()}")
    if args.before:
        args.before = os.path.abspath(args.before)
        # (compiles the kernels into that tree's cache if needed: not in the timings)
        print(f"numba cache in a fresh process, {args.before}: {numba_cache_check(args.before)}")

    from adapters.structure import StructureFunctions

    engine = StructureFunctions(scfg, n_threads=1)
    outdir = args.keep or tempfile.mkdtemp(prefix="glass-diag-e2e-")
    os.makedirs(outdir, exist_ok=True)
    # every end-to-end run is followed by a kernel pass; each run is compared with the mean of the
    # passes on either side of it (the load of a shared machine drifts within minutes)
    plan = ([("before", args.schedulers[0], args.before)] if args.before else [])
    plan += [("", sched, None) for sched in args.schedulers]
    runs, ds, jobs, kern, first_file = [], None, None, [], None
    try:
        for tag, sched, tree in plan:
            name = f"features_{tag or re.sub(r'[^A-Za-z0-9]+', '_', sched)}.h5"
            out = os.path.join(outdir, name)
            r = run_e2e(files, temps, args, sched, out, tree=tree)
            r["load"] = os.getloadavg()[0]
            r["label"] = f"{'before: ' if tag else 'diag features '}--scheduler {sched}"
            d = read_dataset(out)
            if ds is None:
                ds, first_file = d, out
                jobs = load_jobs(files, ds, scfg.species)
                kern.append(time_kernel(engine, jobs, ds))  # checks the features: the same work
            else:
                with open(out, "rb") as fa, open(first_file, "rb") as fb:
                    r["same"] = fa.read() == fb.read()
                kern.append(time_kernel(engine, jobs))
            r["kernel"] = kern[-2:] if len(kern) > 1 else kern[-1:]
            runs.append(r)
    finally:
        if args.keep is None:
            for f in glob.glob(os.path.join(outdir, "*.h5")):
                os.remove(f)
            os.rmdir(outdir)

    n = ds.n_samples
    k_cpu = float(np.mean([k["cpu"] for k in kern]))
    print(f"\nsamples (particle-frames): {n} from {len(jobs)} frames; kernel features equal to the dataset's: "
          f"{kern[0]['same']}")
    print(f"kernel alone (1 thread, warm), {len(kern)} passes: wall {', '.join(f'{k_:.1f}' for k_ in [k['wall'] for k in kern])} s, "
          f"CPU {k_cpu:.1f} s on average = {n / k_cpu:.0f} particle-frames per CPU-second")
    print(f"\n{'':34s} {'wall s':>7s} {'CPU s':>7s} {'pf/s wall':>10s} {'pf/s CPU':>9s} {'kernel wall':>12s} "
          f"{'kernel pf/s':>11s} {'e2e/kernel wall':>16s} {'e2e/kernel CPU':>15s}")
    for r in runs:
        kw = float(np.mean([k["wall"] for k in r["kernel"]]))
        kc = float(np.mean([k["cpu"] for k in r["kernel"]]))
        same = "" if "same" not in r else ("  dataset file byte-identical" if r["same"] else "  DATASET FILE DIFFERS")
        print(f"{r['label']:34s} {r['wall']:7.1f} {r['cpu']:7.1f} {n / r['wall']:10.0f} {n / r['cpu']:9.0f} "
              f"{kw:12.1f} {n / kw:11.0f} {r['wall'] / kw:16.2f} {r['cpu'] / kc:15.2f}   (load {r['load']:.1f}){same}")
    print("\n(e2e/kernel = end-to-end time / kernel time = kernel rate / end-to-end rate, against the kernel passes "
          "just before and after each run; target <= 1.5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
