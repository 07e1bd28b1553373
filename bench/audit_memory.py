"""Benchmark: peak memory and wall time of ``diag audit`` beside the size of the data.

    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python bench/audit_memory.py                 # 1e5, 1e6, 1e7
    python bench/audit_memory.py --sizes 100000 1000000 --dir /tmp/am                       # quicker

For each size a synthetic dataset of ``n`` samples x 166 features is written (in frames, so
10^7 x 166 is never held in memory, let alone twice), then ``diag audit FILE --json OUT``
runs in a subprocess with every default (feature-set diagnostics included). Reported in one
table, from the same run:

* ``data``: the feature matrix, ``n * d * 4`` bytes;
* ``peak RSS``: the largest resident set of the audit process (``getrusage`` of the
  children, exact), and ``tree``: the largest sum over the audit and its worker processes,
  sampled every 0.2 s (psutil; a lower bound between samples);
* ``wall``: seconds of the audit, start-up included;
* ``mode``: whether the features were loaded or read lazily from the file, and the
  held-out natural population beside the part the selection diagnostics used.

The generator (a planted linear barrier, Arrhenius labels): ``E = 3 + 0.5 * sum(x_1..x_10)``,
``x ~ N(0, 1)`` in all 166 features (156 pure noise), ``P(R=1|E,T) = 1/(1+exp(E/T))`` at
T = 0.6, 0.7, 0.85, 1.0 (training temperature 1.0), frames of up to 10^4 samples (the
groups). Every sample is in the natural population; roles as a trajectory dataset has
them: soft = a random quarter of the R=1 samples, hard = as many R=0 samples of the same
frame, the rest neither. Files live under ``--dir`` and are deleted at the end
(``--keep`` keeps them).
"""

from __future__ import annotations

import os

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TEMPERATURES = (0.6, 0.7, 0.85, 1.0)
N_FEATURES = 166
N_ENERGY = 10
COEF, OFFSET = 0.5, 3.0
SOFT_FRACTION = 0.25


