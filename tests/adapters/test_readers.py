"""Every reader on the same synthetic trajectories: agreement with the truth and each other, bad input."""

from __future__ import annotations

import os
import sys

import h5py
import numpy as np
import pytest

from adapters.build import species_type_map
from adapters.readers import FORMATS, detect_format, open_trajectory
from adapters.trajectory import Box, Frame, Trajectory, Unwrapper, make_box, unwrap_positions
from diag.errors import DataError, UsageError

from .writers import EXT, make_synthetic, write, write_gsd, write_h5md, write_lammps, write_xyz

FMTS = ["h5md", "gsd", "lammps", "xyz"]


def read_all(path, fmt=None, **kw):
    with open_trajectory(path, fmt, **kw) as tr:
        frames = list(tr)
        U = unwrap_positions(frames, tr.unwrap_method, tr.path)
        return tr, frames, U


def mod_L(d, L):
    return d - L * np.round(d / L)


def assert_matches_truth(syn, tr, frames, U, atol):
    """Positions agree with the truth up to the file's choice of origin."""
    L = syn.lengths
    assert tr.n_frames == syn.n_frames and tr.n_particles == syn.n and tr.dimensions == syn.dim
    for k, fr in enumerate(frames):
        assert fr.index == k
        np.testing.assert_allclose(fr.box.L, L, rtol=1e-12)
        rel = fr.positions - fr.box.lo
        np.testing.assert_allclose(mod_L(rel - (syn.wrapped[k] - syn.low), L), 0, atol=atol)
        assert np.all(np.abs(fr.box.centred(fr.positions)) <= L / 2 + 1e-12)
        w = fr.wrapped()
        assert np.all((w >= fr.box.lo) & (w < fr.box.lo + L))
    # unwrapped: the same displacements as the truth, the same start modulo the box
    np.testing.assert_allclose(U - U[0], syn.unwrapped - syn.unwrapped[0], atol=atol)
    np.testing.assert_allclose(mod_L((U[0] - frames[0].box.lo) - (syn.unwrapped[0] - syn.low), L), 0, atol=atol)
    # the drifter and particle 0 really crossed the box boundary (and unwrapping followed)
    assert syn.images[:, syn.drifter].any() and syn.images[:, 0].any()
    # species: every particle maps to its true species
    tmap, _ = species_type_map(tr, syn.species)
    np.testing.assert_array_equal(tmap[tr.types], syn.typeid)
    steps = [fr.step for fr in frames]
    assert steps == syn.steps.tolist()
    assert tr.frame_interval_steps == 50


@pytest.fixture(scope="module", params=[3, 2], ids=["3d", "2d"])
def synthetic(request):
    return make_synthetic(dim=request.param, n_side=4, n_frames=12, seed=request.param)


@pytest.mark.parametrize("fmt", FMTS)
def test_reader_matches_truth(tmp_path, synthetic, fmt):
    path = tmp_path / f"t{EXT[fmt]}"
    write(fmt, path, synthetic)
    tr, frames, U = read_all(path)
    assert tr.format == fmt
    atol = 2e-6 if fmt == "gsd" else 1e-12  # GSD stores single precision
    assert_matches_truth(synthetic, tr, frames, U, atol)
    expected_unwrap = {"h5md": "images", "gsd": "images", "lammps": "images", "xyz": "minimum-image"}
    assert tr.unwrap_method == expected_unwrap[fmt]
    if fmt != "lammps":
        assert tr.temperature == pytest.approx(synthetic.temperature)
        assert tr.temperature_source
    else:
        assert tr.temperature is None


def test_readers_agree_with_each_other(tmp_path, synthetic):
    got = {}
    for fmt in FMTS:
        path = tmp_path / f"t{EXT[fmt]}"
        write(fmt, path, synthetic)
        tr, frames, U = read_all(path)
        tmap, _ = species_type_map(tr, synthetic.species)
        got[fmt] = (np.stack([f.positions - f.box.lo for f in frames]), U - frames[0].box.lo, tmap[tr.types])
    ref = got["lammps"]
    L = synthetic.lengths
    for fmt, (W, U, types) in got.items():
        np.testing.assert_allclose(mod_L(W - ref[0], L), 0, atol=2e-6, err_msg=fmt)
        np.testing.assert_allclose(U - U[0] - (ref[1] - ref[1][0]), 0, atol=2e-6, err_msg=fmt)
        np.testing.assert_array_equal(types, ref[2], err_msg=fmt)


# ------------------------------------------------------------- format variants
@pytest.mark.parametrize(
    "kw,unwrap",
    [
        ({"columns": "xu", "images": False}, "file"),
        ({"columns": "xs", "images": True}, "images"),
        ({"columns": "xs", "images": False}, "minimum-image"),
        ({"columns": "x", "images": False, "time": True}, "minimum-image"),
        ({"columns": "x", "images": True, "element": True}, "images"),
    ],
)
def test_lammps_variants(tmp_path, kw, unwrap):
    syn = make_synthetic(dim=3, n_frames=8, seed=11)
    path = tmp_path / "t.lammpstrj"
    write_lammps(path, syn, **kw)
    tr, frames, U = read_all(path)
    assert tr.unwrap_method == unwrap
    assert_matches_truth(syn, tr, frames, U, atol=1e-12)
    np.testing.assert_array_equal(tr.particle_ids, np.arange(1, syn.n + 1))
    if kw.get("element"):
        assert tr.species == ("A", "B") and tr.numeric_species_base is None
    else:
        assert tr.species == ("1", "2") and tr.numeric_species_base == 1
    if kw.get("time"):
        assert frames[3].time == pytest.approx(syn.times[3]) and tr.frame_interval_time == pytest.approx(0.25)


