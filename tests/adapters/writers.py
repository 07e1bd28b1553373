"""Test-side synthetic trajectories and writers of every supported format.

:func:`make_synthetic` builds a small lattice configuration with thermal noise,
planted hops and a drifting particle that crosses the periodic boundaries; the
``write_*`` functions store the same trajectory as H5MD, GSD, LAMMPS dump and
extended XYZ, each in that format's own origin convention, so that the readers
can be compared with each other and with the truth.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Synthetic:
    """A trajectory known exactly.

    Attributes
    ----------
    unwrapped : ndarray (T, N, dim)
        True unwrapped positions.
    lengths : ndarray (dim,)
        Box edge lengths.
    low : ndarray (dim,)
        Lowest box corner (LAMMPS / XYZ convention; H5MD and GSD files are
        written centred on zero).
    names : list of str, length N
        Species name of every particle.
    steps : ndarray (T,), int
    times : ndarray (T,), float
    temperature : float or None
    hops : dict
        particle -> (frame of the jump, displacement vector).
    drifter : int or None
        The particle that drifts across the box.
    """

    unwrapped: np.ndarray
    lengths: np.ndarray
    low: np.ndarray
    names: list[str]
    steps: np.ndarray
    times: np.ndarray
    temperature: float | None = 0.5
    hops: dict = field(default_factory=dict)
    drifter: int | None = None
    stored_wrapped: np.ndarray | None = None  # override what the writers store (bad-input tests)
    stored_images: np.ndarray | None = None

    @property
    def n_frames(self) -> int:
        return self.unwrapped.shape[0]

    @property
    def n(self) -> int:
        return self.unwrapped.shape[1]

    @property
    def dim(self) -> int:
        return self.unwrapped.shape[2]

    @property
    def species(self) -> list[str]:
        return sorted(set(self.names))

    @property
    def typeid(self) -> np.ndarray:
        sp = self.species
        return np.array([sp.index(s) for s in self.names], dtype=np.int64)

    @property
    def images(self) -> np.ndarray:
        if self.stored_images is not None:
            return self.stored_images
        return np.floor((self.unwrapped - self.low) / self.lengths).astype(np.int64)

    @property
    def wrapped(self) -> np.ndarray:
        """Positions in [low, low + L)."""
        if self.stored_wrapped is not None:
            return self.stored_wrapped
        return self.unwrapped - self.images * self.lengths

    def centred(self) -> np.ndarray:
        """Wrapped positions shifted to a box centred on zero."""
        return self.wrapped - self.low - self.lengths / 2


def make_synthetic(
    dim: int = 3,
    n_side: int = 4,
    n_frames: int = 25,
    hops: dict | None = None,
    noise: float = 0.02,
    drift: float | None = 0.3,
    spacing: float = 1.0,
    temperature: float | None = 0.5,
    seed: int = 0,
) -> Synthetic:
    """Lattice particles vibrating about their sites, with planted hops.

    Parameters
    ----------
    hops : dict, optional
        particle -> (frame, displacement vector): from that frame on the
        particle's site is moved by the vector. Default: particle 0 (at the
        box corner, so it crosses the boundary) jumps by -0.9 along x at the
        middle frame.
    drift : float or None
        The last particle moves by this much along every axis per frame
        (crossing the periodic boundaries several times).
    """
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(n_side)] * dim, indexing="ij"), axis=-1).reshape(-1, dim)
    sites = (grid + 0.25) * spacing
    n = sites.shape[0]
    L = np.full(dim, n_side * spacing)
    low = np.linspace(-1.5, 2.0, dim)[:dim]  # an unusual origin, different per axis
    sites = sites + low
    if hops is None:
        e = np.zeros(dim)
        e[0] = -0.9
        hops = {0: (n_frames // 2, e)}
    X = np.repeat(sites[None], n_frames, axis=0) + rng.normal(0.0, noise, size=(n_frames, n, dim))
    for p, (t0, vec) in hops.items():
        X[t0:, p] += np.asarray(vec, dtype=np.float64)
    drifter = None
    if drift:
        drifter = n - 1
        X[:, drifter] = sites[drifter] + drift * np.arange(n_frames)[:, None] * np.ones(dim)
    names = ["B" if i % 5 == 2 else "A" for i in range(n)]
    steps = 1000 + 50 * np.arange(n_frames)
    times = steps * 0.005
    return Synthetic(X, L, low, names, steps, times, temperature, dict(hops), drifter)


def _g(x: float) -> str:
    return repr(float(x))


# ------------------------------------------------------------------------ H5MD
def write_h5md(
    path,
    syn: Synthetic,
    *,
    images: bool = True,
    edges: str = "dataset",
    species: str = "integer",
    fixed_step: bool = False,
    temperature: bool = True,
    boundary: list[str] | None = None,
    edges_value=None,
) -> None:
    """H5MD 1.1; positions centred on zero (wrapped with images, else unwrapped).

    edges: "dataset", "attribute", "matrix" (a diagonal D x D dataset) or
    "time" (a time-dependent element); species: "integer" (0-based) or "enum".
    """
    import h5py

    T, n, d = syn.unwrapped.shape
    with h5py.File(path, "w") as f:
        h = f.create_group("h5md")
        h.attrs["version"] = np.array([1, 1], dtype=np.int32)
        h.create_group("author").attrs["name"] = "glass-diag tests"
        c = h.create_group("creator")
        c.attrs["name"] = "tests/adapters/writers.py"
        c.attrs["version"] = "1"
        g = f.create_group("particles/all")
        pos = g.create_group("position")
        if images:
            pos.create_dataset("value", data=syn.centred(), chunks=(1, n, d))
        else:
            pos.create_dataset("value", data=syn.unwrapped - syn.low - syn.lengths / 2, chunks=(1, n, d))
        if fixed_step:
            s = pos.create_dataset("step", data=np.int64(syn.steps[1] - syn.steps[0]))
            s.attrs["offset"] = np.int64(syn.steps[0])
            t = pos.create_dataset("time", data=float(syn.times[1] - syn.times[0]))
            t.attrs["offset"] = float(syn.times[0])
        else:
            pos.create_dataset("step", data=syn.steps)
            pos.create_dataset("time", data=syn.times)
        if images:
            im = g.create_group("image")
            im.create_dataset("value", data=syn.images.astype(np.int32))
            im["step"] = pos["step"]
            im["time"] = pos["time"]
        if species == "enum":
            dt = h5py.enum_dtype({s: i for i, s in enumerate(syn.species)}, basetype="i1")
            g.create_dataset("species", data=syn.typeid.astype(np.int8), dtype=dt)
        else:
            g.create_dataset("species", data=syn.typeid.astype(np.int32))
        box = g.create_group("box")
        box.attrs["dimension"] = np.int32(d)
        box.attrs["boundary"] = np.array(boundary or ["periodic"] * d, dtype="S8")
        L = syn.lengths if edges_value is None else np.asarray(edges_value, dtype=np.float64)
        if edges == "attribute":
            box.attrs["edges"] = L
        elif edges == "matrix":
            box.create_dataset("edges", data=L if L.ndim == 2 else np.diag(L))
        elif edges == "time":
            e = box.create_group("edges")
            e.create_dataset("value", data=np.repeat(L[None], T, axis=0))
            e["step"] = pos["step"]
            e["time"] = pos["time"]
        else:
            box.create_dataset("edges", data=L)
        if temperature and syn.temperature is not None:
            f.create_group("parameters").attrs["temperature"] = float(syn.temperature)


# ------------------------------------------------------------------------- GSD
def write_gsd(path, syn: Synthetic, *, images: bool = True, log_temperature: bool = True, box=None) -> None:
    """HOOMD-schema GSD; positions centred on zero, images in every frame."""
    import gsd.hoomd

    T, n, d = syn.unwrapped.shape
    cen = syn.centred()
    img = syn.images
    with gsd.hoomd.open(path, "w") as f:
        for k in range(T):
            fr = gsd.hoomd.Frame()
            fr.configuration.step = int(syn.steps[k])
            fr.configuration.dimensions = d
            L = list(syn.lengths) + ([0.0] if d == 2 else [])
            fr.configuration.box = list(box) if box is not None else L + [0.0, 0.0, 0.0]
            fr.particles.N = n
            fr.particles.types = syn.species
            fr.particles.typeid = syn.typeid.astype(np.uint32)
            p = np.zeros((n, 3))
            p[:, :d] = cen[k]
            fr.particles.position = p
            if images:
                im = np.zeros((n, 3), dtype=np.int32)
                im[:, :d] = img[k]
                fr.particles.image = im
            if log_temperature and syn.temperature is not None:
                fr.log["md/compute/ThermodynamicQuantities/kinetic_temperature"] = np.array([syn.temperature])
            f.append(fr)


# ---------------------------------------------------------------------- LAMMPS
def write_lammps(
    path,
    syn: Synthetic,
    *,
    columns: str = "x",
    images: bool = True,
    flags: str = "pp pp pp",
    shuffle: bool = True,
    time: bool = False,
    element: bool = False,
    seed: int = 1,
) -> None:
    """LAMMPS dump custom; ``columns`` is "x" (wrapped), "xu" (unwrapped) or "xs" (scaled)."""
    rng = np.random.default_rng(seed)
    T, n, d = syn.unwrapped.shape
    lo = np.zeros(3)
    hi = np.zeros(3)
    lo[:d], hi[:d] = syn.low, syn.low + syn.lengths
    if d == 2:
        lo[2], hi[2] = -0.5, 0.5
    types = syn.typeid + 1
    wrapped, imgs = syn.wrapped, syn.images  # computed once: they are properties
    names = {"x": "x y z", "xu": "xu yu zu", "xs": "xs ys zs"}[columns]
    head = "id type" + (" element" if element else "") + f" {names}" + (" ix iy iz" if images else "")
    with open(path, "w") as f:
        for k in range(T):
            if time:
                f.write(f"ITEM: TIME\n{_g(syn.times[k])}\n")
            f.write(f"ITEM: TIMESTEP\n{int(syn.steps[k])}\nITEM: NUMBER OF ATOMS\n{n}\n")
            f.write(f"ITEM: BOX BOUNDS {flags}\n")
            for a in range(3):
                f.write(f"{_g(lo[a])} {_g(hi[a])}\n")
            f.write(f"ITEM: ATOMS {head}\n")
            if columns == "xu":
                pos = syn.unwrapped[k]
            elif columns == "xs":
                pos = (wrapped[k] - syn.low) / syn.lengths
            else:
                pos = wrapped[k]
            order = rng.permutation(n) if shuffle else np.arange(n)
            for i in order:
                xyz = list(pos[i]) + ([0.0] if d == 2 else [])
                img = list(imgs[k, i]) + ([0] if d == 2 else [])
                row = f"{i + 1} {types[i]}" + (f" {syn.names[i]}" if element else "")
                row += " " + " ".join(_g(v) for v in xyz)
                if images:
                    row += " " + " ".join(str(int(v)) for v in img)
                f.write(row + "\n")


# ------------------------------------------------------------------------- XYZ
def write_xyz(
    path,
    syn: Synthetic,
    *,
    temperature: bool = True,
    pbc: str | None = None,
    lattice: list[float] | None = None,
    names: list[str] | None = None,
    step: bool = True,
    time_format: str = "r",
) -> None:
    """Extended XYZ with Lattice, Origin, Properties, pbc, Time, Step (and Temperature).

    ``time_format`` "r" writes times exactly, "g" with 6 significant digits.
    """
    T, n, d = syn.unwrapped.shape
    L = np.ones(3)
    L[:d] = syn.lengths
    origin = np.zeros(3)
    origin[:d] = syn.low
    lat = lattice if lattice is not None else [L[0], 0, 0, 0, L[1], 0, 0, 0, L[2]]
    pbc = pbc or ("T T T" if d == 3 else "T T F")
    names = names or syn.names
    wrapped = syn.wrapped
    with open(path, "w") as f:
        for k in range(T):
            f.write(f"{n}\n")
            comment = (
                f'Lattice="{" ".join(_g(v) for v in lat)}" Origin="{" ".join(_g(v) for v in origin)}" '
                f'Properties=species:S:1:pos:R:3 pbc="{pbc}" '
                f"Time={_g(syn.times[k]) if time_format == 'r' else format(float(syn.times[k]), 'g')}"
            )
            if step:
                comment += f" Step={int(syn.steps[k])}"
            if temperature and syn.temperature is not None:
                comment += f" Temperature={_g(syn.temperature)}"
            f.write(comment + "\n")
            for i in range(n):
                xyz = list(wrapped[k, i]) + ([0.0] if d == 2 else [])
                f.write(f"{names[i]} " + " ".join(_g(v) for v in xyz) + "\n")


WRITERS = {"h5md": write_h5md, "gsd": write_gsd, "lammps": write_lammps, "xyz": write_xyz}
EXT = {"h5md": ".h5", "gsd": ".gsd", "lammps": ".dump", "xyz": ".xyz"}


def write(fmt: str, path, syn: Synthetic, **kw) -> None:
    WRITERS[fmt](path, syn, **kw)


#: a small structure/dynamics config for audit-sized test trajectories
SMALL_AUDIT_CONFIG = {
    "structure": {"species": ["A", "B"], "radial_r": [0.6, 0.8, 1.0, 1.2], "radial_width": 0.1,
                  "angular": [[1.0, 1.0, 1.0], [1.0, -1.0, 1.0]]},
    "dynamics": {"window": 6, "p_c": 0.2, "p_hard": 0.05, "persistence": 6, "every": 7},
}


def write_hopping_trajectory(path, temperature: float, seed: int) -> None:
    """A 6^3 lattice, 70 frames, LAMMPS dump; at each sampled frame of SMALL_AUDIT_CONFIG
    some particles hop (more at higher T), so both labels occur at every temperature."""
    rng = np.random.default_rng(seed)
    n, n_frames = 216, 70
    hops = {}
    frac = 0.15 if temperature > 0.7 else 0.08
    for t0 in range(9, n_frames - 6, 7):  # hops centred on the sampled frames
        for p in rng.choice(n, int(frac * n), replace=False):
            if p not in hops:
                e = np.zeros(3)
                e[rng.integers(3)] = 0.9 * rng.choice([-1, 1])
                hops[int(p)] = (t0, e)
    syn = make_synthetic(n_side=6, n_frames=n_frames, hops=hops, drift=None, temperature=temperature, seed=seed)
    write("lammps", path, syn)