def write_dataset(path: Path, n: int, seed: int = 0) -> dict:
    """Write a synthetic schema-2 dataset of about ``n`` samples frame by frame.

    Returns
    -------
    dict with ``n``, ``d``, ``frame``, ``n_soft``, ``n_hard``, ``seconds``.
    """
    import h5py
    from scipy.special import expit

    from diag import __version__
    from diag.dataset import FORMAT, SCHEMA_VERSION

    t0 = time.perf_counter()
    d, n_t = N_FEATURES, len(TEMPERATURES)
    per_t = n // n_t
    frame = int(min(10_000, max(100, per_t // 20)))
    frames_per_t = per_t // frame
    n = frames_per_t * frame * n_t
    names = [f"x{k}" for k in range(1, d + 1)]
    fam = ["energy"] * N_ENERGY + ["noise"] * (d - N_ENERGY)
    params = [json.dumps({"coef": COEF if k < N_ENERGY else 0.0}) for k in range(d)]
    rng = np.random.default_rng(seed)
    n_soft = n_hard = 0
    with h5py.File(path, "w") as f:
        f.attrs["format"] = FORMAT
        f.attrs["schema_version"] = SCHEMA_VERSION
        f.attrs["conventions"] = json.dumps({
            "label_law": "P(R=1|E,T) = 1/(1+exp(E/T))", "train_temperature": 1.0,
            "group": f"frames of {frame} samples", "roles": f"soft: {SOFT_FRACTION} of R=1; hard: as many R=0 per frame",
        })
        f.attrs["provenance"] = json.dumps({"generator": "bench/audit_memory.py", "version": __version__,
                                            "seed": seed, "n": n, "d": d})
        s = f.create_group("samples")
        chunk_rows = int(max(1, min(n, (1 << 20) // (4 * d))))  # as Dataset.write
        X = s.create_dataset("features", shape=(n, d), dtype=np.float32, chunks=(chunk_rows, d))
        cols = {k: s.create_dataset(k, shape=(n,), dtype=dt) for k, dt in (
            ("label", np.int8), ("role", np.int8), ("natural", np.int8), ("temperature", np.float64),
            ("group", np.int64), ("energy", np.float64))}
        a = 0
        for it, T in enumerate(TEMPERATURES):
            for fr in range(frames_per_t):
                x = rng.standard_normal((frame, d), dtype=np.float32)
                E = OFFSET + COEF * x[:, :N_ENERGY].sum(axis=1, dtype=np.float64)
                R = (rng.random(frame) < expit(-E / T)).astype(np.int8)
                role = np.full(frame, -1, dtype=np.int8)
                soft = np.flatnonzero((R == 1) & (rng.random(frame) < SOFT_FRACTION))
                zeros = np.flatnonzero(R == 0)
                hard = rng.choice(zeros, min(soft.size, zeros.size), replace=False)
                role[soft], role[hard] = 1, 0
                n_soft += soft.size
                n_hard += hard.size
                b = a + frame
                X[a:b] = x
                cols["label"][a:b] = R
                cols["role"][a:b] = role
                cols["natural"][a:b] = 1
                cols["temperature"][a:b] = T
                cols["group"][a:b] = it * frames_per_t + fr
                cols["energy"][a:b] = E
                a = b
        g = f.create_group("features")
        sdt = h5py.string_dtype("utf-8")
        g.create_dataset("name", data=np.array(names, dtype=object), dtype=sdt)
        g.create_dataset("family", data=np.array(fam, dtype=object), dtype=sdt)
        g.create_dataset("params", data=np.array(params, dtype=object), dtype=sdt)
    return {"n": n, "d": d, "frame": frame, "n_soft": n_soft, "n_hard": n_hard,
            "seconds": time.perf_counter() - t0}


def _tree_rss(pid: int) -> int:
    import psutil

    try:
        p = psutil.Process(pid)
        procs = [p] + p.children(recursive=True)
    except psutil.Error:
        return 0
    tot = 0
    for q in procs:
        try:
            tot += q.memory_info().rss
        except psutil.Error:
            pass
    return tot


def run_audit(path: Path, out: Path, extra: list[str]) -> dict:
    """Run ``diag audit`` in a subprocess; its peak RSS (exact) and its tree's (sampled)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    diag = Path(sys.executable).with_name("diag")  # the console script of this environment
    cmd = [str(diag) if diag.exists() else "diag", "audit", str(path), "--json", str(out), "--quiet", *extra]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak_tree = [0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak_tree[0] = max(peak_tree[0], _tree_rss(proc.pid))
            done.wait(0.2)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    _, err = proc.communicate()
    wall = time.perf_counter() - t0
    done.set()
    th.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if proc.returncode != 0:
        raise RuntimeError(f"diag audit {path} failed ({proc.returncode}): {err.strip()[-2000:]}")
    # ru_maxrss of the children is the largest child so far (KiB on Linux): sizes run in
    # increasing order, so the new maximum is this audit's
    peak = after * 1024 if after > before else None
    return {"peak_rss": peak, "peak_tree": peak_tree[0], "wall": wall}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 10_000_000])
    ap.add_argument("--dir", default="/work/tmp_scale", help="where the datasets are written (deleted at the end)")
    ap.add_argument("--keep", action="store_true", help="keep the datasets and reports")
    ap.add_argument("--audit-args", default="", help="extra arguments for diag audit (one string)")
    ap.add_argument("--json", default=None, help="also write the table as JSON here")
    args = ap.parse_args(argv)
    from diag.resources import lazy_threshold

    work = Path(args.dir)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        for n in sorted(args.sizes):
            path = work / f"audit_memory_{n}.h5"
            gen = write_dataset(path, n)
            print(f"wrote {gen['n']} x {gen['d']} ({gen['n_soft']} soft, {gen['n_hard']} hard, frames of "
                  f"{gen['frame']}) in {gen['seconds']:.0f} s", flush=True)
            out = work / f"audit_memory_{n}.json"
            res = run_audit(path, out, args.audit_args.split())
            doc = json.loads(out.read_text())
            sample = doc.get("selection_sample", {})
            data = 4.0 * gen["n"] * gen["d"]
            rows.append({
                "n": gen["n"], "d": gen["d"], "data_bytes": data, "lazy": data > lazy_threshold(), **res,
                "n_natural_heldout": sample.get("n_natural_heldout"),
                "selection_n_natural": sample.get("n_natural", sample.get("n_natural_heldout")),
                "subsampled": sample.get("subsampled"),
                "same_training_set": sample.get("same_training_set"),
                "n_train_per_class": doc["classifier"]["n_train_per_class"],
                "e1": (doc.get("arrhenius") or {}).get("e1"),
                "truth_slope": (doc.get("truth") or {}).get("slope"),
            })
            print(f"audited n={gen['n']}: peak {res['peak_rss'] / 2**30 if res['peak_rss'] else float('nan'):.2f} GiB, "
                  f"{res['wall']:.0f} s", flush=True)
            if not args.keep:
                path.unlink()
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    gib = 2**30
    print()
    print(f"{'samples':>10} {'features':>8} {'data GiB':>9} {'mode':>7} {'peak RSS GiB':>13} {'tree GiB':>9} "
          f"{'peak/data':>9} {'wall s':>7} {'held-out natural':>17} {'selection used':>15} {'train/class':>11}")
    for r in rows:
        pk = r["peak_rss"] or float("nan")
        print(f"{r['n']:>10} {r['d']:>8} {r['data_bytes'] / gib:>9.2f} {'lazy' if r['lazy'] else 'memory':>7} "
              f"{pk / gib:>13.2f} {r['peak_tree'] / gib:>9.2f} {pk / r['data_bytes']:>9.2f} {r['wall']:>7.0f} "
              f"{r['n_natural_heldout']:>17} {r['selection_n_natural']:>15} {r['n_train_per_class']:>11}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
