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
    path.write_bytes(path.read_bytes()[:-7])  # cut inside the last number
    with pytest.raises(DataError, match="truncated") as exc:
        read_fully(path, fmt)
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
