"""Structure functions: fast path vs brute-force reference, hand-computed cases, truncation, config.

Agreement criterion (fast path vs reference): ``|fast - ref| <= RTOL * |ref| + ATOL`` with
``RTOL = 1e-5`` and the absolute floor ``ATOL = 1e-8`` for near-zero values (features are
float32; the uniform-grid radial window drops terms below 1e-12 each).

Both kernels (``kernel="numpy"`` and ``kernel="numba"``) run the same cases; the numba cases are
skipped, with the reason, when numba cannot be loaded. The numba kernels are compiled (or loaded
from numba's disk cache) once per session, on first use.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters import structure
from adapters.structure import StructureConfig, StructureFunctions
from diag.errors import DataError, UsageError
from tests.adapters.structure_reference import (
    hand_gaussian,
    minimum_image,
    reference_features,
    reference_for_config,
)

RTOL = 1e-5
ATOL = 1e-8
ENGINES = ("cells", "freud")
_NB, _NB_REASON = structure._numba_module()
HAVE_NUMBA = _NB is not None
NUMBA = pytest.param("numba", marks=pytest.mark.skipif(
    not HAVE_NUMBA, reason=f"numba kernel unavailable ({_NB_REASON}); pip install 'glass-diag[fast]'"))
KERNELS = ("numpy", NUMBA)
_REF_CACHE: dict = {}


def cached_reference(key, fn):
    """The brute-force reference of one case, computed once per session (shared by the kernel and
    engine parametrisations, which all must reproduce it)."""
    if key not in _REF_CACHE:
        _REF_CACHE[key] = fn()
    return _REF_CACHE[key]


def assert_close(fast, ref):
    fast = np.asarray(fast, dtype=np.float64)
    assert fast.shape == ref.shape
    bad = np.abs(fast - ref) > RTOL * np.abs(ref) + ATOL
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise AssertionError(f"{bad.sum()} mismatches, first at {(i, j)}: fast {fast[i, j]!r} ref {ref[i, j]!r}")


def random_system(rng, n, lengths, n_species=2, edges=True):
    """Uniform random positions; a few particles exactly on the box faces (+-L/2)."""
    lengths = np.asarray(lengths, dtype=np.float64)
    dim = lengths.size
    pts = np.zeros((n, 3))
    pts[:, :dim] = rng.uniform(-lengths / 2, lengths / 2, size=(n, dim))
    if edges:
        pts[0, 0] = lengths[0] / 2
        pts[1, 0] = -lengths[0] / 2
        pts[2, 1] = lengths[1] / 2
        pts[3, :dim] = -lengths / 2  # a corner
        pts[4, dim - 1] = lengths[dim - 1] / 2
    types = rng.integers(0, n_species, size=n)
    return pts, types


SMALL = StructureConfig(
    radial_r=tuple(np.round(np.arange(0.2, 1.45, 0.1), 10)),
    radial_width=0.1,
    angular=((0.9, 1.0, 1.0), (0.9, -1.0, 2.0), (0.9 / math.sqrt(2), 1.0, 16.0), (0.9 / math.sqrt(3), -1.0, 4.0)),
    tolerance=1e-3,
)  # 1/xi^2 are integer multiples: the single-exponential path
GENERAL = StructureConfig(
    radial_r=(0.3, 0.55, 0.6, 0.95, 1.4, 1.2),  # non-uniform, unsorted: the direct radial path
    radial_width=0.12,
    angular=((0.95, 0.5, 2.5), (0.7, -1.0, 1.0), (0.8, 1.0, 3.0)),
    angular_pairs=(("B", "A"), ("B", "B")),
    tolerance=1e-4,
)  # non-integer zeta, lambda not +-1, unrelated xi: the general angular path


# ----------------------------------------------------------------------------- config
def test_default_grid():
    cfg = StructureConfig.kob_andersen()
    assert cfg == StructureConfig()
    assert cfg.n_features == 166 and cfg.n_radial == 100 and cfg.n_angular == 66
    names = cfg.feature_names()
    assert len(names) == len(set(names)) == 166
    assert names[0] == "G_A(r=0.10)" and names[49] == "G_A(r=5.00)" and names[50] == "G_B(r=0.10)"
    assert names[100].startswith("Psi_AA(xi=1.20,l=-1,z=1)")
    assert "Psi_AB(xi=1.20,l=+1,z=16)" in names and names[-1].startswith("Psi_BB(")
    assert cfg.feature_families() == ["radial"] * 100 + ["angular"] * 66
    params = cfg.feature_params()
    assert params[9] == {"r": 1.0, "species": "A", "width": 0.1, "width_convention": "exp(-(r_ij-r)^2/(2L^2))",
                         "cutoff": cfg.radial_cutoff}
    assert params[122]["species"] == ["A", "B"] and params[122]["pair_counting"] == "unordered"
    assert cfg.tolerance == 1e-4
    assert cfg.radial_cutoff == pytest.approx(5.0 + 0.1 * math.sqrt(2 * math.log(1e4)))
    assert cfg.angular_cutoff == pytest.approx(1.2 * math.sqrt(math.log(1e4) / 1.5))
    assert cfg.cutoff == cfg.radial_cutoff
    conv = cfg.conventions()
    json.dumps(conv), json.dumps(params)
    assert conv["width_convention"] == "exp(-(r_ij-r)^2/(2L^2))"
    assert conv["cutoff"] == cfg.cutoff and conv["tolerance"] == 1e-4
    assert cfg.to_dict()["tolerance"] == 1e-4
    assert "unordered" in conv["pair_counting"]
    xis = sorted({t[0] for t in cfg.angular})
    assert len(cfg.angular) == 22 and min(xis) == pytest.approx(1.2 / math.sqrt(3)) and max(xis) == 1.2
    assert {t[1] for t in cfg.angular} == {-1.0, 1.0} and {t[2] for t in cfg.angular} == {1.0, 2.0, 4.0, 16.0}


@pytest.mark.parametrize("cfg", [StructureConfig(), SMALL, GENERAL])
def test_config_round_trip(cfg):
    d = json.loads(json.dumps(cfg.to_dict()))
    back = StructureConfig.from_dict(d)
    assert back == cfg
    assert back.feature_names() == cfg.feature_names()
    assert back.cutoff == cfg.cutoff


def test_config_from_dict_grid_object_and_pairs():
    cfg = StructureConfig.from_dict({"radial_r": {"start": 0.1, "stop": 5.0, "step": 0.1}})
    assert cfg == StructureConfig()
    cfg = StructureConfig.from_dict({"angular_pairs": [["B", "A"]], "species": ["A", "B"]})
    assert cfg.pairs == (("A", "B"),) and cfg.n_angular == 22


@settings(max_examples=40, deadline=None)
@given(
    rr=st.lists(st.floats(0.0, 10.0, allow_nan=False), min_size=0, max_size=6, unique=True),
    width=st.floats(0.01, 1.0),
    trip=st.lists(st.tuples(st.floats(0.1, 3.0), st.floats(-1.0, 1.0), st.floats(1.0, 20.0)),
                  min_size=1, max_size=5, unique=True),
    tol=st.floats(1e-9, 0.5),
)
def test_config_round_trip_property(rr, width, trip, tol):
    cfg = StructureConfig(radial_r=tuple(rr), radial_width=width, angular=tuple(trip), tolerance=tol)
    back = StructureConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg and back.cutoff == cfg.cutoff
    assert len(set(cfg.feature_names())) == cfg.n_features


@pytest.mark.parametrize("bad", [
    {"species": []},
    {"species": ["A", "A"]},
    {"species": "AB"},
    {"species": ["A_1"]},
    {"radial_width": 0},
    {"radial_width": -0.1},
    {"radial_r": [0.1, 0.1]},
    {"radial_r": [-1.0]},
    {"radial_r": [float("nan")]},
    {"radial_r": {"start": 1, "stop": 0, "step": 0.1}},
    {"angular": [[0.0, 1, 1]]},
    {"angular": [[1.0, 2, 1]]},
    {"angular": [[1.0, 1, 0.5]]},
    {"angular": [[1.0, 1]]},
    {"angular": [[1.0, 1, 1], [1.0, 1, 1]]},
    {"angular_pairs": [["A", "C"]]},
    {"angular_pairs": [["A", "B"], ["B", "A"]]},
    {"tolerance": 0},
    {"tolerance": 1},
    {"tolerance": "x"},
    {"radial_r": [], "angular": []},
    {"cutoff": 3.0},
    {"format": "something-else"},
    {"version": 99},
])
def test_config_errors(bad):
    with pytest.raises(UsageError):
        StructureConfig.from_dict(bad)


# ----------------------------------------------------------------------------- hand-computed
HAND = StructureConfig(
    radial_r=(0.5, 1.0, 1.2, 1.5), radial_width=0.2,
    angular=((1.0, 1.0, 1.0), (1.0, -1.0, 2.0), (0.8, 1.0, 4.0)), tolerance=1e-3,
)


def _hand_triangle(offset, lengths, dim):
    """Particles 0 (A) at the origin, 1 (A) at (1,0), 2 (B) at (0,1.2), 3 (A) far away; shifted."""
    p = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.2, 0.0], [4.0, 4.0, 0.0]])
    if dim == 3:
        p[3, 2] = 4.0
    p[:, :dim] += offset
    L = np.asarray(lengths)
    p[:, :dim] -= L * np.floor(p[:, :dim] / L + 0.5)
    return p, np.array([0, 0, 1, 0])


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("offset", [0.0, 4.8])  # 4.8: the triangle straddles the periodic faces
def test_hand_computed_triangle(dim, engine, offset, kernel):
    lengths = (10.0,) * dim
    pts, types = _hand_triangle(offset, lengths, dim)
    sf = StructureFunctions(HAND, neighbours=engine, kernel=kernel)
    assert sf.kernel_ == kernel
    f = sf.compute(lengths, pts, types).features.astype(np.float64)
    r = HAND.radial_r
    Lw = HAND.radial_width
    # particle 0: A neighbour at 1.0, B neighbour at 1.2, right angle between them
    assert f[0, :4] == pytest.approx([hand_gaussian(1.0, x, Lw) for x in r], rel=1e-6)
    assert f[0, 4:8] == pytest.approx([hand_gaussian(1.2, x, Lw) for x in r], rel=1e-6)
    s2 = 1.0**2 + 1.2**2 + (1.0 + 1.44)  # r_01^2 + r_02^2 + r_12^2
    ab = [math.exp(-s2 / xi**2) * (1 + lam * 0.0) ** z for xi, lam, z in HAND.angular]
    assert f[0, 8:11] == pytest.approx([0, 0, 0], abs=1e-30)  # AA: one A neighbour, no pair
    assert f[0, 11:14] == pytest.approx(ab, rel=1e-6)
    assert f[0, 14:17] == pytest.approx([0, 0, 0], abs=1e-30)
    # particle 1: A neighbour 0 at (-1, 0), B neighbour 2 at (-1, 1.2): cos = 1 / sqrt(2.44)
    c = 1.0 / math.sqrt(2.44)
    ab1 = [math.exp(-s2 / xi**2) * (1 + lam * c) ** z for xi, lam, z in HAND.angular]
    assert f[1, 11:14] == pytest.approx(ab1, rel=1e-6)
    assert f[1, 4:8] == pytest.approx([hand_gaussian(math.sqrt(2.44), x, Lw) for x in r], rel=1e-6)
    # particle 3 is alone
    assert np.all(f[3] == 0)


@pytest.mark.parametrize("kernel", KERNELS)
def test_hand_computed_same_species_pair_counted_once(kernel):
    # 0 (A) with A neighbours at (1,0,0) and (0,0,1.1): Psi_AA(0) is one term, not two
    pts = np.array([[0.0, 0, 0], [1.0, 0, 0], [0, 0, 1.1]])
    types = np.zeros(3, dtype=int)
    f = StructureFunctions(HAND, kernel=kernel).compute((8.0, 8.0, 8.0), pts, types).features.astype(np.float64)
    s2 = 1.0 + 1.21 + 2.21
    expect = [math.exp(-s2 / xi**2) * 1.0 for xi, lam, z in HAND.angular]
    assert f[0, 8:11] == pytest.approx(expect, rel=1e-6)
    # the sum over the three pair classes equals the sum over all unordered pairs
    assert f[0, 8:11].sum() > 0 and np.all(f[0, 11:] == 0)


# ----------------------------------------------------------------------------- vs reference
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("dim,lengths,n", [(3, (5.2, 5.6, 6.0), 160), (2, (6.3, 5.5), 70)])
@pytest.mark.parametrize("cfg", [SMALL, GENERAL], ids=["integer-powers", "general"])
def test_matches_reference_random(engine, dim, lengths, n, cfg, kernel):
    rng = np.random.default_rng(1234 + dim + n)
    pts, types = random_system(rng, n, lengths)
    L = lengths if dim == 3 else (lengths[0], lengths[1], 0.0)
    sf = StructureFunctions(cfg, chunk_size=37, neighbours=engine, kernel=kernel).compute(L, pts, types)
    ref = cached_reference(("random", dim, n, cfg is SMALL),
                           lambda: reference_for_config(cfg, lengths, pts, types))
    assert sf.features.dtype == np.float32 and sf.features.shape == (n, cfg.n_features)
    assert_close(sf.features, ref)
    assert np.all(sf.query_indices == np.arange(n))
    assert ref[:, cfg.n_radial:].max() > 0  # the angular part was really exercised


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("engine", ENGINES)
def test_matches_reference_default_grid(engine, kernel):
    """The 166 default features on a KA-density frame (query subset incl. face particles)."""
    rng = np.random.default_rng(7)
    cfg = StructureConfig.kob_andersen()
    n = 1600
    L = (n / 1.2) ** (1 / 3)
    pts, _ = random_system(rng, n, (L, L, L))
    types = (rng.random(n) < 0.2).astype(int)
    q = np.r_[0:5, rng.choice(np.arange(5, n), 11, replace=False)]
    sf = StructureFunctions(cfg, neighbours=engine, n_threads=2, chunk_size=64, kernel=kernel)
    sf.compute((L, L, L), pts, types, q)
    ref = cached_reference("default-grid", lambda: reference_for_config(cfg, (L, L, L), pts, types, query=q))
    assert_close(sf.features, ref)
    assert np.all(sf.query_indices == q)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("species", [("A",), ("A", "B", "C")])
def test_matches_reference_other_species_counts(species, kernel):
    rng = np.random.default_rng(len(species))
    cfg = StructureConfig(species=species, radial_r=(0.6, 0.9, 1.2), radial_width=0.15,
                          angular=((0.8, 1.0, 2.0), (0.8, -1.0, 1.0)))
    pts, types = random_system(rng, 90, (5.0, 5.0, 5.0), n_species=len(species))
    sf = StructureFunctions(cfg, chunk_size=16, kernel=kernel).compute((5.0, 5.0, 5.0), pts, types)
    assert sf.features.shape[1] == 3 * len(species) + 2 * len(species) * (len(species) + 1) // 2
    assert_close(sf.features, cached_reference(("species", species),
                                               lambda: reference_for_config(cfg, (5.0, 5.0, 5.0), pts, types)))


@pytest.mark.parametrize("grid,width", [
    ((0.5, 1.0, 1.5, 2.0, 2.5), 0.01),  # step 50 L: direct path (window factor would overflow)
    (tuple(np.round(np.arange(0.05, 2.0, 0.05), 10)), 0.1),  # step L/2: window of +-15 points
    (tuple(np.round(np.arange(0.05, 2.0, 0.05), 10)), 0.3),  # window wider than the grid: direct
])
@pytest.mark.parametrize("kernel", KERNELS)
def test_matches_reference_grid_extremes(grid, width, kernel):
    """Grid step much wider / much narrower than L (direct radial path / wide window)."""
    rng = np.random.default_rng(17)
    cfg = StructureConfig(radial_r=grid, radial_width=width, angular=())
    pts, types = random_system(rng, 120, (7.0, 7.0, 7.0))
    sf = StructureFunctions(cfg, kernel=kernel).compute((7.0, 7.0, 7.0), pts, types)
    assert_close(sf.features, cached_reference(("grid", grid, width),
                                               lambda: reference_for_config(cfg, (7.0, 7.0, 7.0), pts, types)))


@pytest.mark.parametrize("kernel", KERNELS)
def test_minimum_image_fallback_small_box(kernel):
    """Box barely above twice the cutoff: the cell engine falls back to the minimum image."""
    rng = np.random.default_rng(3)
    cfg = StructureConfig(radial_r=(0.4, 0.7, 1.0), radial_width=0.1, angular=((0.6, 1.0, 2.0),))
    L = 2.02 * cfg.cutoff
    pts, types = random_system(rng, 30, (L, L, L))
    sf = StructureFunctions(cfg, kernel=kernel).compute((L, L, L), pts, types)
    assert_close(sf.features, reference_for_config(cfg, (L, L, L), pts, types))


@pytest.mark.parametrize("kernel", KERNELS)
def test_engines_threads_chunks_agree(kernel):
    rng = np.random.default_rng(11)
    pts, types = random_system(rng, 200, (6.0, 6.0, 6.0))
    a = StructureFunctions(SMALL, kernel=kernel).compute((6.0, 6.0, 6.0), pts, types).features
    b = StructureFunctions(SMALL, chunk_size=5, n_threads=2, kernel=kernel).compute((6.0, 6.0, 6.0), pts, types).features
    c = StructureFunctions(SMALL, neighbours="freud", chunk_size=64, kernel=kernel).compute(
        (6.0, 6.0, 6.0), pts, types).features
    np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(c, a, rtol=1e-6, atol=1e-12)
    q = np.array([17, 3, 17, 199])
    d = StructureFunctions(SMALL, kernel=kernel).compute((6.0, 6.0, 6.0), pts, types, q)
    np.testing.assert_allclose(d.features, a[q], rtol=1e-6, atol=1e-12)
    assert np.all(d.query_indices == q)
    e = StructureFunctions(SMALL, kernel=kernel).compute((6.0, 6.0, 6.0), pts, types, np.array([], dtype=int))
    assert e.features.shape == (0, SMALL.n_features)
    if kernel == "numba":  # and the two kernels agree with each other
        ref = StructureFunctions(SMALL, kernel="numpy").compute((6.0, 6.0, 6.0), pts, types).features
        np.testing.assert_allclose(a, ref, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("kernel", KERNELS)
def test_box_forms_and_wrapping(kernel):
    import freud

    rng = np.random.default_rng(5)
    pts, types = random_system(rng, 60, (6.0, 6.5))

    def f(box, p):
        return StructureFunctions(SMALL, kernel=kernel).compute(box, p, types).features

    a = f((6.0, 6.5), pts)
    b = f((6.0, 6.5, 0.0), pts[:, :2])
    c = f(freud.box.Box(6.0, 6.5, is2D=True), pts)
    shifted = pts.copy()
    shifted[:, 0] += 3 * 6.0  # outside the box: wrapped
    d = f((6.0, 6.5), shifted)
    for x in (b, c, d):
        np.testing.assert_allclose(x, a, rtol=1e-6, atol=1e-12)


@pytest.mark.skipif(not HAVE_NUMBA, reason=f"numba kernel unavailable ({_NB_REASON})")
def test_numba_dense_cluster_grows_buffers():
    """Half the particles in a small cluster: far more neighbours per query than the density
    predicts, so the numba neighbour buffers must grow (and the result stay exact)."""
    rng = np.random.default_rng(8)
    pts, types = random_system(rng, 160, (6.0, 6.0, 6.0), edges=False)
    pts[:80] = rng.uniform(-0.9, 0.9, size=(80, 3))
    q = np.r_[0:6, 150:156]
    sf = StructureFunctions(SMALL, kernel="numba", chunk_size=64).compute((6.0, 6.0, 6.0), pts, types, q)
    assert_close(sf.features, reference_for_config(SMALL, (6.0, 6.0, 6.0), pts, types, query=q))


# ----------------------------------------------------------------------------- truncation
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("tol", [1e-2, 1e-4])
def test_truncation_bound(tol, kernel):
    """Against a reference with a much larger cutoff: every dropped term is below tolerance x the
    largest value of one term, hence |F - F_big| <= tolerance x max term x (number dropped)."""
    rng = np.random.default_rng(21)
    cfg = StructureConfig(radial_r=(0.5, 0.8, 1.1), radial_width=0.12,
                          angular=((0.8, 1.0, 1.0), (0.8, -1.0, 4.0), (0.6, 1.0, 16.0)), tolerance=tol)
    L = 3.2 * cfg.cutoff
    lengths = (L, L, L)
    pts, types = random_system(rng, 220, lengths, edges=False)
    q = np.arange(25)
    fast = StructureFunctions(cfg, kernel=kernel).compute(lengths, pts, types, q).features.astype(np.float64)
    big = 0.49 * L
    ref_big = cached_reference(("big", tol), lambda: reference_for_config(
        cfg, lengths, pts, types, query=q, rc_radial=big, rc_angular=big))
    _, dropped = cached_reference(("dropped", tol), lambda: reference_for_config(
        cfg, lengths, pts, types, query=q[:4], collect_dropped=True))
    assert 0 < dropped["radial"] <= tol and 0 < dropped["angular"] <= tol  # the per-term guarantee
    assert np.abs(fast - ref_big).max() > 0.01 * tol  # the truncation is visible, not vacuous
    nr = cfg.n_radial
    for row, i in enumerate(q):
        d = minimum_image(pts - pts[i], np.array(lengths))
        r = np.sqrt((d * d).sum(1))
        r[i] = np.inf
        far_r = [np.sum((types == s) & (r >= cfg.radial_cutoff) & (r < big)) for s in range(2)]
        n_in = np.sum(r < big)
        n_core = np.sum(r < cfg.angular_cutoff)
        far_pairs = n_in * (n_in - 1) // 2 - n_core * (n_core - 1) // 2
        for s in range(2):
            err = np.abs(fast[row, s * 3:(s + 1) * 3] - ref_big[row, s * 3:(s + 1) * 3])
            assert np.all(err <= tol * far_r[s] + 1e-7)
        for t, (xi, lam, z) in enumerate(cfg.angular):
            cols = nr + np.arange(3) * len(cfg.angular) + t
            err = np.abs(fast[row, cols] - ref_big[row, cols])
            assert np.all(err <= tol * (1 + abs(lam)) ** z * far_pairs + 1e-7 * (1 + ref_big[row, cols]))


# ----------------------------------------------------------------------------- errors
@pytest.fixture
def tiny():
    rng = np.random.default_rng(0)
    pts, types = random_system(rng, 40, (6.0, 6.0, 6.0), edges=False)
    return pts, types


def test_error_types(tiny):
    pts, types = tiny
    bad = types.copy()
    bad[3] = 2
    with pytest.raises(DataError, match="type id 2"):
        StructureFunctions(SMALL).compute((6.0, 6.0, 6.0), pts, bad)
    bad[3] = -1
    with pytest.raises(DataError):
        StructureFunctions(SMALL).compute((6.0, 6.0, 6.0), pts, bad)
    with pytest.raises(DataError):
        StructureFunctions(SMALL).compute((6.0, 6.0, 6.0), pts, types + 0.5)
    with pytest.raises(DataError):
        StructureFunctions(SMALL).compute((6.0, 6.0, 6.0), pts, types[:-1])


@pytest.mark.parametrize("box", [(0.0, 6.0, 6.0), (6.0, -6.0, 6.0), (6.0, 0.0), (float("inf"), 6, 6)])
def test_error_box_lengths(tiny, box):
    pts, types = tiny
    with pytest.raises(DataError, match="box lengths"):
        StructureFunctions(SMALL).compute(box, pts if len(box) == 3 else pts * [1, 1, 0], types)


def test_error_cutoff_above_half_box(tiny):
    pts, types = tiny
    with pytest.raises(UsageError, match="half the smallest box length"):
        StructureFunctions(StructureConfig()).compute((6.0, 6.0, 6.0), pts, types)


@pytest.mark.parametrize("kernel", KERNELS)
def test_error_positions(tiny, kernel):
    pts, types = tiny
    p = pts.copy()
    p[5, 1] = np.nan
    with pytest.raises(DataError, match="non-finite position"):
        StructureFunctions(SMALL, kernel=kernel).compute((6.0, 6.0, 6.0), p, types)
    p = pts.copy()
    p[7] = p[2]
    for engine in ENGINES:
        for n_threads in (1, 2):
            with pytest.raises(DataError, match=r"particles (2 and 7|7 and 2) are at the same position"):
                StructureFunctions(SMALL, neighbours=engine, kernel=kernel, n_threads=n_threads,
                                   chunk_size=8).compute((6.0, 6.0, 6.0), p, types)
    with pytest.raises(DataError, match="z != 0"):
        StructureFunctions(SMALL).compute((6.0, 6.0), pts, types)
    with pytest.raises(DataError, match="shape"):
        StructureFunctions(SMALL).compute((6.0, 6.0, 6.0), pts[:, :2], types)


def test_error_usage(tiny):
    import freud

    pts, types = tiny
    with pytest.raises(UsageError, match="compute"):
        StructureFunctions(SMALL).features
    with pytest.raises(UsageError):
        StructureFunctions(SMALL).compute((6.0, 6.0, 6.0), pts, types, [0, 40])
    with pytest.raises(UsageError):
        StructureFunctions(SMALL).compute(freud.box.Box(6, 6, 6, 0.1, 0, 0), pts, types)
    with pytest.raises(UsageError):
        StructureFunctions(SMALL, chunk_size=0)
    with pytest.raises(UsageError):
        StructureFunctions(SMALL, neighbours="kdtree")
    with pytest.raises(UsageError, match="kernel must be one of auto, numba, numpy"):
        StructureFunctions(SMALL, kernel="cuda")
    with pytest.raises(UsageError):
        StructureFunctions({"radial_r": [1.0]})


def test_kernel_choice(monkeypatch):
    assert StructureFunctions(SMALL, kernel="numpy").kernel_ == "numpy"
    assert StructureFunctions(SMALL).kernel_ == ("numba" if HAVE_NUMBA else "numpy")
    if HAVE_NUMBA:
        assert StructureFunctions(SMALL, kernel="numba").kernel_ == "numba"
    # the kernel is not a convention: the stored conventions do not mention it
    assert "kernel" not in json.dumps(SMALL.conventions())
    # without numba: "auto" falls back to numpy, "numba" is a one-line UsageError naming the extra
    monkeypatch.setattr(structure, "_numba_module", lambda: (None, "numba is not installed (simulated)"))
    assert StructureFunctions(SMALL).kernel_ == "numpy"
    with pytest.raises(UsageError) as exc:
        StructureFunctions(SMALL, kernel="numba")
    msg = str(exc.value)
    assert "pip install 'glass-diag[fast]'" in msg and "\n" not in msg


def test_reference_is_sane():
    """The reference itself on the hand triangle (guards the test oracle)."""
    pts, types = _hand_triangle(0.0, (10.0, 10.0, 10.0), 3)
    ref = reference_features((10.0, 10.0, 10.0), pts, types, ["A", "B"], (1.0,), 0.2, ((1.0, 1.0, 1.0),),
                             (("A", "B"),), 3.0, 3.0)
    assert ref[0, 0] == pytest.approx(1.0) and ref[0, 1] == pytest.approx(hand_gaussian(1.2, 1.0, 0.2))
    assert ref[0, 2] == pytest.approx(math.exp(-4.88))
