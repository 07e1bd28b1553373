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
from adapters.structure_reference import (
    box_matrix,
    hand_gaussian,
    minimum_image,
    perpendicular_widths,
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
    with pytest.raises(UsageError, match="only fully periodic"):
        b = freud.box.Box(6, 6, 6)
        b.periodic = (True, False, True)
        StructureFunctions(SMALL).compute(b, pts, types)
    for box in [(6.0, 6.0, 6.0, 0.1), (6.0,), (6.0, 6.0, 0.0, 0.1, 0.2, 0.0), "box", None]:
        with pytest.raises(UsageError, match="box"):
            StructureFunctions(SMALL).compute(box, pts, types)
    with pytest.raises(DataError, match="tilt factors must be finite"):
        StructureFunctions(SMALL).compute((6.0, 6.0, 6.0, float("nan"), 0.0, 0.0), pts, types)
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


# ----------------------------------------------------------------------------- any periodic box
# The definition is the sum over the infinite periodic system: when a cutoff exceeds half the box
# (or the box is triclinic), every periodic image within the cutoff counts, the particle's own
# images included. The reference enumerates lattice shifts explicitly.
TRICLINIC = (9.0, 10.5, 12.0, 0.3, 0.1, -0.2)


def jittered_lattice(rng, box, counts, n_b, jitter=0.06):
    """A jittered simple lattice in fractional coordinates of ``box`` (no two particles closer
    than ~0.8 at KA density), ``n_b`` random particles of type 1; positions in any image (shifted
    by whole lattice vectors at random, so the code must wrap them)."""
    A = box_matrix(box)
    dim = A.shape[0]
    grids = np.meshgrid(*[(np.arange(c) + 0.5) / c - 0.5 for c in counts], indexing="ij")
    f = np.stack(grids, -1).reshape(-1, dim)
    n = len(f)
    f = f + rng.integers(-2, 3, size=(n, dim))  # far images: compute() wraps
    pts = np.zeros((n, 3))
    pts[:, :dim] = f @ A.T + rng.uniform(-jitter, jitter, size=(n, dim))
    types = np.zeros(n, dtype=np.int64)
    types[rng.permutation(n)[:n_b]] = 1
    return pts, types


def ka_small_box():
    """N = 1000 KA-like frame at density 1.2: L = 9.41, below twice the default cutoff 5.43."""
    rng = np.random.default_rng(1000)
    L = (1000 / 1.2) ** (1 / 3)
    pts, types = jittered_lattice(rng, (L, L, L), (10, 10, 10), 200)
    return (L, L, L), pts, types


def replicate(box, pts, types, k=2):
    """The system repeated k times along every lattice vector: box (k Lx, k Ly[, k Lz], same tilts)
    (tilt factors are relative, so the lattice vectors are k times longer); copy c of particle i is
    particle c * N + i."""
    b = list(np.asarray(box, dtype=float).reshape(-1))
    b = b + [0.0] * (3 - len(b)) if len(b) < 3 else b
    A = box_matrix(b)
    dim = A.shape[0]
    shifts = [np.asarray(s, dtype=float) for s in np.ndindex(*([k] * dim))]
    big_pts = np.concatenate([pts + np.pad(A @ s, (0, 3 - dim)) for s in shifts])
    big = [k * b[0], k * b[1], k * b[2] if dim == 3 else 0.0] + b[3:6]
    return tuple(big), big_pts, np.tile(types, len(shifts)), len(shifts)


def test_reference_counts_own_images_by_hand():
    """One particle in a cube of side 1.5: its only neighbours are its own images, 6 at 1.5 and
    12 at 1.5 sqrt 2 (and 8 at 1.5 sqrt 3, beyond both cutoffs of HAND)."""
    L = 1.5
    assert HAND.radial_cutoff < L * math.sqrt(3) and L * math.sqrt(2) < HAND.angular_cutoff < HAND.radial_cutoff
    ref = reference_for_config(HAND, (L, L, L), np.zeros((1, 3)), np.zeros(1, dtype=int))
    Lw = HAND.radial_width
    g = [6 * hand_gaussian(L, r, Lw) + 12 * hand_gaussian(L * math.sqrt(2), r, Lw) for r in HAND.radial_r]
    assert ref[0, :4] == pytest.approx(g, rel=1e-12)
    vecs = [np.array(v, dtype=float) * L for v in np.ndindex(3, 3, 3)]
    vecs = [v - L for v in vecs if 0 < np.sum((v - L) ** 2) <= 2 * L * L + 1e-9]
    assert len(vecs) == 18
    aa = []
    for xi, lam, z in HAND.angular:
        t = 0.0
        for a in range(18):
            for b in range(a + 1, 18):
                u, v = vecs[a], vecs[b]
                s2 = u @ u + v @ v + (v - u) @ (v - u)
                t += math.exp(-s2 / xi**2) * (1 + lam * (u @ v) / math.sqrt((u @ u) * (v @ v))) ** z
        aa.append(t)
    assert ref[0, 8:11] == pytest.approx(aa, rel=1e-12)
    assert np.all(ref[0, 4:8] == 0) and np.all(ref[0, 11:] == 0)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("dim", [2, 3])
def test_own_images_single_particle(dim, engine, kernel):
    """A lone particle in boxes smaller than the cutoff (even smaller than the grid spacing of
    its images): only its own periodic images contribute."""
    box = (1.5, 1.5, 1.5) if dim == 3 else (1.1, 0.7)
    pts = np.zeros((1, 3))
    for types in (np.zeros(1, dtype=int), np.ones(1, dtype=int)):
        f = StructureFunctions(HAND, neighbours=engine, kernel=kernel).compute(box, pts, types).features
        ref = cached_reference(("lone", dim, int(types[0])),
                               lambda: reference_for_config(HAND, box, pts, types))
        assert ref.max() > 0
        assert_close(f, ref)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("engine", ENGINES)
def test_small_box_default_grid(engine, kernel):
    """N = 1000 KA-like box (L = 9.41 < 2 x cutoff 5.43) with the 166 default features: equal to
    the explicit-image brute force (query subset)."""
    box, pts, types = ka_small_box()
    cfg = StructureConfig.kob_andersen()
    assert cfg.cutoff > box[0] / 2
    q = np.random.default_rng(1).choice(1000, 12, replace=False)
    sf = StructureFunctions(cfg, neighbours=engine, kernel=kernel, chunk_size=5, n_threads=2)
    sf.compute(box, pts, types, q)
    ref = cached_reference("small-box-default", lambda: reference_for_config(cfg, box, pts, types, query=q))
    assert_close(sf.features, ref)
    assert np.all(sf.query_indices == q)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("box,n", [
    ((2.3, 3.1), 9),  # 2D, both cutoffs above half the box
    ((1.3, 0.9), 3),  # 2D, box smaller than the angular cutoff
    ((4.0, 3.0, 0.0, -0.45, 0.0, 0.0), 14),  # 2D triclinic, small
    ((2.5, 3.0, 2.2), 12),  # 3D small
    ((4.0, 3.0, 3.5, 1.3, -0.7, 0.6), 10),  # 3D, tilts beyond +-1/2 (a box that is not reduced)
])
@pytest.mark.parametrize("cfg", [SMALL, GENERAL], ids=["integer-powers", "general"])
def test_small_boxes_match_reference(box, n, cfg, engine, kernel):
    rng = np.random.default_rng(n)
    A = box_matrix(box)
    dim = A.shape[0]
    pts = np.zeros((n, 3))
    pts[:, :dim] = rng.uniform(-0.5, 0.5, size=(n, dim)) @ A.T
    types = rng.integers(0, 2, size=n)
    types[:2] = (0, 1)
    f = StructureFunctions(cfg, neighbours=engine, kernel=kernel, chunk_size=4).compute(box, pts, types).features
    ref = cached_reference(("small", box, cfg is SMALL), lambda: reference_for_config(cfg, box, pts, types))
    assert ref[:, cfg.n_radial:].max() > 0
    assert_close(f, ref)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("cfg", [StructureConfig.kob_andersen(), SMALL], ids=["default-small-box", "large-box"])
def test_triclinic_box(cfg, engine, kernel):
    """Triclinic 9 x 10.5 x 12 box (xy = 0.3, xz = 0.1, yz = -0.2) at density ~1.2: with the
    default grid the cutoff exceeds half the perpendicular widths, with SMALL it is far below."""
    rng = np.random.default_rng(12)
    pts, types = jittered_lattice(rng, TRICLINIC, (10, 11, 12), 264)
    w = perpendicular_widths(box_matrix(TRICLINIC))
    assert (cfg.cutoff > w.min() / 2) == (cfg is not SMALL)
    q = np.r_[0, 131, rng.choice(len(pts), 10, replace=False)]
    sf = StructureFunctions(cfg, neighbours=engine, kernel=kernel, chunk_size=7).compute(TRICLINIC, pts, types, q)
    ref = cached_reference(("triclinic", cfg is SMALL),
                           lambda: reference_for_config(cfg, TRICLINIC, pts, types, query=q))
    assert_close(sf.features, ref)


@pytest.mark.parametrize("kernel", KERNELS)
def test_triclinic_box_forms(kernel):
    """The same triclinic box as a 6-tuple, a freud Box with tilts and an object with
    freud_params(); positions in any image."""
    import freud

    rng = np.random.default_rng(4)
    box = (5.0, 5.5, 6.0, 0.3, 0.1, -0.2)
    pts, types = jittered_lattice(rng, box, (5, 5, 6), 30)

    class TrajBox:
        def freud_params(self):
            return box

    def f(b, p):
        return StructureFunctions(SMALL, kernel=kernel).compute(b, p, types).features

    a = f(box, pts)
    assert_close(a, cached_reference("tri-forms", lambda: reference_for_config(SMALL, box, pts, types)))
    np.testing.assert_array_equal(f(TrajBox(), pts), a)
    moved = pts + box_matrix(box) @ np.array([3.0, -1.0, 2.0])  # another image of every particle
    assert_close(f(box, moved), cached_reference("tri-forms", None))
    # freud stores its box in float32: the reference of freud's own numbers
    fb = freud.box.Box(*box)
    assert fb.xy != 0.3  # (0.3 is not a float32)
    fbox = (fb.Lx, fb.Ly, fb.Lz, fb.xy, fb.xz, fb.yz)
    assert_close(f(fb, pts), reference_for_config(SMALL, fbox, pts, types))
    fb2 = freud.box.Box(5.0, 5.5, 0.0, 0.4, is2D=True)
    p2 = pts * [1, 1, 0]
    assert_close(f(fb2, p2), reference_for_config(SMALL, (fb2.Lx, fb2.Ly, 0.0, fb2.xy, 0.0, 0.0), p2, types))


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("case", ["ka-small", "triclinic-default", "2d-triclinic"])
def test_replication_invariance(case, engine, kernel):
    """The system repeated 2 x 2 (x 2) is the same infinite periodic system: every copy of a
    particle has the features of the particle in the small box. For ka-small the big box
    (L = 18.8) is above twice the cutoff, so this also ties the image path to the usual fast path."""
    rng = np.random.default_rng(99)
    if case == "ka-small":
        box, pts, types = ka_small_box()
        cfg = StructureConfig.kob_andersen()
    elif case == "triclinic-default":
        box = (4.5, 5.25, 6.0, 0.3, 0.1, -0.2)
        pts, types = jittered_lattice(rng, box, (5, 6, 6), 36)
        cfg = StructureConfig.kob_andersen()
    else:
        box = (3.1, 2.6, 0.0, 0.35, 0.0, 0.0)
        pts, types = jittered_lattice(rng, box, (3, 3), 2, jitter=0.1)
        cfg = SMALL
    n = len(pts)
    big, big_pts, big_types, copies = replicate(box, pts, types)
    q = rng.choice(n, min(n, 8), replace=False)
    small = StructureFunctions(cfg, neighbours=engine, kernel=kernel).compute(box, pts, types, q).features
    bq = (np.arange(copies)[:, None] * n + q[None, :]).ravel()
    large = StructureFunctions(cfg, neighbours=engine, kernel=kernel).compute(big, big_pts, big_types, bq).features
    assert small.max() > 0
    for c in range(copies):
        assert_close(large[c * len(q):(c + 1) * len(q)], small.astype(np.float64))


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("engine", ENGINES)
def test_coincident_across_images_small_box(engine, kernel):
    """Two particles at the same position modulo the box (one a lattice vector away, exact
    binary numbers so that both wrap to the same point), and two at the same position in a
    triclinic box, both below twice the cutoff: the message names the two particles."""
    rng = np.random.default_rng(2)
    box = (2.0, 2.0, 2.0)
    pts, types = jittered_lattice(rng, box, (3, 3, 3), 5)
    pts[4] = (0.25, 0.5, -0.75)
    pts[11] = pts[4] + (2.0, 0.0, -2.0)
    with pytest.raises(DataError, match=r"particles (4 and 11|11 and 4) are at the same position"):
        StructureFunctions(SMALL, neighbours=engine, kernel=kernel).compute(box, pts, types)
    box = (3.0, 3.2, 2.9, 0.2, 0.0, 0.1)
    pts, types = jittered_lattice(rng, box, (3, 3, 3), 5)
    pts[20] = pts[3]
    with pytest.raises(DataError, match=r"particles (3 and 20|20 and 3) are at the same position"):
        StructureFunctions(SMALL, neighbours=engine, kernel=kernel).compute(box, pts, types)


def test_import_does_not_load_freud_or_matplotlib():
    import subprocess
    import sys

    code = ("import sys, adapters.structure; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'freud', 'matplotlib', 'numba'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    # and the cells engine with a tuple box does not need freud either
    code = ("import sys, numpy as np; from adapters.structure import StructureFunctions as S; "
            "S(kernel='numpy').compute((3.0, 3.0, 3.0), np.zeros((1, 3)), np.zeros(1, int)); "
            "print('freud' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_conventions_record_the_boundary():
    conv = StructureConfig().conventions()
    assert "periodic image" in conv["boundary"] and "triclinic" in conv["boundary"]
    assert "own periodic images" in conv["neighbour_condition"]