@pytest.mark.parametrize(
    "kw,unwrap",
    [
        ({"images": False}, "minimum-image"),
        ({"edges": "attribute"}, "images"),
        ({"edges": "matrix"}, "images"),
        ({"edges": "time", "fixed_step": True}, "images"),
        ({"species": "enum"}, "images"),
    ],
)
def test_h5md_variants(tmp_path, kw, unwrap):
    syn = make_synthetic(dim=3, n_frames=8, seed=12)
    path = tmp_path / "t.h5md"
    write_h5md(path, syn, **kw)
    tr, frames, U = read_all(path)
    assert tr.unwrap_method == unwrap
    assert_matches_truth(syn, tr, frames, U, atol=1e-9)
    if kw.get("species") == "enum":
        assert tr.species == ("A", "B") and tr.numeric_species_base is None
    else:
        assert tr.species == ("0", "1") and tr.numeric_species_base == 0
    if kw.get("fixed_step"):
        assert [f.time for f in frames[:2]] == pytest.approx(syn.times[:2].tolist())


def test_gsd_without_dynamic_images_uses_minimum_image(tmp_path):
    syn = make_synthetic(dim=3, n_frames=8, seed=13)
    path = tmp_path / "t.gsd"
    write_gsd(path, syn, images=False, log_temperature=False)
    tr, frames, U = read_all(path)
    assert tr.unwrap_method == "minimum-image" and tr.temperature is None
    assert_matches_truth(syn, tr, frames, U, atol=2e-6)


def test_format_detected_from_content_whatever_the_extension(tmp_path):
    syn = make_synthetic(dim=2, n_frames=3, seed=14)
    for fmt in FMTS:
        path = tmp_path / f"{fmt}.data"
        write(fmt, path, syn)
        assert detect_format(str(path)) == fmt
        assert open_trajectory(path).format == fmt
    junk = tmp_path / "junk.data"
    junk.write_text("hello\n")
    with pytest.raises(DataError, match="cannot tell the trajectory format"):
        open_trajectory(junk)
    with pytest.raises(UsageError, match="unknown trajectory format"):
        open_trajectory(tmp_path / "xyz.data", "pdb")
    assert set(FORMATS) == set(FMTS)


def test_frames_are_read_lazily(tmp_path):
    """Frames before a broken one are delivered before the error: the file is streamed."""
    syn = make_synthetic(dim=3, n_frames=6, seed=15)
    path = tmp_path / "t.dump"
    write_lammps(path, syn)
    text = path.read_text().splitlines(keepends=True)
    per_frame = len(text) // 6
    bad = text[: 4 * per_frame] + ["ITEM: TIMESTEP\n", "oops\n"] + text[4 * per_frame + 2 :]
    path.write_text("".join(bad))
    tr = open_trajectory(path)
    seen = []
    with pytest.raises(DataError, match="frame 4"):
        for fr in tr:
            seen.append(fr.index)
    assert seen == [0, 1, 2, 3]


def test_time_spacing_without_steps(tmp_path):
    syn = make_synthetic(dim=2, n_frames=8, seed=16)
    syn.times = 1000.0 + 0.0125 * np.arange(8)  # printed with 6 digits: 1000.01, 1000.02 or .03, ...
    path = tmp_path / "t.xyz"
    write_xyz(path, syn, step=False, time_format="g")
    tr, frames, _ = read_all(path)
    assert frames[0].step is None and tr.frame_interval_steps is None
    assert frames[1].time != pytest.approx(1000.0125, abs=1e-4)  # really rounded
    assert tr.frame_interval_time == pytest.approx(0.0125, rel=0.1)
    syn.times = np.array([0.0, 1, 2, 3, 5, 6, 7, 8])
    write_xyz(path, syn, step=False)
    with pytest.raises(DataError, match="not equally spaced in time") as exc:
        read_fully(path)
    assert_one_line(exc, path)


# ----------------------------------------------------------------- bad input
def assert_one_line(exc_info, path):
    msg = str(exc_info.value)
    assert msg.startswith(f"{path}: "), msg
    assert "\n" not in msg
    return msg


def read_fully(path, fmt=None):
    with open_trajectory(path, fmt) as tr:
        for _ in tr:
            pass


@pytest.fixture(scope="module")
def syn3():
    return make_synthetic(dim=3, n_side=3, n_frames=5, seed=21)


@pytest.mark.parametrize("fmt", FMTS)
def test_truncated_files(tmp_path, syn3, fmt):
    path = tmp_path / f"t{EXT[fmt]}"
    write(fmt, path, syn3)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.8)])
    with pytest.raises(DataError) as exc:
        read_fully(path, fmt)
    assert_one_line(exc, path)


@pytest.mark.parametrize("fmt", ["lammps", "xyz"])
def test_truncated_mid_line(tmp_path, syn3, fmt):
    path = tmp_path / f"t{EXT[fmt]}"
    write(fmt, path, syn3)
    data = path.read_bytes()
    last_field = data.rstrip(b"\n").rsplit(b" ", 1)[1]
    path.write_bytes(data[: -(len(last_field) + 3)])  # the last line loses its last field
    with pytest.raises(DataError, match="truncated") as exc:
        read_fully(path, fmt)
    assert_one_line(exc, path)


def test_truncated_inside_a_fixed_format_number(tmp_path, syn3):
    """Printed with a fixed number of decimals (ASE's '%16.8f'), a cut last number is seen."""
    path = tmp_path / "fixed.xyz"
    write_xyz(path, syn3)
    lines = path.read_text().splitlines()
    out = []
    for ln in lines:
        w = ln.split()
        if len(w) == 4 and w[0] in ("A", "B"):
            ln = w[0] + "".join(f"{float(v):16.8f}" for v in w[1:])
        out.append(ln)
    path.write_text("\n".join(out))  # complete, without a final newline
    read_fully(path)
    path.write_text("\n".join(out)[:-3])  # cut inside the last number
    with pytest.raises(DataError, match="frame 4: last line is incomplete") as exc:
        read_fully(path)
    assert_one_line(exc, path)


def _edit_text(path, old, new, count=1):
    s = path.read_text()
    assert old in s
    path.write_text(s.replace(old, new, count))


def _lammps_box_line(syn, axis=0):
    lo, hi = float(syn.low[axis]), float(syn.low[axis] + syn.lengths[axis])
    return f"{lo!r} {hi!r}\n"


