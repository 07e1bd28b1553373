"""One trajectory object for every file format: boxes, frames, unwrapping.

A reader (see :mod:`adapters.readers`) turns a file into a :class:`Trajectory`:
the per-file metadata (particle count, dimension, species, temperature) plus a
function that yields :class:`Frame` objects one at a time, so a long trajectory
never has to fit in memory. :class:`Trajectory` checks every frame the same way
whatever the format (shapes, finite values, box, particles far outside the box,
constant frame interval) and :class:`Unwrapper` turns the stored positions into
unwrapped coordinates.

Conventions
-----------
* Boxes are periodic in every direction, in 2D or 3D, orthorhombic or
  triclinic (:class:`Box`, freud's convention: box vectors ``a = (Lx, 0, 0)``,
  ``b = (xy Ly, Ly, 0)``, ``c = (xz Lz, yz Lz, Lz)``). A non-periodic box is a
  :class:`~diag.errors.DataError`. Cells given by general vectors (rotated)
  are rotated into this form with the positions (:func:`box_from_cell`).
* A box has an origin corner ``low``; the periodic cell is ``low + s @ M.T``
  for fractional coordinates ``s`` in ``[0, 1)``. Only relative positions
  matter for every quantity computed downstream, so formats that do not
  define an origin use a box centred on zero.
* Positions are ``float64`` arrays of shape ``(N, dim)``; particles keep their
  order (and species) through the trajectory (readers sort by particle id
  when the file has ids).
* The dimension: one rule for every reader, :func:`infer_dimensions`.
* ``position_kind`` says what the stored positions are:

  ``"wrapped"``     inside the box (up to a particle that has just left it);
                    a particle more than one box length outside the box is an
                    error (usually a unit or column mistake).
  ``"unwrapped"``   absolute, continuous positions (LAMMPS ``xu yu zu``).
  ``"any-image"``   an arbitrary periodic image of each particle (H5MD without
                    ``image``): no range check.

* Unwrapping (:class:`Unwrapper`), chosen once per trajectory:

  ``"images"``          ``r + ix a + iy b + iz c`` (``r + L * image`` in an
                        orthorhombic box) when the file stores image flags;
  ``"file"``            the positions already are unwrapped;
  ``"minimum-image"``   otherwise, frame to frame, **in fractional
                        coordinates**: the change of each fractional
                        coordinate between consecutive stored frames is taken
                        in ``[-1/2, 1/2]``, which counts the image flags the
                        file did not store; the unwrapped position is then
                        ``r + image @ M.T`` in the current box, so with a
                        changing box (NPT, ``fix deform``) it agrees exactly
                        with the ``"images"`` method.

  With minimum-image unwrapping, a step longer than :data:`MAX_STEP_FRACTION`
  (0.4) box lengths along any box vector between two stored frames stops the
  run with a :class:`~diag.errors.DataError`: near half a box it cannot tell
  a real step from a jump to another particle, and the usual cause is
  particles reordered between frames in a file without ids (or frames too far
  apart). With images or unwrapped positions from the file the limit is
  :data:`MAX_STEP_FRACTION_KNOWN` (half a box): beyond it the rows are other
  particles, or the file's unwrapped positions are not continuous. The
  largest step seen is kept in :attr:`Unwrapper.max_step_fraction`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from diag.errors import DataError

POSITION_KINDS = ("wrapped", "unwrapped", "any-image")
#: a position farther than this many box lengths from the origin is refused, whatever its kind
MAX_BOX_LENGTHS = 1e9
UNWRAP_METHODS = ("images", "file", "minimum-image")


# --------------------------------------------------------------------------- box
@dataclass(frozen=True)
class Box:
    """A periodic box, orthorhombic or triclinic, in freud's convention.

    The box vectors are the columns of :attr:`matrix`::

        a = (Lx, 0, 0),  b = (xy Ly, Ly, 0),  c = (xz Lz, yz Lz, Lz)

    with dimensionless tilt factors ``xy, xz, yz`` exactly as in
    ``freud.box.Box(Lx, Ly, Lz, xy, xz, yz)`` and HOOMD / GSD boxes (a LAMMPS
    tilt ``xy`` in length units is ``xy / Ly`` here, ``xz`` and ``yz`` are
    divided by ``Lz``). In 2D only ``a``, ``b`` and ``xy`` exist.

    Attributes
    ----------
    lengths : tuple of float
        ``(Lx, Ly)`` or ``(Lx, Ly, Lz)``: the diagonal of :attr:`matrix`
        (the edge lengths of an orthorhombic box).
    low : tuple of float
        The origin corner: the periodic cell is ``low + s @ matrix.T`` for
        fractional coordinates ``s`` in ``[0, 1)^dim``.
    tilts : tuple of float
        ``(xy, xz, yz)``; all zero for an orthorhombic box (the default).
    """

    lengths: tuple[float, ...]
    low: tuple[float, ...]
    tilts: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @property
    def dimensions(self) -> int:
        return len(self.lengths)

    @property
    def L(self) -> np.ndarray:
        """Edge lengths as an array, shape (dim,)."""
        return np.asarray(self.lengths, dtype=np.float64)

    @property
    def lo(self) -> np.ndarray:
        """Origin corner as an array, shape (dim,)."""
        return np.asarray(self.low, dtype=np.float64)

    @property
    def is_triclinic(self) -> bool:
        return any(t != 0.0 for t in self.tilts)

    @property
    def matrix(self) -> np.ndarray:
        """Box vectors as columns, shape (dim, dim), upper triangular."""
        L = self.L
        xy, xz, yz = self.tilts
        if self.dimensions == 2:
            return np.array([[L[0], xy * L[1]], [0.0, L[1]]])
        return np.array([[L[0], xy * L[1], xz * L[2]], [0.0, L[1], yz * L[2]], [0.0, 0.0, L[2]]])

    @property
    def volume(self) -> float:
        """Volume (area in 2D); tilts do not change it."""
        return float(np.prod(self.L))

    @property
    def plane_distances(self) -> np.ndarray:
        """Distances between opposite faces, shape (dim,); ``L`` for an orthorhombic box.

        A sphere of radius ``r`` fits in the periodic cell (no particle sees
        two images of another within ``r``) when ``2 r < min(plane_distances)``.
        """
        if not self.is_triclinic:
            return self.L
        M = self.matrix
        if self.dimensions == 2:
            a, b = M[:, 0], M[:, 1]
            return np.array([self.volume / np.linalg.norm(b), self.volume / np.linalg.norm(a)])
        a, b, c = M[:, 0], M[:, 1], M[:, 2]
        V = self.volume
        return np.array([V / np.linalg.norm(np.cross(b, c)), V / np.linalg.norm(np.cross(c, a)),
                         V / np.linalg.norm(np.cross(a, b))])

    def fractional(self, positions: np.ndarray) -> np.ndarray:
        """Fractional coordinates ``s`` with ``positions = low + s @ matrix.T``, shape unchanged."""
        x = np.asarray(positions, dtype=np.float64) - self.lo
        if not self.is_triclinic:
            return x / self.L
        return self.to_fractional(x)

    def to_fractional(self, d: np.ndarray) -> np.ndarray:
        """Displacements ``d`` (..., dim) in units of the box vectors."""
        d = np.asarray(d, dtype=np.float64)
        if not self.is_triclinic:
            return d / self.L
        return np.linalg.solve(self.matrix, d.reshape(-1, self.dimensions).T).T.reshape(d.shape)

    def image_shift(self, images: np.ndarray) -> np.ndarray:
        """``ix a + iy b + iz c`` for integer images (..., dim), as float64."""
        img = np.asarray(images, dtype=np.float64)
        if not self.is_triclinic:
            return img * self.L
        return img @ self.matrix.T

    def wrap(self, positions: np.ndarray) -> np.ndarray:
        """Positions mapped into the cell (fractional coordinates in ``[0, 1)``), shape unchanged."""
        if not self.is_triclinic:
            L, lo = self.L, self.lo
            out = lo + np.mod(np.asarray(positions, dtype=np.float64) - lo, L)
            # np.mod can return L itself for tiny negative inputs: fold it back.
            return np.where(out >= lo + L, out - L, out)
        s = self.fractional(positions)
        s = s - np.floor(s)
        s = np.where(s >= 1.0, s - 1.0, s)
        return self.lo + s @ self.matrix.T

    def centred(self, positions: np.ndarray) -> np.ndarray:
        """Positions relative to the box centre, wrapped into the cell centred on zero.

        Fractional coordinates in ``[-1/2, 1/2)`` (``[-L/2, L/2)`` for an
        orthorhombic box): the convention of freud and HOOMD boxes.
        """
        if not self.is_triclinic:
            L = self.L
            x = np.asarray(positions, dtype=np.float64) - (self.lo + L / 2)
            x = x - L * np.floor(x / L + 0.5)
            return np.where(x >= L / 2, x - L, x)
        s = self.fractional(positions) - 0.5
        s = s - np.floor(s + 0.5)
        s = np.where(s >= 0.5, s - 1.0, s)
        return s @ self.matrix.T

    def minimum_image(self, d: np.ndarray) -> np.ndarray:
        """Displacements ``d`` (..., dim) with each fractional component in ``[-1/2, 1/2]``.

        This is the minimum image for an orthorhombic box, and for a triclinic
        box whenever the displacement is shorter than half the smallest of
        :attr:`plane_distances` (freud's convention too).
        """
        d = np.asarray(d, dtype=np.float64)
        if not self.is_triclinic:
            L = self.L
            return d - L * np.round(d / L)
        s = self.to_fractional(d)
        return (s - np.round(s)) @ self.matrix.T

    def freud_params(self) -> tuple[float, float, float, float, float, float]:
        """``(Lx, Ly, Lz, xy, xz, yz)`` for ``freud.box.Box(*params)`` (``Lz = 0`` in 2D)."""
        L = self.lengths
        xy, xz, yz = self.tilts
        if self.dimensions == 2:
            return (float(L[0]), float(L[1]), 0.0, float(xy), 0.0, 0.0)
        return (float(L[0]), float(L[1]), float(L[2]), float(xy), float(xz), float(yz))

    def to_freud(self):
        """The equivalent :class:`freud.box.Box` (imports freud)."""
        import freud

        Lx, Ly, Lz, xy, xz, yz = self.freud_params()
        if self.dimensions == 2:
            return freud.box.Box(Lx=Lx, Ly=Ly, xy=xy, is2D=True)
        return freud.box.Box(Lx=Lx, Ly=Ly, Lz=Lz, xy=xy, xz=xz, yz=yz)


def make_box(
    lengths: Iterable[float],
    low: Iterable[float] | None = None,
    *,
    tilts: Iterable[float] | None = None,
    periodic: Iterable[bool] | None = None,
    boundary_text: Iterable[str] | None = None,
    path: str | None = None,
    frame: int | None = None,
) -> Box:
    """Build and check a :class:`Box`; raise :class:`DataError` naming the file.

    Parameters
    ----------
    lengths : sequence of float
        ``Lx, Ly[, Lz]`` (the diagonal of the box matrix), 2 or 3 of them.
    low : sequence of float, optional
        Origin corner; default: a box centred on zero.
    tilts : sequence of float, optional
        freud / HOOMD tilt factors ``(xy, xz, yz)`` (``(xy,)`` is enough in
        2D, where ``xz`` and ``yz`` are ignored). Default: orthorhombic.
    periodic : sequence of bool, optional
        Periodicity per direction; every direction must be periodic.
    boundary_text : sequence of str, optional
        The file's own spelling of the boundary flags, for the message.
    path, frame
        For messages.
    """
    where = "" if frame is None else f"frame {frame}: "
    L = np.asarray(list(lengths), dtype=np.float64)
    if L.ndim != 1 or L.size not in (2, 3):
        raise DataError(f"{where}box must have 2 or 3 edge lengths, got {L.size}", path)
    axes = "xyz"
    if not np.isfinite(L).all():
        raise DataError(f"{where}box edge lengths are not finite ({_fmt(L)})", path)
    if (L <= 0).any():
        k = int(np.argmax(L <= 0))
        raise DataError(
            f"{where}box edge length L{axes[k]} = {L[k]:g} is zero or negative; a periodic box is required",
            path,
        )
    t = np.zeros(3)
    if tilts is not None:
        given = np.asarray(list(tilts), dtype=np.float64).ravel()
        if given.size > 3:
            raise DataError(f"{where}box has {given.size} tilt factors, expected at most 3", path)
        t[: given.size] = given
        if L.size == 2:
            t[1:] = 0.0  # a flat system: the third box vector's tilt does not matter
        with np.errstate(all="ignore"):
            bad = ~np.isfinite(t) | ~np.isfinite(t * np.max(L)) | (np.abs(t) > MAX_TILT)
        if bad.any():
            raise DataError(f"{where}box tilt factors {_fmt(t)} are not finite or absurdly large", path)
    if periodic is not None:
        per = [bool(p) for p in periodic]
        if not all(per):
            k = per.index(False)
            spelled = ""
            if boundary_text is not None:
                spelled = f" (boundary {' '.join(str(b) for b in boundary_text)})"
            raise DataError(
                f"{where}box is not periodic along {axes[k]}{spelled}; only fully periodic boxes are supported",
                path,
            )
    t = t + 0.0  # no negative zeros: -0.0 would not compare equal in records
    tilt_t = (float(t[0]), float(t[1]), float(t[2]))
    if low is None:
        if any(tilt_t):
            lo = -Box(tuple(float(x) for x in L), tuple(0.0 for _ in L), tilt_t).matrix @ np.full(L.size, 0.5)
        else:
            lo = -L / 2
    else:
        lo = np.asarray(list(low), dtype=np.float64)
        if lo.shape != L.shape or not np.isfinite(lo).all():
            raise DataError(f"{where}box origin {_fmt(lo)} does not match the box lengths {_fmt(L)}", path)
    return Box(tuple(float(x) for x in L), tuple(float(x) for x in lo), tilt_t)


#: tilt factors beyond this are refused (a LAMMPS box is normally |tilt| <= 1/2; flips keep it small)
MAX_TILT = 1e3


def box_from_cell(
    cell: np.ndarray,
    origin: Iterable[float] | None = None,
    *,
    periodic: Iterable[bool] | None = None,
    boundary_text: Iterable[str] | None = None,
    path: str | None = None,
    frame: int | None = None,
) -> tuple[Box, np.ndarray | None]:
    """A :class:`Box` from general cell vectors, and the rotation it needs.

    Parameters
    ----------
    cell : array, shape (dim, dim)
        The box vectors as **rows** ``a, b(, c)`` (extended-XYZ ``Lattice``,
        H5MD ``edges`` matrix, LAMMPS general triclinic ``avec bvec cvec``).
    origin : sequence of float, optional
        The cell's origin corner (default: centred on zero).

    Returns
    -------
    box : Box
    rotation : ndarray (dim, dim) or None
        ``None`` when the cell already has freud's form (``a`` along x, ``b``
        in the xy plane, positive diagonal). Otherwise an orthogonal matrix
        ``Q``: positions (and the origin) must be mapped by ``r @ Q`` to lie
        in the returned box. ``Q`` preserves every distance and angle (it may
        be a reflection, for a left-handed cell).
    """
    where = "" if frame is None else f"frame {frame}: "
    cell = np.asarray(cell, dtype=np.float64)
    d = cell.shape[0]
    if cell.shape not in ((2, 2), (3, 3)):
        raise DataError(f"{where}box vectors have shape {cell.shape}, expected (2, 2) or (3, 3)", path)
    if not np.isfinite(cell).all():
        raise DataError(f"{where}box vectors are not finite ({_fmt(cell)})", path)
    M = cell.T  # box vectors as columns
    Q = None
    if np.all(np.tril(M, -1) == 0) and np.all(np.diag(M) > 0):
        R = M
    else:
        Q, R = np.linalg.qr(M)
        sign = np.where(np.diag(R) < 0, -1.0, 1.0)
        Q, R = Q * sign, (R.T * sign).T  # a positive diagonal: M = Q R still
        R = np.triu(R)
    diag = np.diag(R).copy()
    with np.errstate(all="ignore"):
        tilts = [R[0, 1] / diag[1], 0.0, 0.0] if d == 2 else [R[0, 1] / diag[1], R[0, 2] / diag[2], R[1, 2] / diag[2]]
    if (diag <= 0).any():
        tilts = None  # make_box reports the zero length
    lo = None
    if origin is not None:
        lo = np.asarray(list(origin), dtype=np.float64)[:d]
        if Q is not None:
            lo = lo @ Q
    box = make_box(diag, lo, tilts=tilts, periodic=periodic, boundary_text=boundary_text, path=path, frame=frame)
    return box, Q


# ------------------------------------------------------------------- dimension
def infer_dimensions(positions0: np.ndarray, declared: int | None = None, images0: np.ndarray | None = None) -> int:
    """The dimension rule shared by every reader.

    A system is 2D when the file says so (``declared == 2``, or positions
    with 2 components), or when every particle of the first frame has the
    same z coordinate and no z image flag is set, whatever the file's z
    periodicity and box height: LAMMPS, HOOMD, ASE and MDAnalysis all store
    2D systems as 3D ones with z = 0 and a thin or arbitrary Lz. Otherwise 3D.

    Parameters
    ----------
    positions0 : ndarray, shape (N, 2) or (N, 3)
        The first frame's positions.
    declared : int, optional
        A dimension stated by the file (GSD ``configuration/dimensions``).
    images0 : ndarray, shape (N, 3), optional
        The first frame's image flags.
    """
    pos = np.asarray(positions0)
    if declared == 2 or pos.shape[1] == 2:
        return 2
    flat = pos.shape[0] > 1 and float(np.ptp(pos[:, 2])) == 0.0
    if images0 is not None and np.asarray(images0).shape[1] > 2 and np.asarray(images0)[:, 2].any():
        flat = False
    return 2 if flat else 3


def flat_positions(positions: np.ndarray, dim: int, plane: float | None, path: str | None, frame: int) -> np.ndarray:
    """The first ``dim`` columns of ``positions``; a 2D system's z must stay on frame 0's plane.

    ``plane`` is frame 0's common z (None when the file has no z column).
    """
    pos = np.asarray(positions, dtype=np.float64)
    if dim == 2 and pos.shape[1] > 2 and plane is not None:
        z = pos[:, 2]
        off = (z != plane) & np.isfinite(z)  # a non-finite z is reported by Trajectory.check_frame
        if off.any():
            i = int(np.argmax(off))
            raise DataError(
                f"frame {frame}: particle {i} has z = {z[i]:g}, off the plane z = {plane:g} of frame 0 "
                "(the system was taken as 2D because every z of frame 0 is equal)",
                path,
            )
    return np.ascontiguousarray(pos[:, :dim])


#: copies of one frame (float64) a reader and the unwrapping hold at once
FRAME_COPIES = 8


def check_frame_memory(n_particles: int, dimensions: int, path: str | None = None, copies: int = FRAME_COPIES) -> None:
    """Raise :class:`DataError` when frames of this size cannot fit in memory.

    For readers that learn the particle number from a header (an HDF5 shape, a
    count line) before reading any data: a damaged header must give a clear
    error, not a multi-gigabyte allocation.
    """
    from diag.resources import check_memory

    check_memory(
        float(copies) * n_particles * dimensions * 8,
        f"reading frames of {n_particles} particles in {dimensions}D",
        path,
    )


def _fmt(a) -> str:
    return "(" + ", ".join(f"{float(x):g}" for x in np.ravel(a)[:9]) + ")"


# ------------------------------------------------------------------------- frame
@dataclass
class Frame:
    """One stored frame.

    Attributes
    ----------
    index : int
        Zero-based frame number in the file.
    box : Box
    positions : ndarray, shape (N, dim), float64
        As stored (see ``position_kind``), in the trajectory's particle order.
    image : ndarray, shape (N, dim), int64, or None
        Periodic image flags, when the file stores them.
    step : int or None
        Integration step, when the file stores it.
    time : float or None
        Simulation time, when the file stores it.
    position_kind : str
        ``"wrapped"``, ``"unwrapped"`` or ``"any-image"`` (module docstring).
    """

    index: int
    box: Box
    positions: np.ndarray
    image: np.ndarray | None = None
    step: int | None = None
    time: float | None = None
    position_kind: str = "wrapped"

    def wrapped(self) -> np.ndarray:
        """Positions wrapped into the box ``[low, low + L)``, shape (N, dim)."""
        return self.box.wrap(self.positions)


# -------------------------------------------------------------------- trajectory
class Trajectory:
    """A particle trajectory read lazily, frame by frame.

    Readers construct it; users iterate it. Iterating twice reads the file
    twice. Use it as a context manager (or call :meth:`close`) to release the
    file.

    Parameters
    ----------
    path : str
        The file, for messages.
    format : str
        Reader name (``"h5md"``, ``"gsd"``, ``"lammps"``, ``"xyz"``, ...).
    n_frames : int
        Number of stored frames.
    dimensions : int
        2 or 3.
    species : sequence of str
        Species names; ``types`` indexes into it.
    types : ndarray, shape (N,), int
        Species id of every particle, constant in time.
    frames : callable
        ``frames()`` returns a fresh iterator of :class:`Frame`, in order.
    particle_ids : ndarray, shape (N,), int64, optional
        Identifiers from the file (LAMMPS ``id``, H5MD ``id``); default
        ``0..N-1``.
    position_kind : str
        What the stored positions are (module docstring).
    has_images : bool
        Whether every frame carries image flags.
    temperature : float, optional
        Temperature found in the file, if any.
    temperature_source : str, optional
        Where it was found (for the record).
    temperature_note : str, optional
        Why a temperature-like value in the file was not taken (e.g. an
        extended-XYZ ``Temperature=`` that changes from frame to frame), for
        the "give --temperature" message.
    numeric_species_base : int, optional
        Set when species names are bare integers without names (LAMMPS
        ``type`` 1, 2, ...; H5MD integer ``species`` 0, 1, ...): the integer
        that corresponds to the first species of a structure configuration.
    close : callable, optional
        Releases the file.
    metadata : dict, optional
        Anything else worth recording (column names, particle group, ...).
    """

    def __init__(
        self,
        path: str,
        format: str,
        *,
        n_frames: int,
        dimensions: int,
        species: Iterable[str],
        types: np.ndarray,
        frames: Callable[[], Iterator[Frame]],
        particle_ids: np.ndarray | None = None,
        position_kind: str = "wrapped",
        has_images: bool = False,
        temperature: float | None = None,
        temperature_source: str | None = None,
        temperature_note: str | None = None,
        numeric_species_base: int | None = None,
        close: Callable[[], None] | None = None,
        metadata: dict[str, Any] | None = None,
    ):
        self.path = str(path)
        self.format = format
        self.n_frames = int(n_frames)
        self.dimensions = int(dimensions)
        self.species = tuple(str(s) for s in species)
        self.types = np.asarray(types).astype(np.int64, copy=False)
        self.n_particles = int(self.types.shape[0])
        self.particle_ids = (
            np.arange(self.n_particles, dtype=np.int64)
            if particle_ids is None
            else np.asarray(particle_ids).astype(np.int64, copy=False)
        )
        if position_kind not in POSITION_KINDS:
            raise ValueError(f"position_kind must be one of {POSITION_KINDS}")
        self.position_kind = position_kind
        self.has_images = bool(has_images)
        self.temperature = None if temperature is None else float(temperature)
        self.temperature_source = temperature_source
        self.temperature_note = temperature_note
        self.numeric_species_base = numeric_species_base
        self.metadata = dict(metadata or {})
        self._frames = frames
        self._close = close
        #: constant frame interval found while iterating (steps and time), or None
        self.frame_interval_steps: int | None = None
        self.frame_interval_time: float | None = None
        p = self.path
        if self.dimensions not in (2, 3):
            raise DataError(f"only 2D and 3D systems are supported, got dimension {self.dimensions}", p)
        if self.n_particles == 0:
            raise DataError("the trajectory has no particles", p)
        if self.n_frames <= 0:
            raise DataError("the trajectory has no frames", p)
        if self.types.ndim != 1:
            raise DataError(f"species ids must be one per particle, got shape {self.types.shape}", p)
        if self.types.min() < 0 or self.types.max() >= len(self.species):
            raise DataError("species ids do not match the species names", p)
        if self.particle_ids.shape != (self.n_particles,):
            raise DataError("particle ids must be one per particle", p)

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return self.n_frames

    def __repr__(self) -> str:
        return (
            f"Trajectory({self.path!r}, format={self.format!r}, n_frames={self.n_frames}, "
            f"n_particles={self.n_particles}, dimensions={self.dimensions}, species={self.species})"
        )

    @property
    def unwrap_method(self) -> str:
        """``"images"``, ``"file"`` or ``"minimum-image"`` (module docstring)."""
        if self.has_images:
            return "images"
        if self.position_kind == "unwrapped":
            return "file"
        return "minimum-image"

    def close(self) -> None:
        if self._close is not None:
            self._close()
            self._close = None

    def __enter__(self) -> "Trajectory":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --------------------------------------------------------------- iteration
    def __iter__(self) -> Iterator[Frame]:
        """Yield checked frames in order (a fresh pass over the file)."""
        from adapters.readers import DATA_EXCEPTIONS, reader_failure

        count = 0
        state: dict = {}
        self.frame_interval_steps = None
        self.frame_interval_time = None
        frames = self._frames()
        try:
            while True:
                # hostile values (NaN payloads, 1e308, ...) must give a DataError from the
                # checks below, not RuntimeWarnings on stderr
                with np.errstate(all="ignore"):
                    try:
                        frame = next(frames)
                    except StopIteration:
                        break
                    except DATA_EXCEPTIONS as exc:  # a reader that let a low-level error slip
                        raise reader_failure(exc, self.path, f"frame {count}: ") from None
                    if frame.index != count:
                        raise DataError(f"frame {count}: reader yielded frame {frame.index} out of order", self.path)
                    self.check_frame(frame)
                    self._check_interval(frame, state)
                count += 1
                yield frame
        finally:
            close = getattr(frames, "close", None)
            if close is not None:
                close()
        if count != self.n_frames:
            raise DataError(
                f"the file holds {count} complete frames, but {self.n_frames} were announced "
                "(truncated or inconsistent file?)",
                self.path,
            )

    def unwrapped(self) -> Iterator[tuple[Frame, np.ndarray]]:
        """Yield ``(frame, unwrapped positions)`` pairs in order."""
        unwrap = Unwrapper(self.unwrap_method, self.path, self.particle_ids)
        for frame in self:
            yield frame, unwrap(frame)

    def check_frame(self, frame: Frame) -> None:
        """Check one frame against the trajectory; raise :class:`DataError`."""
        p, k = self.path, frame.index
        n, d = self.n_particles, self.dimensions
        pos = frame.positions
        if not isinstance(frame.box, Box):
            raise TypeError("Frame.box must be a Box")
        if frame.box.dimensions != d:
            raise DataError(f"frame {k}: box is {frame.box.dimensions}-D in a {d}-D trajectory", p)
        if pos.shape != (n, d):
            raise DataError(f"frame {k}: positions have shape {pos.shape}, expected ({n}, {d})", p)
        if not np.isfinite(pos).all():
            i = int(np.argwhere(~np.isfinite(pos))[0, 0])
            raise DataError(f"frame {k}: position of particle {i} is not finite", p)
        far = np.abs(pos) > MAX_BOX_LENGTHS * float(np.max(frame.box.L))
        if far.any():  # whatever the kind: beyond any physical run, and p_hop would overflow
            i, a = (int(x) for x in np.argwhere(far)[0])
            raise DataError(
                f"frame {k}: particle {i} is absurdly far from the box ({'xyz'[a]} = {pos[i, a]:g}, more than "
                f"{MAX_BOX_LENGTHS:g} box lengths); damaged file or wrong units?",
                p,
            )
        if frame.image is not None:
            if frame.image.shape != (n, d):
                raise DataError(f"frame {k}: image flags have shape {frame.image.shape}, expected ({n}, {d})", p)
            if not np.issubdtype(np.asarray(frame.image).dtype, np.integer):
                raise DataError(f"frame {k}: image flags must be integers, got {frame.image.dtype}", p)
        elif self.has_images:
            raise DataError(f"frame {k}: image flags missing (present in other frames)", p)
        if frame.position_kind == "wrapped":
            box = frame.box
            rel = box.fractional(pos)  # in [0, 1) when inside the box
            bad = (rel < -1.0) | (rel >= 2.0)
            if bad.any():
                i, a = (int(x) for x in np.argwhere(bad)[0])
                if box.is_triclinic:
                    where = f"fractional coordinate {'abc'[a]} = {rel[i, a]:g}, cell [0, 1)"
                else:
                    L, lo = box.L, box.lo
                    where = f"{'xyz'[a]} = {pos[i, a]:g}, box [{lo[a]:g}, {lo[a] + L[a]:g})"
                raise DataError(f"frame {k}: particle {i} is more than one box length outside the box ({where})", p)

    def _check_interval(self, frame: Frame, state: dict) -> None:
        """Frames must be equally spaced: p_hop windows are counted in frames.

        Steps (integers) must advance by exactly the same amount. Times are
        checked only when there are no steps, with a tolerance for values
        printed with few digits; the recorded time interval is the mean one.
        """
        p, k = self.path, frame.index
        step, time = frame.step, frame.time
        if k == 0:
            state.update(step0=step, time0=time, prev_step=step, prev_time=time)
            return
        prev_step, prev_time = state["prev_step"], state["prev_time"]
        if step is not None and prev_step is not None:
            ds = int(step) - int(prev_step)
            if self.frame_interval_steps is None:
                if ds <= 0:
                    raise DataError(
                        f"frame {k}: step {step} does not increase (previous {prev_step}); "
                        "duplicate or reordered frames?",
                        p,
                    )
                self.frame_interval_steps = ds
            elif ds != self.frame_interval_steps:
                raise DataError(
                    f"frame {k}: frames are not equally spaced (step {prev_step} -> {step}, "
                    f"expected +{self.frame_interval_steps}); p_hop needs a constant frame interval",
                    p,
                )
        if time is not None and prev_time is not None and state.get("time0") is not None:
            dt = float(time) - float(prev_time)
            mean_dt = (float(time) - float(state["time0"])) / k
            if "dt0" not in state:
                if not dt > 0:
                    raise DataError(f"frame {k}: time {time:g} does not increase (previous {prev_time:g})", p)
                state["dt0"] = dt
            elif step is None:
                # two values printed with 6 significant digits: 1e-5 relative each
                tol = 1e-3 * state["dt0"] + 2e-5 * max(abs(float(time)), 1.0)
                if abs(dt - state["dt0"]) > tol:
                    raise DataError(
                        f"frame {k}: frames are not equally spaced in time ({prev_time:g} -> {time:g}, "
                        f"expected +{state['dt0']:g}); p_hop needs a constant frame interval",
                        p,
                    )
            self.frame_interval_time = mean_dt
        state["prev_step"], state["prev_time"] = step, time


# ---------------------------------------------------------------------- unwrap
#: a step longer than this fraction of a box vector between two stored frames stops the run
#: when unwrapping by minimum image (near 1/2 it cannot tell a step from a jump to another particle)
MAX_STEP_FRACTION = 0.4
#: the same limit when the file's image flags or unwrapped positions give the step: beyond half
#: a box between two frames, the rows are other particles or the frames are far too apart
MAX_STEP_FRACTION_KNOWN = 0.5


class Unwrapper:
    """Turn stored positions into unwrapped positions, one frame at a time.

    Parameters
    ----------
    method : {"images", "file", "minimum-image"}
        See the module docstring.
    path : str, optional
        For messages.
    particle_ids : ndarray, shape (N,), optional
        Identifiers named in messages (default: row numbers).
    max_step : float, optional
        The largest accepted step between consecutive stored frames, in
        fractional coordinates (box lengths along each box vector); default
        :data:`MAX_STEP_FRACTION` for ``"minimum-image"`` and
        :data:`MAX_STEP_FRACTION_KNOWN` otherwise. A longer step is a
        :class:`DataError`: particles were reordered between frames (a file
        without ids), or the frames are too far apart to unwrap.

    Attributes
    ----------
    max_step_fraction : float
        Largest |step component| in fractional coordinates seen between two
        consecutive frames (every method).
    """

    def __init__(self, method: str, path: str | None = None, particle_ids: np.ndarray | None = None,
                 max_step: float | None = None):
        if method not in UNWRAP_METHODS:
            raise ValueError(f"unwrap method must be one of {UNWRAP_METHODS}")
        self.method = method
        self.path = path
        self.particle_ids = particle_ids
        if max_step is None:
            max_step = MAX_STEP_FRACTION if method == "minimum-image" else MAX_STEP_FRACTION_KNOWN
        self.max_step = float(max_step)
        self.max_step_fraction = 0.0
        self._prev_frac: np.ndarray | None = None
        self._prev_unwrapped: np.ndarray | None = None
        self._image: np.ndarray | None = None

    def __call__(self, frame: Frame) -> np.ndarray:
        pos = np.asarray(frame.positions, dtype=np.float64)
        box = frame.box
        if self.method == "images":
            if frame.image is None:
                raise DataError(f"frame {frame.index}: image flags missing", self.path)
            out = pos + box.image_shift(frame.image)
            step = None if self._prev_unwrapped is None else box.to_fractional(out - self._prev_unwrapped)
        elif self.method == "file":
            out = pos.copy()
            step = None if self._prev_unwrapped is None else box.to_fractional(out - self._prev_unwrapped)
        else:
            # in fractional coordinates: with a changing box (NPT) this agrees exactly with
            # unwrapping by image flags, r + ix a + iy b + iz c in the current box
            s = box.fractional(pos)
            if self._prev_frac is None:
                self._image = np.zeros(pos.shape, dtype=np.float64)
                step = None
            else:
                ds = s - self._prev_frac
                jump = np.round(ds)
                self._image -= jump
                step = ds - jump
            self._prev_frac = s
            out = pos + box.image_shift(self._image)
        if step is not None and step.size:
            big = np.abs(step)
            frac = float(np.max(big))
            self.max_step_fraction = max(self.max_step_fraction, frac)
            if frac > self.max_step:
                self._refuse(frame, big)
        self._prev_unwrapped = out
        return out

    def _refuse(self, frame: Frame, big: np.ndarray) -> None:
        i, a = (int(x) for x in np.unravel_index(int(np.argmax(big)), big.shape))
        who = f"particle {i}" if self.particle_ids is None else f"particle id {int(self.particle_ids[i])}"
        n_far = int((big.max(axis=1) > self.max_step).sum())
        axis = ("xyz" if not frame.box.is_triclinic else "abc")[a]
        raise DataError(
            f"frame {frame.index}: {who} moved {big[i, a]:.3g} box lengths along {axis} since the previous frame "
            f"({n_far} particles beyond {self.max_step:g}); particles reordered between frames (a file without "
            "particle ids, or LAMMPS 'dump_modify sort off'), or frames too far apart to unwrap; no labels made",
            self.path,
        )


def unwrap_positions(frames: Iterable[Frame], method: str, path: str | None = None) -> np.ndarray:
    """Unwrapped positions of a sequence of frames, shape (T, N, dim).

    A convenience for small trajectories and tests; streaming code uses
    :class:`Unwrapper` directly.
    """
    u = Unwrapper(method, path)
    return np.stack([u(f) for f in frames])


def open_trajectory(path, fmt: str | None = None, **options) -> Trajectory:
    """Open a trajectory file; see :func:`adapters.readers.open_trajectory`."""
    from adapters.readers import open_trajectory as _open

    return _open(path, fmt, **options)