BAD_CASES = {
    # name: (format, editor, expected message fragment)
    "lammps-zero-box": ("lammps", lambda p, s: _edit_text(p, _lammps_box_line(s), f"{float(s.low[0])!r} {float(s.low[0])!r}\n"), "zero"),
    "lammps-non-periodic": ("lammps", lambda p, s: _edit_text(p, "BOX BOUNDS pp pp pp", "BOX BOUNDS ff pp pp"), "not periodic"),
    "lammps-tilts-missing": (
        "lammps",
        lambda p, s: _edit_text(p, "BOX BOUNDS pp pp pp", "BOX BOUNDS xy xz yz pp pp pp"),
        "malformed BOX BOUNDS lines (2 values",
    ),
    "lammps-wrong-columns": ("lammps", lambda p, s: _edit_text(p, "ITEM: ATOMS id type x y z ix iy iz", "ITEM: ATOMS id type q x y z ix iy iz"), "malformed"),
    "lammps-no-position": ("lammps", lambda p, s: _edit_text(p, "x y z ix", "a b c ix", count=-1), "no position columns"),
    "lammps-atom-count": ("lammps", lambda p, s: _edit_text(p, f"NUMBER OF ATOMS\n{s.n}\n", f"NUMBER OF ATOMS\n{s.n + 1}\n"), "does not match"),
    "lammps-duplicate-step": ("lammps", lambda p, s: _edit_text(p, f"TIMESTEP\n{s.steps[2]}\n", f"TIMESTEP\n{s.steps[1]}\n"), "1050 -> 1050"),
    "lammps-uneven-steps": ("lammps", lambda p, s: _edit_text(p, f"TIMESTEP\n{s.steps[3]}\n", f"TIMESTEP\n{s.steps[3] + 7}\n"), "not equally spaced"),
    "xyz-zero-box": ("xyz", None, "zero"),
    "xyz-non-periodic": ("xyz", None, "not periodic"),
    "xyz-lattice-shape": ("xyz", None, "Lattice has 6 numbers"),
    "xyz-no-lattice": ("xyz", lambda p, s: _edit_text(p, "Lattice=", "Cell=", count=-1), "no Lattice"),
    "h5md-zero-box": ("h5md", None, "zero"),
    "h5md-non-periodic": ("h5md", None, "not periodic"),
    "h5md-species-shape": ("h5md", None, "species"),
    "h5md-position-shape": ("h5md", None, "components"),
    "h5md-not-h5md": ("h5md", None, "not an H5MD file"),
    "gsd-zero-box": ("gsd", None, "zero"),
}


def _make_bad(name, path, syn):
    fmt, editor, _ = BAD_CASES[name]
    L = syn.lengths
    if fmt == "xyz":
        kw = {
            "xyz-zero-box": {"lattice": [0, 0, 0, 0, L[1], 0, 0, 0, L[2]]},
            "xyz-non-periodic": {"pbc": "T F T"},
            "xyz-lattice-shape": {"lattice": [L[0], 0, 0, 0, L[1], 0]},
        }.get(name, {})
        write_xyz(path, syn, **kw)
    elif fmt == "h5md":
        kw = {
            "h5md-zero-box": {"edges_value": [L[0], 0.0, L[2]]},
            "h5md-non-periodic": {"boundary": ["periodic", "none", "periodic"]},
        }.get(name, {})
        write_h5md(path, syn, **kw)
        with h5py.File(path, "a") as f:
            g = f["particles/all"]
            if name == "h5md-species-shape":
                del g["species"]
                g["species"] = np.zeros(syn.n - 1, dtype=np.int32)
            elif name == "h5md-position-shape":
                v = g["position/value"][()]
                del g["position/value"]
                g["position/value"] = np.concatenate([v, v[..., :1]], axis=-1)
            elif name == "h5md-not-h5md":
                del f["h5md"]
    elif fmt == "gsd":
        box = {"gsd-zero-box": [L[0], 0.0, L[2], 0, 0, 0]}[name]
        write_gsd(path, syn, box=box)
    else:
        write(fmt, path, syn)
    if editor is not None:
        editor(path, syn)


@pytest.mark.parametrize("name", sorted(BAD_CASES))
def test_bad_input_is_a_one_line_data_error(tmp_path, syn3, name):
    fmt, _, fragment = BAD_CASES[name]
    path = tmp_path / f"bad{EXT[fmt]}"
    _make_bad(name, path, syn3)
    with pytest.raises(DataError) as exc:
        read_fully(path)
    msg = assert_one_line(exc, path)
    assert fragment in msg


@pytest.mark.parametrize("fmt", FMTS)
def test_particle_far_outside_the_box(tmp_path, fmt):
    syn = make_synthetic(dim=3, n_side=3, n_frames=4, seed=22, drift=None)
    # particle 4 at frame 2 is stored 2.5 box lengths away from the box (images unchanged)
    wrapped = syn.wrapped.copy()
    wrapped[2, 4, 1] += 2.5 * syn.lengths[1]
    syn.stored_images = syn.images.copy()
    syn.stored_wrapped = wrapped
    path = tmp_path / f"far{EXT[fmt]}"
    write(fmt, path, syn)
    with pytest.raises(DataError, match="more than one box length outside") as exc:
        read_fully(path)
    msg = assert_one_line(exc, path)
    assert "frame 2" in msg and "particle 4" in msg


def test_missing_empty_and_directory_paths(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        open_trajectory(tmp_path / "nope.dump")
    empty = tmp_path / "empty.xyz"
    empty.write_text("")
    with pytest.raises(DataError, match="empty"):
        open_trajectory(empty)
    with pytest.raises(DataError, match="directory"):
        open_trajectory(tmp_path)


def test_missing_gsd_package_is_a_clear_usage_error(tmp_path, monkeypatch, syn3):
    path = tmp_path / "t.gsd"
    write_gsd(path, syn3)
    monkeypatch.setitem(sys.modules, "gsd", None)
    monkeypatch.setitem(sys.modules, "gsd.hoomd", None)
    with pytest.raises(UsageError, match=r"pip install 'glass-diag\[gsd\]'") as exc:
        open_trajectory(path)
    assert_one_line(exc, path)


def test_h5md_with_several_groups_needs_a_choice(tmp_path, syn3):
    path = tmp_path / "t.h5"
    write_h5md(path, syn3)
    with h5py.File(path, "a") as f:
        f.copy(f["particles/all"], "particles/solvent")
        f.move("particles/all", "particles/fluid")
    with pytest.raises(DataError, match="several particle groups"):
        open_trajectory(path)
    tr = open_trajectory(path, h5md_group="fluid")
    assert tr.metadata["particle_group"] == "fluid"
    tr.close()


# ------------------------------------------------------------ unit pieces
def test_box_helpers():
    b = make_box([2.0, 4.0], [1.0, -1.0])
    assert b.dimensions == 2 and b.volume == 8.0
    x = np.array([[3.0, 3.0], [0.999999, -1.0], [-7.0, 10.5]])
    w = b.wrap(x)
    assert np.all((w >= b.lo) & (w < b.lo + b.L))
    c = b.centred(x)
    assert np.all((c >= -b.L / 2) & (c < b.L / 2))
    np.testing.assert_allclose(b.minimum_image(np.array([[1.5, -2.5]])), [[-0.5, 1.5]])
    assert isinstance(make_box([1, 1, 1]), Box) and make_box([1, 1, 1]).low == (-0.5, -0.5, -0.5)
    for bad, frag in [([1, 0, 1], "zero"), ([1, np.nan, 1], "not finite"), ([1], "2 or 3")]:
        with pytest.raises(DataError, match=frag):
            make_box(bad, path="f.x")


def test_unwrapper_minimum_image_records_largest_step():
    box = make_box([10.0, 10.0, 10.0], [0, 0, 0])
    u = Unwrapper("minimum-image")
    xs = [np.array([[9.5, 0.0, 0.0]]), np.array([[0.5, 0.0, 0.0]]), np.array([[3.5, 0.0, 0.0]])]
    out = [u(Frame(index=k, box=box, positions=x)) for k, x in enumerate(xs)]
    np.testing.assert_allclose([o[0, 0] for o in out], [9.5, 10.5, 13.5])
    assert u.max_step_fraction == pytest.approx(0.3)


def test_trajectory_checks_frame_shapes(tmp_path):
    box = make_box([3.0, 3.0, 3.0])

    def frames():
        yield Frame(index=0, box=box, positions=np.zeros((2, 3)))
        yield Frame(index=1, box=box, positions=np.zeros((3, 3)))

    tr = Trajectory("mem.traj", "test", n_frames=2, dimensions=3, species=["A"], types=np.zeros(2, int), frames=frames)
    with pytest.raises(DataError, match=r"frame 1: positions have shape \(3, 3\), expected \(2, 3\)"):
        list(tr)
    with pytest.raises(DataError, match="announced"):
        list(Trajectory("mem.traj", "test", n_frames=3, dimensions=3, species=["A"], types=np.zeros(2, int),
                        frames=lambda: iter([Frame(index=0, box=box, positions=np.zeros((2, 3)))])))
    assert os.path.basename(tr.path) == "mem.traj"


# ------------------------------------------------------------ triclinic boxes
def _brute_minimum_image(box, d):
    """The shortest of d + i a + j b + k c over a generous range of images."""
    M = box.matrix
    rng = range(-9, 10)  # displacements up to ~30 in boxes of ~5: images up to 9 away
    shifts = np.array([[i, j, k][: box.dimensions] for i in rng for j in rng for k in (rng if box.dimensions == 3 else [0])])
    cand = d[:, None, :] + shifts @ M.T
    best = np.argmin(np.linalg.norm(cand, axis=-1), axis=1)
    return cand[np.arange(len(d)), best]


@pytest.mark.parametrize("dim", [2, 3])
def test_triclinic_box_against_brute_force(dim):
    rng = np.random.default_rng(31)
    L = [4.0, 5.0, 6.0][:dim]
    box = make_box(L, [1.0, -2.0, 0.5][:dim], tilts=[0.3, -0.2, 0.25])
    assert box.is_triclinic and box.tilts == ((0.3, -0.2, 0.25) if dim == 3 else (0.3, 0.0, 0.0))
    M = box.matrix
    assert np.allclose(np.triu(M), M) and np.allclose(np.diag(M), L)
    assert box.volume == pytest.approx(abs(np.linalg.det(M)))
    x = rng.normal(0.0, 8.0, size=(500, dim))
    s = box.fractional(x)
    np.testing.assert_allclose(box.lo + s @ M.T, x, atol=1e-12)
    w = box.wrap(x)
    sw = box.fractional(w)
    assert np.all((sw >= 0) & (sw < 1))
    n_periods = s - sw
    np.testing.assert_allclose(n_periods, np.round(n_periods), atol=1e-9)  # w is an image of x
    c = box.centred(x)
    sc = np.linalg.solve(M, c.T).T
    assert np.all((sc >= -0.5) & (sc < 0.5))
    k = sc - (s - 0.5)
    np.testing.assert_allclose(k, np.round(k), atol=1e-9)
    # minimum image: the brute-force shortest image for displacements shorter than half a plane distance
    d = rng.normal(0.0, 10.0, size=(400, dim))
    small = box.minimum_image(d)
    short = np.linalg.norm(small, axis=1) < 0.5 * box.plane_distances.min()
    assert short.sum() > 20
    np.testing.assert_allclose(small[short], _brute_minimum_image(box, d[short]), atol=1e-9)
    # images: r + ix a + iy b + iz c
    img = rng.integers(-3, 4, size=(10, dim))
    np.testing.assert_allclose(box.image_shift(img), img @ M.T)
    # plane distances from the reciprocal vectors
    np.testing.assert_allclose(box.plane_distances, 1.0 / np.linalg.norm(np.linalg.inv(M), axis=1))


def test_triclinic_box_matches_freud():
    freud = pytest.importorskip("freud")
    for dim, L, t in ((3, [4.0, 5.0, 6.0], [0.3, -0.2, 0.25]), (2, [4.0, 5.0], [0.4])):
        box = make_box(L, [0.5, -1.0, 2.0][:dim], tilts=t)
        fb = box.to_freud()
        # freud stores single precision
        np.testing.assert_allclose(box.freud_params(), (fb.Lx, fb.Ly, fb.Lz, fb.xy, fb.xz, fb.yz), rtol=1e-7)
        assert fb.is2D == (dim == 2)
        np.testing.assert_allclose(fb.to_matrix()[:dim, :dim], box.matrix, rtol=1e-7)
        x = np.random.default_rng(32).normal(0, 6, size=(50, dim))
        centre = box.lo + box.matrix @ np.full(dim, 0.5)
        pad = np.zeros((50, 3 - dim))
        np.testing.assert_allclose(box.centred(x), fb.wrap(np.hstack([x - centre, pad]))[:, :dim], atol=1e-5)
    # orthorhombic: unchanged conventions
    o = make_box([2.0, 3.0, 4.0])
    assert not o.is_triclinic and o.freud_params() == (2.0, 3.0, 4.0, 0.0, 0.0, 0.0)
    assert make_box([2.0, 3.0]).freud_params() == (2.0, 3.0, 0.0, 0.0, 0.0, 0.0)


def test_make_box_tilt_checks():
    assert make_box([1, 1, 1], tilts=[0, 0, 0]) == make_box([1, 1, 1])  # zero tilts are orthorhombic
    assert make_box([2, 2, 2], tilts=[-0.0, 0, 0]).tilts == (0.0, 0.0, 0.0)
    for bad in ([np.nan, 0, 0], [1e300, 0, 0], [0, 0, 2e3]):
        with pytest.raises(DataError, match="tilt factors"):
            make_box([1, 1, 1], tilts=bad, path="f.x")
    # a box centred on zero: the centre of the cell is the origin
    b = make_box([2.0, 3.0, 4.0], tilts=[0.5, 0.25, -0.5])
    np.testing.assert_allclose(b.lo + b.matrix @ [0.5, 0.5, 0.5], 0.0, atol=1e-15)


def test_box_from_cell_rotates_general_cells():
    from adapters.trajectory import box_from_cell

    rng = np.random.default_rng(33)
    cell = np.array([[4.0, 0.3, 0.2], [0.4, 4.2, -0.1], [0.1, 0.3, 4.4]])  # rows a, b, c
    box, Q = box_from_cell(cell, [1.0, 2.0, 3.0])
    assert Q is not None
    np.testing.assert_allclose(Q.T @ Q, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(cell @ Q, box.matrix.T, atol=1e-12)  # rotated rows are freud's vectors
    x = rng.normal(0, 5, size=(30, 3))
    # distances and fractional coordinates are kept by the rotation
    s_general = (x - [1.0, 2.0, 3.0]) @ np.linalg.inv(cell)
    np.testing.assert_allclose(box.fractional(x @ Q), s_general, atol=1e-12)
    # a cell already in freud's form is not rotated
    lower = np.array([[4.0, 0, 0], [0.5, 4.0, 0], [0.2, -0.3, 4.0]])
    box2, Q2 = box_from_cell(lower)
    assert Q2 is None and box2.tilts == pytest.approx((0.125, 0.05, -0.075))
    with pytest.raises(DataError, match="zero or negative"):
        box_from_cell(np.array([[0.0, 0, 0], [0, 4.0, 0], [0, 0, 4.0]]), path="f.x")


def _lammps_tilted(path, syn, xy, xz, yz):
    """A LAMMPS dump of ``syn`` (orthorhombic truth) sheared into a tilted box: r' = r + tilt terms."""
    lo = syn.low
    L = syn.lengths
    H = np.array([[L[0], xy, xz], [0, L[1], yz], [0, 0, L[2]]])
    S = (syn.unwrapped - lo) / L  # fractional coordinates of the truth
    U = lo + S @ H.T
    img = np.floor(S).astype(int)
    W = lo + (S - img) @ H.T
    lo_b = lo + np.array([min(0, xy, xz, xy + xz), min(0, yz), 0])
    hi_b = lo + L + np.array([max(0, xy, xz, xy + xz), max(0, yz), 0])
    with open(path, "w") as f:
        for k in range(syn.n_frames):
            f.write(f"ITEM: TIMESTEP\n{int(syn.steps[k])}\nITEM: NUMBER OF ATOMS\n{syn.n}\n")
            f.write("ITEM: BOX BOUNDS xy xz yz pp pp pp\n")
            for a, t in enumerate((xy, xz, yz)):
                f.write(f"{float(lo_b[a])!r} {float(hi_b[a])!r} {float(t)!r}\n")
            f.write("ITEM: ATOMS id type x y z ix iy iz\n")
            for i in range(syn.n):
                f.write(f"{i + 1} {syn.typeid[i] + 1} " + " ".join(repr(float(v)) for v in W[k, i]) + " "
                        + " ".join(str(int(v)) for v in img[k, i]) + "\n")
    return U, H


def test_lammps_tilted_box_unwrapped_by_images_and_minimum_image(tmp_path):
    syn = make_synthetic(dim=3, n_frames=10, seed=34)
    path = tmp_path / "tilt.dump"
    U_true, H = _lammps_tilted(path, syn, 1.2, -0.6, 0.8)
    tr, frames, U = read_all(path)
    box = frames[0].box
    np.testing.assert_allclose(box.matrix, H, atol=1e-12)
    assert box.tilts == pytest.approx((1.2 / H[1, 1], -0.6 / H[2, 2], 0.8 / H[2, 2]))
    assert tr.unwrap_method == "images"
    np.testing.assert_allclose(U, U_true, atol=1e-12)
    # the same frames without images: minimum image in fractional coordinates gives the same displacements
    U2 = unwrap_positions([Frame(index=f.index, box=f.box, positions=f.positions) for f in frames], "minimum-image")
    np.testing.assert_allclose(U2 - U2[0], U_true - U_true[0], atol=1e-12)


# ----------------------------------------------------------- unwrapping rules
def test_unwrapping_with_a_changing_box_agrees_with_images():
    """NPT-like: the box grows and shears every frame; fractional minimum image == r + image @ M(t).

    With a changing box the two agree when the image flags count from frame 0 (all zero
    there, as in a LAMMPS run from its start): otherwise they differ by image0 (M(t) - M(0)).
    """
    rng = np.random.default_rng(35)
    n, T = 40, 12
    steps = np.concatenate([np.zeros((1, n, 3)), rng.normal(0, 0.08, size=(T - 1, n, 3))])
    S = rng.random((n, 3)) + np.cumsum(steps, axis=0)  # fractional, unwrapped, in the primary cell at frame 0
    frames_img, frames_min = [], []
    for k in range(T):
        box = make_box(np.array([5.0, 5.5, 6.0]) * (1 + 0.03 * k), [0.0, 0.0, 0.0], tilts=[0.05 * k, 0, 0.1])
        img = np.floor(S[k]).astype(np.int64)
        pos = box.lo + (S[k] - img) @ box.matrix.T
        frames_img.append(Frame(index=k, box=box, positions=pos, image=img))
        frames_min.append(Frame(index=k, box=box, positions=pos))
    Ui = unwrap_positions(frames_img, "images")
    Um = unwrap_positions(frames_min, "minimum-image")
    np.testing.assert_allclose(Um - Um[0], Ui - Ui[0], atol=1e-12)
    assert np.abs(Ui - Ui[0]).max() > 3.0  # real crossings


@pytest.mark.parametrize("method,limit", [("minimum-image", 0.4), ("images", 0.5), ("file", 0.5)])
def test_a_step_near_half_a_box_stops_the_run(method, limit):
    box = make_box([10.0, 10.0, 10.0], [0, 0, 0])
    u = Unwrapper(method, "f.xyz", particle_ids=np.array([7, 9]))
    img = np.zeros((2, 3), dtype=np.int64)
    ok = limit - 0.01
    u(Frame(index=0, box=box, positions=np.array([[1.0, 1.0, 1.0], [5.0, 4.0, 5.0]]), image=img))
    u(Frame(index=1, box=box, positions=np.array([[1.0 + 10 * ok, 1.0, 1.0], [5.0, 4.0, 5.0]]), image=img))
    assert u.max_step_fraction == pytest.approx(ok)
    with pytest.raises(DataError) as exc:
        u(Frame(index=2, box=box, positions=np.array([[1.0 + 10 * ok, 1.0, 1.0], [5.0, 4.0 + 10 * (limit + 0.02), 5.0]]),
                image=img))
    msg = str(exc.value)
    assert msg.startswith(f"f.xyz: frame 2: particle id 9 moved {limit + 0.02:.3g} box lengths along y")
    assert f"beyond {limit:g}" in msg and "reordered between frames" in msg and "too far apart" in msg
    assert "\n" not in msg


def test_reordered_rows_without_ids_are_refused(tmp_path):
    """One species, no ids, rows shuffled in one frame: minimum image would pair different particles."""
    syn = make_synthetic(dim=3, n_side=4, n_frames=6, seed=36, drift=None)
    path = tmp_path / "shuffled.xyz"
    write_xyz(path, syn, names=["A"] * syn.n)
    lines = path.read_text().splitlines(keepends=True)
    n = syn.n
    start = 3 * (n + 2) + 2
    block = lines[start : start + n]
    lines[start : start + n] = [block[i] for i in np.random.default_rng(0).permutation(n)]
    path.write_text("".join(lines))
    with pytest.raises(DataError, match="frame 3: particle .* moved .* box lengths") as exc:
        read_all(path)
    assert_one_line(exc, path)
    # two species: the species column already shows the reordering
    write_xyz(path, syn)
    lines = path.read_text().splitlines(keepends=True)
    block = lines[start : start + n]
    lines[start : start + n] = [block[i] for i in np.random.default_rng(0).permutation(n)]
    path.write_text("".join(lines))
    with pytest.raises(DataError, match="frame 3: particle species differ from frame 0: rows reordered"):
        read_all(path)


def test_lammps_dump_without_ids_is_refused(tmp_path, syn3):
    path = tmp_path / "noid.dump"
    write_lammps(path, syn3, shuffle=False)
    text = path.read_text().replace("ITEM: ATOMS id type", "ITEM: ATOMS type")
    path.write_text("\n".join(ln.split(" ", 1)[1] if ln[:1].isdigit() and len(ln.split()) == 8 else ln
                              for ln in text.splitlines()) + "\n")
    with pytest.raises(DataError, match="no 'id' column") as exc:
        open_trajectory(path)
    assert_one_line(exc, path)


# --------------------------------------------------------------- extended XYZ
def _xyz_with_ids(path, syn, seed=0, ids_from=100):
    """Extended XYZ with an 'id' column, rows shuffled differently in every frame."""
    rng = np.random.default_rng(seed)
    write_xyz(path, syn)
    lines = path.read_text().splitlines()
    n = syn.n
    out = []
    for k in range(syn.n_frames):
        head = lines[k * (n + 2) : k * (n + 2) + 2]
        head[1] = head[1].replace("species:S:1:pos:R:3", "species:S:1:pos:R:3:id:I:1")
        rows = lines[k * (n + 2) + 2 : (k + 1) * (n + 2)]
        perm = rng.permutation(n)
        out += head + [f"{rows[i]} {ids_from + i}" for i in perm]
    path.write_text("\n".join(out) + "\n")


def test_xyz_id_column_sorts_the_rows(tmp_path):
    syn = make_synthetic(dim=3, n_frames=8, seed=37)
    path = tmp_path / "ids.xyz"
    _xyz_with_ids(path, syn)
    tr, frames, U = read_all(path)
    np.testing.assert_array_equal(tr.particle_ids, 100 + np.arange(syn.n))
    assert_matches_truth(syn, tr, frames, U, atol=1e-12)
    # ids that change between frames are refused
    text = path.read_text()
    i = text.rfind(" 100\n")
    path.write_text(text[:i] + " 99\n" + text[i + 5 :])
    with pytest.raises(DataError, match="particle ids differ from frame 0"):
        read_all(path)


def test_xyz_temperature_rule(tmp_path):
    syn = make_synthetic(dim=3, n_frames=5, seed=38)
    path = tmp_path / "t.xyz"
    write_xyz(path, syn)  # the same Temperature= in every frame
    tr = open_trajectory(path)
    assert tr.temperature == 0.5 and "the same in all 5 frames" in tr.temperature_source
    text = path.read_text()
    parts = text.split("Temperature=0.5")
    path.write_text("".join(p + (f"Temperature={0.5 + 0.01 * i!r}" if i < len(parts) - 1 else "")
                            for i, p in enumerate(parts)))
    tr = open_trajectory(path)
    assert tr.temperature is None and tr.temperature_source is None
    assert "'Temperature' changes between frames (0.5 to 0.54)" in tr.temperature_note
    assert "instantaneous kinetic temperature" in tr.temperature_note
    # a thermostat key wins over the kinetic value
    path.write_text(path.read_text().replace("Temperature=", "target_temperature=0.45 Temperature="))
    tr = open_trajectory(path)
    assert tr.temperature == 0.45 and "target_temperature" in tr.temperature_source
    # a value in some frames only
    lines = path.read_text().splitlines(keepends=True)
    lines[-syn.n - 1] = lines[-syn.n - 1].replace("target_temperature=0.45 ", "")
    path.write_text("".join(lines))
    tr = open_trajectory(path)
    assert tr.temperature is None and "in 4 of 5 frames" in tr.temperature_note


def test_xyz_2d_written_as_3d_with_periodic_z(tmp_path):
    """LAMMPS writes 2D systems as pbc="T T T", z = 0 and a thin Lz: read as 2D."""
    syn = make_synthetic(dim=2, n_frames=6, seed=39)
    path = tmp_path / "flat.xyz"
    write_xyz(path, syn, pbc="T T T", lattice=[syn.lengths[0], 0, 0, 0, syn.lengths[1], 0, 0, 0, 0.1])
    tr, frames, U = read_all(path)
    assert tr.dimensions == 2
    assert_matches_truth(syn, tr, frames, U, atol=1e-12)
    # a z leaving the plane later is an error, not a silent projection
    lines = path.read_text().splitlines(keepends=True)
    k = 3 * (syn.n + 2) + 5
    w = lines[k].split()
    w[3] = "0.25"
    lines[k] = " ".join(w) + "\n"
    path.write_text("".join(lines))
    with pytest.raises(DataError, match="frame 3: particle 3 has z = 0.25, off the plane"):
        read_all(path)


def test_the_dimension_rule_is_the_same_for_every_reader(tmp_path):
    from adapters.trajectory import infer_dimensions

    flat = np.column_stack([np.random.default_rng(40).random((9, 2)), np.full(9, 0.3)])
    assert infer_dimensions(flat) == 2
    assert infer_dimensions(flat[:, :2]) == 2 and infer_dimensions(flat, declared=2) == 2
    img = np.zeros((9, 3), dtype=int)
    img[4, 2] = 1
    assert infer_dimensions(flat, images0=img) == 3  # crossed the z boundary: not flat
    bumpy = flat.copy()
    bumpy[0, 2] = 0.31
    assert infer_dimensions(bumpy) == 3
    # every reader: a 2D system stored with 3 components and a z box
    syn = make_synthetic(dim=2, n_frames=5, seed=41)
    for fmt in FMTS:
        path = tmp_path / f"flat{EXT[fmt]}"
        write(fmt, path, syn)
        if fmt == "h5md":  # a 3-D H5MD file of a flat system
            with h5py.File(path, "r+") as f:
                g = f["particles/all"]
                for name in ("position/value", "image/value"):
                    v = g[name][()]
                    del g[name]
                    g[name] = np.concatenate([v, np.zeros(v.shape[:-1] + (1,), v.dtype)], axis=-1)
                del g["box/edges"]
                g["box/edges"] = np.append(syn.lengths, 1.0)
                g["box"].attrs["dimension"] = 3
                g["box"].attrs["boundary"] = np.array(["periodic"] * 3, dtype="S8")
        if fmt == "gsd":  # HOOMD frames that say 3 dimensions, with z = 0 and Lz = 1
            import gsd.hoomd

            cen, img = syn.centred(), syn.images
            with gsd.hoomd.open(path, "w") as f:
                for k in range(syn.n_frames):
                    fr = gsd.hoomd.Frame()
                    fr.configuration.step = int(syn.steps[k])
                    fr.configuration.dimensions = 3
                    fr.configuration.box = [*syn.lengths, 1.0, 0.0, 0.0, 0.0]
                    fr.particles.N = syn.n
                    fr.particles.types = syn.species
                    fr.particles.typeid = syn.typeid.astype(np.uint32)
                    fr.particles.position = np.column_stack([cen[k], np.zeros(syn.n)])
                    fr.particles.image = np.column_stack([img[k], np.zeros(syn.n, dtype=np.int64)]).astype(np.int32)
                    f.append(fr)
        tr, frames, U = read_all(path)
        assert tr.dimensions == 2, fmt
        assert_matches_truth(syn, tr, frames, U, atol=2e-6 if fmt == "gsd" else 1e-12)


# ----------------------------------------------------------------- LAMMPS details
def test_lammps_2d_images_without_iz(tmp_path):
    syn = make_synthetic(dim=2, n_frames=8, seed=42)
    path = tmp_path / "2d.dump"
    write_lammps(path, syn)
    text = path.read_text().replace("ix iy iz", "ix iy")
    path.write_text("\n".join(ln.rsplit(" ", 1)[0] if (ln[:1].isdigit() and len(ln.split()) == 8) else ln
                              for ln in text.splitlines()) + "\n")
    tr, frames, U = read_all(path)
    assert tr.unwrap_method == "images" and tr.dimensions == 2
    assert_matches_truth(syn, tr, frames, U, atol=1e-12)


def test_lammps_typelabel_column(tmp_path):
    syn = make_synthetic(dim=3, n_frames=4, seed=43)
    path = tmp_path / "labels.dump"
    write_lammps(path, syn, element=True)
    path.write_text(path.read_text().replace("id type element", "id type typelabel"))
    tr, frames, U = read_all(path)
    assert tr.species == ("A", "B") and tr.numeric_species_base is None
    assert_matches_truth(syn, tr, frames, U, atol=1e-12)
    path.write_text(path.read_text().replace("id type typelabel", "id typelabel"))
    text = "\n".join(" ".join(w[:1] + w[2:]) if (ln[:1].isdigit() and len(w := ln.split()) == 9) else ln
                     for ln in path.read_text().splitlines()) + "\n"
    path.write_text(text)
    tr, frames, U = read_all(path)
    assert tr.species == ("A", "B")
    assert_matches_truth(syn, tr, frames, U, atol=1e-12)


@pytest.mark.parametrize("fmt", ["lammps", "xyz"])
def test_complete_file_without_final_newline(tmp_path, syn3, fmt):
    path = tmp_path / f"t{EXT[fmt]}"
    write(fmt, path, syn3)
    tr, frames, U = read_all(path)
    path.write_bytes(path.read_bytes().rstrip(b"\n"))
    tr2, frames2, U2 = read_all(path)
    assert tr2.n_frames == tr.n_frames
    np.testing.assert_array_equal(U2, U)


# ----------------------------------------------------------------- compression
@pytest.mark.parametrize("kind", ["gzip", "bz2", "xz"])
@pytest.mark.parametrize("fmt", ["lammps", "xyz"])
def test_compressed_text_is_read_transparently(tmp_path, syn3, fmt, kind):
    import bz2
    import gzip
    import lzma

    plain = tmp_path / f"t{EXT[fmt]}"
    write(fmt, plain, syn3)
    opener = {"gzip": gzip.open, "bz2": bz2.open, "xz": lzma.open}[kind]
    packed = tmp_path / "archive.bin"  # the name says nothing: detection by magic bytes and content
    with opener(packed, "wb") as f:
        f.write(plain.read_bytes())
    assert detect_format(str(packed)) == fmt
    tr, frames, U = read_all(packed)
    tr0, frames0, U0 = read_all(plain)
    assert tr.n_frames == tr0.n_frames and tr.species == tr0.species
    np.testing.assert_array_equal(U, U0)
    assert open_trajectory(packed, fmt).format == fmt
    # a truncated archive: one line naming the file
    data = packed.read_bytes()
    packed.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(DataError) as exc:
        read_fully(packed, fmt)
    assert_one_line(exc, packed)


def test_compressed_binary_formats_are_refused_with_a_hint(tmp_path, syn3):
    import gzip

    plain = tmp_path / "t.h5"
    write_h5md(plain, syn3)
    packed = tmp_path / "t.h5.gz"
    with gzip.open(packed, "wb") as f:
        f.write(plain.read_bytes())
    with pytest.raises(DataError, match="gzip-compressed file; h5md files must be decompressed first") as exc:
        open_trajectory(packed)
    assert_one_line(exc, packed)


# ----------------------------------------------------------------- H5MD variants
def test_h5md_without_species_is_one_species(tmp_path, syn3):
    path = tmp_path / "nospecies.h5"
    write_h5md(path, syn3)
    with h5py.File(path, "r+") as f:
        del f["particles/all/species"]
    tr, frames, U = read_all(path)
    assert tr.species == ("0",) and tr.numeric_species_base == 0 and set(tr.types) == {0}
    assert tr.metadata["species"] == "none in the file: one species"
    np.testing.assert_allclose(U - U[0], syn3.unwrapped - syn3.unwrapped[0], atol=1e-9)


def test_h5md_float_species_and_nan_padding(tmp_path):
    syn = make_synthetic(dim=3, n_side=3, n_frames=5, seed=44)
    path = tmp_path / "float.h5"
    write_h5md(path, syn)
    n = syn.n
    with h5py.File(path, "r+") as f:
        g = f["particles/all"]
        del g["species"]
        sp = g.create_group("species")
        sp["value"] = np.tile(syn.typeid.astype(np.float64) + 7.0, (5, 1))
        # two padding rows in every frame, as znh5md leaves them
        for name in ("position/value", "image/value"):
            v = g[name][()].astype(np.float64)
            del g[name]
            g[name] = np.concatenate([v, np.full((5, 2, 3), np.nan)], axis=1)
        sv = sp["value"][()]
        del sp["value"]
        sp["value"] = np.concatenate([sv, np.full((5, 2), np.nan)], axis=1)
    tr, frames, U = read_all(path)
    assert tr.n_particles == n and tr.species == ("7", "8")
    np.testing.assert_array_equal(tr.types, syn.typeid)
    np.testing.assert_allclose(U - U[0], syn.unwrapped - syn.unwrapped[0], atol=1e-9)
    # a frame with a particle fewer (its row is NaN): the particle number changes
    with h5py.File(path, "r+") as f:
        v = f["particles/all/position/value"]
        row = v[3]
        row[n - 1] = np.nan
        v[3] = row
        s = f["particles/all/species/value"]
        srow = s[3]
        srow[n - 1] = np.nan
        s[3] = srow
    with pytest.raises(DataError, match=f"frame 3: {n - 1} particles \\(NaN padding\\), frame 0 has {n}"):
        read_all(path)
    # non-integral float species are refused
    with h5py.File(path, "r+") as f:
        s = f["particles/all/species/value"]
        srow = s[0]
        srow[0] = 0.5
        s[0] = srow
    with pytest.raises(DataError, match="holds 0.5: float species must hold integers"):
        read_all(path)


def test_h5md_triclinic_edges_matrix(tmp_path, syn3):
    """A [D][D] edges matrix with the box vectors as rows (MDAnalysis, znh5md)."""
    path = tmp_path / "tri.h5"
    write_h5md(path, syn3, images=False)
    L = syn3.lengths
    cell = np.array([[L[0], 0, 0], [0.6, L[1], 0], [0.3, -0.2, L[2]]])
    with h5py.File(path, "r+") as f:
        b = f["particles/all/box"]
        del b["edges"]
        b["edges"] = cell
    tr, frames, U = read_all(path)
    np.testing.assert_allclose(frames[0].box.matrix, cell.T)
    assert frames[0].box.is_triclinic
